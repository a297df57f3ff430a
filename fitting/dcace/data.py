"""Reading and validating training / test data for fitting.

Any ASE-readable file (extended XYZ first) or a list of ``ase.Atoms``.  The user names the keys:

- ``energy_key`` (default ``"energy"``): total energy in eV;
- ``forces_key`` (default ``"forces"``): per-atom forces (N, 3) in eV/Å;
- ``stress_key`` (default ``"stress"``): stress in eV/Å^3, ASE sign convention, as 3x3, 9 or 6
  (Voigt xx yy zz yz xz xy) numbers;
- ``virial_key`` (default None): virial in eV (3x3, 9 or 6 numbers); turned into the ASE stress
  ``-virial / volume``.  Used for frames without a stress entry.

A key is looked up in ``atoms.info``, ``atoms.arrays`` and the results of an attached calculator
(ASE's extxyz reader moves ``energy``/``forces``/``stress`` there).

Validation happens frame by frame and every error names the file and the frame index
(``DataError``, a ``ValueError``): unreadable or empty files, frames without atoms, energy or
forces, forces of the wrong shape, NaN or inf anywhere (positions, cell, energy, forces, stress),
elements that are not in the fit's element list, stresses of the wrong shape.

Stress is optional per frame: frames without stress (or without a 3-D periodic cell) simply
contribute no stress rows; their number is reported (``Dataset.n_without_stress``) and a note is
added to ``Dataset.notes``.  This is the documented behaviour for a stress key present on only
some frames (e.g. Zuo et al.'s Ni training set, 108 of 263 frames without stress).  A stress key
the caller chose (anything but the default ``"stress"``) or a virial key that no frame has is a typo
and an error listing the keys present (``read_data(required_keys=...)``).
"""
from __future__ import annotations

import array
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["DataError", "Frame", "FrameStub", "Dataset", "read_data", "count_frames", "voigt_from_any"]


class DataError(ValueError):
    """Invalid input data; the message names the file and frame."""


@dataclass
class Frame:
    """One validated structure with its reference labels."""

    atoms: object          # ase.Atoms (positions, numbers, cell, pbc; no calculator)
    energy: float          # total energy, eV
    forces: np.ndarray     # (N, 3), eV/Å
    stress: np.ndarray | None  # (6,) ASE Voigt stress, eV/Å^3, or None
    source: str            # file name (or "<atoms>")
    index: int             # frame index within the source
    config_type: str | None = None   # atoms.info["config_type"], if any
    weight: float = 1.0    # the frame's own weight (atoms.info[weight_key]); dcace.fit multiplies
                           # it by the weight of its config_type (weights=)

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    @property
    def where(self) -> str:
        return f"{self.source}, frame {self.index}"

    @property
    def has_stress(self) -> bool:
        return self.stress is not None

    @property
    def first_symbol(self) -> str:
        return self.atoms.get_chemical_symbols()[0]


@dataclass(slots=True)
class FrameStub:
    """A validated frame that this process does not keep (``read_data(keep=...)``: an MPI rank keeps
    only the frames of its own blocks, ``dcace.parallel``): the few numbers every rank needs of it
    (slots, and the file name and config_type strings shared: ~150 bytes a frame, docs/parallel-fitting.md)."""

    n_atoms: int
    energy: float
    has_stress: bool
    source: str
    index: int
    config_type: str | None = None
    weight: float = 1.0
    first_symbol: str = ""
    atoms = None           # no structure, forces or stress: another rank holds them
    forces = None
    stress = None

    @property
    def where(self) -> str:
        return f"{self.source}, frame {self.index}"

    @classmethod
    def of(cls, fr: Frame) -> "FrameStub":
        return cls(fr.n_atoms, fr.energy, fr.has_stress, fr.source, fr.index, fr.config_type, fr.weight,
                   fr.first_symbol)


