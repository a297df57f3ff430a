"""Wall time of an incremental refit vs the from-scratch fit it equals (issue 14), in one run.

Zuo et al. Mo structures 0-149 are fitted once with a state; then, alternating, ``refit`` adds
structures 150-193 (``dcace.refit(new, resume=S)``) and the from-scratch fit on 0-193 with the same
clusters and folds runs (``dcace.fit(all, reuse=S)``).  Both are repeated (the machine is shared and
noisy); min and median of each and the ratio refit / full are printed, with the stage timings of
the last repeat and the state file's size. With the off-data anchors (on by default, kept in the
state since format version 3) the refit reads their matrix H_a from the state, and the full fit
rebuilds it from the recorded anchor structures (stage "anchors").

    python benchmarks/bench_refit.py [--repeats 5] [--quick] [--threads 1]

``--quick``: body order 3, degree 8 (K = 31), at most 5 experts; default: the default basis
(body order 4, degree 12, K = 211, M <= 8).  OMP_NUM_THREADS should be 1 on a shared machine.
Besides wall time, the process CPU time of each is printed: on a machine shared with other jobs it
is the steadier measure of the work done (with --threads 1 it is the wall time of an idle machine).
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
    """(wall seconds, process CPU seconds, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def stages(pot):
    t = pot.report.timings
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items() if isinstance(v, float) and k != "total")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="K = 31 basis instead of the default")
    ap.add_argument("--threads", type=int, default=None, help="threads of each fit (default: dcace's)")
    args = ap.parse_args()
    frames = read(MO_TRAIN, ":")
    kw = settings(args.quick)
    kw["threads"] = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "Mo150.npz"
        t_first, _, p0 = timed(lambda: dcace.fit(frames[:150], state=state, **kw))
        size = state.stat().st_size
        print(f"fit 0-149 with state: {t_first:.2f} s; state {size / 2 ** 20:.1f} MiB; K = {p0.basis.n_features}")
        wall, cpu, pots = {"refit": [], "full": []}, {"refit": [], "full": []}, {}
        for r in range(args.repeats):
            for name, fn in (("refit", lambda: refit(frames[150:], resume=state, progress=False, threads=args.threads)),
                             ("full", lambda: dcace.fit(frames, reuse=state, **kw))):
                w, c, pots[name] = timed(fn)
                wall[name].append(w)
                cpu[name].append(c)
            p1, p2 = pots["refit"], pots["full"]
            same = (p1.coefficients == p2.coefficients).all()
            print(f"repeat {r}: refit {wall['refit'][-1]:.2f} s (cpu {cpu['refit'][-1]:.2f}), full "
                  f"{wall['full'][-1]:.2f} s (cpu {cpu['full'][-1]:.2f}), ratio {wall['refit'][-1] / wall['full'][-1]:.3f}"
                  f", coefficients bit-equal: {bool(same)}", flush=True)
        print(f"refit stages: {stages(p1)}")
        print(f"full  stages: {stages(p2)}")
        for name, p in (("refit", p1), ("full", p2)):
            print(f"{name} anchors: " + "; ".join(n for n in p.report.notes if "anchors" in n))
    for what, t in (("wall", wall), ("cpu", cpu)):
        lo = (min(t["refit"]), min(t["full"]))
        md = (statistics.median(t["refit"]), statistics.median(t["full"]))
        print(f"{what}: refit min {lo[0]:.2f} s, median {md[0]:.2f} s; full min {lo[1]:.2f} s, median {md[1]:.2f} s; "
              f"ratio of minima {lo[0] / lo[1]:.3f}, of medians {md[0] / md[1]:.3f}")


if __name__ == "__main__":
    main()
