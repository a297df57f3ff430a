"""Proof that a refactor of the fitting pipeline changes no bit: the same fits, two codes, same files.

    python benchmarks/pipeline_bitwise.py write DIR [CASE ...]   # every case (or those named) into DIR
    python benchmarks/pipeline_bitwise.py compare DIR_A DIR_B    # byte-identical potentials, same reports

``write`` runs every case below as its own process (``python -m dcace.cli fit ...`` or, for the options
only Python has, ``dcace.fit(...)`` / ``dcace.refit(...)``) on small subsets of the committed Zuo Mo and
TiAl data, and keeps the potential file and the report (``--report-json``) of each.  Run it once with the
code before a change (e.g. ``PYTHONPATH`` pointing at a checkout of main) and once after; ``compare``
then says, per case, whether the two potential files are the same bytes, whether the two reports are
equal once the wall-clock entries (``timings``) and the state file's path and size are left out, and whether
two fit states hold the same arrays and metadata (but the data's paths and the measured update time).
The cases cover the branches of ``dcace.pipeline``: linear, ``--experts auto``, two elements, every
gate kind, ``--anchors auto``, a test set, a fit state and its refit (CLI) and a ``reuse=`` fit (API),
a 2-rank ``mpiexec`` fit with ``--frames-budget 0``, ``--max-degree-blocks``, ``--chemical-channels 2``,
weights, e0, the column ridges, the independent committee, no baseline and a ``--config`` file.
Give the two output directories names of the same length: a fit state records the data's absolute paths,
so the state's size in the report depends on them.  All 18 cases: ~5 min wall at load 10-14 (2 cores).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
MO = ["--elements", "Mo", "--cutoff", "5.2", "--threads", "1", "--quiet"]
TIAL = ["--elements", "Ti", "Al", "--cutoff", "5.0", "--forces-key", "force", "--virial-key", "virial",
        "--threads", "1", "--quiet"]
SMALL = ["--body-order", "3", "--max-degree", "6", "--cv-folds", "3"]

#: name -> ("cli", argv after 'fit' with {d} the case directory) | ("api", python source run in-process);
#: {d} is the data directory, {top} the output directory
CASES = {
    "mo_linear_test": ("cli", ["--train", "{d}/mo.xyz", "--test", "{d}/mo_test.xyz", *MO, *SMALL, "--experts", "1"]),
    "mo_auto_test": ("cli", ["--train", "{d}/mo.xyz", "--test", "{d}/mo_test.xyz", *MO, *SMALL, "--experts", "auto",
                             "--max-experts", "3", "--temperatures", "0.35", "0.7"]),
    "mo_independent_zero": ("cli", ["--train", "{d}/mo.xyz", *MO, *SMALL, "--experts", "2", "--temperatures", "0.5",
                                    "--committee", "independent", "--regularise", "zero", "--agreement", "0.1"]),
    "mo_anchors_auto": ("cli", ["--train", "{d}/mo.xyz", *MO, *SMALL, "--experts", "2", "--temperatures", "0.5",
                                "--anchors", "auto"]),
    "mo_gate_atom": ("cli", ["--train", "{d}/mo.xyz", "--test", "{d}/mo_test.xyz", *MO, *SMALL, "--gate", "atom",
                             "--experts", "2", "--temperatures", "0.5"]),
    "mo_gate_neighbourhood": ("cli", ["--train", "{d}/mo.xyz", *MO, *SMALL, "--gate", "neighbourhood",
                                      "--experts", "2", "--temperatures", "0.5", "--gate-range", "4",
                                      "--gate-body-order", "3"]),
    "mo_gate_auto": ("cli", ["--train", "{d}/mo.xyz", *MO, "--body-order", "2", "--max-degree", "5", "--cv-folds", "3",
                             "--gate", "auto", "--experts", "2", "--temperatures", "0.5"]),
    "mo_ridges": ("cli", ["--train", "{d}/mo.xyz", *MO, *SMALL, "--experts", "1", "--degree-ridge", "0,2",
                          "--top-degree-ridge", "5", "--no-pca", "--seed", "2", "--energy-weight", "100",
                          "--stress-weight", "0.5", "--repulsion-restraints", "0", "--shared-one-body"]),
    "mo_no_baseline_fixed": ("cli", ["--train", "{d}/mo.xyz", *MO, *SMALL, "--experts", "2", "--temperatures", "0.5",
                                     "--no-baseline", "--ridge", "1e-8", "--anchors", "0", "--angular-weight", "1.0",
                                     "--inner-cutoff", "1.0", "--e0", "Mo=-10.5", "--memory-budget", "0.5"]),
    "mo_config": ("config", {"train": "{d}/mo.xyz", "elements": ["Mo"], "cutoff": 5.2, "body_order": 2,
                             "max_degree": 5, "cv_folds": 3, "experts": 2, "temperatures": [0.5], "threads": 1,
                             "seed": 1, "quiet": True, "core_range": "1.6:2.0", "force_weight": 2.0}),
    "tial_auto": ("cli", ["--train", "{d}/tial.xyz", *TIAL, "--body-order", "2", "--max-degree", "6",
                          "--cv-folds", "3", "--experts", "auto", "--max-experts", "2", "--temperatures", "0.5",
                          "--weights", "config_type=FLD_TiAl:2"]),
    "tial_blocks": ("cli", ["--train", "{d}/tial.xyz", *TIAL, "--body-order", "3", "--max-degree", "6",
                            "--max-degree-blocks", "2:4", "--cv-folds", "3", "--experts", "1",
                            "--block-ridge", "1e-2,1,1e2"]),
    "tial_channels": ("cli", ["--train", "{d}/tial.xyz", *TIAL, "--body-order", "3", "--max-degree", "6",
                              "--chemical-channels", "2", "--cv-folds", "3", "--experts", "2",
                              "--temperatures", "0.5"]),
    "tial_channels_fit": ("cli", ["--train", "{d}/tial.xyz", *TIAL, "--body-order", "2", "--max-degree", "6",
                                  "--chemical-channels", "1", "--chemical-embedding", "fit", "--cv-folds", "3",
                                  "--experts", "1"]),
    "mo_state": ("cli", ["--train", "{d}/mo_first.xyz", *MO, *SMALL, "--experts", "2", "--temperatures", "0.5",
                         "--save-state", "{top}/mo_state/state.npz"]),
    "mo_refit": ("refit", ["--resume", "{top}/mo_state/state.npz", "--add", "{d}/mo_rest.xyz", "--threads", "1",
                           "--quiet"]),
    "mo_reuse_api": ("api", "dcace.fit(frames, elements=['Mo'], cutoff=5.2, body_order=3, max_degree=6, experts=2, "
                            "temperatures=(0.5,), cv_folds=3, threads=1, progress=False, batch_size=10, "
                            "reuse=r'{top}/mo_state/state.npz', compare=False)"),
    "mo_mpi2": ("mpi", ["--train", "{d}/mo.xyz", "--test", "{d}/mo_test.xyz", *MO, *SMALL, "--experts", "auto",
                        "--max-experts", "2", "--temperatures", "0.5", "--frames-budget", "0"]),
}


def _subsets(d: Path) -> None:
    """The case data: every 3rd Mo training frame, every 2nd test frame, every 4th TiAl frame."""
    from ase.io import read, write

    mo = read(DATA / "zuo2020" / "Mo_train.xyz", "::3")
    write(d / "mo.xyz", mo, format="extxyz")
    write(d / "mo_first.xyz", mo[:40], format="extxyz")
    write(d / "mo_rest.xyz", mo[40:], format="extxyz")
    write(d / "mo_test.xyz", read(DATA / "zuo2020" / "Mo_test.xyz", "::2"), format="extxyz")
    write(d / "tial.xyz", read(DATA / "tial" / "TiAl_tutorial.xyz", "::4"), format="extxyz")


def _run(name: str, top: Path) -> None:
    kind, spec = CASES[name]
    d = top / name
    d.mkdir(parents=True, exist_ok=True)
    out = ["-o", str(d / "pot.dcace"), "--report-json", str(d / "report.json")]
    fmt = (lambda s: s.replace("{d}", str(top / "data")).replace("{top}", str(top)))
    cli = [sys.executable, "-m", "dcace.cli", "fit"]
    if kind in ("cli", "refit", "mpi"):
        argv = cli + [fmt(a) for a in spec] + (out[:2] if kind == "refit" else out)   # (a refit: no --report-json)
        if kind == "mpi":
            argv = [str(Path(sys.executable).parent / "mpiexec"), "-n", "2"] + argv
    elif kind == "config":
        cfg = d / "fit.toml"
        cfg.write_text("".join(f"{k} = {json.dumps(fmt(v) if isinstance(v, str) else v)}\n" for k, v in spec.items()))
        argv = cli + ["--config", str(cfg)] + out
    else:
        code = ("import dcace, json; from ase.io import read\n"
                f"frames = read(r'{top / 'data' / 'mo.xyz'}', ':')\n"
                f"pot = {fmt(spec)}\n"
                f"open(r'{d / 'pot.dcace'}', 'w').write(pot.to_string())\n"
                f"open(r'{d / 'report.json'}', 'w').write(pot.report.to_json())\n")
        argv = [sys.executable, "-c", code]
    res = subprocess.run(argv, capture_output=True, text=True, env=None)
    (d / "stdout.txt").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"{name}: exit {res.returncode}\n{res.stderr[-3000:]}")


def _report(path: Path) -> dict:
    """The report without what the clock decides."""
    rep = json.loads(path.read_text())
    rep.pop("timings", None)
    sel = rep.get("selection") or {}
    for key in ("path", "bytes"):   # (the state's bytes: a compressed file holding the data's paths)
        sel.get("state", {}).pop(key, None)
    return rep


def _same_state(a: Path, b: Path) -> bool:
    """Two fit states hold the same arrays and metadata, but the data's paths and the measured update time."""
    import numpy as np

    with np.load(a) as za, np.load(b) as zb:
        if sorted(za.files) != sorted(zb.files):
            return False
        ma, mb = (json.loads(str(z["__meta__"])) for z in (za, zb))
        for m in (ma, mb):
            m.pop("paths", None)
            m.pop("pass2_update_s_per_structure", None)
        return ma == mb and all(np.array_equal(za[k], zb[k], equal_nan=za[k].dtype.kind == "f")
                                for k in za.files if k != "__meta__")


