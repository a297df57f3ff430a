"""Speed of the C++ ACE core on one core: descriptors and energy+forces (adjoint) for bcc Mo, and
the wall time and peak memory of building every fitting row of the Zuo Mo training set.

Usage: python benchmarks/bench_core.py [--body-order 4] [--max-degree 12] [--repeat 5]
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import read

import dcace

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"


def best_of(f, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--max-degree", type=float, default=12)
    ap.add_argument("--cutoff", type=float, default=5.2)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

    t = time.perf_counter()
    b = dcace.ACEBasis(["Mo"], cutoff=a.cutoff, body_order=a.body_order, max_degree=a.max_degree)
    t_build = time.perf_counter() - t
    print(f"basis: Mo, cutoff {a.cutoff} A, body order {a.body_order}, degree {a.max_degree}: "
          f"K = {b.n_features} features, {b.core_.n_monomials} monomials, |A| = {b.core_.n_A}, "
          f"built in {t_build:.2f} s")

    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((10, 10, 10))
    at.rattle(0.05, seed=1)
    n = len(at)
    args = b.neighbours(at)
    print(f"bcc Mo, {n} atoms, {len(args[2]) / n:.1f} neighbours per atom")
    t_nl = best_of(lambda: b.neighbours(at), a.repeat)
    t_desc = best_of(lambda: b.core_.descriptors(*args), a.repeat)
    coef = np.random.default_rng(0).normal(size=(1, b.n_features))
    t_ef = best_of(lambda: b.core_.energy_forces(*args, coef, np.zeros(1)), a.repeat)
    print(f"  neighbour list (Python, vesin)  {1e6 * t_nl / n:8.2f} us/atom")
    print(f"  descriptors B_i                 {1e6 * t_desc / n:8.2f} us/atom")
    print(f"  energy + forces + virial        {1e6 * t_ef / n:8.2f} us/atom   (target <= 25)")

    frames = read(DATA / "Mo_train.xyz", ":")
    n_atoms = sum(len(f) for f in frames)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    n_rows = 0
    for f in frames:
        rows = b.fitting_rows(f)
        n_rows += 1 + rows.forces.shape[0] + 6
    t_rows = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"fitting rows of Zuo Mo train ({len(frames)} structures, {n_atoms} atoms, {n_rows} rows x "
          f"{b.n_features} columns): {t_rows:.2f} s wall (target <= 20 s), peak RSS {rss1 / 1024:.0f} MB "
          f"(+{(rss1 - rss0) / 1024:.0f} MB while building)")


if __name__ == "__main__":
    main()
