"""Unlike-pair core windows: the mean rule (dcace.baseline.UNLIKE_PAIRS = "mean") against the rule
before it ("data": each pair's window from its own shortest distance) on TiAl fits with the basis of
the TiAl example (examples/TiAl/run.sh: body order 3, degree 12, --experts auto).

Why this file exists: issue 10 found the Nb-Ta window of Nb-Mo-Ta fits (from binaries near
equilibrium) above the 2.81 A neighbours of a ternary crystal; the mean rule lowers unlike windows.
TiAl is the two-element fit the tests probe (tests/test_short_range.py: the default fit,
test_examples.py: the example's): its accuracy must stay within 1 %.  Prints per rule the windows, level shifts, the experts chosen,
cross-validated and training errors, the Ti-Al dimer and the L1_0 crystal compressed (the probes).

    python benchmarks/unlike_core.py --workdir W        # two TiAl fits, ~4-10 minutes
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
TIAL = DATA / "tial" / "TiAl_tutorial.xyz"
EL = ["Ti", "Al"]


def l10():
    from ase import Atoms

    a, c = 4.00, 4.08
    return Atoms("Ti2Al2", cell=[a, a, c], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def one(rule):
    import dcace
    import dcace.baseline
    from ase.io import read
    from dcace.probes import compression_curve, dimer_curve, equilibrium

    dcace.baseline.UNLIKE_PAIRS = rule
    pot = dcace.fit(str(TIAL), elements=EL, cutoff=5.5, body_order=3, max_degree=12, experts="auto",
                    progress=False, compare=False, threads=1, forces_key="force", virial_key="virial")
    lo, hi = pot.basis.core_window
    rmin = dcace.baseline.shortest_distances(read(str(TIAL), ":"), EL, 5.5)
    r = np.linspace(rmin[0, 1], 0.1, 1000)
    E = dimer_curve(pot, "Ti", "Al", r)
    scales = np.linspace(1.0, 0.4, 61)
    Ec, P = compression_curve(pot, equilibrium(pot, l10()), scales)
    err = pot.report.errors
    pick = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "force_rmse_ev_per_a")
    return {"rule": rule, "M": pot.n_experts, "window_TiAl": [lo[0, 1], hi[0, 1]],
            "shift": pot.short_range.get("pair_shift"),
            "errors": {m: {s: {k: err[m][s].get(k) for k in pick} for s in ("cv", "train") if s in err[m]}
                       for m in err},
            "dimer_falls": float(-np.diff(E).min()) if np.diff(E).min() < 0 else 0.0,
            "compression_rises": bool(np.all(np.diff(Ec) >= 0)), "pressure_positive": bool((P[scales < 0.95] > 0).all()),
            "notes": [x for x in pot.report.notes if "core window" in x or "dimer" in x]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = [one(rule) for rule in ("data", "mean")]
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    (Path(args.workdir) / "unlike_core_tial.json").write_text(json.dumps(out, indent=1, default=float))
    for r in out:
        print(json.dumps(r, default=float))


if __name__ == "__main__":
    main()
