"""Per-structure rows that grow with the data, held in memory while they fit a budget, else in a
scratch file that is read back a chunk at a time.

Rank 0 of a fit keeps two kinds of rows per training structure: the descriptor sums of pass 1
(D numbers: the held-out energy errors of the CV, the clustering's sample) and the stress rows of pass 2
(6 x D numbers: the held-out stress errors).  At TiAl's degree 14 that is 300 kB a structure, the part
of rank 0's memory that grows with the data (issue 13).  ``Rows`` holds them in an (n, ...) array when
they fit ``rows_budget_gb`` and in an unnamed temporary file otherwise; its readers go through
``chunks``, which hands out ``CHUNK`` rows at a time (with a file: memory independent of the number
of structures; every reader computes structure by structure, so the numbers do not depend on it).  The file is
unlinked as it is made (``tempfile.TemporaryFile``), so nothing is left behind by a failing fit.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

#: rows read back from a scratch file at a time (its readers' memory: CHUNK rows)
CHUNK = 256

__all__ = ["CHUNK", "Rows", "StressRows", "spills", "scratch_problem"]


def spills(nbytes: float, budget_gb: float) -> bool:
    """Whether rows of nbytes go to a scratch file under a budget of budget_gb (GB)."""
    return nbytes > float(budget_gb) * 2**30


def scratch_problem(nbytes: float, directory=None):
    """None, or why a scratch file of nbytes cannot be made in directory (default: the temporary
    directory): said before pass 1, not as a failed write in the middle of it."""
    where = directory or tempfile.gettempdir()
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return f"the scratch file of rank 0's per-structure rows: cannot use {where}: {exc}"
    if free < nbytes:
        return (f"the scratch file of rank 0's per-structure rows needs {nbytes / 2**20:.1f} MiB in {where}, "
                f"which has {free / 2**20:.1f} MiB free: set TMPDIR to a directory with room, or hold the rows "
                f"in memory with a larger --rows-budget (rows_budget_gb)")
    return None


class Rows:
    """(n, *shape) float64 rows, one per structure: an array, or a scratch file (``spill``) in
    ``directory`` (default: the system's temporary directory, ``TMPDIR``)."""

    def __init__(self, n: int, shape: tuple, spill: bool = False, directory=None, array=None):
        self.n, self.shape = int(n), tuple(int(s) for s in shape)
        self.width = int(np.prod(self.shape, dtype=np.int64))
        self._array = None if spill else (np.zeros((self.n, *self.shape)) if array is None else array)
        self._file = None
        self._directory = directory or tempfile.gettempdir()
        if spill:
            self._file = tempfile.TemporaryFile(dir=directory)
            self._file.truncate(8 * self.width * self.n)

    @classmethod
    def of(cls, array: np.ndarray) -> "Rows":
        """Rows in memory that are the given (n, ...) array (not a copy)."""
        array = np.asarray(array, dtype=float)
        return cls(len(array), array.shape[1:], array=array)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    @property
    def memory_nbytes(self) -> int:
        """Bytes held in memory (0 for a scratch file: its readers hold a chunk at a time)."""
        return 0 if self._array is None else int(self._array.nbytes)

    @property
    def file_nbytes(self) -> int:
        return 8 * self.width * self.n if self.spilled else 0

    def __len__(self) -> int:
        return self.n

    def __setitem__(self, index, rows) -> None:
        """Rows of the structures ``index`` (an int or an array of them)."""
        if self._array is not None:
            self._array[index] = rows
            return
        index = np.atleast_1d(np.asarray(index, dtype=np.int64))
        rows = np.ascontiguousarray(np.broadcast_to(rows, (len(index), *self.shape)), dtype=float)
        fd, size = self._file.fileno(), 8 * self.width
        try:
            for j, i in enumerate(index.tolist()):
                if os.pwrite(fd, rows[j].tobytes(), size * i) != size:
                    raise OSError(f"short write of row {i}")
        except OSError as exc:
            raise OSError(f"the scratch file of rank 0's per-structure rows ({self.file_nbytes / 2**20:.1f} MiB in "
                          f"{self._directory}): {exc}; set TMPDIR to a directory with room, or hold the rows in "
                          f"memory with a larger --rows-budget (rows_budget_gb)") from exc

    def take(self, index) -> np.ndarray:
        """A copy of the rows of ``index`` (len(index), *shape): in a scratch file's case, ask for a chunk."""
        index = np.asarray(index, dtype=np.int64)
        if self._array is not None:
            return self._array[index]
        out = np.empty((len(index), *self.shape))
        flat = out.reshape(len(index), self.width)
        fd, size = self._file.fileno(), 8 * self.width
        for j, i in enumerate(index.tolist()):
            got = os.preadv(fd, [memoryview(flat[j]).cast("B")], size * i)
            if got != size:
                raise OSError(f"scratch file of the per-structure rows: read {got} of {size} bytes of row {i}")
        return out

    def chunks(self, index, whole_in_memory: bool = False):
        """(positions in index, rows) pieces covering index, in order, CHUNK rows at a time (one piece in
        memory with whole_in_memory: for a reader whose sums over structures must keep their order)."""
        index = np.asarray(index, dtype=np.int64)
        step = max(1, len(index)) if (whole_in_memory and self._array is not None) else CHUNK
        for a in range(0, len(index), step):
            yield slice(a, a + step), self.take(index[a:a + step])

    def array(self) -> np.ndarray:
        """Every row as one array (in memory: the array itself; a file: read whole -- only for what must
        hold them all, such as a fit state's file)."""
        return self._array if self._array is not None else self.take(np.arange(self.n))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StressRows:
    """Rank 0's stress rows of the structures with a stress: structure i -> (Psi (6, D), sigma (6,), V/N).

    The 6 x D rows Psi sit in ``Rows`` (in memory, or a scratch file when spilled), filled in the order
    the structures arrive; sigma and V/N (7 numbers a structure) stay in memory.  Room for ``capacity``
    structures is made before pass 2 (the structures with a stress label).  ``put`` takes a
    structure's triple, ``rows(idx)`` hands the stacked arrays of structures idx back a chunk at a time."""

    def __init__(self, D: int, capacity: int, spill: bool = False, directory=None):
        self.D = int(D)
        self._psi = Rows(max(0, int(capacity)), (6, self.D), spill, directory)
        self._slot = {}       # structure -> row of _psi and _small
        self._small = np.zeros((self._psi.n, 7))   # sigma (6) and V/N of each row: 56 bytes a structure

    @property
    def spilled(self) -> bool:
        return self._psi.spilled

    @property
    def memory_nbytes(self) -> int:
        return self._psi.memory_nbytes

    @property
    def file_nbytes(self) -> int:
        return self._psi.file_nbytes

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, i) -> bool:
        return int(i) in self._slot

    def put(self, i: int, item) -> None:
        Psi, sigma, scale = item
        i = int(i)
        if i in self._slot:
            raise ValueError(f"stress rows of structure {i} given twice")
        j = len(self._slot)
        if j >= self._psi.n:
            raise ValueError(f"more structures with a stress than the {self._psi.n} counted before pass 2")
        self._psi[j] = np.reshape(Psi, (6, self.D))
        self._slot[i] = j
        self._small[j, :6] = np.reshape(sigma, 6)
        self._small[j, 6] = scale

    __setitem__ = put

    def update(self, items: dict) -> None:
        for i, item in items.items():   # (in the order given: items() keeps the order of arrival)
            self.put(i, item)

    def order(self) -> list:
        """The structures with a stress, in the order they arrived."""
        return list(self._slot)

    def indices(self) -> list:
        """The structures with a stress, in increasing order."""
        return sorted(self._slot)

    def _rows_of(self, idx) -> np.ndarray:
        return np.array([self._slot[int(i)] for i in idx], dtype=np.int64)

    def sigma(self, idx) -> np.ndarray:
        """(len(idx), 6) stresses of the structures idx."""
        return self._small[self._rows_of(idx), :6]

    def scale(self, idx) -> np.ndarray:
        """(len(idx),) V/N of the structures idx."""
        return self._small[self._rows_of(idx), 6]

    def chunks(self, idx):
        """(positions in idx, Psi (m, 6, D)) pieces covering the structures idx (all with a stress)."""
        return self._psi.chunks(self._rows_of(idx))

    def items(self):
        """(i, (Psi, sigma, V/N)) in the order the structures arrived, one structure's rows at a time."""
        for i, j in self._slot.items():
            yield i, (self._psi.take([j])[0], self._small[j, :6].copy(), float(self._small[j, 6]))

    def close(self) -> None:
        self._psi.close()
