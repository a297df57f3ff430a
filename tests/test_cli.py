"""Command line: `dcace fit` then `dcace eval --json` end to end, --version, help texts, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ase import Atoms
from ase.io import read, write

import dcace
from dcace.cli import main

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train = d / "train.xyz"
    test = d / "test.xyz"
    write(train, read(DATA / "zuo2020" / "Mo_train.xyz", "::3"), format="extxyz")
    write(test, read(DATA / "zuo2020" / "Mo_test.xyz", "::2"), format="extxyz")
    return d, train, test


def test_fit_then_eval_json(small_files, capsys):
    d, train, test = small_files
    pot = d / "Mo.dcace"
    plots = d / "plots"
    code, out, err = run(["fit", "--train", str(train), "--test", str(test), "--elements", "Mo", "--cutoff", "5.2",
                          "--body-order", "3", "--max-degree", "6", "--experts", "2", "--temperatures", "0.5",
                          "--cv-folds", "3", "--seed", "1", "--plots", str(plots), "-o", str(pot), "--quiet"], capsys)
    assert code == 0, err
    assert "| dc | test |" in out and "| linear | test |" in out and f"wrote {pot}" in out
    assert {p.name for p in plots.iterdir()} >= {"parity.png", "errors.png", "clusters.png"}
    code, out, err = run(["eval", str(pot), str(test), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    for key in ("n_structures", "n_atoms", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom",
                "force_mae_ev_per_a", "force_rmse_ev_per_a", "stress_mae_gpa", "n_experts"):
        assert key in res
    assert res["n_experts"] == 2 and res["n_structures"] == len(read(test, ":"))
    # eval agrees with the test errors the fit reported for the written potential
    meta = dcace.load(pot).metadata
    assert res["energy_mae_mev_per_atom"] == pytest.approx(meta["errors"]["dc"]["test"]["energy_mae_mev_per_atom"], rel=1e-5)
    assert res["force_mae_ev_per_a"] == pytest.approx(meta["errors"]["dc"]["test"]["force_mae_ev_per_a"], rel=1e-5)
    # table output
    code, out, _ = run(["eval", str(pot), str(test)], capsys)
    assert code == 0 and "| potential |" in out


def test_linear_fit_and_stressless_eval(small_files, capsys, tmp_path):
    d, train, test = small_files
    pot = tmp_path / "lin.dcace"
    code, out, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "2",
                          "--max-degree", "6", "--experts", "1", "--cv-folds", "3", "-o", str(pot), "--quiet"], capsys)
    assert code == 0, err
    frames = read(test, ":3")
    for a in frames:
        a.calc.results.pop("stress", None)
    nostress = tmp_path / "nostress.xyz"
    write(nostress, frames, format="extxyz")
    code, out, err = run(["eval", str(pot), str(nostress), "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["stress_mae_gpa"] is None and res["n_experts"] == 1


def test_basis_options_reach_the_file(small_files, capsys, tmp_path):
    """--angular-weight and --inner-cutoff change the basis the file holds (K as the spec builder
    says, the inner cutoff enforced by the evaluator), from the command line and a config file."""
    from dcace.basis_spec import build_basis_spec

    d, train, _ = small_files
    pot = tmp_path / "wl.dcace"
    code, out, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "3",
                          "--max-degree", "6", "--experts", "1", "--cv-folds", "3", "--angular-weight", "1.0",
                          "--inner-cutoff", "1.2", "-o", str(pot), "--quiet"], capsys)
    assert code == 0, err
    p = dcace.load(pot)
    k_wl1 = build_basis_spec(1, 5.2, 3, 6, inner_cutoff=1.2, w_L=1.0)["n_features"]
    assert p.core.n_features == k_wl1 != build_basis_spec(1, 5.2, 3, 6)["n_features"]
    assert p.basis.inner_cutoff == 1.2
    # with the short-range core a pair closer than the inner cutoff is ZBL's (repulsive), not an error
    dimer = p.compute(Atoms("Mo2", positions=[[0, 0, 0], [0, 0, 1.1]]))["energy"]
    assert dimer - 2 * p.compute(Atoms("Mo"))["energy"] > 50.0
    nob = tmp_path / "nob.dcace"
    code, out, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "3",
                          "--max-degree", "6", "--experts", "1", "--cv-folds", "3", "--inner-cutoff", "1.2",
                          "--no-baseline", "-o", str(nob), "--quiet"], capsys)
    assert code == 0, err
    assert dcace.load(nob).baseline is None and p.baseline == "zbl"
    with pytest.raises(ValueError, match="inner cutoff"):
        dcace.load(nob).compute(Atoms("Mo2", positions=[[0, 0, 0], [0, 0, 1.1]]))
    cfg = tmp_path / "wl.toml"
    cfg.write_text(f'train = "{train}"\nelements = "Mo"\ncutoff = 5.2\nbody-order = 3\nmax-degree = 6\n'
                   f'experts = 1\ncv-folds = 3\nangular-weight = 1.0\noutput = "{tmp_path / "c.dcace"}"\n')
    code, out, err = run(["fit", "--config", str(cfg), "--quiet"], capsys)
    assert code == 0, err
    assert dcace.load(tmp_path / "c.dcace").core.n_features == build_basis_spec(1, 5.2, 3, 6, w_L=1.0)["n_features"]
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--angular-weight", "0",
              "-o", str(tmp_path / "x.dcace")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--angular-weight" in err and "> 0" in err


def test_config_file(small_files, capsys, tmp_path):
    d, train, _ = small_files
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f'train = "{train}"\nelements = ["Mo"]\ncutoff = 5.2\nbody-order = 2\nmax-degree = 5\n'
                   f'experts = 1\ncv-folds = 3\noutput = "{tmp_path / "c.dcace"}"\n')
    code, out, err = run(["fit", "--config", str(cfg), "--quiet"], capsys)
    assert code == 0, err
    assert (tmp_path / "c.dcace").exists()
    cfg.write_text('bogus = 1\n')
    code, out, err = run(["fit", "--config", str(cfg)], capsys)
    assert code == 2 and "unknown option 'bogus'" in err


def test_bad_input_messages(small_files, capsys, tmp_path):
    d, train, _ = small_files
    out_pot = str(tmp_path / "x.dcace")
    # element present but not listed
    code, _, err = run(["fit", "--train", str(DATA / "tial" / "TiAl_tutorial.xyz"), "--elements", "Ti", "--cutoff", "5",
                        "--forces-key", "force", "-o", out_pot, "--quiet"], capsys)
    assert code == 2 and "TiAl_tutorial.xyz, frame 0" in err and "Al present but not listed" in err
    assert "Traceback" not in err
    # wrong forces key
    code, _, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--forces-key", "F",
                        "-o", out_pot, "--quiet"], capsys)
    assert code == 2 and "train.xyz, frame 0: no forces under key 'F'" in err
    # empty and missing files
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    code, _, err = run(["fit", "--train", str(empty), "--elements", "Mo", "--cutoff", "5.2", "-o", out_pot], capsys)
    assert code == 2 and "empty.xyz: the file is empty" in err
    code, _, err = run(["eval", str(tmp_path / "none.dcace"), str(train)], capsys)
    assert code == 2 and "none.dcace" in err
    # a corrupted potential file names the line
    bad = tmp_path / "bad.dcace"
    good = dcace.fit(read(train, ":12"), elements=["Mo"], cutoff=5.2, body_order=2, max_degree=4, experts=1,
                     cv_folds=2, progress=False)
    text = good.to_string().splitlines()
    bad.write_text("\n".join(text[: len(text) // 2]) + "\n")
    code, _, err = run(["eval", str(bad), str(train)], capsys)
    assert code == 2 and "bad.dcace" in err
    # missing required options
    code, _, err = run(["fit", "--train", str(train)], capsys)
    assert code == 2 and "--elements" in err and "--cutoff" in err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dcace {dcace.__version__}"
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    h = capsys.readouterr().out
    for opt in ("--energy-weight", "--force-weight", "--stress-weight", "--experts", "--ridge", "--energy-key",
                "--forces-key", "--stress-key", "--virial-key", "--seed", "--plots"):
        assert opt in h
    assert h.count("default:") >= 20 and h.count("example:") >= 20


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "dcace.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("dcace ")
