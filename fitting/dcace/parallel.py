"""MPI-parallel fitting (``mpiexec -n N dcace fit``, ``dcace.fit(comm=MPI.COMM_WORLD)``), deterministic
by construction.

Why this module exists: a fit on many ranks must write the same bytes as the serial fit, so the
serial fit and the MPI fit run the same arithmetic in the same order; only who computes a piece
differs.  The pieces are fixed *blocks* of training structures: the structures sorted by
cross-validation fold, cut into runs of at most ``batch`` structures that never cross a fold
(``fit_blocks``; they depend on the number of structures, the folds and the basis size only, never
on the number of ranks).  Block b belongs to rank ``b % size``.

- reading: the blocks are known from the number of frames (``dcace.data.count_frames``), so every
  rank reads the data keeping only its blocks' frames (of extended XYZ files it parses only those,
  ``dcace.stream.read_own``, and holds none of them between passes: ``dcace.restream`` parses them
  again for each pass; other sources through ``read_data(keep=)``); what every rank needs of all
  structures comes from small per-structure numbers gathered in structure order
  (``allgather_indexed``) or from exact reductions (``extremes``).
- pass 1 (descriptor sums) is per structure: each rank computes the structures of its blocks and sends
  the (n, D) rows to rank 0 a round at a time (``rows_round``: it standardises, clusters and selects);
  no other rank keeps them (pass 2 takes a structure's descriptor sums from its fitting rows, the same
  bits); the atom counts (n, S) are on every rank.
- pass 2 (fitting rows -> normal equations): each block's contribution is accumulated from zero
  into a one-fold copy of every accumulator (a *partial*), and rank 0 adds the partials into the
  totals in block order, receiving those of the other ranks (``accumulate_blocks``), and with them
  the block's stress rows for the selection (rank 0 keeps them; the owner holds one block's at a time).  The serial fit
  does exactly the same with one rank, so 1, 2, 4 ranks and the serial fit agree to the last bit.
- rank 0 selects and solves while the others wait (``from_root``); pass 3 and the grade are again per
  structure (``dcace.pass3``), their terms summed on rank 0 in structure order; rank 0 writes and the
  other ranks receive the potential (``Ranks.share``).

Errors: a structure that fails on one rank (a bad frame) is recorded, the rank keeps to the
protocol, and after the stage every rank raises the same ``DataError`` naming the file and frame
(``Ranks.check``).  An error of rank 0 after pass 2 is sent to every rank.  Anything else (memory,
a bug) aborts the MPI job instead of leaving ranks waiting.
"""
from __future__ import annotations

import copy
import os
import sys
import time
import traceback

import numpy as np

__all__ = ["Ranks", "as_ranks", "default_threads", "fit_blocks", "world_from_environment", "MPI_HINT"]

MPI_HINT = 'install mpi4py with: pip install "dcace[mpi]"'
#: environment variables set by mpiexec (MPICH/Hydra, Open MPI, PMIx, Slurm's srun)
_MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def default_threads(ranks: int = 1) -> int:
    """Threads per process when the user does not choose: the cores this process may run on
    (``os.sched_getaffinity``), shared among the ranks of the job."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, ranks))


def _import_mpi(why: str):
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{why} needs mpi4py, which is not installed ({exc}); {MPI_HINT}") from None
    return MPI


def world_from_environment():
    """MPI.COMM_WORLD when this process was started by mpiexec/srun with more than one rank, else None.

    Without mpi4py every rank would run the whole fit and write the same file: that is an error."""
    size = next((os.environ[v] for v in _MPI_SIZE_VARS if os.environ.get(v)), None)
    if size is None or not size.isdigit() or int(size) <= 1:
        return None
    MPI = _import_mpi(f"dcace fit started by mpiexec with {size} ranks")
    return MPI.COMM_WORLD


def as_ranks(comm) -> "Ranks":
    """The pipeline's view of ``comm=``: None -> one process; else an mpi4py intra-communicator."""
    if comm is None:
        return Ranks(None)
    MPI = _import_mpi("dcace.fit(comm=...)")
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm= must be an mpi4py communicator such as mpi4py.MPI.COMM_WORLD (or None for "
                        f"one process), got {type(comm).__name__}: {comm!r}")
    return Ranks(comm)


def fit_blocks(folds: np.ndarray, batch: int) -> list[np.ndarray]:
    """Structure indices of every block: fold-sorted (stable), runs of <= batch within one fold."""
    order = np.argsort(folds, kind="stable")
    blocks = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or end - start >= batch or folds[order[end]] != folds[order[start]]:
            blocks.append(order[start:end])
            start = end
    return blocks


