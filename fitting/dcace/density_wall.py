"""The density wall of the short-range core (format version 8): the level and slope it hands over to.

The density core (cpp/include/dcace/baseline.hpp) hands an atom denser than any training atom from its
ACE energy eps_i to a replacement R_i over the window rho_lo .. rho_hi of its species. Up to format
version 7, R_i = kappa_i, the ZBL energy of the atom's pairs. The ACE energy has no absolute level (the
one-body terms and the constant parts of the features trade off in the fit), and where kappa_i lies below
eps_i the blend f eps + (1 - f) kappa goes *downhill* through the window: a plateau, not a wall. Measured
on the TiAl example potentials: L1_0 TiAl compressed rises to -838.5 eV/atom at 0.85 a0 and falls to
-840.8 at 0.82 (docs/short-range.md, "The density wall").

With the wall, R_i = kappa_i + L_s + B_s x_i, x_i = (rho_i - rho_lo) / (rho_hi - rho_lo). This module
chooses L_s and B_s after the fit, from the fitted potential itself (as baseline.core_shifts chooses the
pair core's level shifts): crystals of every element (bcc, fcc) and of every unlike pair (B2, L1_0) are
compressed uniformly through the window, D_i = eps_i - kappa_i is measured on each atom inside it (from
two evaluations through the C++ core: the core off, and the core fully on without a wall), and

    L_s = max(0, max D_i + LEVEL_MARGIN) (over the atoms of species s in the window),   B_s = SLOPE

so that R_i >= eps_i along these compressions (never below kappa_i: where ZBL already lies above ACE,
as for the small Zuo Mo fit of the tests, the version-7 replacement is kept and only the slope is
added): the hand-over goes uphill, and beyond the window the energy rises with rho_i and with ZBL
whatever ACE does there. The compressions are then checked (energy per atom rising from the window's
entry to beyond its exit); where one still falls, the margin and the slope are doubled (up to
WALL_TRIES times) and the smallest wall that does about as well as any is kept, with a note. A fall
that remains is one at the window's entry where ACE itself falls: the switch starts flat (C2), so
there the energy follows ACE's slope whatever replaces it. Everything acts only above the densest
training atom: the fit on the data is unchanged.
"""
from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii

__all__ = ["LEVEL_MARGIN", "SLOPE", "wall_crystals", "density_wall"]

LEVEL_MARGIN = 0.5   # eV above the largest eps - kappa met in the window
SLOPE = 2.0          # eV of rise of the replacement across the window (x = 0 -> 1)
BEYOND = 0.5         # the compressions are sampled until the least dense atom is at x = 1 + BEYOND
SAMPLES = 48         # scales per crystal, from just before the window's entry to beyond its exit
WALL_TRIES = 5       # margin and slope doubled at most this many times


def wall_crystals(elements):
    """[(label, Atoms)]: bcc and fcc of every element and B2 and L1_0 (cubic, c = a) of every unlike
    pair, near-neighbour distance the sum of covalent radii (their volume does not matter: each is
    compressed until it reaches the density window)."""
    def d(a, b):
        return covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]]
    out = []
    for el in elements:
        out.append((f"bcc {el}", bulk(el, "bcc", a=2 * d(el, el) / np.sqrt(3), cubic=True)))
        out.append((f"fcc {el}", bulk(el, "fcc", a=np.sqrt(2) * d(el, el), cubic=True)))
    for i, a in enumerate(elements):
        for b in elements[i + 1:]:
            ab = d(a, b)
            out.append((f"B2 {a}{b}", bulk(a + b, "cesiumchloride", a=2 * ab / np.sqrt(3))))
            l10 = bulk(a, "fcc", a=np.sqrt(2) * ab, cubic=True)
            # ase's cubic fcc holds (0,0,0), (0,.5,.5), (.5,0,.5), (.5,.5,0): layers z = 0 (a) and 1/2 (b)
            l10.set_chemical_symbols([a, b, b, a])
            out.append((f"L1_0 {a}{b}", l10))
    return out


def _scaled(atoms, s):
    at = atoms.copy()
    at.set_cell(atoms.cell * float(s), scale_atoms=True)
    return at


