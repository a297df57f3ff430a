"""Compressed crystals as constraints on the linear model: P > 0 where ACE alone holds a crystal up.

Why this file exists. Issue 10's bar asks that bcc and fcc of every element, compressed from their
own a0, rise in energy with P > 0 below 0.95 a0. Where the data hold no such crystal, a fit may not:
the TiAl data (329 frames, no Al-rich cell) give a linear model whose fcc Al falls at 0.89 a0 by
34 meV/atom, at densities below the core's window (the data hold denser Al atoms), so neither the
short-range core nor the off-data anchors (which pull committees towards this very linear model)
reach it. The fit therefore checks its final linear model on these crystals (dcace.anchor_choice's
set: bcc and fcc of every element at the lowest-energy training structure's volume per atom, and
that structure) and, only if one fails (dcace.crystal_probe.crystal_verdict), solves the ridge
problem again with linear inequality constraints

    P_k(theta) = P_rest,k + g_k . theta >= P_FLOOR_GPA

at the compressions a/a0 = 0.99 ... of each failing crystal down to where its densest atom is WINDOW_X
into the density core's window (x = 0 at its entry, 1 where ACE is gone; beyond, the core and its wall
hold the crystal up, dcace.density_wall, but the C^2 hand-over starts flat and follows ACE's slope for a
short way, so ACE must not fall at the entry either). The pressure is linear in the ACE coefficients
before the window and nearly so (f = 1 - O(x^3)) at its start: g_k is the crystal's stress row from the C++ core
(ACEBasis.fitting_rows), P_rest,k what the rest of the potential (the baseline, the level-matched
pair core) gives, taken from the candidate potential itself. The constrained minimum is the exact
one (the KKT conditions, ridge.ridge_solve_constrained), so a fit whose crystals pass is unchanged to
the bit, and one whose crystals fail moves no more than the constraints need. a0 moves with the
solution, so the check and the constraints are repeated (at most ROUNDS times, constraints kept).
Committees are fitted after this, and their off-data anchors pull every expert towards the
constrained linear model.
"""
from __future__ import annotations

import numpy as np
from ase.units import GPa

from .crystal_probe import COMPRESSION, PRESSURE_BELOW, _scaled, crystal_verdict, own_a0

__all__ = ["P_FLOOR_GPA", "ROUNDS", "WINDOW_X", "SCALES", "CrystalConstraints"]

P_FLOOR_GPA = 0.5    # the smallest pressure asked for below a0 (a few meV/atom per 1 % of compression)
ROUNDS = 4           # checks and constrained solves at most (a0 moves with the solution)
WINDOW_X = 0.25      # constraints reach this far into the density core's window
# a/a0 of the constraints: 4x finer than the probe's grid (COMPRESSION), as P can dip below 0 between
# two of its points (the QUICK TiAl linear model's fcc Al, constrained on that grid: P >= 0.5 GPa at
# 0.87 and 0.86 a0, -9.7 GPa at 0.862, the energy falling by 8.6 meV/atom)
SCALES = np.round(np.arange(1.0 - 0.0025, COMPRESSION[-1] - 1e-9, -0.0025), 6)


def _pressure_gpa(pot, atoms):
    return -float(np.sum(pot.compute(atoms)["stress"][:3])) / 3 / GPa


class CrystalConstraints:
    """The crystal checks of one fit (built once from its data), applied to its final linear model.

    crystals: [(label, Atoms)] (dcace.anchor_choice._crystals); short_range: the fit's core dict or None
    (its density window bounds where constraints are placed)."""

    def __init__(self, basis, crystals, short_range):
        self.basis, self.crystals, self.short_range = basis, list(crystals), short_range

    def failures(self, pot) -> dict:
        """{label: what fails} of the crystals on potential pot."""
        out = {}
        for label, atoms in self.crystals:
            v = crystal_verdict(pot, atoms)
            if v["failure"]:
                out[label] = v["failure"]
        return out

    def _past_window_start(self, pot, atoms) -> bool:
        sr = self.short_range
        if not sr or sr.get("density_cutoff") is None:
            return False
        from .density_wall import _window_x
        return bool(_window_x(pot, sr, atoms)[1].max() > WINDOW_X)

    def rows(self, pot, theta, atoms):
        """(G, g, scales) of one crystal: a row g_k (D' = S K + S, the one-body columns 0) and the bound
        per compression a/a0 < 1 from its own a0 on pot, down to WINDOW_X into the density window."""
        D = self.basis.n_species * self.basis.n_features
        s0 = own_a0(pot, atoms)
        at0 = _scaled(atoms, 1.0 if s0 is None else s0)
        G, g, scales = [], [], []
        for s in SCALES:
            at = _scaled(at0, s)
            if self._past_window_start(pot, at):
                break
            r = self.basis.fitting_rows(at)
            row = np.zeros(theta.shape[0])
            row[:D] = -r.stress[:3].sum(axis=0) / 3 / GPa
            rest = _pressure_gpa(pot, at) - float(row @ theta)
            G.append(row)
            g.append(P_FLOOR_GPA - rest)
            scales.append(float(s))
        return G, g, scales

    def apply(self, theta, solve, make_potential):
        """(theta, record): theta (D',) unchanged and record None when every crystal passes on
        make_potential(theta); else the constrained solution solve(G, g) -> theta after at most ROUNDS
        rounds, and a record {"failing": {label: failure} before, "after": {...}, "constraints": n, "active": n,
        "rounds": r, "max_change": max |theta' - theta| / max |theta|}.  No wall time: the record goes into the
        potential file, whose bytes depend on the data and settings only."""
        pot = make_potential(theta)
        failing = self.failures(pot)
        if not failing:
            return theta, None
        record = {"failing": dict(failing), "rounds": 0}
        theta0, G, g = theta, [], []
        for r in range(ROUNDS):
            for label, atoms in self.crystals:
                if label in failing:
                    Gc, gc, _ = self.rows(pot, theta, atoms)
                    G += Gc
                    g += gc
            if not G:
                break
            theta, active = solve(np.array(G), np.array(g))
            pot = make_potential(theta)
            failing = self.failures(pot)
            record.update(rounds=r + 1, constraints=len(G), active=int(active))
            if not failing:
                break
        record["after"] = failing
        record["max_change"] = float(np.abs(theta - theta0).max() / max(np.abs(theta0).max(), 1e-300))
        return theta, record

    @staticmethod
    def note(record) -> str:
        """The fit report's line for a record of apply (not None)."""
        before = ", ".join(sorted(record["failing"]))
        if record["after"]:
            tail = "still failing: " + "; ".join(f"{k}: {v}" for k, v in sorted(record["after"].items()))
        else:
            tail = "all pass"
        return (f"crystal constraints: {before} failed the compression probe (P > 0 below {PRESSURE_BELOW:g} a0, "
                f"energy rising to 0.4 a0); linear model re-solved with P >= {P_FLOOR_GPA:g} GPa at "
                f"{record.get('constraints', 0)} compressions ({record.get('active', 0)} active, "
                f"{record['rounds']} round(s), largest coefficient change {record['max_change']:.3g} of the largest "
                f"coefficient): {tail}")
