"""The short-range core of a dcace potential: where the ZBL baseline hands over to ACE.

A potential fitted with the baseline (the default) is E = E_ZBL + sum_m w_m E_m (paper eq. 10). For
each element pair (a, b) a window [lo, hi] is chosen from the training data: below lo only the
ZBL screened-nuclear repulsion acts (the ACE radial functions are multiplied by a C^2 switch that is
0 there), above hi only ACE, and in between the two cross over smoothly (formulas in
``cpp/include/dcace/baseline.hpp``). The experts are fitted on the residual (DFT minus ZBL), so
the ACE part only ever describes distances that the data cover, and cannot dig a hole below them.

Default window (chosen by measurement, docs/short-range.md): hi = r_min - HI_BELOW and
lo = max(r_min - LO_BELOW, inner cutoff) with r_min the shortest distance of that pair in the
training data, so that no training pair (and no pair slightly closer, as test data have) is touched. A pair absent from the data gets r_min = the covalent-radius estimate
COVALENT_FACTOR * (r_cov,a + r_cov,b), with a note.

Unlike pairs: multi-element data often hold unlike pairs only near equilibrium (binary solid
solutions: Nb-Ta from 2.85 A) while a ternary crystal has them closer (2.81 A in bcc Nb-Mo-Ta), so
the window from the unlike data alone can put ZBL and a level shift onto a crystal's neighbours
(85 eV/A on the perfect lattice). UNLIKE_PAIRS = "mean" lowers every unlike window to at most the
mean of the like pairs' windows, lo_ab = min(lo, (lo_aa + lo_bb) / 2), hi_ab = min(hi, (hi_aa +
hi_bb) / 2), when both like pairs are in the data (never touching a training pair). It is not the
default ("data"): core_shifts then raises most lowered tops back towards the data, because the
fitted unlike dimer falls below the data, and takes minutes doing so (docs/many-elements-summary.md,
"Unlike-pair core windows").

All evaluation is in the C++ core; this module only chooses numbers and subtracts the baseline's
energies, forces and stresses from the training labels (through the core).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
from ase.data import atomic_numbers, covalent_radii

from .neighbours import neighbour_list

__all__ = ["CoreSettings", "ExternalBaseline", "neighbour_extremes", "shortest_distances", "core_window", "parse_core_range", "density_core",
           "residual_dataset", "core_shifts", "user_window_free"]

HI_BELOW = 0.05        # A below the shortest distance in the data: ACE fully on above (every training pair is pure ACE)
LO_BELOW = 0.3         # A below it: ACE fully off, ZBL alone
COVALENT_FACTOR = 0.8  # shortest distance of a pair the data lack, relative to r_cov,a + r_cov,b
DENSITY_WIDTH = 0.3    # the density core switches ACE off between rho_max and (1 + this) rho_max
SHIFT_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)   # level shifts tried, x (fitted dimer energy at hi)
SHIFT_GRID = 500       # dimer distances per pair (r_min down to lo) at which the curve is checked
HI_STEP = 0.005        # A: steps in which a window top may be raised towards the data (core_shifts)
HI_MIN_GAP = 0.005     # A: a raised window top stays at least this far below the data's shortest distance
UNLIKE_PAIRS = "data"  # unlike-pair windows: "data" (default) or "mean" (at most the mean of the like pairs' windows)


@dataclasses.dataclass
class CoreSettings:
    """What the user asked for: a baseline and an optional window (None = from the data).

    baseline: "zbl" (the built-in short-range core), None, an ASE calculator, or LAMMPS
    ``pair_style`` / ``pair_coeff`` lines (a list of strings, or one string with ';' between lines).
    An external baseline replaces the built-in core: the experts are fitted on DFT minus it and the
    written potential holds the experts only (combine them with ASE's SumCalculator or LAMMPS's
    pair_style hybrid/overlay; docs/short-range.md, "Delta-learning on your own baseline").
    """
    baseline: object = "zbl"
    core_range: object = None             # None, (lo, hi) for every pair, or {"Ti-Al": (lo, hi), ...}
    external: "ExternalBaseline | None" = None

    def __post_init__(self):
        if isinstance(self.baseline, str) and self.baseline.strip().lower() in ("none", ""):
            self.baseline = None
        if self.baseline is False:
            self.baseline = None
        if self.baseline in (None, "zbl"):
            return
        if isinstance(self.baseline, str) and "pair_style" not in self.baseline:
            raise ValueError(f"baseline must be 'zbl', None, an ASE calculator or LAMMPS pair_style/pair_coeff "
                             f"lines, got {self.baseline!r}")
        self.external = ExternalBaseline(self.baseline)
        self.baseline = "external"
        if self.core_range is not None:
            raise ValueError("core_range applies to the built-in ZBL core, not to an external baseline")


class ExternalBaseline:
    """A baseline the user brings: an ASE calculator, or LAMMPS pair style lines evaluated through the
    `lammps` module (ASE's LAMMPSlib, the same LAMMPS that runs pair_style dcace)."""

    def __init__(self, spec):
        self.lines = None
        if hasattr(spec, "get_potential_energy") or hasattr(spec, "calculate"):
            self.calc = spec
            return
        lines = spec.split(";") if isinstance(spec, str) else list(spec)
        self.lines = [str(l).strip() for l in lines if str(l).strip()]
        if not self.lines or not self.lines[0].startswith("pair_style"):
            raise ValueError(f"baseline: LAMMPS lines must start with 'pair_style', got {self.lines!r}")
        self.calc = None   # built for the elements on first use

    def _lammps(self, elements):
        from ase.calculators.lammpslib import LAMMPSlib

        from .lammps_support import preload_mpi

        preload_mpi()
        return LAMMPSlib(lmpcmds=self.lines, atom_types={el: k + 1 for k, el in enumerate(elements)},
                         keep_alive=True)

    def labels(self, atoms, elements):
        """(energy, forces, stress or None) of the baseline for one structure."""
        at = atoms.copy()
        if self.calc is None:
            self.calc = self._lammps(elements)
        at.calc = self.calc
        try:
            E = at.get_potential_energy()
            F = at.get_forces()
            S = at.get_stress() if at.pbc.all() else None
        except Exception as exc:   # LAMMPS errors arrive as plain Exceptions
            what = f"LAMMPS lines {self.lines!r}" if self.lines else f"calculator {type(self.calc).__name__}"
            raise ValueError(f"baseline ({what}) failed: {str(exc).strip().splitlines()[0]}") from None
        return float(E), np.asarray(F, dtype=float), None if S is None else np.asarray(S, dtype=float)

    def describe(self) -> dict:
        """What the potential's metadata records, so that its user can rebuild the baseline."""
        if self.lines:
            return {"kind": "lammps", "lines": self.lines,
                    "deck": "pair_style hybrid/overlay " + self.lines[0].split(None, 1)[1] + " dcace"}
        params = {}
        try:
            params = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                      for k, v in dict(getattr(self.calc, "parameters", {}) or {}).items()}
        except (TypeError, ValueError):
            pass
        return {"kind": "ase", "calculator": f"{type(self.calc).__module__}.{type(self.calc).__name__}",
                "parameters": params}


