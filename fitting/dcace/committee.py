"""Normal equations of linear and divide-and-conquer (DC) ACE models, accumulated structure by structure.

Notation for one structure S with N atoms (D = S*K descriptor columns, S species):
  b = concat_s Bsum_s (D), n = atom counts (S), u = [b, n] / N (D' = D + S), p = b / N,
  Phi = force rows (3N x D, F = Phi c), Psi = stress rows (6 x D, sigma = Psi c),
  y_E = (E - e_ref . n) / N the per-atom energy after removing per-species reference energies.

Per-structure data enter only through
  A = wF^2 Phi^T Phi + wS^2 Psi^T Psi (D x D),  v = wF^2 Phi^T f + wS^2 Psi^T sigma (D),
  yy = wF^2 |f|^2 + wS^2 |sigma|^2, and (u, y_E) with energy weight wE,
so memory is O(D^2) per structure in flight and O(candidates x folds x n^2) in total -- independent of
the number of structures.

Linear model (one expert): theta = [c, e0] (D'); E/N = u . theta, F = Phi c.
  H += P0^T A P0 + wE^2 u u^T,  h += P0^T v + wE^2 u y_E   (P0 = [I_D, 0]).

DC committee with a fixed gate w(p) (M experts, theta_m = [c_m, e0_m]):
  E = sum_m w_m E_m,  E_m = theta_m . [b, n]
  F = sum_m Phi (w_m c_m + (1/N) E_m g_m) = Phi sum_m T_m theta_m,  g_m = dw_m/dp,
  T_m = w_m P0 + g_m u^T  (D x D'),  and the same for the stress with Psi.
so the weighted loss is quadratic in all theta_m together, with normal-matrix blocks
  H_mm' += w_m w_m' P0^T A P0 + w_m P0^T (A g_m') u^T + w_m' u (A g_m)^T P0
           + (g_m^T A g_m' + wE^2 w_m w_m') u u^T,
  h_m   += w_m P0^T v + (g_m . v + wE^2 w_m y_E) u.
Batches of structures are accumulated with matrix products (a few GEMMs per batch).  Every
accumulator keeps one set of normal equations per cross-validation fold; the training system of
fold f is total - fold f, and held-out squared errors are quadratic forms
  SSE_f(theta) = theta^T H_f theta - 2 theta^T h_f + yy_f.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg.blas as _blas

__all__ = ["Batch", "GroupAccumulator", "JointAccumulator", "committee_predict", "joint_nbytes"]


@dataclass
class Batch:
    """Per-structure sufficient statistics of a batch of B structures of one fold."""

    fold: int
    A: np.ndarray    # (B, D, D)
    v: np.ndarray    # (B, D)
    yy: np.ndarray   # (B,)
    u: np.ndarray    # (B, D')
    yE: np.ndarray   # (B,)
    p: np.ndarray    # (B, D)
    index: np.ndarray  # (B,) structure indices
    weight: np.ndarray | None = None   # (B,) each structure's weight omega (rows x omega: A, v, yy x omega^2,
    #                                    u, yE x omega); None = 1. The gate-gradient terms need u / omega.
    _X: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.yE)

    @property
    def X(self) -> np.ndarray:
        """(2B, D'^2): rows A_b padded to D' x D', then u_b u_b^T (shared by all accumulators)."""
        if self._X is None:
            B, D = self.A.shape[:2]
            Dp = self.u.shape[1]
            X = np.zeros((2 * B, Dp, Dp))
            X[:B, :D, :D] = self.A
            np.multiply(self.u[:, :, None], self.u[:, None, :], out=X[B:])
            self._X = X.reshape(2 * B, Dp * Dp)
        return self._X


def _gemm_acc(target2d: np.ndarray, coef: np.ndarray, X: np.ndarray):
    """target2d (G, L) += coef.T (G, R) @ X (R, L), in place (BLAS dgemm with beta = 1)."""
    out = _blas.dgemm(1.0, X.T, coef, beta=1.0, c=target2d.T, overwrite_c=1)
    if not np.shares_memory(out, target2d):  # pragma: no cover - BLAS made a copy
        target2d[...] = out.T


class LabelMembership:
    """The (n, G) membership of GroupAccumulator made from cluster labels for the rows a batch asks: column 0
    the global model (every structure 1), then for each clustering (labels (n,), M) one 1/0 column per
    cluster.  It holds the labels (8 bytes a structure per clustering), not the n x G floats (an MPI
    rank's memory per structure, dcace.parallel); the rows are the same numbers."""

    def __init__(self, n: int, clusterings):
        self.clusterings = [(np.asarray(labels), int(M)) for labels, M in clusterings]
        self.shape = (int(n), 1 + sum(M for _, M in self.clusterings))

    def __getitem__(self, ix):
        ix = np.asarray(ix)
        out = np.zeros((len(ix), self.shape[1]))
        out[:, 0] = 1.0
        rows, col = np.arange(len(ix)), 1
        for labels, M in self.clusterings:
            out[rows, col + labels[ix]] = 1.0
            col += M
        return out


class GroupAccumulator:
    """Linear-model normal equations for several groups of structures at once (per fold).

    ``membership`` (n_structures, n_groups) holds each structure's weight in each group (1/0 for
    the global model and for hard cluster membership of independent experts).
    """

    def __init__(self, n_folds: int, D: int, S: int, membership: np.ndarray, wE: float):
        self.D, self.S, self.Dp = D, S, D + S
        self.membership = membership if isinstance(membership, LabelMembership) else np.asarray(membership, dtype=float)
        G = self.membership.shape[1]
        self.wE2 = float(wE) ** 2
        self.H = np.zeros((n_folds, G, self.Dp, self.Dp))
        self.h = np.zeros((n_folds, G, self.Dp))
        self.yy = np.zeros((n_folds, G))

    @property
    def nbytes(self) -> int:
        return self.H.nbytes

    def add(self, bt: Batch):
        D, Dp = self.D, self.Dp
        Wg = self.membership[bt.index]                       # (B, G)
        G = Wg.shape[1]
        coef = np.concatenate([Wg, self.wE2 * Wg], axis=0)    # (2B, G)
        _gemm_acc(self.H[bt.fold].reshape(G, Dp * Dp), coef, bt.X)
        hf = self.h[bt.fold]
        hf[:, :D] += Wg.T @ bt.v
        hf += self.wE2 * (Wg.T @ (bt.u * bt.yE[:, None]))
        self.yy[bt.fold] += Wg.T @ (bt.yy + self.wE2 * bt.yE ** 2)


def joint_nbytes(n_folds: int, M: int, Dp: int) -> int:
    return 8 * n_folds * (M * Dp) ** 2


class JointAccumulator:
    """Normal equations of the jointly fitted committee under one fixed gate (per fold).

    Storage is "half blocks" S (M, M, D', D') with H_mm' = S_mm' + S_m'm^T, so every batch update
    is a contiguous in-place GEMM: S_mm' += 1/2 (w_m w_m' A_pad + (g_m^T A g_m' + wE^2 w_m w_m') u u^T)
    and S_mm'[:D, :] += w_m (A g_m') u^T.  ``matrix(f)`` assembles the symmetric H of a fold.
    """

    def __init__(self, n_folds: int, D: int, S: int, gate: dict, wE: float, gate_fn):
        self.D, self.S, self.Dp = D, S, D + S
        self.gate = gate
        self.gate_fn = gate_fn        # P (B, D) -> (w (B, M), dw (B, M, D))
        self.M = int(len(gate["spread"]))
        self.wE2 = float(wE) ** 2
        M, Dp = self.M, self.Dp
        self.Sh = np.zeros((n_folds, M, M, Dp, Dp))
        self.h = np.zeros((n_folds, M * Dp))
        self.yy = np.zeros(n_folds)
        self.n_folds = n_folds

    @property
    def nbytes(self) -> int:
        return self.Sh.nbytes

    def add(self, bt: Batch):
        D, Dp, M, B = self.D, self.Dp, self.M, bt.size
        W, G = self.gate_fn(bt.p)                     # (B, M), (B, M, D)
        # the gate-gradient force rows are omega Phi g_m u0^T with the unweighted u0 = u / omega: scale
        # the terms that carry A (omega^2) and u (omega) together by 1/omega and 1/omega^2
        inv = np.ones(B) if bt.weight is None else 1.0 / np.where(bt.weight > 0, bt.weight, 1.0)
        Sf = self.Sh[bt.fold].reshape(M * M, Dp * Dp)
        a = np.matmul(G, bt.A)                        # (B, M, D): a[b, m] = A_b g_m (A symmetric)
        WW = (W[:, :, None] * W[:, None, :]).reshape(B, M * M)
        s = np.einsum("bmk,bnk->bmn", G, a).reshape(B, M * M) * (inv ** 2)[:, None] + self.wE2 * WW
        _gemm_acc(Sf, 0.5 * np.concatenate([WW, s], axis=0), bt.X)
        # w_m (A g_m') u0^T into rows :D of block (m, m')
        X2 = (W[:, :, None, None] * (a * inv[:, None, None])[:, None, :, :]).reshape(B, M * M * D)
        Sf[:, :D * Dp] += (X2.T @ bt.u).reshape(M * M, D * Dp)
        h2 = self.h[bt.fold].reshape(M, Dp)
        h2[:, :D] += W.T @ bt.v
        gv = np.einsum("bmk,bk->bm", G, bt.v) * inv[:, None] + self.wE2 * W * bt.yE[:, None]
        h2 += gv.T @ bt.u
        self.yy[bt.fold] += float((bt.yy + self.wE2 * bt.yE ** 2).sum())

    def _assemble(self, S4, minus=None):
        """H (M D', M D') from half blocks S4 (or from S4 - minus, without forming the difference):
        block by block, H_mm' = S_mm' + S_m'm^T for m <= m', and its transpose below the diagonal."""
        M, Dp = self.M, self.Dp
        H = np.empty((M, Dp, M, Dp))
        for m in range(M):
            for q in range(m, M):
                a, b = (S4[m, q], S4[q, m]) if minus is None else (S4[m, q] - minus[m, q], S4[q, m] - minus[q, m])
                np.add(a, b.T, out=H[m, :, q, :])
                if q != m:
                    H[q, :, m, :] = H[m, :, q, :].T
        return H.reshape(M * Dp, M * Dp)

    def matrix(self, fold: int) -> np.ndarray:
        """Symmetric normal matrix of fold ``fold``."""
        return self._assemble(self.Sh[fold])

    def total(self):
        """(H, h) over all folds."""
        return self._assemble(self.Sh.sum(axis=0)), self.h.sum(axis=0)

    def training(self, fold: int):
        """(H, h) of all folds but ``fold``."""
        S4 = self.Sh.sum(axis=0)
        S4 -= self.Sh[fold]
        return self._assemble(S4), self.h.sum(axis=0) - self.h[fold]


def committee_predict(theta: np.ndarray, weights_fn, b: np.ndarray, n: np.ndarray, rows=None):
    """Energy and effective coefficients of a committee for one or several structures.

    theta (M, D'), b (B, D), n (B, S); weights_fn(P) -> (w (B, M), dw (B, M, D)) (the core's gate,
    ``clustering.gate_weights``).  Returns (E (B,), w (B, M), c_eff (B, D)); energies are in the
    centred frame of theta.  Forces of structure i are Phi_i @ c_eff[i], stresses Psi_i @ c_eff[i].
    Eq. 7 and its gradient are the C++ core's (``combine_committee``, as in Potential::combine);
    tests/gate_oracle.py holds a numpy oracle.
    """
    from . import _core

    theta = np.ascontiguousarray(np.atleast_2d(theta), dtype=float)
    b = np.ascontiguousarray(np.atleast_2d(b), dtype=float)
    n = np.ascontiguousarray(np.atleast_2d(n), dtype=float)
    if theta.shape[0] == 1:
        w, dw = np.ones((len(b), 1)), np.zeros((len(b), 1, b.shape[1]))
    else:
        w, dw = weights_fn(b / n.sum(axis=1)[:, None])
    E, c_eff = _core.committee_combine(theta, w, dw, b, n)
    return E, w, c_eff

