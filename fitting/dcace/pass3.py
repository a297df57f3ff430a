"""Pass 3 of a fit (the training errors of the final and the linear potential) and the extrapolation
grade, computed per structure by the rank that holds it (``dcace.parallel``).

Why this module exists: with MPI every rank keeps only its own blocks' frames (``read_data(keep=)``),
so the per-structure work after the solve must run where the frames are.  Rank 0 sends the two
potentials (their exact ``%.17g`` text); every rank evaluates its structures; rank 0 adds the small
per-structure contributions (``ErrorStats.terms``) in structure order, so the sums are those of one
process to the last bit; a rank sends them in rounds as it goes (it holds one round's).  The grade (``dcace.grade.fit_grade``) follows the same rule.
"""
from __future__ import annotations

import numpy as np

from .data import DataError
from .grade import fit_grade
from .report import ErrorStats
from .restream import atoms_of, own_frames

__all__ = ["training_errors", "training_grade", "send_potentials", "receive_potentials"]


#: structures whose error terms a rank sends rank 0 at a time in pass 3 (its memory: one round's terms)
TERMS_PER_ROUND = 256


def send_potentials(ranks, pot, lin_pot, M_sel):
    """Rank 0: the potentials of pass 3 to every rank (the others wait in receive_potentials)."""
    ranks.from_root(("pass3", pot.to_string(), lin_pot.to_string(), M_sel))


def receive_potentials(ranks):
    """Ranks other than 0: (pot, lin_pot, M_sel) from rank 0, or rank 0's error raised here."""
    from . import _core
    from .potential import Potential

    _, pot_text, lin_text, M_sel = ranks.from_root(None)
    parse = lambda text: Potential(_core.PotentialCore.parse(text, "<potential from rank 0>"))  # noqa: E731
    return parse(pot_text), parse(lin_text), M_sel


def training_errors(ranks, frames, mine, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays, threads, progress):
    """Errors of lin_pot (and pot, for M_sel > 1) on this rank's structures `mine` (positions in frames,
    0..n-1 of the training set).  Collective; on rank 0 returns (stats {name: ErrorStats}, gate
    weights (n, M), nearest-cluster distances (n,)), elsewhere None."""
    from .cost import progress as progress_bar
    from .pipeline import _threaded_map

    names = ("linear", "dc") if M_sel > 1 else ("linear",)
    stats = {name: ErrorStats(keep_arrays) for name in names}

    def work(fr):
        try:
            return [lin_pot.compute(fr.atoms)] + ([pot.compute(fr.atoms)] if M_sel > 1 else [])
        except ValueError as exc:
            return exc

    local, errors, gathered = [], [], []
    rounds = ranks.rounds(len(mine), TERMS_PER_ROUND)
    it = _threaded_map(work, own_frames(frames, mine), threads)
    for j, (i, (fr, res)) in enumerate(zip(mine, progress_bar(it, len(mine), "pass 3/3 training errors", progress))):
        if j and j % TERMS_PER_ROUND == 0:   # to rank 0 as the pass goes: a rank holds one round's terms
            gathered += ranks.gather_indexed(local)
            local, rounds = [], rounds - 1
        if isinstance(res, Exception):
            errors.append((i, str(DataError(f"{fr.where}: {res}"))))
            continue
        e_off = float(counts[i] @ e_ref)   # plots: energies relative to the per-species references
        terms = [stats[name].terms(fr.n_atoms, fr.energy, out["energy"], fr.forces, out["forces"], fr.stress,
                                   out["stress"] if fr.stress is not None else None, e_offset=e_off)
                 for name, out in zip(names, res)]
        w = res[-1]["weights"]   # (M,), or (N, M) for a local gate: its structure's mean
        local.append((i, terms, w if w.ndim == 1 else w.mean(axis=0), res[-1]["nearest"]))
    for _ in range(rounds):   # the last round, and those of ranks with more structures
        gathered += ranks.gather_indexed(local)
        local = []
    ranks.check(errors)
    gathered.sort(key=lambda x: x[0])   # structure order, whichever round brought each
    if not ranks.is_root:
        return None
    weights = np.zeros((n, M_sel))
    nearest = np.zeros(n)
    for i, terms, w, near in gathered:   # structure order: the sums of one process
        for name, t in zip(names, terms):
            stats[name].add_terms(t)
        weights[i] = w
        nearest[i] = near
    return stats, weights, nearest


def training_grade(ranks, basis, frames, mine, counts, seed, max_atoms=None):
    """fit_grade on this rank's structures `mine` (positions in frames); the result on rank 0."""
    return fit_grade(basis, atoms_of(frames, mine), seed=seed, ranks=ranks, positions=mine, counts=counts,
                     max_atoms=max_atoms)
