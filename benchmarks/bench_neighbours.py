"""Timings of the neighbour-list candidates considered for dcace.neighbours.

    python benchmarks/bench_neighbours.py [--repeat N]

Columns: ms per call on bcc Mo, 2000 atoms (a = 3.16 A, rc = 5.2 A, median of
N calls) and total seconds for one pass over the 194 structures of
examples/data/zuo2020/Mo_train.xyz (best of 3 passes).  All candidates return
i, j, S and D; "dcace" is dcace.neighbours.neighbour_list (vesin + checks +
(i, j, shift) sort + CSR).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
CUTOFF = 5.2


def load_dcace_neighbours():
    try:
        from dcace.neighbours import neighbour_list
    except ImportError:
        path = ROOT / "fitting" / "dcace" / "neighbours.py"
        spec = importlib.util.spec_from_file_location("dcace_neighbours", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        neighbour_list = module.neighbour_list
    return neighbour_list


def candidates():
    out = {}
    from ase.neighborlist import neighbor_list as ase_nl

    out["ase"] = lambda a, rc: ase_nl("ijSD", a, rc)
    try:
        from matscipy.neighbours import neighbour_list as ms_nl

        out["matscipy"] = lambda a, rc: ms_nl("ijSD", atoms=a, cutoff=rc)
    except ImportError:
        pass
    try:
        import vesin

        def make(n_threads):
            def run(a, rc):
                nl = vesin.NeighborList(cutoff=rc, full_list=True, n_threads=n_threads)
                return nl.compute(a.positions, a.cell.array, a.pbc, quantities="ijSD")

            return run

        out[f"vesin ({os.cpu_count()} threads)"] = make(0)
        out["vesin (1 thread)"] = make(1)
    except ImportError:
        pass
    out["dcace neighbour_list"] = load_dcace_neighbours()
    return out


def time_calls(f, atoms, repeat):
    f(atoms, CUTOFF)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(atoms, CUTOFF)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_set(f, frames, passes=3):
    best = np.inf
    for _ in range(passes):
        t0 = time.perf_counter()
        for atoms in frames:
            f(atoms, CUTOFF)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    import ase.io
    from ase.build import bulk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    bcc = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(10)
    assert len(bcc) == 2000
    frames = ase.io.read(TRAIN, ":") if TRAIN.exists() else []

    print(f"{'candidate':<24} {'bcc Mo 2000 (ms/call)':>22} {f'Mo_train {len(frames)} (s)':>18}")
    for name, f in candidates().items():
        repeat = max(3, args.repeat // 10) if name == "ase" else args.repeat
        ms = 1e3 * time_calls(f, bcc, repeat)
        total = time_set(f, frames) if frames else float("nan")
        print(f"{name:<24} {ms:>22.2f} {total:>18.3f}")


if __name__ == "__main__":
    main()
