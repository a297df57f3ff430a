"""Reading only this rank's frames of extended XYZ files (an MPI fit, ``dcace.parallel``).

Why this module exists: ``read_data(keep=)`` keeps only a rank's frames but parses every frame on
every rank (``ase.io.iread`` has no index), a cost per atom that more ranks do not divide
(docs/parallel-fitting.md).  Here every rank finds where each frame starts (``xyz_frame_table``: one
scan of the atom-count lines, no parsing), parses and validates only the frames it keeps
(``ase.io.extxyz.read_xyz`` on that frame's lines, the parser ``iread`` uses), and learns the few
numbers of the other frames (``FrameStub``) from the ranks that parsed them.  The Dataset is the one
``read_data(keep=)`` returns, to the bit: the same frames, stubs, notes, files and keys; or, for a fit's
training set (``streamed``), one whose frames are a ``dcace.restream.StreamedFrames`` that holds none of
them and parses them again for every pass.

Errors: a frame that fails is recorded by the rank that parses it; after reading every rank raises
the lowest-numbered frame's ``DataError`` (``Ranks.check``), the one the serial reader raises first.
Sources that are not plain extended XYZ files (other formats, VEC lines, a blank line before more
frames, a missing or empty file): ``read_own`` returns None on every rank alike and the caller reads
with ``read_data`` as before (which names the problem).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .data import (DataError, Dataset, _check_optional_keys, _sha256, frame_of, required_optional_keys, stress_notes,
                   xyz_frame_table)
from .restream import FrameTable, StreamedFrames, held_bytes

__all__ = ["EVERY", "read_own"]


class _Every:
    """keep= for a rank that keeps every frame."""

    def __contains__(self, i):
        return True


EVERY = _Every()


def _parse_frame(fh, name, i, offset, natoms):
    """The ase.Atoms of frame i (at byte `offset`, `natoms` atoms), or DataError as read_data words it."""
    from ase.io.extxyz import read_xyz

    fh.seek(offset)
    text = b"".join(fh.readline() for _ in range(natoms + 2)).decode("utf-8", errors="replace")
    try:
        return next(read_xyz(io.StringIO(text), 0))
    except Exception as exc:  # ASE raises many types for malformed frames
        raise DataError(f"{name}, frame {i}: cannot read ({type(exc).__name__}: {exc})") from None


def read_own(ranks, source, keep, *, elements, weight_key="weight", energy_key="energy", forces_key="forces",
             stress_key="stress", virial_key=None, required_keys=None, streamed=False, hold_below=None):
    """read_data(source, keep=keep, ...) parsing only the kept frames on each rank (collective), or None
    (on every rank) for sources it does not read: then call read_data.  streamed: the kept frames are
    validated and not held; the Dataset's frames are a ``dcace.restream.StreamedFrames`` that parses them
    again for every pass (memory per rank independent of the number of frames) -- unless hold_below
    (bytes) is given and this rank's kept frames take no more (``dcace.restream.held_bytes`` of their count
    and atoms, known from the atom-count lines before any is parsed): then they are held."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(paths, (list, tuple)) or not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        return None
    tables = [xyz_frame_table(Path(p)) for p in paths]
    if any(t is None or not len(t) for t in tables):
        return None
    if streamed and hold_below is not None:
        streamed = held_bytes(*_own_size(tables, keep)) > hold_below
    kw = dict(elements=elements, weight_key=weight_key, energy_key=energy_key, forces_key=forces_key,
              stress_key=stress_key, virial_key=virial_key)
    found = {"stress_key": False, "virial_key": False}
    seen, skipped, own, small, offsets, errors, start = set(), [], {}, [], [], [], 0
    for k, (path, table) in enumerate(zip(paths, tables)):
        name, why = str(path), {}
        with open(path, "rb") as fh:
            for i, (offset, natoms) in enumerate(table.tolist()):
                if start + i not in keep:
                    continue
                try:
                    fr = frame_of(_parse_frame(fh, name, i, offset, natoms), name, i, found, seen, why, **kw)
                except DataError as exc:
                    errors.append((start + i, str(exc)))
                    continue
                small.append((start + i, k, i, fr.n_atoms, fr.energy, fr.has_stress, fr.weight, fr.config_type,
                              fr.first_symbol))
                if streamed:
                    offsets.append(offset)
                else:
                    own[start + i] = fr
        skipped.append(why)
        start += len(table)
    ranks.check(errors)
    del tables
    names = [str(p) for p in paths]   # one string object per file for its stubs
    frame_table = FrameTable.gathered(ranks, names, small)
    if streamed:
        frames = StreamedFrames(frame_table, paths, [it[0] for it in small], offsets, kw)
    else:
        frames = [own[g] if g in own else frame_table.stub(g) for g in range(len(frame_table))]
    return _assemble(ranks, paths, frame_table, frames, found, seen, skipped, required_keys, source, kw)


def _own_size(tables, keep):
    """(frames, atoms) of the kept frames, from the files' frame tables."""
    frames = atoms = start = 0
    for table in tables:
        for i, natoms in enumerate(table[:, 1].tolist()):
            if start + i in keep:
                frames, atoms = frames + 1, atoms + natoms
        start += len(table)
    return frames, atoms


def _assemble(ranks, paths, table, frames, found, seen, skipped, required_keys, source, kw):
    """The Dataset of every rank: its frames (own Frames and FrameStubs, or StreamedFrames), the files'
    provenance, the notes on frames without stress as one reader words them, the keys found."""
    parts = [(found, seen, skipped)] if ranks.size == 1 else ranks.comm.allgather((found, seen, skipped))
    first = np.searchsorted(table.file, np.arange(len(paths) + 1))   # each file's first position
    files = [{"name": Path(p).name, "sha256": _sha256(Path(p)), "n_frames": int(first[k + 1] - first[k])}
             for k, p in enumerate(paths)] if ranks.is_root else None
    files = ranks.bcast(files)
    notes = []
    for k, name in enumerate(table.names):
        why = {}
        for _, _, sk in parts:   # every rank's frames without stress, in frame order (as one reader lists them)
            for note, idx in sk[k].items():
                why.setdefault(note, []).extend(idx)
        why = {note: sorted(idx) for note, idx in sorted(why.items(), key=lambda x: min(x[1]))}
        notes += stress_notes(name, why, int(table.has_stress[first[k]:first[k + 1]].sum()), int(first[k + 1] - first[k]))
    found = {opt: any(p[0][opt] for p in parts) for opt in ("stress_key", "virial_key")}
    seen = set().union(*(p[1] for p in parts))
    keys = {k: kw[k] for k in ("energy_key", "forces_key", "stress_key", "virial_key")}
    ds = Dataset(frames, files, notes, keys, found, seen)
    _check_optional_keys(ds, source, required_optional_keys(kw["stress_key"], kw["virial_key"], required_keys))
    return ds
