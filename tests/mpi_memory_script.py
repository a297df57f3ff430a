"""Run under `mpiexec -n 2 python mpi_memory_script.py OUT.json WARMUP.xyz DATA.xyz ...` by
tests/test_mpi_fit.py::test_rank_memory_does_not_grow_with_the_structures (not a test itself).

Every rank traces its allocations (tracemalloc: Python objects and numpy arrays) and records, for each
fit, the bytes it holds at the end of pass 2 above what it held before the fit: frames, descriptor
rows, labels, clusterings, accumulators -- everything the fit keeps between its passes.  Rank 1 is
there when it waits for rank 0's potentials (pass3.receive_potentials), rank 0 when pass 3 starts
(after its selection).  The first file warms up (imports, caches) and is not reported.
"""
import json
import sys
import tracemalloc

tracemalloc.start()

from mpi4py import MPI  # noqa: E402

import dcace  # noqa: E402
from dcace import pass3  # noqa: E402
from test_mpi_fit import MEMORY_KW  # noqa: E402

comm = MPI.COMM_WORLD
held = []
receive, errors = pass3.receive_potentials, pass3.training_errors


def at_receive(ranks):   # ranks other than 0: pass 2 is over
    held.append(tracemalloc.get_traced_memory()[0])
    return receive(ranks)


def at_errors(ranks, *a, **k):   # rank 0: pass 2 and its selection are over
    if ranks.is_root:
        held.append(tracemalloc.get_traced_memory()[0])
    return errors(ranks, *a, **k)


pass3.receive_potentials, pass3.training_errors = at_receive, at_errors
out = []
for path in sys.argv[2:]:
    before = tracemalloc.get_traced_memory()[0]
    pot = dcace.fit(path, comm=comm, **MEMORY_KW)
    out.append({"file": path, "held_bytes": held[-1] - before, "n_structures": sum(pot.report.selection["cluster_sizes"])})
every = comm.gather(out[1:], root=0)
if comm.Get_rank() == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump(every, fh, indent=1)