@dataclass
class Dataset:
    """A list of validated frames plus provenance (file hashes) and notes on skipped labels."""

    frames: list[Frame]
    files: list[dict] = field(default_factory=list)   # [{"name", "sha256", "n_frames"}]
    notes: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)
    optional_found: dict = field(default_factory=dict)  # {"stress_key"|"virial_key": found on some frame}
    keys_seen: set = field(default_factory=set)          # union of the label keys of all frames

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        return iter(self.frames)

    def __getitem__(self, i):
        return self.frames[i]

    @property
    def n_atoms(self) -> int:
        return int(sum(f.n_atoms for f in self.frames))

    @property
    def n_with_stress(self) -> int:
        return int(sum(f.has_stress for f in self.frames))

    @property
    def kept(self) -> list:
        """[(position, Frame)] of the frames this process holds (all but the FrameStubs); of frames read
        again for every pass (``dcace.restream.StreamedFrames``) an iterator that parses them now."""
        if hasattr(self.frames, "kept"):
            return self.frames.kept()
        return [(i, f) for i, f in enumerate(self.frames) if f.atoms is not None]

    @property
    def n_without_stress(self) -> int:
        return len(self.frames) - self.n_with_stress

    @property
    def elements_present(self) -> list[str]:
        s = set()
        for f in self.frames:
            s.update(f.atoms.get_chemical_symbols())
        return sorted(s)

    def subset(self, indices: Iterable[int]) -> "Dataset":
        return Dataset([self.frames[i] for i in indices], list(self.files), list(self.notes), dict(self.keys),
                       dict(self.optional_found), set(self.keys_seen))


# ------------------------------------------------------------------------------------------------
# helpers

_MISSING = object()


def _lookup(atoms, key):
    """Value of ``key`` in atoms.info, atoms.arrays or calculator results (first found)."""
    if key is None:
        return _MISSING
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    calc = getattr(atoms, "calc", None)
    if calc is not None:
        results = getattr(calc, "results", None) or {}
        if key in results:
            return results[key]
    return _MISSING


def _available_keys(atoms) -> list[str]:
    keys = set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
    calc = getattr(atoms, "calc", None)
    if calc is not None:
        keys |= set(getattr(calc, "results", None) or {})
    return sorted(keys)


def voigt_from_any(value) -> np.ndarray:
    """(6,) Voigt xx yy zz yz xz xy from a 3x3 matrix, 9 numbers or 6 Voigt numbers."""
    a = np.asarray(value, dtype=float)
    if a.shape in ((3, 3), (9,)):
        m = a.reshape(3, 3)
        return np.array([m[0, 0], m[1, 1], m[2, 2], 0.5 * (m[1, 2] + m[2, 1]),
                         0.5 * (m[0, 2] + m[2, 0]), 0.5 * (m[0, 1] + m[1, 0])])
    if a.shape == (6,):
        return a.copy()
    raise ValueError(f"expected a 3x3 matrix, 9 or 6 numbers, got shape {a.shape}")


def _to_float_array(value, what, where):
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} is not numeric ({type(value).__name__}: {str(value)[:60]!r})") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_frame(h, f: Frame) -> None:
    """Add one frame to the provenance hash of a list of Atoms."""
    a = f.atoms
    for arr in (a.numbers.astype(np.int64), a.positions, np.asarray(a.cell.array), a.pbc.astype(np.int8),
                np.array([f.energy]), f.forces, f.stress if f.stress is not None else np.zeros(0)):
        h.update(np.ascontiguousarray(arr).tobytes())