def _window_x(pot, sr, atoms):
    """(species, x) of every atom: x = (rho - rho_lo) / (rho_hi - rho_lo) of its species."""
    from . import _core

    species, first, _, rij = pot.basis.neighbours(atoms)
    rho = _core.core_density(first, rij, sr["density_cutoff"])
    lo, hi = np.asarray(sr["rho_lo"])[species], np.asarray(sr["rho_hi"])[species]
    return np.asarray(species), (rho - lo) / (hi - lo)


def _scale_where(pot, sr, atoms, pick, target):
    """The scale at which pick(x) (max or min over the atoms) reaches target, by bisection."""
    lo, hi = 0.15, 3.0          # pick(x) falls as the scale grows
    for _ in range(40):
        s = 0.5 * (lo + hi)
        if pick(_window_x(pot, sr, _scaled(atoms, s))[1]) > target:
            lo = s
        else:
            hi = s
    return 0.5 * (lo + hi)


def _samples(pot, sr, atoms):
    """Scales from just before the window's entry (densest atom at x = 0) to where the least dense atom
    is at x = 1 + BEYOND, descending."""
    s_in = _scale_where(pot, sr, atoms, np.max, 0.0)
    s_out = _scale_where(pot, sr, atoms, np.min, 1.0 + BEYOND)
    return np.linspace(s_in * 1.01, s_out, SAMPLES)


def _largest_fall(E):
    d = np.diff(E)
    return float(-d.min()) if len(d) and d.min() < 0 else 0.0


def density_wall(make_potential, short_range, elements):
    """(wall, notes): wall = [[L_s, B_s], ...] per species (the short_range key "density_wall") for
    the fitted potential make_potential(short_range) (module docstring), notes for the fit report.
    short_range needs a density core (density_cutoff, rho_lo, rho_hi)."""
    S = len(elements)
    sr = dict(short_range, density_wall=None)
    ace = make_potential(dict(sr, density_cutoff=None))
    kappa = make_potential(dict(sr, rho_lo=[1e-12] * S, rho_hi=[2e-12] * S))   # f = 0 for every atom
    crystals = []
    D = [[] for _ in range(S)]
    for label, atoms in wall_crystals(elements):
        scales = _samples(ace, sr, atoms)
        entered = [s for s in scales if _window_x(ace, sr, _scaled(atoms, s))[1].max() >= 0]
        crystals.append((label, atoms, entered))   # checked from the window's entry on (before it: ACE alone)
        for s in entered:
            at = _scaled(atoms, s)
            sp, x = _window_x(ace, sr, at)
            d = ace.compute(at)["energies"] - kappa.compute(at)["energies"]
            inside = (x >= 0) & (x <= 1)
            for k in np.flatnonzero(inside):
                D[sp[k]].append(d[k])
    top = np.array([max(v) if v else 0.0 for v in D])
    tries = []
    for t in range(WALL_TRIES + 1):   # margin and slope doubled while that helps
        margin, slope = LEVEL_MARGIN * 2 ** t, SLOPE * 2 ** t
        wall = [[float(max(0.0, top[s] + margin)), float(slope)] for s in range(S)]
        pot = make_potential(dict(sr, density_wall=wall))
        falls = {}
        for label, atoms, scales in crystals:
            E = [pot.compute(_scaled(atoms, s))["energy"] / len(atoms) for s in scales]
            if _largest_fall(E) > 0:
                falls[label] = _largest_fall(E)
        tries.append((wall, falls))
        if not falls:
            return wall, []
    worst = [max(f.values()) for _, f in tries]
    # the smallest wall that does about as well as any: where ACE itself falls at the window's entry
    # (the switch starts flat there) no wall removes the fall, and a stiffer one only costs
    wall, falls = next(t for t, w in zip(tries, worst) if w <= 1.1 * min(worst) + 1e-3)
    return wall, [f"density wall: {label} falls by {v:.3g} eV/atom inside the density window, where the "
                  f"ACE part falls at its entry (levels {', '.join(f'{w[0]:.4g}' for w in wall)} eV, slope "
                  f"{wall[0][1]:.4g} eV)" for label, v in falls.items()]
