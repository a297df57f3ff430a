"""The per-atom extrapolation grade: a MaxVol (D-optimality) active set per centre species.

For centre species s with training descriptors X_s (n_s atoms x K), MaxVol picks r = K atoms (the
active set, rows A of X_s) whose matrix has (locally) maximal |det A|; then every training atom's
descriptor is a combination B_i = c_i A with all |c_ik| <= 1 (+ tol).  The grade of any atom of
species s is

    gamma_i = max_k |(B_i G_s)_k|,   G_s = A^{-1}  (K x r),

dimensionless, 1 on the active set, <= 1 + tol (1e-6) on the training atoms, > 1 outside the convex-ish
hull the active set spans (ML-PACE's convention: gamma > 1 is extrapolation).  The C++ core
evaluates gamma (``dcace.Potential.compute()["extrapolation"]``, ``compute dcace/atom`` in
LAMMPS); this module only builds G_s from the training set.

Numerics: the columns of X_s are scaled to unit RMS first (gamma is invariant to column scaling:
(B D)(A D)^{-1} = B A^{-1}, and the scaled problem is better conditioned); the start is the set
chosen by QR with column pivoting of X_s^T; swaps use exact rank-1 updates of C = X_s A^{-1}, and C
is recomputed from scratch before convergence is accepted.  A rank-deficient X_s is first
projected onto its row space (r < K: the grade then ignores directions no training atom has);
fewer atoms than K give r = n_s with the same construction; a species with no training atoms
gets r = 0 (its atoms report gamma = inf).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["maxvol", "maxvol_grade", "fit_grade", "GRADE_DEFAULTS", "ROUNDOFF"]

#: training atoms count as "above 1" when gamma > 1 + ROUNDOFF (the active set is 1 to round-off)
ROUNDOFF = 1e-6

GRADE_DEFAULTS = {
    "tol": 1e-6,           # converged when max |C| <= 1 + tol (a few more swaps than 1e-3)
    "max_swaps": 4000,     # cap on MaxVol swaps per species
    "max_atoms": 50_000,   # larger species are subsampled (seeded) before MaxVol
    "rank_rtol": 1e-11,    # singular values below rtol * largest (scaled columns) are dropped
}


def maxvol(X, tol=1e-6, max_swaps=4000):
    """Rows I of the tall full-column-rank X (n x r) with locally maximal |det X[I]|.

    Returns (I, C, n_swaps, max|C|) with C = X X[I]^{-1} (max|C| <= 1 + tol unless the swap cap
    was reached)."""
    X = np.asarray(X, dtype=float)
    n, r = X.shape
    if n < r:
        raise ValueError(f"maxvol needs at least as many rows as columns, got {n} x {r}")
    _, _, piv = scipy.linalg.qr(X.T, mode="economic", pivoting=True)
    I = np.array(piv[:r])
    swaps = 0
    for _restart in range(5):
        C = np.linalg.solve(X[I].T, X.T).T       # C A = X
        while swaps < max_swaps:
            flat = np.argmax(np.abs(C))
            i, j = divmod(int(flat), r)
            if abs(C[i, j]) <= 1.0 + tol:
                break
            # replace active row j by row i: C' = C - C[:, j] (C[i] - e_j) / C[i, j]
            u = C[i].copy()
            u[j] -= 1.0
            C -= np.outer(C[:, j] / C[i, j], u)
            I[j] = i
            swaps += 1
        C = np.linalg.solve(X[I].T, X.T).T       # fresh, no accumulated round-off
        cmax = float(np.abs(C).max())
        if cmax <= 1.0 + tol or swaps >= max_swaps:
            break
    return I, C, swaps, cmax


def maxvol_grade(X, tol=None, max_swaps=None, rank_rtol=None):
    """G (K x r) of one species from its training descriptors X (n x K), and notes."""
    tol = GRADE_DEFAULTS["tol"] if tol is None else tol
    max_swaps = GRADE_DEFAULTS["max_swaps"] if max_swaps is None else max_swaps
    rank_rtol = GRADE_DEFAULTS["rank_rtol"] if rank_rtol is None else rank_rtol
    X = np.asarray(X, dtype=float)
    n, K = X.shape
    notes = []
    if n == 0:
        return np.zeros((K, 0)), ["no training atoms: every atom of this species has grade inf"], {}
    scale = np.sqrt(np.mean(X * X, axis=0))
    scale[scale == 0] = 1.0
    Xs = X / scale
    # row space: projection Q (K x r) when X is rank deficient or has fewer rows than columns
    sv = np.linalg.svd(Xs, compute_uv=False)
    r = int(np.sum(sv > rank_rtol * sv[0])) if sv.size and sv[0] > 0 else 0
    if r < K:
        _, _, Vt = np.linalg.svd(Xs, full_matrices=False)
        Q = Vt[:r].T                               # K x r, orthonormal
        notes.append(f"descriptors have rank {r} < K = {K} ({n} atoms): the grade uses their row space")
    else:
        Q = None
    Xr = Xs if Q is None else Xs @ Q
    I, C, swaps, cmax = maxvol(Xr, tol=tol, max_swaps=max_swaps)
    if cmax > 1.0 + tol:
        notes.append(f"MaxVol stopped at the swap cap ({max_swaps}) with max |c| = {cmax:.3g}")
    Ainv = np.linalg.inv(Xr[I])                    # r x r
    G = (Q @ Ainv) if Q is not None else Ainv      # K x r in scaled columns
    G = G / scale[:, None]                         # B G = (B / scale) G_scaled
    info = {"n_atoms": n, "rank": r, "swaps": swaps, "max_c": cmax, "active": I}
    return G, notes, info


def grade_values(X, G):
    """gamma = max_k |X G| for descriptors X (n x K) of one species (reference, the core does this)."""
    if G.shape[1] == 0:
        return np.full(len(X), np.inf)
    return np.abs(np.asarray(X) @ G).max(axis=1)


def fit_grade(basis, frames, seed=0, max_atoms=None, tol=None, ranks=None, positions=None, counts=None):
    """Per-species grade matrices from the training frames (ase.Atoms), notes and statistics.

    Memory is O(min(n_s, max_atoms) K) per species: the seeded subsample is drawn from the atom
    counts before any descriptor is kept, and when a species is subsampled its training atoms are
    graded in a second, streamed pass.  Returns (G_list, notes, stats) with stats["fraction_above_1"]
    the fraction of all training atoms with gamma > 1 + ROUNDOFF (the K active-set atoms have
    gamma = 1 exactly, up to round-off, so the strict count "> 1" would count about half of them).

    MPI (``ranks``, dcace.parallel): `frames` are this rank's structures, at `positions` of the
    training set, and `counts` (n, S) the atoms per species of every structure.  Each rank computes
    its structures' descriptors; rank 0 gathers the kept rows in structure order and runs MaxVol;
    each rank grades its own atoms of subsampled species.  The result is one process's, on rank 0
    (the other ranks return (None, [], None))."""
    from .parallel import Ranks

    ranks = ranks or Ranks(None)
    max_atoms = GRADE_DEFAULTS["max_atoms"] if max_atoms is None else int(max_atoms)
    S, K = basis.n_species, basis.n_features
    # frames may be parsed again on every iteration (dcace.restream): species are taken per pass, not kept
    positions = np.arange(len(frames)) if positions is None else np.asarray(positions, dtype=np.int64)
    if counts is None:
        counts = np.array([np.bincount(basis.species_of(a), minlength=S) for a in frames]).reshape(-1, S)
    counts = np.rint(np.asarray(counts)).astype(np.int64)
    n_s = counts.sum(axis=0)
    first = np.cumsum(counts, axis=0) - counts   # (n, S): index of each structure's first atom of species s
    rng = np.random.default_rng(seed)
    keep = []          # per species: sorted global indices kept, or None (all)
    for s in range(S):
        keep.append(np.sort(rng.choice(n_s[s], size=max_atoms, replace=False)) if n_s[s] > max_atoms else None)
    mine = []
    for pos, atoms in zip(positions.tolist(), frames):
        sp = basis.species_of(atoms)
        B = basis.descriptors(atoms)
        rows_s = []
        for s in range(S):
            rows = B[sp == s]
            if keep[s] is not None and len(rows):
                lo, hi = np.searchsorted(keep[s], [first[pos, s], first[pos, s] + len(rows)])
                rows = rows[keep[s][lo:hi] - first[pos, s]]
            rows_s.append(rows)
        mine.append((pos, rows_s))
    gathered = ranks.gather_indexed(mine)
    del mine
    G_list, notes, stats = None, [], None
    if ranks.is_root:
        Xs = [np.concatenate([r[s] for _, r in gathered]) if gathered else np.zeros((0, K)) for s in range(S)]
        del gathered
        G_list, notes, stats = _maxvol_per_species(basis, Xs, keep, n_s, max_atoms, tol)
    subsampled = [s for s in range(S) if keep[s] is not None]
    if subsampled:   # grades of all training atoms of the subsampled species (a second pass)
        G_list = ranks.from_root(G_list)   # the other ranks wait quietly for rank 0's MaxVol
        part = {s: (0, 0.0, False) for s in subsampled}
        for atoms in frames:
            sp, B = basis.species_of(atoms), None
            for s in subsampled:
                if np.any(sp == s):
                    B = basis.descriptors(atoms) if B is None else B
                    g = grade_values(B[sp == s], G_list[s])
                    above, gmax, any_ = part[s]
                    part[s] = (above + int(np.sum(g > 1.0 + ROUNDOFF)), max(gmax, float(g.max())), True)
        parts = ranks.gather_indexed([(ranks.rank, part)])
        if ranks.is_root:
            for s in subsampled:
                vals = [p[s] for _, p in parts if p[s][2]]
                above = sum(v[0] for v in vals)
                gm = max(v[1] for v in vals) if vals else None
                stats["species"][s].update(above_1=above, max_training_grade=gm)
    if not ranks.is_root:
        return None, [], None
    n_above = sum(sp["above_1"] for sp in stats["species"])
    gmax = max([sp["max_training_grade"] for sp in stats["species"] if sp["max_training_grade"] is not None],
               default=0.0)
    n_total = int(n_s.sum())
    stats["fraction_above_1"] = n_above / n_total if n_total else 0.0
    stats["max_training_grade"] = gmax
    return G_list, notes, stats


def _maxvol_per_species(basis, Xs, keep, n_s, max_atoms, tol):
    """MaxVol on each species' (kept) training descriptors; the grades of species kept whole."""
    G_list, notes, stats = [], [], {"species": []}
    for s, X in enumerate(Xs):
        el = basis.elements[s]
        if keep[s] is not None:
            notes.append(f"grade {el}: MaxVol on a seeded subsample of {max_atoms} of {n_s[s]} atoms")
        G, sn, info = maxvol_grade(X, tol=tol)
        notes += [f"grade {el}: {m}" for m in sn]
        G_list.append(np.ascontiguousarray(G))
        stats["species"].append({"element": el, "n_atoms": int(n_s[s]), "rank": int(G.shape[1]),
                                 "swaps": int(info.get("swaps", 0)),
                                 "active_rows": X[info["active"]] if "active" in info else X[:0]})
        if keep[s] is None:
            g = grade_values(X, G) if len(X) else np.zeros(0)
            stats["species"][s].update(above_1=int(np.sum(g > 1.0 + ROUNDOFF)),
                                       max_training_grade=float(g.max()) if len(g) else None)
    return G_list, notes, stats