def _validate_frame(atoms, where, elements, energy_key, forces_key, stress_key, virial_key):
    """Validated Frame data (energy, forces, stress|None, stress_note|None) or DataError."""
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise DataError(f"{where}: expected an ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where}: the structure has no atoms")
    pos = np.asarray(atoms.positions, dtype=float)
    if not np.isfinite(pos).all():
        k = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise DataError(f"{where}: positions contain NaN or inf (first at atom {k})")
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not np.isfinite(cell).all():
        raise DataError(f"{where}: the cell contains NaN or inf")
    if elements is not None:
        symbols = set(atoms.get_chemical_symbols())
        extra = sorted(symbols - set(elements))
        if extra:
            raise DataError(f"{where}: element(s) {', '.join(extra)} present but not listed in elements "
                            f"{list(elements)} (add them to --elements, or remove these frames)")
    # energy
    e = _lookup(atoms, energy_key)
    if e is _MISSING:
        raise DataError(f"{where}: no energy under key {energy_key!r} (looked in atoms.info, atoms.arrays "
                        f"and calculator results; keys present: {_available_keys(atoms)}); "
                        f"name the key with --energy-key / energy_key=")
    e = _to_float_array(e, f"energy {energy_key!r}", where)
    if e.size != 1:
        raise DataError(f"{where}: energy {energy_key!r} must be one number, got shape {e.shape}")
    e = float(e.reshape(()))
    if not np.isfinite(e):
        raise DataError(f"{where}: energy {energy_key!r} is {e}")
    # forces
    f = _lookup(atoms, forces_key)
    if f is _MISSING:
        raise DataError(f"{where}: no forces under key {forces_key!r} (looked in atoms.info, atoms.arrays "
                        f"and calculator results; keys present: {_available_keys(atoms)}); "
                        f"name the key with --forces-key / forces_key=")
    f = _to_float_array(f, f"forces {forces_key!r}", where)
    if f.shape != (n, 3):
        raise DataError(f"{where}: forces {forces_key!r} have shape {f.shape}, expected ({n}, 3) "
                        f"for {n} atoms")
    if not np.isfinite(f).all():
        k = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0])
        raise DataError(f"{where}: forces {forces_key!r} contain NaN or inf (first at atom {k})")
    f = np.array(f, dtype=float)
    # stress (optional per frame)
    stress, note = None, None
    s = _lookup(atoms, stress_key)
    source = stress_key
    kind = "stress"
    if s is _MISSING and virial_key is not None:
        s = _lookup(atoms, virial_key)
        source, kind = virial_key, "virial"
    if s is not _MISSING:
        arr = _to_float_array(s, f"{kind} {source!r}", where)
        try:
            v = voigt_from_any(arr)
        except ValueError as exc:
            raise DataError(f"{where}: {kind} {source!r}: {exc}") from None
        if not np.isfinite(v).all():
            raise DataError(f"{where}: {kind} {source!r} contains NaN or inf")
        if not atoms.pbc.all():
            note = "not 3-D periodic"
        else:
            vol = abs(float(np.linalg.det(cell)))
            if vol <= 0:
                raise DataError(f"{where}: periodic cell has zero volume")
            stress = v if kind == "stress" else -v / vol
    else:
        note = "no stress"
    return e, f, stress, note


def _type_and_weight(atoms, where, weight_key):
    info = getattr(atoms, "info", {}) or {}
    ctype = info.get("config_type")
    w = info.get(weight_key, 1.0) if weight_key else 1.0
    try:
        w = float(w)
    except (TypeError, ValueError):
        raise DataError(f"{where}: weight {weight_key!r} = {w!r} is not a number") from None
    if not (np.isfinite(w) and w >= 0):
        raise DataError(f"{where}: weight {weight_key!r} = {w!r} must be a finite number >= 0")
    return (None if ctype is None else sys.intern(str(ctype))), w   # one string object per config_type


def _clean_atoms(atoms):
    from ase import Atoms

    return Atoms(numbers=atoms.numbers.copy(), positions=np.array(atoms.positions, dtype=float),
                 cell=np.array(atoms.cell.array, dtype=float), pbc=atoms.pbc.copy())


def _iter_source(source, index):
    """Yield (name, index, atoms-or-exception) for a path or Atoms list; raises DataError for files."""
    from ase import Atoms

    if isinstance(source, Atoms):
        yield "<atoms>", 0, source
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(source)
        if not path.exists():
            raise DataError(f"{name}: no such file")
        if path.is_dir():
            raise DataError(f"{name}: is a directory, expected a data file")
        if path.stat().st_size == 0:
            raise DataError(f"{name}: the file is empty (no frames)")
        import ase.io

        count = 0
        it = ase.io.iread(str(path), index=index)
        while True:
            try:
                atoms = next(it)
            except StopIteration:
                break
            except Exception as exc:  # ASE raises many types for malformed files
                raise DataError(f"{name}, frame {count}: cannot read ({type(exc).__name__}: {exc})") from None
            yield name, count, atoms
            count += 1
        if count == 0:
            raise DataError(f"{name}: the file contains no frames")
        return
    # a list of Atoms
    items = list(source)
    if not items:
        raise DataError("<atoms>: the list of structures is empty")
    for i, a in enumerate(items):
        yield "<atoms>", i, a


DEFAULT_STRESS_KEY = "stress"


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return ", ".join(map(str, source))
    return "<atoms>"


