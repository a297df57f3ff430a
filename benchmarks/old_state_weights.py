"""How wrong a refit is from a fit state whose committee sums predate the committee-weight fix (d12ced5).

Before d12ced5 a joint committee fitted with per-frame or config_type weights had its gate-gradient
force and virial rows weighted omega^3 / omega^4 instead of omega^2 (the accumulator was not given
the frame weights). A state written then holds those sums; a refit adds correctly weighted rows to
them. This script writes such a state the way that code did (``Batch`` built without its weights:
the only difference of that fix in pass 2), on Zuo Mo structures 0-149 with config_type weights,
refits it with 150-193 (the refusal of such states, dcace.state_anchors.check_committee_weights,
switched off) and compares with the fit from scratch on 0-193 that reuses the state's folds and
clusters (``fit(reuse=S)``, which recomputes every sum):

    OMP_NUM_THREADS=1 python benchmarks/old_state_weights.py [--temperatures 0.35 0.7] [--experts auto]

Body order 3, degree 8 (K = 31), at most 5 experts; anchors off (they are not what is measured).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from ase.io import read

import dcace
import dcace.pipeline as pipeline
from dcace import state_anchors
from dcace.committee import Batch
from dcace.state import refit

MO_TRAIN = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
WEIGHTS = {"Vacancy": 2.0, "AIMD-NVT": 1.0, "Surface": 0.5, "Elastic": 1.5}


def joint_losses(pot):
    return {(r["M"], r["tau"], r.get("ridge")): r["loss"] for r in pot.report.cv_table if r["fit"] == "joint"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.35, 0.7])
    ap.add_argument("--experts", default="auto")
    args = ap.parse_args()
    frames = read(MO_TRAIN, ":")
    kw = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=8, max_experts=5, compare=False,
              progress=False, weights=WEIGHTS, anchors=0.0, temperatures=tuple(args.temperatures),
              experts=args.experts if args.experts == "auto" else int(args.experts))
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "prefix.npz"
        pipeline.Batch = lambda *a, **k: Batch(*a[:8], **k)   # the accumulator without the frame weights
        try:
            dcace.fit(frames[:150], state=state, **kw)
        finally:
            pipeline.Batch = Batch
        check, state_anchors.check_committee_weights = state_anchors.check_committee_weights, lambda st: None
        try:
            wrong = refit(frames[150:], resume=state, progress=False, compare=False)
        finally:
            state_anchors.check_committee_weights = check
        right = dcace.fit(frames, reuse=state, **kw)
    for name, p in (("refit from the pre-fix state", wrong), ("fit from scratch (reuse=)", right)):
        e = p.report.errors["dc" if p.n_experts > 1 else "linear"]["train"]
        print(f"{name}: M = {p.n_experts}, tau = {p.report.selection['temperature']}, training E MAE "
              f"{e['energy_mae_mev_per_atom']:.4f} meV/atom, F RMSE {e['force_rmse_ev_per_a']:.4f} eV/A")
    lw, lr = joint_losses(wrong), joint_losses(right)
    dev = [abs(lw[k] / lr[k] - 1) for k in lr if k in lw]
    print(f"committee CV losses: max relative difference {max(dev):.3g}, median {np.median(dev):.3g} "
          f"({len(dev)} candidates)")
    if wrong.coefficients.shape == right.coefficients.shape:
        d = np.abs(wrong.coefficients - right.coefficients).max() / np.abs(right.coefficients).max()
        print(f"coefficients: max relative difference {d:.3g}")


if __name__ == "__main__":
    main()