def compare(a: Path, b: Path) -> int:
    bad = 0
    for name in CASES:
        pa, pb = a / name / "pot.dcace", b / name / "pot.dcace"
        if not (pa.exists() and pb.exists()):
            print(f"{name:24s} missing in {a if not pa.exists() else b}")
            bad += 1
            continue
        same_file = pa.read_bytes() == pb.read_bytes()
        ra, rb = a / name / "report.json", b / name / "report.json"
        same_report = ra.exists() == rb.exists() and (not ra.exists() or _report(ra) == _report(rb))
        sa, sb = a / name / "state.npz", b / name / "state.npz"
        same_state = sa.exists() == sb.exists() and (not sa.exists() or _same_state(sa, sb))
        bad += not same_state
        print(f"{name:24s} potential {'identical' if same_file else 'DIFFERS'}  "
              f"report {('equal' if ra.exists() else 'none') if same_report else 'DIFFERS'}"
              + (f"  state {'equal' if same_state else 'DIFFERS'}" if sa.exists() or sb.exists() else "")
              + f"  ({len(pa.read_bytes())} bytes)")
        bad += (not same_file) + (not same_report)
    print("all identical" if bad == 0 else f"{bad} difference(s)")
    return int(bad > 0)


def main(argv) -> int:
    if argv[:1] == ["write"] and len(argv) >= 2:
        top = Path(argv[1]).resolve()
        (top / "data").mkdir(parents=True, exist_ok=True)
        _subsets(top / "data")
        for name in argv[2:] or CASES:
            _run(name, top)
            print(f"{name}: done", flush=True)
        return 0
    if argv[:1] == ["compare"] and len(argv) == 3:
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
