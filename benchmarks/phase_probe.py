"""Issue 10's off-data bar on fitted potentials: dimers, and bcc/fcc of every element compressed from a0.

For every potential file given (named <data>_..., e.g. the Cu_bo2_deg12_dc.dcace that
`benchmarks/zuo_table.py --save-potentials DIR` writes, or given as DATA=PATH):
  * every element pair's dimer from the data's shortest distance of that pair down to 0.1 A must rise;
  * the ground-state crystal of the data (benchmarks/short_range.SETS) and bcc and fcc of every
    element at its volume per atom, each compressed from the potential's own a0 (dcace.crystal_probe:
    the first energy minimum coming from the expanded side) to 0.4 a0, must rise in energy with
    P > 0 below 0.95 a0.
Prints one row per failure (setting, model, probe, where, how much) and, with --markdown, writes them.

    python benchmarks/zuo_table.py --no-large --extra --no-extra-per-element --cache /tmp/z.json \
        --out /tmp/z.md --save-potentials /tmp/pots
    python benchmarks/phase_probe.py /tmp/pots/*.dcace --markdown docs/short-range-phases.md
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parent))
from short_range import DATA, SETS, tial_crystal  # noqa: E402

import dcace  # noqa: E402
from dcace.baseline import shortest_distances  # noqa: E402
from dcace.crystal_probe import crystal_verdict, phase_crystals  # noqa: E402
from dcace.probes import dimer_curve, first_violation  # noqa: E402

_RMIN = {}


def shortest(name):
    """The data's shortest distance per element pair (S x S; TiAl: the whole tutorial set)."""
    if name not in _RMIN:
        elements, rc, _, _ = SETS[name]
        path = DATA / "tial" / "TiAl_tutorial.xyz" if name == "TiAl" else DATA / "zuo2020" / f"{name}_train.xyz"
        _RMIN[name] = shortest_distances(read(path, ":"), elements, rc)
    return _RMIN[name]


def probe(name, pot):
    """[(probe, failure)] and [(crystal, a0)] of one potential trained on data set `name`."""
    elements, _, _, crystal = SETS[name]
    rmin = shortest(name)
    fails, a0s = [], []
    for (i, a), (j, b) in itertools.combinations_with_replacement(enumerate(elements), 2):
        r = np.linspace(rmin[i, j], 0.1, 1000)
        E = dimer_curve(pot, a, b, r)
        k = first_violation(E)
        if k is not None:
            fails.append((f"{a}-{b} dimer", f"falls by {E[k - 1] - E[k]:.3g} eV at {r[k]:.3f} A"))
    ground = (crystal or tial_crystal)()
    for label, atoms in [("ground-state crystal", ground)] + phase_crystals(elements, ground.get_volume() / len(ground)):
        v = crystal_verdict(pot, atoms)
        a0s.append((label, v["a0"]))
        if v["failure"]:
            fails.append((label, f"{v['failure']} (a0 = {v['a0'] or float('nan'):.4f} A)"))
    return fails, a0s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("potentials", nargs="+", help="files <data>_*.dcace, or DATA=PATH")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    rows = ["| potential | M | probe | failure |", "|---|---|---|---|"]
    n_fail = 0
    for spec in args.potentials:
        name, path = spec.split("=", 1) if "=" in spec else (Path(spec).name.split("_")[0], spec)
        if name not in SETS:
            raise SystemExit(f"{spec}: data set {name!r} is not one of {list(SETS)}")
        pot = dcace.load(path)
        fails, a0s = probe(name, pot)
        print(f"{Path(path).name}: M = {pot.n_experts}, a0 " + ", ".join(f"{k} {a or float('nan'):.4f}" for k, a in a0s)
              + ("" if fails else ": passes"), flush=True)
        for what, msg in fails:
            print(f"    FAILS {what}: {msg}", flush=True)
            rows.append(f"| {Path(path).stem} | {pot.n_experts} | {what} | {msg} |")
        n_fail += bool(fails)
        if not fails:
            rows.append(f"| {Path(path).stem} | {pot.n_experts} | all | passes |")
    summary = f"{n_fail} of {len(args.potentials)} potentials fail a probe."
    print(summary)
    if args.markdown:
        args.markdown.write_text("\n".join(rows + ["", summary, ""]))


if __name__ == "__main__":
    main()