def neighbour_extremes(frames, elements, cutoff: float):
    """One pass over `frames`: the (S, S) shortest distance of every element pair within `cutoff`
    (inf if none) and the (S,) largest core density rho_i of an atom of each species (0 if none)."""
    from . import _core

    index = {el: s for s, el in enumerate(elements)}
    S = len(elements)
    best = np.full((S, S), np.inf)
    rho_max = np.zeros(S)
    for fr in frames:
        atoms = fr.atoms if hasattr(fr, "atoms") else fr
        sp = np.array([index[s] for s in atoms.get_chemical_symbols()])
        nl = neighbour_list(atoms, cutoff)
        np.maximum.at(rho_max, sp, _core.core_density(nl.first, nl.rij, cutoff))
        if nl.n_pairs == 0:
            continue
        d = np.linalg.norm(nl.rij, axis=1)
        np.minimum.at(best, (sp[nl.centres()], sp[nl.j]), d)
    return np.minimum(best, best.T), rho_max


def shortest_distances(frames, elements, search: float) -> np.ndarray:
    """(S, S) shortest distance of every element pair within `search` A over `frames` (inf if none)."""
    return neighbour_extremes(frames, elements, search)[0]


def _pair_key(text, elements):
    parts = text.split("-")
    if len(parts) != 2 or any(p not in elements for p in parts):
        raise ValueError(f"core_range: {text!r} is not an element pair of {elements} (write e.g. "
                         f"'{elements[0]}-{elements[-1]}')")
    return elements.index(parts[0]), elements.index(parts[1])


