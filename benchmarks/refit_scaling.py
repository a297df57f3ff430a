"""How an incremental refit's time scales: with the new data, and (not) with the old (issue 14).

Issue 14 asks for a refit "in time proportional to the new data". A refit re-selects the ridge, M
and tau by CV, which refactorises every candidate's fold sums: that is a fixed cost set by the
state's size (O(M K^2) numbers, independent of how many structures made it), not by the data.
This script measures both dependencies in one run on the Zuo Mo set:

* states fitted on the first n_old = 50, 100, 150 structures (default basis, with the anchors),
  with each state's size: it is what the fixed part of a refit is proportional to;
* from each, ``dcace.refit`` of n_new = 11, 22, 44 structures (frames 150 onwards, disjoint from
  every state's data);
* beside them, the from-scratch fit on each union with the same clusters and folds
  (``dcace.fit(union, reuse=state)``, the fit the refit equals).

It prints every time (wall and process CPU, minimum over the repeats), the least-squares models
t = a + b n_new + c n_old and t = a + b n_new + c (state MiB) for the refits and for the full
fits, and the coefficients' equality.

    OMP_NUM_THREADS=1 python benchmarks/refit_scaling.py [--repeats 2] [--quick] [--json F]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.io import read

import dcace
from dcace.state import refit

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
OLD = (50, 100, 150)
NEW = (11, 22, 44)


def settings(quick):
    kw = dict(elements=["Mo"], cutoff=5.2, progress=False, threads=1)
    if quick:
        kw.update(body_order=3, max_degree=8, max_experts=5)
    return kw


def best_of(repeats, fn):
    """(min wall s, min CPU s, last result) over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def linear_model(rows, key, size="n_old"):
    """Least squares t = a + b n_new + c x over the rows, x = n_old or the state's MiB; returns (a, b, c)."""
    x = np.array([[1.0, r["n_new"], r[size]] for r in rows])
    y = np.array([r[key] for r in rows])
    return np.linalg.lstsq(x, y, rcond=None)[0]


def run(frames, kw, repeats, tmp):
    rows = []
    for n_old in OLD:
        state = Path(tmp) / f"Mo{n_old}.npz"
        dcace.fit(frames[:n_old], state=state, **kw)
        state_mib = state.stat().st_size / 2 ** 20
        for n_new in NEW:
            new = frames[150:150 + n_new]
            rw, rc, p_refit = best_of(repeats, lambda: refit(new, resume=state, progress=False, threads=1))
            fw, fc, p_full = best_of(repeats, lambda: dcace.fit(frames[:n_old] + new, reuse=state, **kw))
            same = bool(np.array_equal(p_refit.coefficients, p_full.coefficients))
            rows.append(dict(n_old=n_old, n_new=n_new, refit_wall=rw, refit_cpu=rc, full_wall=fw, full_cpu=fc,
                             bit_equal=same, experts=int(p_refit.n_experts), state_mib=state_mib))
            print(f"n_old {n_old:3d} (state {state_mib:5.1f} MiB) n_new {n_new:2d}: refit {rw:6.2f} s wall {rc:6.2f} s cpu | full {fw:6.2f} s "
                  f"wall {fc:6.2f} s cpu | ratio (cpu) {rc / fc:.3f} | M = {p_refit.n_experts} | "
                  f"coefficients bit-equal: {same}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="body order 3, degree 8 instead of the default basis")
    ap.add_argument("--json", type=Path, default=None, help="write the rows and the models here")
    args = ap.parse_args()
    frames = read(MO_TRAIN, ":")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(frames, settings(args.quick), args.repeats, tmp)
    models = {}
    for key in ("refit_wall", "refit_cpu", "full_wall", "full_cpu"):
        a, b, c = linear_model(rows, key)
        models[key] = dict(fixed_s=a, per_new_s=b, per_old_s=c)
        print(f"{key:10s}: t = {a:6.2f} s + {b * 1e3:7.1f} ms x n_new + {c * 1e3:7.1f} ms x n_old")
        a, b, c = linear_model(rows, key, size="state_mib")
        models[key].update(by_state=dict(fixed_s=a, per_new_s=b, per_state_mib_s=c))
        print(f"{'':10s}  t = {a:6.2f} s + {b * 1e3:7.1f} ms x n_new + {c * 1e3:7.2f} ms x state MiB")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, models=models), indent=1) + "\n")


if __name__ == "__main__":
    main()
