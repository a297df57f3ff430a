"""A rank's own training frames parsed again from their file for every pass (an MPI fit, ``dcace.parallel``).

Why this module exists: a rank that keeps its parsed frames between passes holds ~8.5 kB per 52-atom
structure (positions, forces as read and minus the baseline, the ``Atoms``), 1/N of the data: memory
that grows with the training set (issue 13 asks for memory per rank independent of it).  Here a rank
keeps of every frame only a few numbers in columns (``FrameTable``: atom count, energy, stress or not,
weight, config_type, first symbol, file and index in it: ~40 bytes), and of its own frames where they
start (byte offset and atom count, from the reading: ``dcace.stream``).  Every pass that needs the
structures parses them again (``StreamedFrames.stream``: ``ase.io.extxyz.read_xyz`` on the frame's lines,
validated by ``dcace.data.frame_of``: the same ``Frame`` to the bit), applying the label transforms of
the fit (the baseline subtracted, ``residual``) again as each frame is made; a pass holds one frame at a
time (a few with threads).  A file that changes between passes is an error naming it (``FileChangedError``: every rank aborts).

What the re-parse costs, and what is not done again (issue 13's row-pass efficiency): the baseline (a
``Potential`` with zero coefficients, as costly as a linear potential's forces) is computed once in the
residual check (``residual``), which keeps each own frame's residual energy (8 bytes a frame); pass 1 needs
no more of the labels (``labels_only``: the frame as read, with that energy), so only pass 2 subtracts the
baseline again; the grade and the anchors' sources take the atoms alone (``atoms``: no validation, no
labels).  And a rank whose own frames fit ``DEFAULTS["frames_budget_gb"]`` (``held_bytes``) holds them
instead (``dcace.stream.read_own(hold_below=)``): the stream is for the shares that do not fit.

``StreamedFrames`` stands where ``Dataset.frames`` is a list: ``len``; iterating gives every frame's
``FrameStub`` (the few numbers: what the passes over all structures read, e.g. weights); indexing an own
position parses that frame (another position gives its stub); ``kept()`` and ``stream(positions)`` parse
a pass's frames in order.  ``own_frames``, ``atoms_of`` and ``sample_view`` give the pipeline's passes
the same calls for a list of frames and for streamed ones.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from .data import FrameStub, frame_of

__all__ = ["FileChangedError", "FrameTable", "OwnMask", "StreamedFrames", "atoms_of", "held_bytes", "kept_atoms",
           "own_frames", "residual", "sample_view"]

#: what a held frame takes between passes (its Frame and ase.Atoms, the forces as read and minus the baseline:
#: ``read_own`` without streaming, then the residual), per frame and per atom; measured with tracemalloc on the
#: Zuo Mo set (tests/test_mpi_fit.py::test_frames_budget_holds_what_fits checks it against the real frames)
HELD_BYTES_PER_FRAME = 3000
HELD_BYTES_PER_ATOM = 110


def held_bytes(n_frames: int, n_atoms: int) -> int:
    """Bytes a rank holds when it keeps n_frames parsed frames of n_atoms atoms in all (an upper estimate)."""
    return HELD_BYTES_PER_FRAME * int(n_frames) + HELD_BYTES_PER_ATOM * int(n_atoms)


class FileChangedError(RuntimeError):
    """A training file changed between two passes of a fit that parses it again (an MPI fit aborts all ranks)."""


class OwnMask:
    """``keep=`` of a rank: a boolean per frame position (1 byte a frame, not a set of Python ints)."""

    def __init__(self, n, positions):
        self.mask = np.zeros(n, dtype=bool)
        self.mask[np.asarray(positions, dtype=np.int64)] = True

    def __contains__(self, i):
        return 0 <= i < len(self.mask) and bool(self.mask[i])


class FrameTable:
    """The few numbers of every frame (those of ``FrameStub``), one column each; strings as codes."""

    COLUMNS = (("n_atoms", np.int64), ("energy", float), ("has_stress", bool), ("weight", float),
               ("ctype", np.int32), ("symbol", np.int32), ("file", np.int32), ("index", np.int64))

    def __init__(self, n, names):
        self.names = names            # file name strings, one object per file (the stubs share them)
        self.strings = []             # config_type and first-symbol strings (interned)
        for name, dtype in self.COLUMNS:
            setattr(self, name, np.zeros(n, dtype=dtype))

    @classmethod
    def gathered(cls, ranks, names, items):
        """The table of every frame on every rank, from each rank's own frames' [(position, file, index in
        the file, n_atoms, energy, has_stress, weight, config_type, first_symbol)] (collective)."""
        vocab = {}
        fields = ("pos", "file", "index", "n_atoms", "energy", "has_stress", "weight", "ctype", "symbol")
        cols = {k: [] for k in fields}
        for it in items:
            for k, v in zip(fields, it):
                cols[k].append(vocab.setdefault(v, len(vocab)) if k in ("ctype", "symbol") and v is not None
                               else (-1 if k in ("ctype", "symbol") else v))
        dtypes = dict(cls.COLUMNS, pos=np.int64)
        cols = {k: np.array(v, dtype=dtypes[k]) for k, v in cols.items()}
        parts = [(cols, list(vocab))] if ranks.size == 1 else ranks.comm.allgather((cols, list(vocab)))
        table = cls(sum(len(c["pos"]) for c, _ in parts), names)
        where = {}
        for c, words in parts:
            remap = np.array([where.setdefault(w, len(where)) for w in words] + [-1], dtype=np.int32)
            for name, _ in cls.COLUMNS:
                getattr(table, name)[c["pos"]] = remap[c[name]] if name in ("ctype", "symbol") else c[name]
        table.strings = [sys.intern(w) for w in where]
        return table

    def __len__(self):
        return len(self.n_atoms)

    def _text(self, code):
        return None if code < 0 else self.strings[code]

    def stub(self, g) -> FrameStub:
        return FrameStub(int(self.n_atoms[g]), float(self.energy[g]), bool(self.has_stress[g]),
                         self.names[self.file[g]], int(self.index[g]), self._text(self.ctype[g]),
                         float(self.weight[g]), self._text(self.symbol[g]) or "")

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name, _ in self.COLUMNS)


class StreamedFrames:
    """Every frame's ``FrameStub`` and this rank's own frames, parsed again from their files when a pass
    asks (see the module docstring)."""

    def __init__(self, table, paths, own, offsets, kw, transforms=()):
        self.table, self.paths, self.kw = table, [str(p) for p in paths], kw
        self.own = np.asarray(own, dtype=np.int64)          # sorted positions of this rank's frames
        self.offsets = np.asarray(offsets, dtype=np.int64)  # byte offset of each own frame in its file
        self.transforms = tuple(transforms)
        self.stamps = [_stamp(p) for p in self.paths]
        self.energies = None      # each own frame's energy after the transforms (residual), or None
        self.stored_energy = False   # a labels_only view: that energy instead of the transforms

    def _copy(self, **changes) -> "StreamedFrames":
        new = StreamedFrames.__new__(StreamedFrames)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def with_transform(self, fn) -> "StreamedFrames":
        """The same frames with fn(Frame) -> Frame applied after the ones already there."""
        return self._copy(transforms=self.transforms + (fn,), energies=None, stored_energy=False)

    def labels_only(self) -> "StreamedFrames":
        """The frames as read and validated, with the energy after the transforms (kept by ``residual``) and
        no other transform: what pass 1 reads (atoms and energy) without the baseline computed again.
        Forces and stress are the file's.  Without stored energies: these frames."""
        return self if self.energies is None or not self.transforms else self._copy(stored_energy=True)

    def __len__(self):
        return len(self.table)

    def __iter__(self):
        return (self.table.stub(g) for g in range(len(self.table)))

    def _slot(self, g):
        k = int(np.searchsorted(self.own, g))
        return k if k < len(self.own) and self.own[k] == g else None

    def __getitem__(self, g):
        g = int(g)
        if g < 0:
            g += len(self)
        if self._slot(g) is None:
            return self.table.stub(g)
        return next(self.stream([g]))

    def kept(self):
        """(position, Frame) of this rank's frames, in order, parsed now."""
        return zip(self.own.tolist(), self.stream(self.own))

    def _parsed(self, positions):
        """(position, slot, file name, index in file, ase.Atoms) of the frames at `positions` (this rank's own),
        in that order, parsed from their files one by one (each file opened once)."""
        from .stream import _parse_frame

        handles = {}
        try:
            for g in positions:
                g = int(g)
                k = self._slot(g)
                if k is None:
                    raise IndexError(f"frame position {g} is not one of this rank's frames (StreamedFrames)")
                f = int(self.table.file[g])
                if f not in handles:
                    handles[f] = self._open(f)
                name, i = self.table.names[f], int(self.table.index[g])
                yield g, k, name, i, _parse_frame(handles[f], name, i, int(self.offsets[k]), int(self.table.n_atoms[g]))
        finally:
            for fh in handles.values():
                fh.close()

    def stream(self, positions):
        """The Frames at `positions` (this rank's own), in that order, parsed from their files one by one."""
        for _, k, name, i, atoms in self._parsed(positions):
            fr = frame_of(atoms, name, i, {"stress_key": False, "virial_key": False}, set(), {}, **self.kw)
            if self.stored_energy:
                fr = dataclasses.replace(fr, energy=float(self.energies[k]))
            else:
                for fn in self.transforms:
                    fr = fn(fr)
            yield fr

    def atoms(self, positions):
        """The ase.Atoms of the frames at `positions` (this rank's own), parsed again; no labels, no validation
        (the first pass validated them, and the files are the same: ``FileChangedError``)."""
        from .data import _clean_atoms

        for *_, atoms in self._parsed(positions):
            yield _clean_atoms(atoms)

    def _open(self, f):
        path = self.paths[f]
        if _stamp(path) != self.stamps[f]:   # not a DataError: one rank may see it first, so all ranks abort
            raise FileChangedError(f"{self.table.names[f]}: the file changed while the fit was reading it (size or "
                                   f"modification time differ from the first pass); run the fit again on a file "
                                   f"that stays as it is")
        return open(path, "rb")

    def nbytes(self) -> int:
        """Bytes of what this rank keeps of the frames (columns and offsets; no structure)."""
        return self.table.nbytes() + self.own.nbytes + self.offsets.nbytes


