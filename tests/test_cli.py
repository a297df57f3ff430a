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


# ------------------------------------------------------------------------------------------ issue 12
TINY = ["--elements", "Mo", "--cutoff", "5.2", "--body-order", "2", "--max-degree", "4", "--experts", "1",
        "--cv-folds", "3", "--quiet"]


@pytest.fixture
def no_fit(monkeypatch):
    """Makes any fit an error: a check that must happen "before any work" passes only if it does."""
    import dcace.pipeline

    def boom(*a, **k):
        raise AssertionError("the fit started")
    monkeypatch.setattr(dcace.pipeline, "fit", boom)


def test_output_that_is_the_data_is_refused_before_any_work(small_files, capsys, tmp_path, no_fit):
    import os

    d, train, test = small_files
    before = train.read_bytes(), test.read_bytes()
    link = tmp_path / "hard.xyz"
    os.link(train, link)                       # same inode, another name
    for out in (train, link, test, tmp_path / ".." / tmp_path.name / "hard.xyz"):
        code, _, err = run(["fit", "--train", str(train), "--test", str(test), *TINY, "-o", str(out)], capsys)
        assert code == 2 and "refusing to overwrite" in err and str(out) in err, err
    code, _, err = run(["fit", "--train", str(train), "--test", str(test), *TINY, "--report-json", str(test), "-o",
                        str(tmp_path / "x.dcace")], capsys)
    assert code == 2 and "--report-json" in err and "is the --test data file" in err
    assert (train.read_bytes(), test.read_bytes()) == before


def test_unwritable_outputs_are_refused_before_any_work(small_files, capsys, tmp_path, no_fit):
    d, train, _ = small_files
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    # --plots an existing file: refused before the potential is written
    code, _, err = run(["fit", "--train", str(train), *TINY, "--plots", str(afile), "-o", str(tmp_path / "p.dcace")],
                       capsys)
    assert code == 2 and "--plots" in err and "not a directory" in err
    assert not (tmp_path / "p.dcace").exists() and afile.read_text() == "not a directory\n"
    # -o below a file, or a directory
    for out, msg in ((afile / "p.dcace", "is a file, not a directory"), (tmp_path, "is a directory")):
        code, _, err = run(["fit", "--train", str(train), *TINY, "-o", str(out)], capsys)
        assert code == 2 and "-o/--output" in err and msg in err, err


