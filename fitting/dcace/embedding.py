"""The species embedding W (C x S) of the tensor-reduced basis, chosen without nonlinear training.

Why this file exists: ``--chemical-channels C`` mixes the neighbour species into C chemical
channels, A_{k n l m} = sum_j W_{k z_j} R_n Y_lm, and issue 15 asks how to choose W without
training it.  Three linear constructions, selected by ``chemical_embedding``:

* ``"cosine"`` (default): fixed DCT-II rows over the elements ranked by atomic number
  (``basis_spec.fixed_embedding``); row 0 is all ones, SNAP's total density.
* ``"pca"``: the C leading eigenvectors of the second moment of the per-atom species-resolved
  radial densities A_{z n 0 0} of the training data (each radial channel n scaled to unit RMS):
  the C-channel compression that best reconstructs the data's neighbour densities.
* ``"fit"``: the C leading right singular vectors of the coefficients of a linear explicit 2-body
  fit (energies and forces of the training data, ridge): coefficient c_{s z n} of centre species s
  on neighbour species z through radial channel n, rows (s, n) scaled by the RMS of A_{. n}; the
  channels that the pair-level chemistry of the data actually uses.

The densities come from the C++ core (a body-order-2 ``ACEBasis``); only the linear algebra is
here.  Rows are scaled to norm sqrt(S) (the cosine row of ones has it) with a positive sum.
The chosen W is stored in the potential file (record ``chemical_channels``, format v5).
"""
from __future__ import annotations

import numpy as np

__all__ = ["EMBEDDINGS", "check_embedding", "choose_embedding"]

EMBEDDINGS = ("cosine", "pca", "fit")
_SAMPLE = 400          # structures used for the data-driven embeddings (evenly spaced)
_FIT_RIDGE = 1e-8      # relative ridge of the 2-body fit (on unit-diagonal normal equations)


def check_embedding(kind, C, n_species):
    """The embedding option validated: one of EMBEDDINGS, or an explicit C x S matrix (a refit's)."""
    opt = "chemical_embedding (--chemical-embedding)"
    if isinstance(kind, str):
        if kind not in EMBEDDINGS:
            raise ValueError(f"{opt} must be one of {', '.join(EMBEDDINGS)}, got {kind!r}")
        if C is None and kind != "cosine":
            raise ValueError(f"{opt} = {kind!r} needs chemical_channels (--chemical-channels C)")
        return kind
    W = np.asarray(kind, dtype=float)
    if C is None or W.shape != (C, n_species) or not np.isfinite(W).all():
        raise ValueError(f"{opt} must be one of {', '.join(EMBEDDINGS)} or a finite {C} x {n_species} matrix")
    return W


def _normalised(rows, S):
    """Rows scaled to norm sqrt(S), sign with a positive sum (ties: positive first non-zero)."""
    out = []
    for r in rows:
        r = np.asarray(r, dtype=float)
        s = r.sum() if abs(r.sum()) > 1e-12 * np.abs(r).sum() else r[np.flatnonzero(np.abs(r) > 1e-12)[0]]
        out.append(np.sign(s) * r * np.sqrt(S) / np.linalg.norm(r))
    return np.array(out)


def _pair_basis(elements, cutoff, max_degree, inner_cutoff, w_L, core_window):
    """The explicit body-order-2 basis (features A_{z n 0 0}) and its columns' (z, n)."""
    from .basis import ACEBasis

    b = ACEBasis(elements, cutoff, 2, max_degree, inner_cutoff=inner_cutoff, w_L=w_L, core_window=core_window)
    zn = np.array([(lab[0][0], lab[0][1]) for lab in b.spec_["feature_labels"]])
    return b, zn


def _sample(frames):
    """At most _SAMPLE frames, evenly spaced over the whole list (files are often sorted by group)."""
    if len(frames) <= _SAMPLE:
        return frames
    return [frames[i] for i in np.linspace(0, len(frames) - 1, _SAMPLE).round().astype(int)]


def pca_embedding(frames, basis, zn, C):
    """Leading eigenvectors of sum_{i,n} a_{i n} a_{i n}^T / sigma_n^2, a_{i n} = (A_{z n}(i))_z."""
    S, n_rad = basis.n_species, int(zn[:, 1].max()) + 1
    X = np.concatenate([basis.descriptors(f.atoms) for f in frames])       # (atoms, K2)
    A = np.zeros((len(X), S, n_rad))
    A[:, zn[:, 0], zn[:, 1]] = X
    sigma = np.sqrt(np.mean(A ** 2, axis=(0, 1))) + 1e-300                  # per radial channel
    A = A / sigma[None, None, :]
    M = np.einsum("izn,iyn->zy", A, A)
    w, V = np.linalg.eigh(M)
    return V[:, np.argsort(w)[::-1][:C]].T


def fit_embedding(frames, basis, zn, C, wE, wF):
    """Leading right singular vectors of the explicit 2-body fit's coefficients c_{s z n} sigma_n."""
    S, K2 = basis.n_species, basis.n_features
    n_rad = int(zn[:, 1].max()) + 1
    P = S * K2 + S
    G, b = np.zeros((P, P)), np.zeros(P)
    sq = np.zeros(n_rad)
    n_at = 0
    for f in frames:
        r = basis.fitting_rows(f.atoms)
        N = f.n_atoms
        e_row = np.concatenate([r.energy, r.counts]) * (wE / N)
        F = np.hstack([r.forces, np.zeros((3 * N, S))]) * wF
        G += np.outer(e_row, e_row) + F.T @ F
        b += e_row * (wE * f.energy / N) + F.T @ (wF * np.asarray(f.forces).ravel())
        D = basis.descriptors(f.atoms)
        np.add.at(sq, zn[:, 1], np.sum(D ** 2, axis=0))
        n_at += N
    d = np.sqrt(np.maximum(np.diag(G), 1e-300))
    Gs = G / np.outer(d, d) + _FIT_RIDGE * np.eye(P)
    c = np.linalg.solve(Gs, b / d) / d
    sigma = np.sqrt(sq / (n_at * S))
    coef = np.zeros((S, n_rad, S))        # (centre s, radial n, neighbour z)
    coef[:, zn[:, 1], zn[:, 0]] = c[:S * K2].reshape(S, K2)
    rows = (coef * sigma[None, :, None]).reshape(S * n_rad, S)
    return np.linalg.svd(rows, full_matrices=False)[2][:C]


def choose_embedding(kind, frames, elements, cutoff, C, *, max_degree, inner_cutoff, w_L, core_window,
                     energy_weight, force_weight):
    """W (C x S) for ``kind`` (checked by check_embedding) from the training frames (dcace.data.Frame)."""
    from .basis_spec import fixed_embedding
    from ase.data import atomic_numbers

    S = len(elements)
    if not isinstance(kind, str):
        return np.asarray(kind, dtype=float)
    if kind == "cosine":
        return fixed_embedding(S, C, [atomic_numbers[el] for el in elements])
    basis, zn = _pair_basis(elements, cutoff, max_degree, inner_cutoff, w_L, core_window)
    sample = _sample(list(frames))
    if kind == "pca":
        W = pca_embedding(sample, basis, zn, C)
    else:
        W = fit_embedding(sample, basis, zn, C, energy_weight, force_weight)
    return _normalised(W, S)