def parse_core_range(text: str):
    """CLI syntax: 'LO:HI' for every pair, or 'Ti-Al=LO:HI,Al-Al=LO:HI' per pair."""
    def window(s, what):
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*:\s*([0-9.eE+-]+)\s*", s)
        if not m:
            raise ValueError(f"--core-range: {what!r} must be LO:HI in A, e.g. 1.2:2.0")
        return float(m.group(1)), float(m.group(2))
    if "=" not in text:
        return window(text, text)
    out = {}
    for item in text.split(","):
        key, _, val = item.partition("=")
        out[key.strip()] = window(val, item)
    return out


def user_window_free(core_range, elements) -> np.ndarray:
    """(S, S) bool: the pairs whose core window the user did not place (--core-range), whose top the
    fit may raise towards the data (core_shifts)."""
    S = len(elements)
    if core_range is None:
        return np.ones((S, S), bool)
    free = np.zeros((S, S), bool)
    if isinstance(core_range, dict):
        free[:] = True
        for key in core_range:
            a, b = _pair_key(key, elements)
            free[a, b] = free[b, a] = False
    return free


def core_window(elements, shortest: np.ndarray, cutoff: float, inner_cutoff: float, core_range=None,
                unlike_pairs=None):
    """(lo, hi) arrays (S, S) of the core window and notes on how each pair got its window;
    unlike_pairs: the unlike-pair rule, "mean" or "data" (default UNLIKE_PAIRS, module docstring)."""
    S = len(elements)
    lo = np.zeros((S, S))
    hi = np.zeros((S, S))
    notes = []
    user = {}
    if isinstance(core_range, dict):
        for key, w in core_range.items():
            a, b = _pair_key(key, elements)
            user[(a, b)] = user[(b, a)] = tuple(float(x) for x in w)
    elif core_range is not None:
        w = tuple(float(x) for x in core_range)
        if len(w) != 2:
            raise ValueError(f"core_range must be (lo, hi), got {core_range!r}")
        user = {(a, b): w for a in range(S) for b in range(S)}
    for a in range(S):
        for b in range(a, S):
            pair = f"{elements[a]}-{elements[b]}"
            if (a, b) in user:
                l, h = user[(a, b)]
                if not (inner_cutoff <= l < h < cutoff):
                    raise ValueError(f"core_range for {pair}: need inner cutoff {inner_cutoff:g} <= lo < hi < "
                                     f"cutoff {cutoff:g}, got {l:g}:{h:g} (option --core-range / core_range=)")
            else:
                r = shortest[a, b]
                if not np.isfinite(r):
                    r = COVALENT_FACTOR * (covalent_radii[atomic_numbers[elements[a]]]
                                           + covalent_radii[atomic_numbers[elements[b]]])
                    notes.append(f"no {pair} pair closer than the cutoff in the training data: core window "
                                 f"placed at the covalent-radius estimate {r:.3f} A")
                h = min(r - HI_BELOW, 0.9 * cutoff)
                l = max(min(r - LO_BELOW, h - 0.1), inner_cutoff)
                if not l < h:
                    raise ValueError(f"cannot place the core window of {pair} (shortest distance {r:.3f} A) "
                                     f"above the inner cutoff {inner_cutoff:g}: lower --inner-cutoff or give "
                                     f"--core-range")
            lo[a, b] = lo[b, a] = l
            hi[a, b] = hi[b, a] = h
    rule = UNLIKE_PAIRS if unlike_pairs is None else unlike_pairs
    if rule not in ("mean", "data"):
        raise ValueError(f"unlike_pairs must be 'mean' or 'data', got {rule!r}")
    if rule == "mean":
        notes += _unlike_means(elements, shortest, lo, hi, user)
    return lo, hi, notes


