"""Off-data probes of a fitted potential: dimer curves, uniformly compressed crystals, rattled frames.

These are the checks a user runs before trusting a potential in hot or violent MD (and what
tests/test_short_range.py, tests/test_anchors.py, benchmarks/short_range.py and
benchmarks/rattle_probe.py run): does the energy of two atoms rise monotonically as they are pushed
together below the shortest distance of the training data, does a crystal get ever harder to
compress, and do training structures displaced at random by a thermal amount (0.1 A) get forces of
the size a gate-free model gives them? Everything is evaluated by the C++ core through
``Potential.compute``.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["dimer_curve", "pressure_gpa", "compression_curve", "equilibrium", "first_violation", "probe_frames", "probe_indices",
           "rattled", "max_force"]


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


def pressure_gpa(result) -> float:
    """The pressure (GPa) of a ``Potential.compute`` result: minus the mean of its stress's diagonal."""
    from ase.units import GPa

    return -float(np.sum(np.asarray(result["stress"]).reshape(-1)[:3])) / 3 / GPa


def compression_curve(pot, atoms, scales, weights=False):
    """Energy per atom (eV) and pressure (GPa) of `atoms` scaled uniformly by each factor (start
    from ``equilibrium(pot, atoms)`` for a/a0); with weights=True also the gate weights at each (n x M)."""
    E, P, W = [], [], []
    for s in scales:
        at = atoms.copy()
        at.calc = None
        at.set_cell(atoms.cell * float(s), scale_atoms=True)
        out = _energy(pot, at)
        E.append(out["energy"] / len(at))
        P.append(pressure_gpa(out))
        if weights:
            W.append(np.atleast_1d(out["weights"]))
    return (np.array(E), np.array(P)) + ((np.array(W),) if weights else ())


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


def probe_indices(n_atoms, sources, n: int = 16):
    """Up to n structures with >= 2 atoms (give 0 for those to leave out) evenly spread over those
    that are not the off-data anchors' sources ((spread, ground) of dcace.anchors.anchor_sources):
    from numbers every MPI rank of a fit has (``anchors="auto"``, dcace.anchor_choice)."""
    spread, ground = sources
    used = set(spread) | {ground}
    rest = [i for i, k in enumerate(n_atoms) if i not in used and k >= 2]
    if not rest:
        return []
    return [rest[k] for k in np.linspace(0, len(rest) - 1, min(n, len(rest))).round().astype(int)]


def probe_frames(frames, n: int = 16):
    """n labelled training frames (ase.Atoms with energies; >= 2 atoms, periodic) evenly spread over
    those the off-data anchors are NOT made from (dcace.anchors.anchor_sources), so a probe on them
    is not a probe on the anchors' own sources."""
    from .anchors import anchor_sources

    E = [a.get_potential_energy() / len(a) for a in frames]
    sources = anchor_sources([len(a) for a in frames], E)
    return [frames[i] for i in probe_indices([len(a) if a.pbc.all() else 0 for a in frames], sources, n)]


def rattled(structures, sd: float, seed: int = 7):
    """Copies of `structures` with every position displaced by a Gaussian of `sd` A per component
    (deterministic in `seed`; labels dropped)."""
    rng = np.random.default_rng(seed)
    out = []
    for at in structures:
        c = at.copy()
        c.calc = None
        c.positions = at.positions + rng.normal(0.0, sd, size=at.positions.shape)
        out.append(c)
    return out


def max_force(pot, structures) -> float:
    """The largest force component (eV/A) of `pot` over `structures`."""
    return max(float(np.abs(_energy(pot, at)["forces"]).max()) for at in structures)
