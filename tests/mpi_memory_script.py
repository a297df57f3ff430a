"""Run under `mpiexec -n 2 python mpi_memory_script.py OUT.json [--rows-budget GB] WARMUP.xyz DATA.xyz ...` by
tests/test_mpi_fit.py::test_rank_memory_does_not_grow_with_the_structures (not a test itself).

Every rank traces its allocations (tracemalloc: Python objects and numpy arrays) and records, for
each fit, the bytes it holds at the end of pass 2 above what it held before the fit: frames,
descriptor rows, stress rows, labels, clusterings, accumulators -- everything the fit keeps between its
passes (not the neighbour library's ctypes type cache, LIBRARY_CACHES).  Rank 0 records them as the
selection starts (pipeline._select_and_write), the others as they wait for rank 0's potentials
(pass3.receive_potentials).  The first file warms up (imports, caches) and is not reported.
"""
import gc
import json
import sys
import tracemalloc

from mpi4py import MPI

tracemalloc.start()

import dcace  # noqa: E402
from dcace import pass3, pipeline  # noqa: E402
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


def at_selection(*args, **kw):   # rank 0: pass 2 is over
    held.append(traced())
    return select(*args, **kw)


select = pipeline._select_and_write
pass3.receive_potentials = at_receive
pipeline._select_and_write = at_selection
out = []
kw = dict(MEMORY_KW)
if sys.argv[2] == "--rows-budget":   # (a study of rank 0 holding its rows: --rows-budget 1)
    kw["rows_budget_gb"] = float(sys.argv[3])
    del sys.argv[2:4]
for path in sys.argv[2:]:
    before = traced() if held else 0
    pot = dcace.fit(path, comm=comm, **kw)
    out.append({"file": path, "held_bytes": held[-1] - before if held else 0, "n_structures": sum(pot.report.selection["cluster_sizes"])})
every = comm.gather(out[1:], root=0)
if comm.Get_rank() == 0:   # [rank][fit]
    with open(sys.argv[1], "w") as fh:
        json.dump(every, fh, indent=1)
