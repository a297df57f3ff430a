"""Atomic output files: write to a temporary file in the destination directory, then rename.

A reader (or a fit that fails half way) never sees a half-written output: the destination either
keeps its previous content or holds the complete new file.  ``os.replace`` is atomic on POSIX when
source and destination are on the same file system, hence the temporary file next to the target.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic", "check_output_file", "check_output_dir", "same_file"]


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.  ``suffix``
    (default: the suffix of ``path``) keeps writers that look at the extension (matplotlib) happy.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix if suffix is None else suffix,
                               dir=directory)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path, text: str) -> None:
    """``Path(path).write_text(text)``, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def same_file(a, b) -> bool:
    """True if a and b name the same file (same path, or same inode through links)."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_file(path, option: str) -> None:
    """Raise ValueError unless ``path`` can be written as a file (checked before any work).

    The file may not exist yet; its directory may not exist yet either (it is created), but the
    nearest existing ancestor must be a writable directory.
    """
    p = Path(path)
    if p.exists() and p.is_dir():
        raise ValueError(f"{option} {path}: is a directory, expected a file name")
    anc = _nearest_existing(p.parent if str(p.parent) else Path("."))
    if not anc.is_dir():
        raise ValueError(f"{option} {path}: {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: directory {anc} is not writable")
    if p.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: directory {p.parent} is not writable")


def check_output_dir(path, option: str) -> None:
    """Raise ValueError unless ``path`` is (or can be created as) a writable directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {path}: exists and is not a directory")
    anc = _nearest_existing(p)
    if not anc.is_dir():
        raise ValueError(f"{option} {path}: {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: directory {anc} is not writable")
