"""Where each MPI rank's memory goes: tracemalloc on every rank of a fit, the largest allocation sites
(file:line, MiB, blocks) when pass 2 ends and when the fit ends.

Why this file exists: issue 13 asks that a rank's memory not grow with the number of structures; this
names what does (run it at two sizes and compare).  tracemalloc sees Python and numpy allocations, not
the C++ core's (which are per structure and freed).  It slows the fit ~2x: a diagnostic, not a timing.

    mpiexec -n 2 python benchmarks/mpi_memory_sites.py DATA.xyz --max-degree 8
    (data: python -c "from bench_mpi_fit import repeated_set; repeated_set('Mo', 10, 'Mox10.xyz')" in benchmarks/)
"""
from __future__ import annotations

import argparse
import resource
import tracemalloc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data"), ap.add_argument("--elements", nargs="+", default=["Mo"])
    ap.add_argument("--cutoff", type=float, default=5.2), ap.add_argument("--max-degree", type=float, default=8)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    tracemalloc.start(1)
    from mpi4py import MPI

    import dcace
    from dcace import pass3

    comm = MPI.COMM_WORLD
    rank, snaps = comm.Get_rank(), {}
    receive, errors = pass3.receive_potentials, pass3.training_errors

    def at_receive(ranks):   # ranks other than 0: pass 2 is over
        snaps["end of pass 2"] = tracemalloc.take_snapshot()
        return receive(ranks)

    def at_errors(*a, **k):   # rank 0: pass 2, selection and solves are over
        if rank == 0:
            snaps["end of pass 2 (and rank 0's selection)"] = tracemalloc.take_snapshot()
        return errors(*a, **k)

    pass3.receive_potentials, pass3.training_errors = at_receive, at_errors
    dcace.fit(args.data, elements=args.elements, cutoff=args.cutoff, body_order=4, max_degree=args.max_degree,
              experts="auto", threads=1, comm=comm if comm.Get_size() > 1 else None, progress=False)
    snaps["end of the fit"] = tracemalloc.take_snapshot()
    out = [f"rank {rank}: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, traced peak "
           f"{tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB"]
    for when, snap in snaps.items():
        stats = snap.statistics("lineno")
        out.append(f"  {when}: traced {sum(s.size for s in stats) / 2**20:.1f} MiB")
        for s in stats[:args.top]:
            where = s.traceback[0]
            out.append(f"    {s.size / 2**20:7.2f} MiB {s.count:8d} blocks  "
                       f"{where.filename.split('site-packages/')[-1]}:{where.lineno}")
    for part in comm.gather("\n".join(out), root=0) or []:
        print(part, flush=True)


if __name__ == "__main__":
    main()
