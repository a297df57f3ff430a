"""How sharp the structure gate is at each temperature, and what a softer one costs in accuracy.

For each gate temperature tau (one per fit, a fixed M, the default basis), fit Zuo Cu, then print
the test and CV errors, the share of training structures whose largest gate weight is above 0.99,
and, along fcc Cu from a = 3.40 to 3.70 A in 0.0005 A steps, the largest pressure kink
(|P_k - (P_k-1 + P_k+1) / 2|, GPa) and the largest change of the gate weights per step
(docs/short-range.md, "Session 18": the CV-chosen tau = 0.35 makes this committee a hard switch).

    python benchmarks/gate_softness.py [--taus 0.35 0.7 1.4 2.8] [--experts 8]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.io import read

import dcace
from gate_notch import pressure_kinks, scan, weight_steps

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.35, 0.7, 1.4, 2.8])
    ap.add_argument("--experts", type=int, default=8, help="M of every fit (the default Cu fit picks 8)")
    args = ap.parse_args(argv)
    train, test = DATA / "Cu_train.xyz", DATA / "Cu_test.xyz"
    frames = read(train, ":")
    a = np.arange(3.40, 3.70, 0.0005)
    for tau in args.taus:
        pot = dcace.fit(str(train), test=str(test), elements=["Cu"], cutoff=3.9, progress=False, compare=False,
                        temperatures=(tau,), experts=args.experts)
        err = pot.report.errors["dc"]
        hard = np.mean([np.max(pot.compute(f)["weights"]) > 0.99 for f in frames])
        _, P, W = scan(pot, "Cu", "fcc", a)
        kink = pressure_kinks(P).max()
        step = weight_steps(W).max()
        print(f"tau {tau:g}: M {pot.n_experts}, test E {err['test']['energy_mae_mev_per_atom']:.3f} meV/atom, "
              f"F {err['test']['force_mae_ev_per_a']:.4f} eV/A, CV E {err['cv']['energy_mae_mev_per_atom']:.3f} "
              f"meV/atom; training structures with a weight > 0.99: {hard:.0%}; fcc a = 3.40-3.70 A: largest "
              f"pressure kink {kink:.2f} GPa, largest weight change per step {step:.3f}", flush=True)


if __name__ == "__main__":
    main()
