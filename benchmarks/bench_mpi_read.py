"""Reading the training set on MPI ranks: seconds per rank to find the frames (the scan of the atom-count
lines), to parse only one's own blocks' frames (``dcace.stream.read_own``, what a fit does now) and to
parse every frame keeping one's own (``read_data(keep=)``, the reader before it: the peer), in the same
run, for 1 and 2 ranks.  Stored under "read" in docs/parallel-fitting.json (bench_mpi_doc renders it):

    python benchmarks/bench_mpi_read.py --repeats 50 --ranks 1 2

Data: the Zuo Mo training set repeated (benchmarks/bench_mpi_fit.repeated_set); blocks as a fit cuts
them (5 folds, 64 structures).  Each configuration runs in fresh processes (`mpiexec -n P`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def worker(path):
    """One rank: (scan s, read_own s, read_data(keep=) s, frames kept)."""
    from mpi4py import MPI

    from dcace import read_data
    from dcace.data import xyz_frame_table
    from dcace.parallel import Ranks
    from dcace.pipeline import _fold_blocks
    from dcace.stream import read_own

    comm = MPI.COMM_WORLD
    ranks = Ranks(comm if comm.Get_size() > 1 else None)
    t = time.perf_counter()
    n = len(xyz_frame_table(Path(path)))
    scan = time.perf_counter() - t
    folds, blocks = _fold_blocks(n, None, 0, 5, 64, 0)
    keep = {int(i) for b in ranks.own_blocks(blocks) for i in blocks[b]}
    comm.Barrier()
    t = time.perf_counter()
    own = read_own(ranks, path, keep, elements=["Mo"])
    t_own = time.perf_counter() - t
    comm.Barrier()
    t = time.perf_counter()
    every = read_data(path, elements=["Mo"], keep=keep)
    t_all = time.perf_counter() - t
    assert [f.energy for f in own.frames] == [f.energy for f in every.frames] and own.notes == every.notes
    mine = (scan, t_own, t_all, len(keep))
    parts = comm.gather(mine, root=0)
    if comm.Get_rank() == 0:
        print("RESULT " + json.dumps({"scan": [p[0] for p in parts], "own": [p[1] for p in parts],
                                      "every": [p[2] for p in parts], "kept": [p[3] for p in parts],
                                      "n_structures": n, "n_atoms": own.n_atoms}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cache", default=str(HERE.parent / "docs" / "parallel-fitting.json"))
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    sys.path.insert(0, str(HERE))
    from bench_mpi_fit import repeated_set

    tmp = Path(tempfile.mkdtemp(prefix="bench_mpi_read_"))
    data = tmp / f"Mox{args.repeats}.xyz"
    repeated_set("Mo", args.repeats, data)
    rows = []
    for P in args.ranks:
        load = os.getloadavg()[0]
        cmd = [str(BIN / "mpiexec"), "-n", str(P), sys.executable, __file__, "--worker", str(data)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        r = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))[7:])
        r.update(ranks=P, set=f"Mo x{args.repeats}", load=[load, os.getloadavg()[0]],
                 command="python benchmarks/bench_mpi_read.py " + " ".join(sys.argv[1:]))
        rows.append(r)
        print(f"{P} rank(s), {r['n_atoms']} atoms: scan {r['scan']}, own frames {r['own']}, every frame {r['every']} s",
              flush=True)
    cache = Path(args.cache)
    store = json.loads(cache.read_text()) if cache.exists() else {"rows": []}
    store["read"] = rows
    cache.write_text(json.dumps(store, indent=1))
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
