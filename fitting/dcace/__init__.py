"""dcace: divide-and-conquer linear ACE interatomic potentials.

Fit linear and divide-and-conquer (DC) ACE potentials from any ASE-readable data, write one
plain-text potential file, and evaluate it with the ASE calculator or LAMMPS `pair_style dcace`.
All descriptor, force and gate mathematics lives in the C++ core (`dcace._core`).
"""
from . import _core
from .basis import ACEBasis, FittingRows
from .calculator import Calculator
from .potential import Potential, load

__version__ = _core.__version__

__all__ = ["ACEBasis", "FittingRows", "Calculator", "Potential", "load", "__version__"]

try:  # the fitting front end (data, experts, gate, selection)
    from .fit import fit  # noqa: F401
    __all__.append("fit")
except ImportError as _e:  # pragma: no cover - only while the fitting modules are incomplete
    if "fit" not in str(_e):
        raise
