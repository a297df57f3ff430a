"""Where the time of an incremental refit and of the full fit it equals goes (issue 14), per stage.

Process CPU time of the main stages of ``dcace.refit`` (Zuo Mo 0-149 + 150-193) and of
``dcace.fit(all, reuse=S)``, alternating, with timers wrapped around the pipeline's functions
(reading the state, restoring its sums, the cost estimate, pass 2, the re-selection's parts, the
core's probes, pass 3, the grade).  The minimum over the repeats of each stage is printed.  The
wall-time benchmark of the same pair is ``benchmarks/bench_refit.py``; CPU time is the steadier
measure on a shared machine (nested timers: ``fixed_parts`` contains ``load_state``, ``eq9``
contains most ``solve_joint_total`` calls).

    OMP_NUM_THREADS=1 python benchmarks/refit_stages.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from ase.io import read

import dcace
import dcace.pass3 as pass3
import dcace.pipeline as pipeline
import dcace.selection as selection
import dcace.state as state_mod

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
TIMES = collections.defaultdict(float)

STAGES = [(state_mod, "load_state"), (state_mod, "fixed_parts"), (state_mod.FitState, "restore"),
          (pipeline, "_announce_cost"), (pipeline, "accumulate_blocks"), (pipeline, "canonical_sums"),
          (pipeline, "_residual"), (pipeline, "_descriptor_pass"), (selection.Selector, "choose_ridge"),
          (selection.Selector, "cv_all"), (selection.Selector, "refine_committee_ridge"), (selection.Selector, "eq9"),
          (selection.Selector, "solve_joint_total"), (pipeline, "core_shifts"), (state_mod, "sums_errors"),
          (state_mod.FitState, "update_grade"), (pass3, "training_errors"), (pass3, "training_grade")]


def timed(owner, name):
    fn = getattr(owner, name)

    def wrapper(*a, **k):
        t = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            TIMES[name] += time.process_time() - t
    setattr(owner, name, wrapper)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    frames = read(MO_TRAIN, ":")
    kw = dict(elements=["Mo"], cutoff=5.2, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "Mo150.npz"
        dcace.fit(frames[:150], state=state, **kw)
        for owner, name in STAGES:   # after the first fit: its timings are not wanted
            timed(owner, name)
        runs = collections.defaultdict(list)
        for r in range(args.repeats):
            for which, fn in (("refit", lambda: state_mod.refit(frames[150:], resume=state, progress=False)),
                              ("full", lambda: dcace.fit(frames, reuse=state, **kw))):
                TIMES.clear()
                c, w = time.process_time(), time.perf_counter()
                fn()
                c, w = time.process_time() - c, time.perf_counter() - w
                runs[which].append((c, dict(TIMES)))
                print(f"repeat {r} {which}: cpu {c:.2f} s, wall {w:.2f} s", flush=True)
    for which, rows in runs.items():
        names = [n for _, n in STAGES if n in rows[0][1]]
        print(f"{which}: cpu min {min(c for c, _ in rows):.2f} s; stages (min): "
              + ", ".join(f"{n} {min(t[n] for _, t in rows):.2f}" for n in names))
    lo = min(c for c, _ in runs["refit"]) / min(c for c, _ in runs["full"])
    print(f"cpu ratio refit / full of minima: {lo:.3f}")


if __name__ == "__main__":
    main()
