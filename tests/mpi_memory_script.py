"""Run under `mpiexec -n 2 python mpi_memory_script.py OUT.json WARMUP.xyz DATA.xyz ...` by
tests/test_mpi_fit.py::test_rank_memory_does_not_grow_with_the_structures (not a test itself).

Every rank but 0 traces its allocations (tracemalloc: Python objects and numpy arrays) and records, for
each fit, the bytes it holds at the end of pass 2 (when it waits for rank 0's potentials,
pass3.receive_potentials) above what it held before the fit: frames, descriptor rows, labels,
clusterings, accumulators -- everything the fit keeps between its passes (not the neighbour library's
ctypes type cache, LIBRARY_CACHES).  The first file warms up (imports, caches) and is not reported.
"""
import gc
import json
import sys
import tracemalloc

from mpi4py import MPI

if MPI.COMM_WORLD.Get_rank() > 0:   # (rank 0 untraced: tracemalloc slows it, and the others wait for it)
    tracemalloc.start()

import dcace  # noqa: E402
from dcace import pass3  # noqa: E402
from test_mpi_fit import MEMORY_KW  # noqa: E402

comm = MPI.COMM_WORLD
held = []
receive = pass3.receive_potentials


#: not the fit's: ctypes array types that the neighbour list (vesin, np.ctypeslib.as_array) creates once
#: per distinct pair count and caches for the process (bounded by the pair counts, ~350 bytes each);
#: numpy >= 2.3 has numpy/ctypeslib/_ctypeslib.py, older numpy (Python 3.10's 2.2) numpy/ctypeslib.py
LIBRARY_CACHES = [tracemalloc.Filter(False, "*numpy/ctypeslib*")]


def traced():
    """Bytes traced now, after a collection (garbage of an earlier fit is not held)."""
    gc.collect()
    return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(LIBRARY_CACHES).traces)


def at_receive(ranks):   # ranks other than 0: pass 2 is over
    held.append(traced())
    return receive(ranks)


pass3.receive_potentials = at_receive
out = []
for path in sys.argv[2:]:
    before = traced() if held else 0
    pot = dcace.fit(path, comm=comm, **MEMORY_KW)
    out.append({"file": path, "held_bytes": held[-1] - before if held else 0, "n_structures": sum(pot.report.selection["cluster_sizes"])})
every = comm.gather(out[1:], root=0)
if comm.Get_rank() == 0:   # [rank][fit] (rank 0's held_bytes are not traced: 0)
    with open(sys.argv[1], "w") as fh:
        json.dump(every, fh, indent=1)