def test_a_failed_write_leaves_the_previous_file(small_files, capsys, tmp_path, monkeypatch):
    """The potential goes through a temporary file: a write that dies half way leaves the old file
    (and no temporary file) behind."""
    d, train, _ = small_files
    out = tmp_path / "p.dcace"
    out.write_text("previous potential\n")
    real = Path.write_text

    def half(self, text, *a, **k):
        real(self, text[: len(text) // 2], *a, **k)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_text", half)
    code, _, err = run(["fit", "--train", str(train), *TINY, "-o", str(out)], capsys)
    monkeypatch.undo()
    assert code == 2 and "No space left" in err
    assert out.read_text() == "previous potential\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.dcace"]
    # and a successful run replaces it with a complete, loadable file
    code, _, err = run(["fit", "--train", str(train), *TINY, "-o", str(out)], capsys)
    assert code == 0, err
    assert dcace.load(out).n_experts == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["p.dcace"]


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    from dcace.atomic import atomic_path, write_text_atomic

    p = tmp_path / "f.txt"
    write_text_atomic(p, "one\n")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("tw")
            raise RuntimeError("died")
    assert p.read_text() == "one\n" and [x.name for x in tmp_path.iterdir()] == ["f.txt"]
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask   # like a plain open(), not mkstemp's 0600


def _renamed_keys(frames, energy="E_dft", forces="F_dft", stress="S_dft"):
    out = []
    for a in frames:
        b = a.copy()
        b.info[energy] = a.get_potential_energy()
        b.arrays[forces] = a.get_forces()
        if stress:
            b.info[stress] = a.get_stress(voigt=False)
        out.append(b)
    return out


def test_config_keys_are_not_overridden_by_defaults_and_eval_uses_the_fitted_keys(small_files, capsys, tmp_path):
    d, train, test = small_files
    data = tmp_path / "renamed.xyz"
    write(data, _renamed_keys(read(train, ":")), format="extxyz")
    cfg = tmp_path / "fit.toml"
    out = tmp_path / "k.dcace"
    cfg.write_text(f'train = "{data}"\nelements = "Mo"\ncutoff = 5.2\nbody-order = 2\nmax-degree = 4\n'
                   f'experts = 1\ncv-folds = 3\nseed = 3\nenergy_key = "E_dft"\nforces_key = "F_dft"\n'
                   f'stress_key = "S_dft"\noutput = "{out}"\n')
    code, _, err = run(["fit", "--config", str(cfg), "--quiet"], capsys)
    assert code == 0, err
    meta = dcace.load(out).metadata
    assert (meta["fit"]["energy_key"], meta["fit"]["forces_key"], meta["fit"]["stress_key"]) == ("E_dft", "F_dft", "S_dft")
    assert meta["fit"]["seed"] == 3
    assert meta["errors"]["linear"]["train"]["stress_mae_gpa"] is not None      # the stresses were fitted
    # a value typed on the command line wins, even when it is the built-in default (--seed 0)
    code, _, err = run(["fit", "--config", str(cfg), "--seed", "0", "--quiet"], capsys)
    assert code == 0, err
    meta = dcace.load(out).metadata
    assert meta["fit"]["seed"] == 0
    # eval without key options reads the data with the keys the potential was fitted with
    code, res, err = run(["eval", str(out), str(data), "--json"], capsys)
    assert code == 0, err
    res = json.loads(res)
    assert res["energy_mae_mev_per_atom"] == pytest.approx(meta["errors"]["linear"]["train"]["energy_mae_mev_per_atom"],
                                                           rel=1e-5)
    assert res["stress_mae_gpa"] is not None
    # typed keys still win
    code, _, err = run(["eval", str(out), str(data), "--energy-key", "nothere"], capsys)
    assert code == 2 and "no energy under key 'nothere'" in err


def test_stress_and_virial_key_typos_are_errors(small_files, capsys, tmp_path):
    d, train, _ = small_files
    out = str(tmp_path / "x.dcace")
    for opt in ("--stress-key", "--virial-key"):
        code, _, err = run(["fit", "--train", str(train), *TINY, opt, "strss", "-o", out], capsys)
        assert code == 2 and "under key 'strss'" in err and opt in err and "keys present" in err and "'stress'" in err
    # data without any stress is fine with the default key
    frames = read(train, ":")
    for a in frames:
        a.calc.results.pop("stress", None)
    nostress = tmp_path / "nostress.xyz"
    write(nostress, frames, format="extxyz")
    code, _, err = run(["fit", "--train", str(nostress), *TINY, "-o", out], capsys)
    assert code == 0, err
    assert dcace.load(out).metadata["errors"]["linear"]["train"]["stress_mae_gpa"] is None


def test_too_many_experts_and_too_large_basis_are_refused(small_files, capsys, tmp_path, monkeypatch):
    d, train, _ = small_files
    n = len(read(train, ":"))
    out = str(tmp_path / "x.dcace")
    args = ["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "2",
            "--max-degree", "4", "--cv-folds", "5", "--quiet", "-o", out]
    code, _, err = run(args + ["--experts", str(n // 10 + 1)], capsys)
    assert code == 2 and f"--experts {n // 10 + 1}" in err and f"{n} training structures" in err
    assert f"largest allowed is M = {n // 10}" in err
    # degree 40: 60,982 features; refused with the figure before the basis is built
    import time

    import dcace.basis

    monkeypatch.setattr(dcace.basis.ACEBasis, "__init__", lambda *a, **k: pytest.fail("basis built"))
    t0 = time.perf_counter()
    code, _, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--max-degree", "40",
                        "--quiet", "-o", out], capsys)
    assert code == 2 and "K = 60982" in err and "GiB" in err and "--memory-budget" in err and "--max-degree" in err
    need = float(err.split("need ")[1].split(" GiB")[0])
    assert need == pytest.approx(8 * 60983 ** 2 * 10 / 2 ** 30, rel=1e-3)
    assert time.perf_counter() - t0 < 30
    assert not Path(out).exists()


def test_tomli_fallback(monkeypatch):
    """Python 3.10 has no tomllib: the CLI uses the tomli backport, which pyproject requires there."""
    import importlib
    import types

    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10
        import tomli as tomllib

    import dcace.cli

    fake = types.ModuleType("tomli")
    fake.loads, fake.TOMLDecodeError = tomllib.loads, tomllib.TOMLDecodeError
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", fake)
    try:
        mod = importlib.reload(dcace.cli)
        assert mod.tomllib is fake
    finally:
        monkeypatch.undo()
        importlib.reload(dcace.cli)
    py = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "\"tomli>=1.1; python_version < '3.11'\"" in py


def test_help_states_one_degree_formula(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    h = " ".join(capsys.readouterr().out.split())
    formula = "a feature is kept if sum_t (n_t + W_L l_t) <= D, n_t >= 1"
    assert h.count(formula) == 2
    assert "n + 1 + W_L l" not in h and "(n_t + 1.5 l_t)" not in h


def test_weights_and_baseline_options_reach_the_fit(small_files, tmp_path, capsys):
    """--weights config_type=TYPE:W and --baseline (LAMMPS lines) are what the fit records; a bad
    --weights names the option and the item."""
    d, train, _ = small_files
    out = tmp_path / "w.dcace"
    code, _, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "3",
                        "--max-degree", "6", "--experts", "1", "--cv-folds", "3", "--weights",
                        "config_type=Elastic:0.5,AIMD-NVT:2", "--baseline",
                        "pair_style lj/cut 5.0; pair_coeff * * 0.05 2.6; pair_modify shift yes",
                        "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    meta = dcace.load(out).metadata
    assert meta["fit"]["weights"] == {"Elastic": 0.5, "AIMD-NVT": 2.0}
    assert meta["basis"]["delta_baseline"]["lines"] == ["pair_style lj/cut 5.0", "pair_coeff * * 0.05 2.6",
                                                        "pair_modify shift yes"]
    code, _, err = run(["fit", "--train", str(train), "--elements", "Mo", "--cutoff", "5.2", "--weights",
                        "Elastic=2", "-o", str(tmp_path / "x.dcace"), "--quiet"], capsys)
    assert code != 0 and "--weights 'Elastic=2'" in err and not (tmp_path / "x.dcace").exists()


def test_e0_option_parses_and_names_bad_items():
    from dcace.cli import parse_e0

    assert parse_e0(["Ti=-1.23", "Al=-0.45"]) == {"Ti": -1.23, "Al": -0.45}
    with pytest.raises(ValueError, match=r"--e0 'Ti:-1' must be ELEMENT=ENERGY"):
        parse_e0(["Ti:-1"])


def test_every_fit_option_but_the_refit_ones_can_come_from_the_config_file():
    """--config accepts every fit option (cli._config_keys, derived from the parser, which is built from
    dcace.settings) except those naming a fit state or the config itself (a hand-kept list once missed two)."""
    from dcace import cli

    fit = cli.build_parser()._subparsers._group_actions[0].choices["fit"]
    options = {a.dest for a in fit._actions} - {"help"}
    keys = cli._config_keys(fit)
    assert options - keys == {"add", "config", "keep_core", "recluster", "resume", "save_state"}
    assert keys <= options
