"""Wall time of an incremental refit vs the from-scratch fit it equals (issue 14), in one run.

Zuo et al. Mo structures 0-149 are fitted once with a state; then, alternating, ``refit`` adds
structures 150-193 (``dcace.refit(new, resume=S)``) and the from-scratch fit on 0-193 with the same
clusters and folds runs (``dcace.fit(all, reuse=S)``).  Both are repeated (the machine is shared and
noisy); min and median of each and the ratio refit / full are printed, with the stage timings of
the last repeat and the state file's size.

    python benchmarks/bench_refit.py [--repeats 5] [--quick] [--markdown docs/refit-benchmark.md]

``--quick``: body order 3, degree 8 (K = 31), at most 5 experts; default: the default basis
(body order 4, degree 12, K = 211, M <= 8).  OMP_NUM_THREADS should be 1 on a shared machine.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ase.io import read

import dcace
from dcace.state import refit

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"


def settings(quick):
    kw = dict(elements=["Mo"], cutoff=5.2, progress=False)
    if quick:
        kw.update(body_order=3, max_degree=8, max_experts=5)
    return kw


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def stages(pot):
    t = pot.report.timings
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items() if isinstance(v, float) and k != "total")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="K = 31 basis instead of the default")
    ap.add_argument("--markdown", default=None, help="append a table row to this file")
    args = ap.parse_args()
    frames = read(MO_TRAIN, ":")
    kw = settings(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "Mo150.npz"
        t_first, p0 = timed(lambda: dcace.fit(frames[:150], state=state, **kw))
        size = state.stat().st_size
        print(f"fit 0-149 with state: {t_first:.2f} s; state {size / 2 ** 20:.1f} MiB; K = {p0.basis.n_features}")
        t_re, t_full = [], []
        for r in range(args.repeats):
            dt, p1 = timed(lambda: refit(frames[150:], resume=state, progress=False))
            t_re.append(dt)
            dt, p2 = timed(lambda: dcace.fit(frames, reuse=state, **kw))
            t_full.append(dt)
            same = (p1.coefficients == p2.coefficients).all()
            print(f"repeat {r}: refit {t_re[-1]:.2f} s, full {t_full[-1]:.2f} s, ratio {t_re[-1] / t_full[-1]:.3f}"
                  f", coefficients bit-equal: {bool(same)}")
        print(f"refit stages: {stages(p1)}")
        print(f"full  stages: {stages(p2)}")
    lo = (min(t_re), min(t_full))
    md = (statistics.median(t_re), statistics.median(t_full))
    print(f"refit  min {lo[0]:.2f} s, median {md[0]:.2f} s")
    print(f"full   min {lo[1]:.2f} s, median {md[1]:.2f} s")
    print(f"ratio  of minima {lo[0] / lo[1]:.3f}, of medians {md[0] / md[1]:.3f}")
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write(f"| K = {p0.basis.n_features} | {size / 2 ** 20:.1f} MiB | {lo[0]:.2f} / {md[0]:.2f} s "
                     f"| {lo[1]:.2f} / {md[1]:.2f} s | {lo[0] / lo[1]:.3f} / {md[0] / md[1]:.3f} |\n")


if __name__ == "__main__":
    main()