def _check_optional_keys(ds: "Dataset", source, required) -> None:
    """A stress/virial key the user named but no frame has is a typo, not "data without stress"."""
    for opt, flag in (("stress_key", "--stress-key / stress_key="), ("virial_key", "--virial-key / virial_key=")):
        key = ds.keys.get(opt)
        if opt in required and key is not None and not ds.optional_found.get(opt):
            raise DataError(f"{_source_name(source)}: no frame has a {opt.split('_')[0]} under key {key!r} "
                            f"(looked in atoms.info, atoms.arrays and calculator results of all {len(ds)} frames; "
                            f"keys present: {sorted(ds.keys_seen)}); name the key with {flag}"
                            + (", or leave the option out for data without stresses" if opt == "stress_key" else ""))


def read_data(source, *, elements: Sequence[str] | None = None, energy_key: str = "energy",
              forces_key: str = "forces", stress_key: str | None = "stress", virial_key: str | None = None,
              index=":", required_keys=None, weight_key: str = "weight", keep=None) -> Dataset:
    """Read and validate structures with their energies, forces and (optional) stresses.

    ``source`` is a path, a list of paths, an ``ase.Atoms`` or a list of ``Atoms``.  Returns a
    :class:`Dataset`; raises :class:`DataError` naming the file and frame of the first problem.

    ``weight_key``: an optional per-frame weight in ``atoms.info`` (finite, >= 0; default 1): all
    rows of the frame (energy, forces, stress) are multiplied by it in the fit.

    ``required_keys``: which of ``"stress_key"``, ``"virial_key"`` must be found on at least one
    frame (a key absent from every frame is then an error listing the keys present).  The default
    (None) requires the ones the caller changed: a stress key other than ``"stress"`` and any
    virial key; the default stress key absent everywhere is data without stresses.

    ``keep``: None (keep every frame) or a container of frame positions (counted over all sources):
    every frame is read (``ase.io.iread``, one at a time) and validated, but only those are kept;
    the others become :class:`FrameStub` (an MPI rank holds only its own blocks' frames).
    """
    required_keys = required_optional_keys(stress_key, virial_key, required_keys)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        parts, start = [], 0
        for s in source:
            parts.append(read_data(s, elements=elements, energy_key=energy_key, forces_key=forces_key,
                                   stress_key=stress_key, virial_key=virial_key, index=index, required_keys=(),
                                   weight_key=weight_key, keep=None if keep is None else _Shifted(keep, start)))
            start += len(parts[-1])
        ds = Dataset([f for p in parts for f in p.frames], [x for p in parts for x in p.files],
                     [n for p in parts for n in p.notes], parts[0].keys,
                     {k: any(p.optional_found.get(k) for p in parts) for k in ("stress_key", "virial_key")},
                     set().union(*(p.keys_seen for p in parts)))
        _check_optional_keys(ds, source, required_keys)
        return ds
    frames: list[Frame] = []
    skipped: dict[str, list[int]] = {}
    name = None
    found = {"stress_key": False, "virial_key": False}
    seen: set = set()
    atoms_hash = hashlib.sha256()   # provenance of a list of Atoms (a file is hashed as a file)
    for name, i, atoms in _iter_source(source, index):
        frame = frame_of(atoms, name, i, found, seen, skipped, elements=elements, weight_key=weight_key,
                         energy_key=energy_key, forces_key=forces_key, stress_key=stress_key, virial_key=virial_key)
        if not isinstance(source, (str, os.PathLike)):
            _hash_frame(atoms_hash, frame)
        frames.append(frame if keep is None or len(frames) in keep else FrameStub.of(frame))
    files = []
    if isinstance(source, (str, os.PathLike)):
        files.append({"name": Path(source).name, "sha256": _sha256(Path(source)), "n_frames": len(frames)})
    else:
        files.append({"name": "<atoms>", "sha256": atoms_hash.hexdigest(), "n_frames": len(frames)})
    notes = stress_notes(name, skipped, sum(f.has_stress for f in frames), len(frames))
    keys = {"energy_key": energy_key, "forces_key": forces_key, "stress_key": stress_key, "virial_key": virial_key}
    ds = Dataset(frames, files, notes, keys, found, seen)
    _check_optional_keys(ds, source, required_keys)
    return ds


