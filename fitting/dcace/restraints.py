"""Repulsion restraints: isolated dimers below the data's shortest distances, fitted to repel.

The training data of a solid hold no isolated dimers, and no pair closer than r_min (each pair's
shortest distance in the data). Between the bottom of the core window (lo, where ZBL alone acts)
and r_min the fitted ACE part still acts, and on its own it may bend the dimer curve down (a Mo
fit without restraints falls from -3.3 eV at r_min = 1.88 A to -14.7 eV at 1.73 A). As
ACEpotentials does, the fit therefore gets a few extra rows: for every element pair, the forces of
an isolated dimer at RESTRAINT_POINTS distances from lo to r_min are fitted to the forces of the
ZBL repulsion, with weight `weight` times the force weight. Only forces enter (no energy row), so
the restraint sets the slope of the dimer curve, not its level, and it never enters a
cross-validation fold (every fold's training system and the final fit include it; no held-out
error counts it). docs/short-range.md gives the measured effect on the dimers and on accuracy.

The rows come from the C++ core like any structure's (ACEBasis.fitting_rows on the dimer; the
targets are the core's own ZBL force minus the built-in baseline's): no formula is repeated here.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from dataclasses import dataclass


__all__ = ["RESTRAINT_POINTS", "restraint_dimers", "restraint_batch", "RestraintSums", "RestraintRows", "pure_zbl"]

RESTRAINT_POINTS = 13   # dimers per element pair, evenly spaced from lo to r_min


def _dimer(a: str, b: str, r: float, box: float) -> Atoms:
    return Atoms([a, b], positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]], cell=[box, box, box], pbc=False)


def restraint_dimers(elements, shortest, lo, cutoff: float):
    """[(label, Atoms)] of the restraint dimers: every pair (a <= b) whose shortest training distance
    is known, at RESTRAINT_POINTS distances from the bottom of its window lo to r_min."""
    out = []
    S = len(elements)
    for a in range(S):
        for b in range(a, S):
            r_min = shortest[a, b]
            if not np.isfinite(r_min) or not lo[a, b] < r_min:
                continue
            for r in np.linspace(lo[a, b], r_min, RESTRAINT_POINTS):
                out.append((f"{elements[a]}-{elements[b]} {r:.3f} A", _dimer(elements[a], elements[b], float(r),
                                                                          3.0 * cutoff)))
    return out


def pure_zbl(elements, cutoff, inner_cutoff, w_L):
    """A potential that is the ZBL pair energy alone for every r below 0.8 cutoff (window at the top)."""
    from .basis import ACEBasis
    from .potential import Potential

    S = len(elements)
    window = (np.full((S, S), 0.8 * cutoff), np.full((S, S), 0.9 * cutoff))
    b = ACEBasis(elements, cutoff, 2, 1, inner_cutoff=inner_cutoff, w_L=w_L, core_window=window)
    return Potential.from_parts(b, np.zeros((1, S, b.n_features)), np.zeros((1, S)), None, {})


def restraint_batch(basis, base_pot, dimers, force_weight: float, weight: float) -> "RestraintSums":
    """The restraint rows' normal equations, summed over the dimers: force rows only, (H, h, yy) on the
    linear model's D' = S K + S unknowns (the one-body columns get nothing).  Summed as they are
    made, so that memory is one D' x D' matrix whatever the number of dimers (issue 15: one stacked
    D x D matrix per dimer took 6 GB at K = 1,068 on three elements)."""
    zbl = pure_zbl(basis.elements, basis.cutoff, basis.inner_cutoff, basis.w_L)
    w2 = (force_weight * weight) ** 2
    D = basis.n_species * basis.n_features
    H = np.zeros((D + basis.n_species, D + basis.n_species))
    h = np.zeros(D + basis.n_species)
    yy = 0.0
    for _, at in dimers:
        rows = basis.fitting_rows(at)
        target = zbl.compute(at)["forces"] - base_pot.compute(at)["forces"]   # what ACE must add
        Phi, f = rows.forces, target.ravel()
        H[:D, :D] += w2 * (Phi.T @ Phi)
        h[:D] += w2 * (Phi.T @ f)
        yy += w2 * float(f @ f)
    return RestraintSums(H, h, yy, len(dimers))


@dataclass
class RestraintSums:
    """Normal equations (H, h, yy) of the n restraint dimers on the linear model's unknowns."""

    H: np.ndarray
    h: np.ndarray
    yy: float
    n: int


class RestraintRows:
    """The restraint's normal equations for the linear model (one set, added to every training system
    by selection.Selector). Every expert gets the whole set, whatever the gate: an isolated dimer is
    gated to one expert, but in MD a close pair sits inside a crystal or a liquid whose gate picks
    another one, so each expert on its own must repel below the data (independent experts get it
    through their groups, a joint committee as M copies on its diagonal blocks)."""

    def __init__(self, sums: RestraintSums, D: int, S: int, n_groups: int):
        self.sums = sums
        self.D, self.S = D, S

    def group(self, g):
        """(H, h) added to group g's system: the whole set, for every group (one shared copy)."""
        return self.sums.H, self.sums.h

    def add_committee(self, H, h, M: int):
        """H, h += the M-expert joint committee's restraint set (on each expert's diagonal block), in
        place: no (M D')^2 copy."""
        Dp = self.sums.H.shape[0]
        for m in range(M):
            H[m * Dp:(m + 1) * Dp, m * Dp:(m + 1) * Dp] += self.sums.H
            h[m * Dp:(m + 1) * Dp] += self.sums.h

    def committee(self, M: int):
        """(H, h) of an M-expert joint committee: the linear set on each expert's diagonal block."""
        H1, h1 = self.group(0)
        return np.kron(np.eye(M), H1), np.tile(h1, M)
