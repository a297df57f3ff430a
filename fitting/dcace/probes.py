"""Off-data probes of a fitted potential: dimer curves and uniformly compressed crystals.

These are the checks a user runs before trusting a potential in hot or violent MD (and what
tests/test_short_range.py and benchmarks/short_range.py run): does the energy of two atoms rise
monotonically as they are pushed together below the shortest distance of the training data, and
does a crystal get ever harder to compress? Everything is evaluated by the C++ core through
``Potential.compute``.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["dimer_curve", "compression_curve", "equilibrium", "first_violation"]


def _energy(pot, atoms):
    return pot.compute(atoms)


def dimer_curve(pot, a: str, b: str, distances) -> np.ndarray:
    """E(r) - E(a alone) - E(b alone) of an isolated a-b dimer at each distance (eV)."""
    box = 4 * pot.cutoff + 10.0
    free = (_energy(pot, Atoms(a, positions=[[0, 0, 0]], cell=[box] * 3))["energy"]
            + _energy(pot, Atoms(b, positions=[[0, 0, 0]], cell=[box] * 3))["energy"])
    out = []
    for r in distances:
        dimer = Atoms([a, b], positions=[[0, 0, 0], [float(r), 0, 0]], cell=[box] * 3)
        out.append(_energy(pot, dimer)["energy"] - free)
    return np.array(out)


def compression_curve(pot, atoms, scales):
    """Energy per atom (eV) and pressure (GPa) of `atoms` scaled uniformly by each factor (start
    from ``equilibrium(pot, atoms)`` for a/a0)."""
    from ase.units import GPa

    E, P = [], []
    for s in scales:
        at = atoms.copy()
        at.set_cell(atoms.cell * float(s), scale_atoms=True)
        out = _energy(pot, at)
        E.append(out["energy"] / len(at))
        P.append(-float(np.sum(out["stress"][:3])) / 3 / GPa)
    return np.array(E), np.array(P)


def equilibrium(pot, atoms, bounds=(0.85, 1.15)):
    """`atoms` scaled uniformly to the potential's own energy minimum (cell shape kept)."""
    from scipy.optimize import minimize_scalar

    def energy(s):
        at = atoms.copy()
        at.set_cell(atoms.cell * s, scale_atoms=True)
        return _energy(pot, at)["energy"]
    s = minimize_scalar(energy, bounds=bounds, method="bounded", options={"xatol": 1e-6}).x
    at = atoms.copy()
    at.set_cell(atoms.cell * s, scale_atoms=True)
    return at


def first_violation(values, rising=True, tol=0.0):
    """Index of the first step where `values` fails to rise (or to fall), or None."""
    d = np.diff(np.asarray(values, dtype=float))
    bad = np.flatnonzero(~(d > -tol) if rising else ~(d < tol))
    return None if len(bad) == 0 else int(bad[0]) + 1
