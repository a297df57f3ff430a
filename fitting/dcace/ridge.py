"""Ridge regression on accumulated normal equations, with column scaling.

A model's weighted least-squares loss is  L(theta) = theta^T H theta - 2 theta^T h + yy.  Columns
are scaled by sc_j = 1 / sqrt(Href_jj) (Href = the global linear model's normal matrix on all
training data, repeated for every expert block), so the ridge parameter lambda is dimensionless:
    (sc H sc + diag(lam)) x = sc h + lam * (prior / sc),   theta = sc x,
i.e. ridge toward ``prior`` (zero, or the global linear solution).  For a cross-validation training
set holding a fraction f of the data lam is multiplied by f, so the penalty per data point is the
same in every fold and in the final fit.  One-body (per-species constant) columns get only a tiny
penalty (ONE_BODY_LAMBDA) that keeps absent species and unused experts well defined.

Solves are Cholesky factorisations (LAPACK potrf/potrs through scipy) on matrices assembled in a
fixed order, so the same data give the same bits; an eigen-decomposition with clipped eigenvalues is
the fallback for matrices that are not numerically positive definite.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["ONE_BODY_LAMBDA", "FIXED_ONE_BODY_LAMBDA", "column_scale", "ridge_solve", "ridge_solve_constrained", "quadratic_sse",
           "penalty_vector"]

ONE_BODY_LAMBDA = 1e-9


def column_scale(diag: np.ndarray) -> np.ndarray:
    """1/sqrt(diag), with columns that carry (almost) no data scaled by 1."""
    diag = np.asarray(diag, dtype=float)
    big = diag.max() if diag.size else 1.0
    ok = diag > 1e-14 * max(big, 1e-300)
    sc = np.ones_like(diag)
    sc[ok] = 1.0 / np.sqrt(diag[ok])
    return sc


FIXED_ONE_BODY_LAMBDA = 1e12   # pins a one-body term the user gave (e0=) to its reference value


def penalty_vector(D: int, S: int, M: int, lam: float, one_body_lam: float = ONE_BODY_LAMBDA,
                   fixed_one_body=None, col_factor=None) -> np.ndarray:
    """Ridge penalty per (scaled) column for M blocks of [c (D), e0 (S)]; species in the mask
    fixed_one_body (S,) keep their reference energy (their one-body offset is pinned to 0);
    col_factor (D,): lam times it per coefficient column (dcace.block_ridge), None = lam for all."""
    ob = np.full(S, float(one_body_lam))
    if fixed_one_body is not None:
        ob[np.asarray(fixed_one_body, dtype=bool)] = FIXED_ONE_BODY_LAMBDA
    c = np.full(D, float(lam)) if col_factor is None else float(lam) * np.asarray(col_factor, dtype=float)
    blk = np.concatenate([c, ob])
    return np.tile(blk, M)


def ridge_solve(H: np.ndarray, h: np.ndarray, sc: np.ndarray, pen: np.ndarray, prior: np.ndarray | None = None,
                overwrite_h: bool = False):
    """theta minimising theta^T H theta - 2 h^T theta + sum_j pen_j ((theta_j - prior_j)/sc_j)^2.

    ``overwrite_h``: H is an exactly symmetric, C-contiguous work array of the caller (an assembled
    normal matrix).  It is scaled in place, columns first, so that its lower triangle holds, bit for
    bit, the upper triangle the copying path builds ((H_ij sc_i) sc_j); LAPACK factorises that
    triangle through the Fortran-ordered view H.T, without the transposing copy: the same factor."""
    if overwrite_h:
        Hs = H
        Hs *= sc[None, :]
        Hs *= sc[:, None]
        diag = Hs.diagonal().copy()
    else:
        Hs = H * sc[:, None] * sc[None, :]
    rhs = h * sc
    if prior is not None:
        rhs = rhs + pen * (prior / sc)
    Hs[np.diag_indices_from(Hs)] += pen
    try:
        if overwrite_h:   # upper triangle of Hs.T = lower triangle of Hs: the strict upper one survives
            cf = scipy.linalg.cho_factor(Hs.T, lower=False, overwrite_a=True, check_finite=False)
        else:
            cf = scipy.linalg.cho_factor(Hs, lower=False, overwrite_a=True, check_finite=False)
        x = scipy.linalg.cho_solve(cf, rhs, check_finite=False)
    except np.linalg.LinAlgError:
        if overwrite_h:   # rebuild the scaled matrix from its intact strict upper triangle ((H_ij sc_j) sc_i)
            U = np.triu(Hs, 1)
            Hs = U + U.T
            Hs[np.diag_indices_from(Hs)] = diag
        else:
            Hs = H * sc[:, None] * sc[None, :]
        Hs[np.diag_indices_from(Hs)] += pen
        evals, evecs = np.linalg.eigh(0.5 * (Hs + Hs.T))
        floor = max(evals.max(), 1e-300) * 1e-13
        x = evecs @ ((evecs.T @ rhs) / np.maximum(evals, floor))
    return sc * x


def ridge_solve_constrained(H: np.ndarray, h: np.ndarray, sc: np.ndarray, pen: np.ndarray, G: np.ndarray,
                            g: np.ndarray, prior: np.ndarray | None = None, max_iter: int | None = None):
    """(theta, n_active): ridge_solve's minimum subject to G theta >= g (rows of G: linear constraints,
    dcace.crystal_constraints), by the KKT conditions: theta = theta_0 + A^-1 G^T mu with mu >= 0 on the
    active set, found by a primal active-set loop on the small dual system W = G A^-1 G^T (least squares
    on the active block, so repeated or dependent constraints are fine). H is not modified."""
    Hs = H * sc[:, None] * sc[None, :]
    Hs[np.diag_indices_from(Hs)] += pen
    rhs = h * sc
    if prior is not None:
        rhs = rhs + pen * (prior / sc)
    try:
        cf = scipy.linalg.cho_factor(Hs, lower=False, overwrite_a=False, check_finite=False)
        solve = lambda b: scipy.linalg.cho_solve(cf, b, check_finite=False)   # noqa: E731
    except np.linalg.LinAlgError:   # as ridge_solve: clipped eigenvalues
        evals, evecs = np.linalg.eigh(0.5 * (Hs + Hs.T))
        inv = 1.0 / np.maximum(evals, max(evals.max(), 1e-300) * 1e-13)
        solve = lambda b: evecs @ ((evecs.T @ b) * (inv if b.ndim == 1 else inv[:, None]))   # noqa: E731
    Gs = np.asarray(G, dtype=float) * sc[None, :]
    x0, Y = solve(rhs), solve(Gs.T)
    W, r = Gs @ Y, np.asarray(g, dtype=float) - Gs @ x0
    tol = 1e-10 * max(1.0, float(np.abs(r).max()), float(np.abs(np.diag(W)).max()))
    active, mu = r > tol, np.zeros(len(r))
    for _ in range(max_iter or 4 * len(r) + 10):
        mu[:] = 0.0
        if active.any():
            A = np.flatnonzero(active)
            mu[A] = np.linalg.lstsq(W[np.ix_(A, A)], r[A], rcond=None)[0]
            if mu[A].min() < -tol:   # a constraint that pulls the wrong way leaves the active set
                active[A[int(np.argmin(mu[A]))]] = False
                continue
        slack = W @ mu - r
        viol = ~active & (slack < -tol)
        if not viol.any():
            break
        active[int(np.argmin(np.where(viol, slack, np.inf)))] = True
    return sc * (x0 + Y @ np.maximum(mu, 0.0)), int(active.sum())


def quadratic_sse(theta: np.ndarray, H: np.ndarray, h: np.ndarray, yy: float) -> float:
    """Weighted squared error theta^T H theta - 2 theta^T h + yy (clipped at 0)."""
    return max(float(theta @ (H @ theta) - 2.0 * theta @ h + yy), 0.0)


# ------------------------------------------------------------------------------------------------
# BLAS threads.  Measured on the 2-core development machine (OpenBLAS 0.3.31 from the numpy/scipy
# wheels): multi-threaded OpenBLAS is 5-30x *slower* than one thread for the matrix sizes of a fit
# (Cholesky of n = 640: 0.18 s vs 0.005 s) and its results may depend on the thread count.  The
# fit therefore runs BLAS single-threaded (the C++ descriptor work uses the threads instead), which
# also makes the potential file bit-for-bit reproducible.

import contextlib as _contextlib
import ctypes as _ctypes


def _openblas_handles():
    handles = []
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        return handles
    for path in paths:
        try:
            lib = _ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                          ("openblas_get_num_threads", "openblas_set_num_threads")):
            if hasattr(lib, get) and hasattr(lib, set_):
                handles.append((getattr(lib, get), getattr(lib, set_)))
                break
    return handles


@_contextlib.contextmanager
def single_threaded_blas():
    """Run the block with OpenBLAS limited to one thread (restored afterwards)."""
    handles = _openblas_handles()
    saved = []
    for get, set_ in handles:
        try:
            saved.append((set_, int(get())))
            set_(1)
        except Exception:  # pragma: no cover - exotic BLAS builds
            pass
    try:
        yield
    finally:
        for set_, nthreads in saved:
            set_(nthreads)
