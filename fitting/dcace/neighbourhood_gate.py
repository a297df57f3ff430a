"""The neighbourhood gate's fitting inputs: what the fit clusters and which columns its PCA sees.

The gate (cpp/src/neighbourhood_gate.cpp) weights atom i's experts by the atom gate's softmax on
P_s((p_i - mean_s) / scale_s), with p_i = (B_i + sum_j f(r_ij) B_j) / (1 + sum_j f(r_ij)) over the
same-species neighbours closer than r_g, f(r) = (1 + cos(pi r / r_g)) / 2.  The fit is the atom
gate's (``dcace.local_gate``: standardiser, PCA and seeded k-means per species, the joint ridge
fit under each candidate tau, tau and ridge by k-fold CV) on p_i instead of B_i; the core computes
p_i (``BasisCore.neighbourhood_descriptors``) and every fitting row.

The low-body-order variant (issue 11's best: the gate on the 2+3-body part of p_i) is the same gate
with the PCA computed on the columns of body order <= ``body_order`` only: the projection has zeros
in the other columns, so the evaluator and the file need nothing else (the file records the body
order for provenance).
"""
from __future__ import annotations

import numpy as np

__all__ = ["per_species_neighbourhood_descriptors", "feature_body_orders", "gate_columns", "gate_columns_check",
           "check_range"]


def check_range(gate_range, cutoff) -> float:
    """r_g (None: the cutoff), or a ValueError naming the option: 0 < r_g <= r_cut (the neighbour list
    the core gets is the basis's, so a neighbour beyond r_cut could not mix)."""
    r = float(cutoff) if gate_range is None else gate_range
    if isinstance(r, bool) or not isinstance(r, (int, float, np.floating, np.integer)) or not (0 < float(r) <= cutoff):
        raise ValueError(f"gate_range (--gate-range) must be a number in (0, r_cut = {cutoff:g}] A, got {gate_range!r}")
    return float(r)


def per_species_neighbourhood_descriptors(basis, frames, r_g):
    """p_i of every training atom, grouped by species: a list of S arrays (n_s, K)."""
    out = [[] for _ in range(basis.n_species)]
    for fr in frames:
        species, first, j, rij = basis.neighbours(fr.atoms)
        P = basis.core_.neighbourhood_descriptors(species, first, j, rij, r_g)
        for s in range(basis.n_species):
            out[s].append(P[species == s])
    return [np.concatenate(b) if b else np.zeros((0, basis.n_features)) for b in out]


def feature_body_orders(basis) -> np.ndarray:
    """(K,) the body order of every feature: 1 + the number of A factors of its monomials."""
    spec = basis.spec_
    mono = np.asarray(spec["mono_idx"])
    ptr, feat_mono = np.asarray(spec["feat_ptr"]), np.asarray(spec["feat_mono"])
    first = mono[feat_mono[ptr[:-1]]]   # a feature's monomials all have its order: the first says it
    return 1 + (first >= 0).sum(axis=1)


def gate_columns_check(body_order) -> int:
    """body_order as an int (None: 0, all columns), or a ValueError naming the option."""
    if body_order is None:
        return 0
    if isinstance(body_order, bool) or not isinstance(body_order, (int, np.integer)) or not (
            body_order == 0 or body_order >= 2):
        raise ValueError(f"gate_body_order (--gate-body-order) must be an integer >= 2 (or 0: all columns), "
                         f"got {body_order!r}")
    return int(body_order)


def gate_columns(basis, body_order) -> np.ndarray | None:
    """The columns the gate's PCA uses (a boolean mask of K), or None for all (body_order 0 or None,
    or every feature within it)."""
    if gate_columns_check(body_order) == 0:
        return None
    mask = feature_body_orders(basis) <= body_order
    return None if mask.all() else mask
