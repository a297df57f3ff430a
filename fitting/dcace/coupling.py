"""Rotation-invariant couplings of dcace's real spherical harmonics (generalised Clebsch-Gordan).

Why: B = sum_m C_m prod_t A_{c_t m_t} is invariant only for special tensors C; they are computed
here once, at fit time, and the C++ core only sees the resulting monomial coefficients.  Method:
null space of the total raising operator J+ on the complex M = 0 subspace, mapped to the header's
real basis, symmetrised over repeated channels; every basis returned is orthonormal and canonical.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

__all__ = [
    "real_from_complex",
    "invariants",
    "symmetric_invariants",
    "coupling_terms",
    "equality_pattern",
    "clear_cache",
]

# Singular-value gaps are clean here: J+ has singular values >= sqrt(2) off its null space, and the
# symmetriser is an orthogonal projection that commutes with rotations (singular values 0 or 1).
_NULL_TOL = 1e-8
_RANK_TOL = 1e-10
_ZERO_TOL = 1e-14


def real_from_complex(l: int) -> np.ndarray:
    """Unitary U (rows: real m, columns: complex m, both ordered -l..l) with Y_real = U @ Y_complex.

    From the header's convention (P_l^m with the Condon-Shortley phase, Y_l^{-m} = (-1)^m conj Y_l^m):
      Y_l0 = Y_l^0,
      Y_lm  = sqrt2 Re Y_l^m = (Y_l^m + (-1)^m Y_l^{-m}) / sqrt2           (m > 0),
      Y_l-m = sqrt2 Im Y_l^m = (Y_l^m - (-1)^m Y_l^{-m}) / (i sqrt2)        (m > 0).
    """
    if l < 0:
        raise ValueError(f"l must be >= 0, got {l}")
    U = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    U[l, l] = 1.0
    s = 1.0 / math.sqrt(2.0)
    for m in range(1, l + 1):
        sign = -1.0 if m % 2 else 1.0
        U[l + m, l + m] = s
        U[l + m, l - m] = sign * s
        U[l - m, l + m] = -1j * s
        U[l - m, l - m] = 1j * sign * s
    return U


def equality_pattern(keys) -> tuple:
    """Canonical pattern of equal entries: ('a','b','a') -> (0, 1, 0)."""
    seen: dict = {}
    return tuple(seen.setdefault(k, len(seen)) for k in keys)


def _canonical_basis(V: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the row space of V (orthonormal rows) that depends only on that space.

    Gram-Schmidt of the projections P e_i of coordinate vectors, choosing at each step the lowest
    index whose residual is at least half the largest one.  Working in the k-dimensional
    coordinates v_i = V[:, i] makes it O(k^2 n) and never forms the n x n projector.
    """
    k, n = V.shape
    if k == 0:
        return V.copy()
    R = V.copy()  # residuals of v_i (columns), in R^k
    G = np.zeros((k, k))
    for j in range(k):
        norms = np.einsum("ij,ij->j", R, R)
        i = int(np.flatnonzero(norms >= 0.25 * norms.max())[0])  # norm >= 0.5 max norm
        g = R[:, i] / math.sqrt(norms[i])
        G[j] = g
        R -= np.outer(g, g @ R)
    B = G @ V
    # one re-orthonormalisation pass against round-off (keeps order and signs)
    Q, Rr = np.linalg.qr(B.T)
    Q *= np.sign(np.diag(Rr))
    return Q.T


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _orthonormal_rows(M: np.ndarray, tol: float) -> np.ndarray:
    """Orthonormal basis (rows) of the row space of M, singular values above tol kept."""
    if M.shape[0] == 0:
        return np.zeros((0, M.shape[1]))
    _, s, Vh = np.linalg.svd(M, full_matrices=False)
    return Vh[: int(np.sum(s > tol))]


@functools.lru_cache(maxsize=None)
def _complex_invariants(ls: tuple) -> np.ndarray:
    """Real coefficient vectors (rows) over the complex M = 0 m-tuples, and those m-tuples."""
    nu = len(ls)
    # m-tuples with sum 0 and with sum 1
    m0 = [m for m in itertools.product(*[range(-l, l + 1) for l in ls[:-1]])
          if abs(sum(m)) <= ls[-1]]
    m0 = [m + (-sum(m),) for m in m0]
    m1 = [m for m in itertools.product(*[range(-l, l + 1) for l in ls[:-1]])
          if abs(1 - sum(m)) <= ls[-1]]
    m1 = [m + (1 - sum(m),) for m in m1]
    row = {m: i for i, m in enumerate(m1)}
    J = np.zeros((len(m1), len(m0)))
    for j, m in enumerate(m0):
        for t in range(nu):
            l, mt = ls[t], m[t]
            if mt < l:
                up = m[:t] + (mt + 1,) + m[t + 1:]
                J[row[up], j] += math.sqrt((l - mt) * (l + mt + 1))
    if J.shape[0] == 0:
        null = np.eye(len(m0))
    else:
        _, s, Vh = np.linalg.svd(J, full_matrices=True)
        rank = int(np.sum(s > _NULL_TOL))
        null = Vh[rank:]
    return _readonly(null), _readonly(np.array(m0, dtype=np.int64).reshape(len(m0), nu))