class Ranks:
    """Who computes which block, and the few collective operations of a fit (size 1: no MPI)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def owner(self, block: int) -> int:
        return block % self.size

    def own_blocks(self, blocks):
        return [b for b in range(len(blocks)) if self.owner(b) == self.rank]

    # -- collectives -----------------------------------------------------------------------------
    def check(self, errors: list) -> None:
        """errors: this rank's [(structure index, message)].  Every rank raises the same DataError
        (the lowest structure index of all ranks) or none does."""
        from .data import DataError

        if self.size > 1:
            self._wait_quietly()
            errors = [e for part in self.comm.allgather(errors) for e in part]
        if errors:
            raise DataError(min(errors)[1])

    def bcast(self, obj):
        return obj if self.size == 1 else self.comm.bcast(obj, root=0)

    def allgather_rows(self, index: list, rows: list, n: int):
        """Every rank's rows (one array per output, rows[k][j] of structure index[j]) -> full (n, ...)
        arrays on every rank, ordered by structure index."""
        parts = [(index, rows)] if self.size == 1 else self.comm.allgather((index, rows))
        out = None
        for idx, arrays in parts:
            if out is None:
                out = [np.zeros((n,) + a.shape[1:]) for a in arrays]
            for full, a in zip(out, arrays):
                if len(idx):
                    full[np.asarray(idx)] = a
        return out

    def rounds(self, n_mine: int, per_round: int) -> int:
        """How many rounds of a collective sent `per_round` items at a time: as many on every rank, those of
        the rank with the most items (at least 1)."""
        most = n_mine if self.size == 1 else max(self.comm.allgather(n_mine))
        return max(1, -(-most // per_round))

    def rows_round(self, index, rows: np.ndarray, full):
        """One round of rows to rank 0: this rank's rows[j] (of structure index[j]) into rank 0's (n, ...)
        array `full` (None elsewhere).  Collective; rows are pickled by the call (the caller may reuse them)."""
        if self.size == 1:
            full[np.asarray(index)] = rows
            return
        self._wait_quietly()
        parts = self.comm.gather((np.asarray(index), rows), root=0)
        if self.is_root:
            for idx, a in parts:
                if len(idx):
                    full[idx] = a

    def extremes(self, shortest: np.ndarray, largest: np.ndarray):
        """(elementwise min of `shortest`, max of `largest`) over the ranks (exact in any order)."""
        if self.size == 1:
            return shortest, largest
        self._wait_quietly()
        parts = self.comm.allgather((shortest, largest))
        return np.minimum.reduce([p[0] for p in parts]), np.maximum.reduce([p[1] for p in parts])

    def gather_indexed(self, items: list) -> list:
        """[(structure index, anything)] of every rank -> on rank 0 all of them ordered by index
        (every rank's items in the order of the structures, whoever computed them); [] elsewhere."""
        if self.size > 1:
            self._wait_quietly()   # a rank still working keeps its core (MPICH's gather polls)
        parts = [items] if self.size == 1 else self.comm.gather(items, root=0)
        if not self.is_root:
            return []
        return sorted((x for part in parts for x in part), key=lambda x: x[0])

    def allgather_indexed(self, items: list) -> list:
        """As gather_indexed, on every rank."""
        if self.size > 1:
            self._wait_quietly()
        parts = [items] if self.size == 1 else self.comm.allgather(items)
        return sorted((x for part in parts for x in part), key=lambda x: x[0])

    def from_root(self, obj):
        """Rank 0's obj on every rank, the others waiting without spinning a core (they wait here
        while rank 0 selects and solves).  If rank 0 failed before it got here, ``share`` sends its
        error instead, and every other rank raises it here (marked: ``share`` does not wait again)."""
        if self.size == 1:
            return obj
        self._wait_quietly()
        obj = self.comm.bcast(obj, root=0)
        if isinstance(obj, tuple) and obj and obj[0] == "error":
            obj[1]._dcace_from_root = True
            raise obj[1]
        return obj

    def _wait_quietly(self, interval=0.005):
        """A barrier that sleeps while it waits (MPICH's blocking calls poll and would take a core from
        rank 0's selection and pass 3 on a machine with fewer cores than ranks x threads)."""
        _complete_quietly([self.comm.Ibarrier()], interval)

    def share(self, work):
        """Run the fit on every rank; rank 0's potential (or error) is every rank's result."""
        if self.size == 1:
            return work()
        pot, err = None, None
        try:
            pot = work()
        except ValueError as exc:       # collective by design: raised by every rank, or by rank 0 only
            err = exc
            if getattr(exc, "_dcace_from_root", False):   # rank 0's error, already on every rank
                raise
        except BaseException:           # a bug or memory: the other ranks may wait for this one
            traceback.print_exc()
            sys.stderr.write(f"dcace: rank {self.rank} failed; aborting all {self.size} ranks\n")
            sys.stderr.flush()
            self.comm.Abort(1)
        self._wait_quietly()   # the other ranks wait for rank 0's selection without spinning a core
        payload = None
        if self.is_root:
            payload = ("error", _picklable(err)) if err is not None else ("ok", pot.to_string(), pot.report)
        payload = self.comm.bcast(payload, root=0)
        if err is not None:
            raise err
        if payload[0] == "error":
            raise payload[1]
        from . import _core
        from .potential import Potential

        out = Potential(_core.PotentialCore.parse(payload[1], "<potential from rank 0>"))
        out.report = payload[2]
        return out


def _picklable(exc):
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:   # pragma: no cover - exotic exception classes
        return ValueError(str(exc))


def _complete_quietly(requests, interval=0.005):
    """Wait for MPI requests, sleeping between tests instead of polling a core."""
    from mpi4py import MPI

    while not MPI.Request.Testall(requests):
        time.sleep(interval)


def _recv_quietly(comm, source, tag, interval=0.001):
    """A pickled message, waiting for it without polling a core (as _complete_quietly)."""
    while not comm.Iprobe(source=source, tag=tag):
        time.sleep(interval)
    return comm.recv(source=source, tag=tag)


# ---------------------------------------------------------------- pass 2: blocks -> normal equations
_FOLD_ARRAYS = ("H", "Sh", "h", "yy")   # per-fold arrays of GroupAccumulator / JointAccumulator


def _partial(acc):
    """A one-fold, zeroed copy of an accumulator (same gate, weights and membership)."""
    p = copy.copy(acc)
    for name in _FOLD_ARRAYS:
        if hasattr(acc, name):
            setattr(p, name, np.zeros((1,) + getattr(acc, name).shape[1:]))
    if hasattr(p, "n_folds"):
        p.n_folds = 1
    return p


def _fold_arrays(acc):
    return [getattr(acc, name) for name in _FOLD_ARRAYS if hasattr(acc, name)]


#: partials a rank other than 0 may have in flight to rank 0: it computes its next block while rank 0
#: still adds an earlier one, instead of waiting block by block (one partial of memory more per rank)
SEND_DEPTH = 2


def accumulate_blocks(ranks: Ranks, blocks, folds, accumulators, block_batch, progress=None, side=None, first=0,
                      depth=SEND_DEPTH):
    """Pass 2: add every block's normal equations into ``accumulators`` (on rank 0), in block order.

    block_batch(b, part_accs) accumulates block b into the one-fold partials and returns the
    block's errors [(structure index, message)] (a failing structure is skipped, the protocol is
    kept).  progress(k) advances rank 0's progress bar by k structures.  side: a dict that
    block_batch fills with per-structure items rank 0 keeps (the stress rows): on rank 0 it receives
    the other ranks' items, in block order; on another rank it is sent with the block's partial and
    emptied (so a rank holds one block's items at a time).  first: the position of blocks[0] in the
    fit's whole block list, which fixes each block's owner (the rank that read its frames) when
    ``blocks`` is a slice of it (a reuse= fit adds the state's blocks first).  depth: how many of its
    blocks' partials a rank other than 0 may have in flight (>= 1; 1 = block by block in step with
    rank 0).  Rank 0 adds in block order whatever the depth, so the sums do not depend on it.  Collective."""
    errors = []
    if ranks.is_root:
        parts = [_partial(a) for a in accumulators]
        part_arrays = [x for p in parts for x in _fold_arrays(p)]
        for b in range(len(blocks)):
            owner = ranks.owner(first + b)
            if owner == ranks.rank:
                for x in part_arrays:
                    x.fill(0.0)
                errors.extend(block_batch(b, parts))
            else:
                _complete_quietly([ranks.comm.Irecv(x, source=owner, tag=tag) for tag, x in enumerate(part_arrays)],
                                  0.001)
                if side is not None:
                    side.update(_recv_quietly(ranks.comm, owner, len(part_arrays)))
            f = int(folds[blocks[b][0]])
            for acc, part in zip(accumulators, parts):
                for total, x in zip(_fold_arrays(acc), _fold_arrays(part)):
                    total[f] += x[0]
            if progress is not None:
                progress(len(blocks[b]))
    else:
        _send_own_blocks(ranks, blocks, accumulators, block_batch, side, first, max(1, int(depth)), errors)
    ranks.check(errors)


def _send_own_blocks(ranks, blocks, accumulators, block_batch, side, first, depth, errors):
    """accumulate_blocks on a rank other than 0: each own block into a free set of partials, sent to rank 0
    without waiting for it (at most `depth` sets in flight; the oldest is waited for when all are)."""
    free = [[_partial(a) for a in accumulators] for _ in range(depth)]
    in_flight = []   # (requests, the set of partials they send), oldest first
    n_arrays = len([x for p in free[0] for x in _fold_arrays(p)])
    for b in range(len(blocks)):
        if ranks.owner(first + b) != ranks.rank:
            continue
        if not free:
            reqs, done = in_flight.pop(0)
            _complete_quietly(reqs, 0.001)
            free.append(done)
        parts = free.pop()
        part_arrays = [x for p in parts for x in _fold_arrays(p)]
        for x in part_arrays:
            x.fill(0.0)
        errors.extend(block_batch(b, parts))
        reqs = [ranks.comm.Isend(x, dest=0, tag=tag) for tag, x in enumerate(part_arrays)]
        if side is not None:   # pickled now: emptying the dict below does not touch the message
            reqs.append(ranks.comm.isend(dict(side), dest=0, tag=n_arrays))
            side.clear()
        in_flight.append((reqs, parts))
    for reqs, _ in in_flight:
        _complete_quietly(reqs, 0.001)