def _unlike_means(elements, shortest, lo, hi, user):
    """Lower (in place) every unlike window the user did not place to the mean of its like pairs'
    windows, where both like pairs are in the data and the mean is lower; notes saying which."""
    notes = []
    S = len(elements)
    for a in range(S):
        for b in range(a + 1, S):
            if (a, b) in user or not (np.isfinite(shortest[a, a]) and np.isfinite(shortest[b, b])):
                continue
            h = 0.5 * (hi[a, a] + hi[b, b])
            if h < hi[a, b]:
                l = min(lo[a, b], 0.5 * (lo[a, a] + lo[b, b]))
                notes.append(f"{elements[a]}-{elements[b]} core window {lo[a, b]:.3f}-{hi[a, b]:.3f} A lowered to "
                             f"{l:.3f}-{h:.3f} A, the mean of the {elements[a]}-{elements[a]} and "
                             f"{elements[b]}-{elements[b]} windows (the data's {elements[a]}-{elements[b]} pairs "
                             f"start at {shortest[a, b]:.3f} A; dcace.baseline.UNLIKE_PAIRS)")
                lo[a, b] = lo[b, a] = l
                hi[a, b] = hi[b, a] = h
    return notes


def density_core(rho_max, cutoff: float) -> dict:
    """The density core's settings from the densest training atom of each species (rho_max, from
    neighbour_extremes): r_rho = the cutoff, rho_lo = rho_max (so ACE stays fully on for all of the
    training data), rho_hi = (1 + DENSITY_WIDTH) rho_lo."""
    rho_max = np.asarray(rho_max, dtype=float)
    rho_lo = np.where(rho_max > 0, rho_max, 1e-3) * (1 + 1e-9)
    return {"density_cutoff": float(cutoff), "rho_lo": rho_lo.tolist(),
            "rho_hi": ((1 + DENSITY_WIDTH) * rho_lo).tolist()}


def residual_dataset(dataset, baseline, elements=None, errors=None):
    """A copy of `dataset` whose energies, forces and stresses have the baseline's subtracted.

    `baseline` is a dcace.Potential with zero ACE coefficients and the core on (its compute() is the
    built-in baseline alone, evaluated by the C++ core as in MD), or an ExternalBaseline.  Frames
    this process does not hold (``FrameStub``, an MPI fit) are left as they are.  With a list
    `errors`, a frame that fails is recorded there as (position, message naming the frame) and kept
    unchanged, instead of raising (an MPI fit reports it on every rank, ``Ranks.check``).
    """
    out = []
    for i, fr in enumerate(dataset.frames):
        if fr.atoms is None:
            out.append(fr)
            continue
        try:
            out.append(residual_frame(fr, baseline, elements))
        except ValueError as exc:
            if errors is None:
                raise ValueError(f"{fr.where}: {exc}") from None
            errors.append((i, f"{fr.where}: {exc}"))
            out.append(fr)
    return dataclasses.replace(dataset, frames=out)


def residual_frame(fr, baseline, elements=None):
    """One Frame with the baseline's energy, forces and stress subtracted (see residual_dataset)."""
    if isinstance(baseline, ExternalBaseline):
        E, F, S = baseline.labels(fr.atoms, elements)
    else:
        b = baseline.compute(fr.atoms)
        E, F, S = b["energy"], b["forces"], b["stress"]
    stress = None
    if fr.stress is not None:
        stress = fr.stress - S if S is not None else fr.stress
    return dataclasses.replace(fr, energy=fr.energy - E, forces=fr.forces - F, stress=stress)


def _largest_fall(E):
    """Largest drop of E along the grid (E ordered by decreasing r: it should only rise)."""
    d = np.diff(E)
    return float(-d.min()) if len(d) and d.min() < 0 else 0.0