@functools.lru_cache(maxsize=None)
def invariants(ls: tuple) -> np.ndarray:
    """Orthonormal rotation+inversion invariant real coefficient tensors for the l-tuple ls.

    Returns an array of shape (k, 2l_1+1, ..., 2l_nu+1), axis entries ordered m = -l..l (i.e. the
    header's order m + l).  k = 0 when sum(ls) is odd (those invariants change sign under
    inversion) or no invariant exists.
    """
    ls = tuple(int(l) for l in ls)
    if not 1 <= len(ls) <= 4 or min(ls) < 0:
        raise ValueError(f"l-tuple must have 1..4 non-negative entries, got {ls}")
    dims = tuple(2 * l + 1 for l in ls)
    if sum(ls) % 2 or 2 * max(ls) > sum(ls):
        return _readonly(np.zeros((0,) + dims))
    null, m0 = _complex_invariants(ls)
    k = null.shape[0]
    if k == 0:
        return _readonly(np.zeros((0,) + dims))
    C = np.zeros((k,) + dims, dtype=complex)
    C[(slice(None),) + tuple((m0 + np.array(ls)).T)] = null
    # Y_complex = U^H Y_real, so the real-basis tensor is C contracted with conj(U) on every axis.
    for t, l in enumerate(ls):
        Uc = real_from_complex(l).conj()
        C = np.moveaxis(np.tensordot(Uc, C, axes=([1], [t + 1])), 0, t + 1)
    C = C.reshape(k, -1)
    V = _orthonormal_rows(np.concatenate([C.real, C.imag]), _RANK_TOL)
    if V.shape[0] != k:  # the span of Re and Im must be the k-dimensional invariant space
        raise RuntimeError(f"real invariants of {ls}: expected {k}, got {V.shape[0]}")
    return _readonly(_canonical_basis(V).reshape((k,) + dims))


def _group_permutations(pattern: tuple):
    nu = len(pattern)
    return [p for p in itertools.permutations(range(nu))
            if all(pattern[p[t]] == pattern[t] for t in range(nu))]


@functools.lru_cache(maxsize=None)
def symmetric_invariants(ls: tuple, pattern: tuple) -> np.ndarray:
    """Invariants of ls symmetric under permuting positions with equal pattern labels.

    pattern[t] labels position t; positions with equal labels hold the same channel (so they must
    have equal l).  Returns orthonormal tensors, shape (k, *dims); k can be 0.
    """
    ls, pattern = tuple(ls), tuple(pattern)
    if len(pattern) != len(ls):
        raise ValueError(f"pattern {pattern} does not match l-tuple {ls}")
    for a in range(len(ls)):
        for b in range(len(ls)):
            if pattern[a] == pattern[b] and ls[a] != ls[b]:
                raise ValueError(f"pattern {pattern} joins unequal l in {ls}")
    inv = invariants(ls)
    perms = _group_permutations(pattern)
    if inv.shape[0] == 0 or len(perms) == 1:
        return inv
    S = sum(np.transpose(inv, (0,) + tuple(q + 1 for q in p)) for p in perms) / len(perms)
    V = _orthonormal_rows(S.reshape(S.shape[0], -1), _RANK_TOL * 1e2)
    return _readonly(_canonical_basis(V).reshape((V.shape[0],) + inv.shape[1:]))


@functools.lru_cache(maxsize=None)
def coupling_terms(ls: tuple, pattern: tuple):
    """Sparse form of :func:`symmetric_invariants`: (offsets, W).

    offsets: int64 (nnz, nu), entries m_t + l_t of every m-tuple used by any invariant;
    W: float64 (k, nnz), coefficients (each row has unit norm); round-off entries below
    1e-14 times a row's largest are zeroed.
    """
    T = symmetric_invariants(tuple(ls), tuple(pattern))
    k = T.shape[0]
    W = T.reshape(k, -1).copy()
    if k:
        W[np.abs(W) < _ZERO_TOL * np.abs(W).max(axis=1, keepdims=True)] = 0.0
        W /= np.linalg.norm(W, axis=1, keepdims=True)
    keep = np.flatnonzero(np.any(W != 0.0, axis=0))
    offsets = np.array(np.unravel_index(keep, T.shape[1:]), dtype=np.int64).T.reshape(-1, len(ls))
    W = W[:, keep]
    return _readonly(offsets), _readonly(W)


def clear_cache() -> None:
    """Forget all cached couplings (tests use it to check that builds are reproducible)."""
    for f in (_complex_invariants, invariants, symmetric_invariants, coupling_terms):
        f.cache_clear()
