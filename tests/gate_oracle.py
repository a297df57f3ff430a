"""numpy oracles of the divide-and-conquer gate and committee, used only by the tests.

Why this file exists: the C++ core is the one implementation of the gate (``Gate::evaluate``) and of
eq. 7 with its gradient (``combine_committee``); the fit reaches them through
``dcace.clustering.gate_weights`` and ``dcace.committee.committee_predict``.  These are the same
equations written independently in vectorised numpy, to check the core against.  Never imported by
the package.
"""
from __future__ import annotations

import numpy as np


def gate_weights(gate: dict, P: np.ndarray, gradient: bool = True):
    """numpy oracle of ``Gate::evaluate`` for rows of P (n, D).

    Returns w (n, M), dw/dp (n, M, D) (None unless ``gradient``) and the nearest-centroid distance
    in units of its spread (n,).
    """
    P = np.atleast_2d(np.asarray(P, dtype=float))
    mean, scale, V = gate["mean"], gate["scale"], np.asarray(gate["projection"])
    C, sig, bias, tau = np.asarray(gate["centroids"]), np.asarray(gate["spread"]), np.asarray(gate["bias"]), gate["temperature"]
    Y = ((P - mean) / scale) @ V.T                       # (n, d)
    diff = Y[:, None, :] - C[None, :, :]                 # (n, M, d)
    r2 = (diff ** 2).sum(axis=2)                         # (n, M)
    t2 = (tau * sig) ** 2
    logit = bias[None, :] - 0.5 * r2 / t2[None, :]
    logit -= logit.max(axis=1, keepdims=True)
    w = np.exp(logit)
    w /= w.sum(axis=1, keepdims=True)
    nearest = np.min(np.sqrt(r2) / sig[None, :], axis=1)
    if not gradient:
        return w, None, nearest
    g = -diff / t2[None, :, None]                         # d logit_m / d y  (n, M, d)
    gbar = (w[:, :, None] * g).sum(axis=1, keepdims=True)
    dy = w[:, :, None] * (g - gbar)                       # dw_m / dy (n, M, d)
    dw = (dy @ V) / scale[None, None, :]                  # (n, M, D)
    return w, dw, nearest


def committee_predict(theta: np.ndarray, weights_fn, b: np.ndarray, n: np.ndarray, rows=None):
    """numpy oracle of eq. 7 (``combine_committee``): energy and effective coefficients of a committee.

    theta (M, D'), b (B, D), n (B, S); weights_fn(P) -> (w (B, M), dw (B, M, D)).
    Returns (E (B,), w (B, M), c_eff (B, D)); energies are in the centred frame of theta.
    Forces of structure i are Phi_i @ c_eff[i], stresses Psi_i @ c_eff[i].
    """
    theta = np.atleast_2d(theta)
    b = np.atleast_2d(b)
    n = np.atleast_2d(n)
    D = b.shape[1]
    N = n.sum(axis=1)
    Em = np.concatenate([b, n], axis=1) @ theta.T          # (B, M)
    if theta.shape[0] == 1:
        w = np.ones((len(b), 1))
        c_eff = np.repeat(theta[:, :D], len(b), axis=0)
        return Em[:, 0], w, c_eff
    w, dw = weights_fn(b / N[:, None])
    E = (w * Em).sum(axis=1)
    c = theta[:, :D]
    c_eff = w @ c + np.einsum("bm,bmk->bk", (Em - E[:, None]) / N[:, None], dw)
    return E, w, c_eff