def frame_of(atoms, name, i, found, seen, skipped, *, elements, weight_key, energy_key, forces_key, stress_key,
             virial_key) -> Frame:
    """One read structure validated into a Frame (DataError naming file and frame); records which optional
    keys it has (found, seen) and why it has no usable stress (skipped {why: [frame index]})."""
    from ase import Atoms

    where = f"{name}, frame {i}"
    if isinstance(atoms, Atoms):
        for opt, key in (("stress_key", stress_key), ("virial_key", virial_key)):
            if not found[opt] and key is not None and _lookup(atoms, key) is not _MISSING:
                found[opt] = True
        if len(seen) < 200:
            seen.update(_available_keys(atoms))
    e, f, s, note = _validate_frame(atoms, where, elements, energy_key, forces_key, stress_key, virial_key)
    if note is not None:
        skipped.setdefault(note, []).append(i)
    return Frame(_clean_atoms(atoms), e, f, s, name, i, *_type_and_weight(atoms, where, weight_key))


def stress_notes(name, skipped, n_with, n_frames) -> list[str]:
    """The notes on one source's frames without usable stress (when some frames have one)."""
    notes = []
    if n_with and skipped:
        for why, idx in skipped.items():
            shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
            notes.append(f"{name}: {len(idx)} of {n_frames} frames have no usable stress ({why}: frames "
                         f"{shown}); their stress rows are skipped")
    return notes


def required_optional_keys(stress_key, virial_key, required_keys=None) -> set:
    """Which optional keys must be found on some frame: as given, else the ones the caller changed."""
    if required_keys is None:
        required_keys = {k for k, v, d in (("stress_key", stress_key, DEFAULT_STRESS_KEY),
                                           ("virial_key", virial_key, None)) if v is not None and v != d}
    return set(required_keys)


class _Shifted:
    """`keep` of a list of sources seen from one source that starts at frame position `start`."""

    def __init__(self, keep, start):
        self.keep, self.start = keep, start

    def __contains__(self, i):
        return i + self.start in self.keep


def count_frames(source, index=":") -> int:
    """Number of frames read_data(source) would read, without keeping any (an MPI fit needs it to
    place the structures in blocks before it reads them).  Extended XYZ files are counted from
    their atom-count lines; other formats, and files whose layout is not that, through
    ``ase.io.iread``.  Errors are read_data's, found when the frames are read."""
    from ase import Atoms

    if isinstance(source, Dataset):
        return len(source)
    if isinstance(source, Atoms):
        return 1
    if isinstance(source, (str, os.PathLike)):
        n = _count_xyz(Path(source)) if index == ":" else None
        if n is None:
            try:
                n = sum(1 for _ in _iter_source(source, index))
            except DataError:
                n = 0   # read_data raises the same error, on every rank
        return n
    items = list(source)
    if items and all(isinstance(s, (str, os.PathLike)) for s in items):
        return sum(count_frames(s, index) for s in items)
    return len(items)


def _count_xyz(path: Path):
    """Frames of an (extended) XYZ file from its atom-count lines, or None if it is not one."""
    table = xyz_frame_table(path)
    return None if table is None else len(table)


def xyz_frame_table(path: Path):
    """(n, 2) int64 array [(byte offset, atom count)] of every frame of an (extended) XYZ file, from its atom-count lines
    (one scan, no parsing), or None if it is not laid out so (another format, a non-count line where a
    frame should start, a truncated frame, a blank line before more frames: ase.io.iread would stop
    there).  A frame is its count line, its comment line and one line per atom."""
    if path.suffix.lower() not in (".xyz", ".extxyz") or not path.is_file():
        return None
    table, blank = array.array("q"), False   # 16 bytes a frame (a list of tuples: ~100)
    with open(path, "rb") as fh:
        while True:
            offset = fh.tell()
            line = fh.readline()
            if not line:
                return np.frombuffer(table, dtype=np.int64).reshape(-1, 2).copy()
            if not line.strip():
                blank = True
                continue   # trailing blank lines
            try:
                natoms = int(line)
            except ValueError:
                return None
            if blank:
                return None
            for _ in range(natoms + 1):
                if not fh.readline():
                    return None
            table.extend((offset, natoms))