def core_shifts(make_potential, zbl_potential, basis, shortest, movable=None):
    """Level shifts Delta_ab (S x S) of the pair core, the window tops hi (S x S) and notes.
    make_potential(shift, hi) is the fitted potential with the given shifts and window tops;
    zbl_potential is ZBL alone (dcace.restraints.pure_zbl); movable (S x S bool, default all) marks
    the pairs whose window top the fit may raise (not those the user placed with --core-range).

    For each pair the fitted dimer energy at the top of its window, E_hi, is compared with ZBL
    there: Delta = max(0, c E_hi - ZBL(hi)) for the smallest c in SHIFT_FACTORS with which the dimer
    rises monotonically from the data's shortest distance of the pair (``shortest``) down to lo
    (the ACE energy is switched off by a product of window factors, so it can drop faster than
    (1 - g) rises: c > 1 covers that). The switch starts flat at hi, so just below hi the dimer
    follows the fitted ACE slope: where that turns attractive between the data and hi, no shift
    can help, and the window top is raised in HI_STEP steps towards the data (never above
    shortest - HI_MIN_GAP) until the dimer rises. Delta and a raised hi act only below the
    shortest distance in the data: nothing changes on the training structures. If no choice
    rises, the one that falls least is kept and a note says by how much. All energies come
    from the C++ core."""
    lo, hi0 = basis.core_window
    S = len(basis.elements)
    movable = np.ones((S, S), bool) if movable is None else np.asarray(movable, bool)
    shift, hi = np.zeros((S, S)), hi0.copy()
    notes = []
    for x in range(S):
        for y in range(x, S):
            best = _pair_core(make_potential, zbl_potential, basis, shortest, shift, hi, x, y,
                              movable[x, y])
            shift[x, y] = shift[y, x] = best["shift"]
            hi[x, y] = hi[y, x] = best["hi"]
            a, b = basis.elements[x], basis.elements[y]
            if best["hi"] > hi0[x, y]:
                notes.append(f"{a}-{b} core window top raised from {hi0[x, y]:.3f} to {best['hi']:.3f} A (the "
                             f"fitted dimer turns attractive below {best['hi']:.3f} A; the data's shortest "
                             f"distance is {best['top']:.3f} A)")
            if best["fall"] > 0:
                notes.append(f"{a}-{b} dimer: falls by up to {best['fall']:.3g} eV between the data's shortest "
                             f"distance {best['top']:.3f} A and the bottom of the core window {lo[x, y]:.3f} A")
    return shift, hi, notes


def _pair_core(make_potential, zbl_potential, basis, shortest, shift, hi, x, y, movable):
    """The (shift, hi) of pair x, y that makes its dimer rise from the data down to lo (see core_shifts)."""
    from .probes import dimer_curve

    a, b = basis.elements[x], basis.elements[y]
    lo = basis.core_window[0][x, y]
    top = shortest[x, y] if np.isfinite(shortest[x, y]) and shortest[x, y] > hi[x, y] else hi[x, y]
    r = np.linspace(top, lo, SHIFT_GRID)
    tops = [hi[x, y]]
    if movable:
        tops += list(np.arange(hi[x, y] + HI_STEP, top - HI_MIN_GAP + 1e-12, HI_STEP))
    tried = []
    for h in tops:
        trial_hi = hi.copy()
        trial_hi[x, y] = trial_hi[y, x] = h
        unshifted = make_potential(shift, trial_hi)
        e_hi = dimer_curve(unshifted, a, b, [h])[0]
        zbl_hi = dimer_curve(zbl_potential, a, b, [h])[0]
        for c in SHIFT_FACTORS:
            trial = shift.copy()
            trial[x, y] = trial[y, x] = max(0.0, c * e_hi - zbl_hi)
            pot = make_potential(trial, trial_hi) if trial[x, y] else unshifted
            tried.append({"shift": trial[x, y], "hi": h, "top": top, "fall": _largest_fall(dimer_curve(pot, a, b, r))})
            if tried[-1]["fall"] == 0.0 or e_hi <= 0.0:   # rises, or no factor gives a shift
                break
        if tried[-1]["fall"] == 0.0:
            break
    least = min(t["fall"] for t in tried)
    return next(t for t in tried if t["fall"] <= least + 1e-9)   # the first (smallest move) that does as well as any
