"""The short-range core, measured: accuracy, dimer curves and compressed crystals, with and without it.

For each data set (the six Zuo et al. elements and TiAl) and each core setting, a default linear fit
(body order 4, degree 12; TiAl body order 3 as in examples/TiAl) is made and probed off the data:
  * test energy / force MAE;
  * every element pair's dimer from the shortest distance of that pair in the training data down
    to 0.1 A: the first distance where the energy fails to rise as r decreases, and the lowest
    energy relative to the separated atoms;
  * the ground-state crystal compressed uniformly from a/a0 = 1 to 0.4: the first scale where the
    energy fails to rise, and whether the pressure is positive below a/a0 = 0.95.
Writes a markdown table (docs/short-range.md):

    python benchmarks/short_range.py --markdown docs/short-range.md
    python benchmarks/short_range.py --window 0.15:0.10 --window 0.15:0.2     (window = below:above r_min)
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import read

import dcace
from dcace.baseline import shortest_distances
from dcace.probes import compression_curve, dimer_curve, equilibrium, first_violation

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
SETS = {  # name: (elements, cutoff, body order, crystal, train, test, keys)
    "Mo": (["Mo"], 5.2, 4, lambda: bulk("Mo", "bcc", a=3.16, cubic=True)),
    "Si": (["Si"], 4.7, 4, lambda: bulk("Si", "diamond", a=5.43, cubic=True)),
    "Ge": (["Ge"], 5.1, 4, lambda: bulk("Ge", "diamond", a=5.66, cubic=True)),
    "Cu": (["Cu"], 3.9, 4, lambda: bulk("Cu", "fcc", a=3.62, cubic=True)),
    "Ni": (["Ni"], 4.0, 4, lambda: bulk("Ni", "fcc", a=3.52, cubic=True)),
    "Li": (["Li"], 5.1, 4, lambda: bulk("Li", "bcc", a=3.44, cubic=True)),
    "TiAl": (["Ti", "Al"], 5.5, 3, None),
}


def tial_crystal():
    from ase import Atoms
    a, c = 4.00, 4.08
    return Atoms("Ti2Al2", cell=[a, a, c], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def files(name):
    if name == "TiAl":
        frames = read(DATA / "tial" / "TiAl_tutorial.xyz", ":")
        return frames[:280], frames[280:], dict(forces_key="force", virial_key="virial", stress_key=None)
    z = DATA / "zuo2020"
    return str(z / f"{name}_train.xyz"), str(z / f"{name}_test.xyz"), {}


def probe(name, window, experts=1):
    elements, rc, bo, crystal = SETS[name]
    train, test, keys = files(name)
    kw = dict(experts=experts, progress=False, compare=False, body_order=bo, max_degree=12, **keys)
    if window is None:
        kw["baseline"] = None
    elif window == "no-restraints":
        kw["repulsion_restraints"] = 0.0
    elif window != "default":
        below, above = window
        tr = read(train, ":") if isinstance(train, str) else train
        rmin = shortest_distances(tr, elements, rc)
        kw["core_range"] = {f"{a}-{b}": (rmin[i, j] - below, rmin[i, j] + above)
                            for (i, a), (j, b) in itertools.combinations_with_replacement(enumerate(elements), 2)}
    t0 = time.perf_counter()
    pot = dcace.fit(train, elements=elements, cutoff=rc, test=test, **kw)
    fit_s = time.perf_counter() - t0
    t = pot.report.errors["linear"]["test"]
    tr = read(train, ":") if isinstance(train, str) else train
    rmin = shortest_distances(tr, elements, rc)
    dimers = []
    for (i, a), (j, b) in itertools.combinations_with_replacement(enumerate(elements), 2):
        r = np.linspace(rmin[i, j], 0.1, 400)
        try:
            E = dimer_curve(pot, a, b, r)
            k = first_violation(E)
            dimers.append(f"{a}-{b}: {'ok' if k is None else f'dips at {r[k]:.3f}'}, min {E.min():+.3g} eV")
        except ValueError as exc:
            dimers.append(f"{a}-{b}: error ({str(exc)[:40]})")
    scales = np.linspace(1.0, 0.4, 121)
    try:
        E, P = compression_curve(pot, equilibrium(pot, (crystal or tial_crystal)()), scales)
        k = first_violation(E)
        neg = scales[(scales < 0.95) & ~(P > 0)]
        comp = (f"{'E rises' if k is None else f'E falls at {scales[k]:.3f}'}; "
                f"{'P > 0' if len(neg) == 0 else f'P <= 0 at {neg.max():.3f}'}; E(0.4) - E(1) {E[-1] - E[0]:.3g}")
    except ValueError as exc:
        comp = f"error ({str(exc)[:60]})"
    label = "none" if window is None else (window if isinstance(window, str) else f"-{window[0]:g}/+{window[1]:g}")
    M = pot.n_experts
    return (f"| {name} | {label} | {M} | {t['energy_mae_mev_per_atom']:.3f} | {t['force_mae_ev_per_a']:.4f} | "
            f"{'; '.join(dimers)} | {comp} | {fit_s:.0f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--window", action="append", default=[], metavar="BELOW:ABOVE",
                    help="extra core windows around each pair's shortest distance (A)")
    ap.add_argument("--experts", default="1", help="1 (linear, default) or auto (the default fit's committee)")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    windows = [None, "no-restraints", "default"] + [tuple(float(x) for x in w.split(":")) for w in args.window]
    experts = args.experts if args.experts == "auto" else int(args.experts)
    rows = ["| data | core | M | test E MAE (meV/atom) | test F MAE (eV/Å) | dimers from r_min to 0.1 Å | "
            "crystal a/a0 1 → 0.4 | fit (s) |", "|---|---|---|---|---|---|---|---|"]
    for name in args.sets:
        for w in windows:
            rows.append(probe(name, w, experts))
            print(rows[-1], flush=True)
    if args.markdown:
        head = ("# The short-range core, measured\n\nGenerated by `python benchmarks/short_range.py "
                + " ".join(f"--window {w}" for w in args.window) + f" --experts {args.experts} --markdown {args.markdown}`. "
                "Default fits (body order 4, degree 12; TiAl body order 3) with --experts " + args.experts + "; "
                "core 'none' is --no-baseline, 'no-restraints' the default core without the repulsion restraints "
                "(--repulsion-restraints 0), 'default' the core with them; other windows are given "
                "as (below:above) each pair's shortest training distance, 'default' is -0.3/-0.05 Å. The Zuo "
                "sets use their train/test files; TiAl trains on the first 280 frames of the tutorial set and "
                "tests on the last 49, which hold all 14 T = 5,000 K frames (an extrapolation test). "
                "Design and reading: docs/short-range.md.\n\n")
        args.markdown.write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