def _stamp(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def own_frames(frames, positions):
    """The frames at `positions`, one at a time: parsed now (StreamedFrames) or from the list."""
    if isinstance(frames, StreamedFrames):
        return frames.stream(positions)
    return (frames[int(i)] for i in positions)


class _AtomsOf:
    """The ase.Atoms of frames at positions, iterable again (each iteration parses them again)."""

    def __init__(self, frames, positions):
        self.frames, self.positions = frames, positions

    def __len__(self):
        return len(self.positions)

    def __iter__(self):
        return self.frames.atoms(self.positions)


def kept_atoms(dataset):
    """The ase.Atoms of the frames this process holds or parses (streamed: the atoms alone, no labels)."""
    if isinstance(dataset.frames, StreamedFrames):
        return dataset.frames.atoms(dataset.frames.own)
    return (fr.atoms for _, fr in dataset.kept)


def atoms_of(frames, positions):
    if isinstance(frames, StreamedFrames):
        return _AtomsOf(frames, positions)
    return [frames[int(i)].atoms for i in positions]


class _Sample:
    """The frames at positions for the cost estimate (dcace.estimate.estimate_pass2): indexing parses one
    (the timed sample), iterating gives the stubs (it only counts their atoms)."""

    def __init__(self, frames, positions):
        self.frames, self.positions = frames, positions

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, j):
        return self.frames[int(self.positions[j])]

    def __iter__(self):
        return (self.frames.table.stub(int(g)) for g in self.positions)


def sample_view(frames, positions):
    if isinstance(frames, StreamedFrames):
        return _Sample(frames, positions)
    return [frames[int(i)] for i in positions]


def residual(dataset, fn, errors):
    """dataset with fn (the baseline subtracted from one Frame's labels) applied to every frame as it is
    parsed; each own frame is tried once now, a failure recorded in errors as (position, message), and its
    residual energy kept (``StreamedFrames.labels_only``)."""
    frames = dataset.frames.with_transform(fn)
    energies = np.full(len(frames.own), np.nan)
    for k, (g, fr) in enumerate(dataset.frames.kept()):
        try:
            energies[k] = fn(fr).energy
        except ValueError as exc:
            errors.append((g, f"{fr.where}: {exc}"))
    frames.energies = energies
    return dataclasses.replace(dataset, frames=frames)
