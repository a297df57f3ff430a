"""Does a second process (or thread) on this machine add throughput?  A memory-bound and a compute-bound
kernel timed in 1 and in 2 concurrent processes: the probe behind the TiAl finding of
docs/parallel-fitting.md (pass 2 of a small-structure, large-K fit is the memory-bound kernel).

    python benchmarks/bandwidth_probe.py [--dp 1150] [--seconds 4]

- memory: the accumulator update of pass 2 at batch size B = 3 (dcace.committee GroupAccumulator:
  H (Dp^2) += coef^T X with X (2B, Dp^2), an inner dimension of 6), Dp = 1150 as for TiAl at body
  order 4, degree 10: every update streams the whole normal-equation matrix through memory.
- compute: a 256 x 256 matrix product (in cache).
Throughput ratio 2 processes / 1 process: 2.0 = the second core adds all, 1.0 = nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def kernel_rate(kind: str, dp: int, seconds: float) -> float:
    """Kernel calls per second in this process."""
    if kind == "memory":
        H = np.zeros((1, dp * dp))
        X = np.random.default_rng(0).standard_normal((6, dp * dp))
        coef = np.ones((6, 1))
        step = lambda: np.add(H, coef.T @ X, out=H)  # noqa: E731  (the GEMM-accumulate of pass 2)
    else:
        A = np.random.default_rng(0).standard_normal((256, 256))
        step = lambda: A @ A  # noqa: E731
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def probe(dp: int = 1150, seconds: float = 4.0) -> dict:
    """{kind: {"one": calls/s of 1 process, "two": summed calls/s of 2 concurrent, "ratio"}}."""
    out = {}
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    import os

    env = dict(os.environ, **env)
    for kind in ("memory", "compute"):
        cmd = [sys.executable, __file__, "--worker", kind, "--dp", str(dp), "--seconds", str(seconds)]
        one = float(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        two = sum(float(p.communicate()[0]) for p in procs)
        out[kind] = {"one": one, "two": two, "ratio": two / one}
    out["memory"]["bytes_per_call"] = 8 * dp * dp * 8   # read H, X (6 rows), write H
    out["dp"] = dp
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dp", type=int, default=1150)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--worker", choices=("memory", "compute"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(kernel_rate(args.worker, args.dp, args.seconds))
        return
    print(json.dumps(probe(args.dp, args.seconds), indent=1))


if __name__ == "__main__":
    main()
