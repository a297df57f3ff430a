"""Clustering of training structures and the divide-and-conquer gate.

Structures are described by their mean descriptor p_S = concat_s(Bsum_s) / N (D = S*K numbers).
They are standardised (per-column mean and scale), optionally projected on their leading principal
axes, and clustered with seeded k-means (k-means++ initialisation, Lloyd iterations, several
restarts, all from one ``numpy.random.Generator`` -- deterministic for a given seed).

The gate (exactly the C++ ``dcace::Gate``; ``gate_dict`` builds it):

    y       = P ((p - mean) / scale)                        (d numbers; P = projection, d x D)
    logit_m = bias_m - |y - mu_m|^2 / (2 (tau sigma_m)^2)
    w       = softmax(logit)

mu_m and sigma_m are the centroid and spread (RMS distance of the members to the centroid, floored)
of cluster m in y-space, so distances are measured in units of each cluster's spread: the gate is
dimensionless, C-infinity, and numerically stable (the max logit is subtracted).  tau (the
temperature) sets the width of the switching layer between clusters; tau -> 0 is the hard
nearest-centroid gate.  ``gate_weights`` evaluates it (w and dw/dp) for many rows in the C++ core
(``Gate::evaluate``), the one implementation that the fit, the files and LAMMPS share; the tests
check it against a numpy oracle (tests/gate_oracle.py).

``Eq8Gate`` is the paper's eq. 8 gate, d_m = sigma_m sqrt(n_m) / |p - mu_m|^4, w = softmax(d), on
standardised features -- kept for comparison in fit reports only (it averages the experts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Standardiser", "fit_standardiser", "pca_projection", "kmeans", "Clustering", "cluster",
           "gate_dict", "gate_weights", "Eq8Gate"]

SPREAD_FLOOR_REL = 0.05   # spreads are floored at this fraction of the median spread
_SCALE_FLOOR = 1e-12


@dataclass
class Standardiser:
    mean: np.ndarray    # (D,)
    scale: np.ndarray   # (D,)

    def __call__(self, P):
        return (np.asarray(P, dtype=float) - self.mean) / self.scale


def fit_standardiser(P: np.ndarray) -> Standardiser:
    """Per-column mean and standard deviation; constant columns get scale 1."""
    P = np.asarray(P, dtype=float)
    mean = P.mean(axis=0)
    std = P.std(axis=0)
    big = std.max() if std.size else 1.0
    scale = np.where(std > max(_SCALE_FLOOR, 1e-10 * big), std, 1.0)
    return Standardiser(mean, scale)


def pca_projection(Z: np.ndarray, n_components: int | None = None, variance: float = 0.99,
                   max_components: int = 20) -> np.ndarray:
    """Leading principal axes (d x D) of standardised data Z (rows = structures).

    d = n_components if given, else the smallest d explaining ``variance`` of the total variance,
    capped at ``max_components`` and at the rank.  Signs are fixed (largest |entry| positive) so the
    result is deterministic.
    """
    Z = np.asarray(Z, dtype=float)
    Zc = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(Zc, full_matrices=False)
    var = s ** 2
    rank = int((s > 1e-10 * (s[0] if s.size else 1.0)).sum()) or 1
    if n_components is None:
        frac = np.cumsum(var) / max(var.sum(), 1e-300)
        d = int(np.searchsorted(frac, variance) + 1)
        d = min(d, max_components, rank)
    else:
        d = min(int(n_components), rank)
    d = max(d, 1)
    V = vt[:d].copy()
    for a in range(d):
        k = int(np.argmax(np.abs(V[a])))
        if V[a, k] < 0:
            V[a] *= -1.0
    return V


def _kmeans_pp(Y, M, rng):
    n = len(Y)
    centres = np.empty((M, Y.shape[1]))
    first = int(rng.integers(n))
    centres[0] = Y[first]
    d2 = ((Y - centres[0]) ** 2).sum(axis=1)
    for m in range(1, M):
        tot = d2.sum()
        if tot <= 0:
            idx = int(rng.integers(n))
        else:
            idx = int(np.searchsorted(np.cumsum(d2), rng.random() * tot))
            idx = min(idx, n - 1)
        centres[m] = Y[idx]
        d2 = np.minimum(d2, ((Y - centres[m]) ** 2).sum(axis=1))
    return centres


def _sqdist(Y, C):
    return ((Y[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)


def _reseed_empty(labels, d2, M):
    """Give every empty cluster (in place) the point farthest from its own centroid, taken only from a
    cluster with two or more points, so that moving it never empties another one (M <= n points always
    leaves such a cluster).  With fewer distinct points than M, clusters end up sharing a position:
    equal centroids, never the mean of nothing."""
    n = len(labels)
    counts = np.bincount(labels, minlength=M)
    while (counts == 0).any():
        m = int(np.flatnonzero(counts == 0)[0])
        own = d2[np.arange(n), labels]
        own = np.where(counts[labels] >= 2, own, -1.0)
        far = int(np.argmax(own))
        counts[labels[far]] -= 1
        labels[far], counts[m] = m, 1
        d2[far] = 0.0


def kmeans(Y: np.ndarray, M: int, seed: int = 0, n_init: int = 10, max_iter: int = 300):
    """Seeded k-means (k-means++ + Lloyd); returns (labels (n,), centroids (M, d), inertia).

    Labels are renumbered by decreasing cluster size (ties by first member), so the result does not
    depend on the order the restarts found the clusters in.
    """
    Y = np.asarray(Y, dtype=float)
    n = len(Y)
    if M < 1:
        raise ValueError("number of clusters must be >= 1")
    if M > n:
        raise ValueError(f"cannot make {M} clusters from {n} structures")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init if M > 1 else 1):
        C = _kmeans_pp(Y, M, rng)
        labels = None
        for _it in range(max_iter):
            d2 = _sqdist(Y, C)
            new = np.argmin(d2, axis=1)
            _reseed_empty(new, d2, M)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for m in range(M):
                C[m] = Y[labels == m].mean(axis=0)
        inertia = float(((Y - C[labels]) ** 2).sum())
        if best is None or inertia < best[2] - 1e-12 * max(abs(best[2]), 1.0):
            best = (labels.copy(), C.copy(), inertia)
    labels, C, inertia = best
    # canonical order: by size (desc), then by first member index
    sizes = np.bincount(labels, minlength=M)
    firsts = np.array([np.flatnonzero(labels == m)[0] for m in range(M)])
    order = np.lexsort((firsts, -sizes))
    remap = np.empty(M, dtype=int)
    remap[order] = np.arange(M)
    return remap[labels], C[order], inertia


@dataclass
class Clustering:
    """k-means clusters of the training structures in gate space y = P z."""

    standardiser: Standardiser
    projection: np.ndarray     # (d, D)
    labels: np.ndarray         # (n,)
    centroids: np.ndarray      # (M, d)
    spread: np.ndarray         # (M,)
    sizes: np.ndarray          # (M,)

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    def transform(self, P):
        return self.standardiser(P) @ self.projection.T

    def nearest(self, P) -> np.ndarray:
        """The cluster of each row of P nearest in units of its spread (the gate's metric, its tau -> 0
        limit): how structures outside the clustered ones join it (a sample's rest, a refit's new ones)."""
        Y = self.transform(P)
        r = np.sqrt(((Y[:, None, :] - self.centroids[None]) ** 2).sum(axis=2)) / self.spread[None, :]
        return np.argmin(r, axis=1)

    def joined(self, labels: np.ndarray) -> "Clustering":
        """The same clusters with the given labels of every structure (sizes counted from them)."""
        labels = np.asarray(labels)
        return Clustering(self.standardiser, self.projection, labels, self.centroids, self.spread,
                          np.bincount(labels, minlength=self.n_clusters))


def cluster(P: np.ndarray, M: int, *, seed: int = 0, standardiser: Standardiser | None = None,
            projection: np.ndarray | None = None) -> Clustering:
    """Cluster structures (rows of P, mean descriptors) into M clusters."""
    P = np.asarray(P, dtype=float)
    st = standardiser or fit_standardiser(P)
    V = projection if projection is not None else np.eye(P.shape[1])
    Y = st(P) @ V.T
    labels, C, _ = kmeans(Y, M, seed=seed)
    sizes = np.bincount(labels, minlength=M)
    rms = np.array([np.sqrt(((Y[labels == m] - C[m]) ** 2).sum(axis=1).mean()) for m in range(M)])
    positive = rms[rms > 0]
    ref = np.median(positive) if positive.size else 1.0
    floor = max(SPREAD_FLOOR_REL * ref, 1e-8)
    spread = np.maximum(rms, floor)
    return Clustering(st, V, labels, C, spread, sizes)


def gate_dict(cl: Clustering, temperature: float, bias=None) -> dict:
    """The C++ Gate of a clustering at temperature tau (dict for PotentialCore)."""
    M = cl.n_clusters
    return {
        "temperature": float(temperature),
        "mean": np.ascontiguousarray(cl.standardiser.mean, dtype=float),
        "scale": np.ascontiguousarray(cl.standardiser.scale, dtype=float),
        "projection": np.ascontiguousarray(cl.projection, dtype=float),
        "centroids": np.ascontiguousarray(cl.centroids, dtype=float),
        "spread": np.ascontiguousarray(cl.spread, dtype=float),
        "bias": np.zeros(M) if bias is None else np.ascontiguousarray(bias, dtype=float),
    }


def gate_weights(gate: dict, P: np.ndarray, gradient: bool = True):
    """The C++ ``Gate::evaluate`` (dcace._core.gate_weights) for rows of P (n, D).

    Returns w (n, M), dw/dp (n, M, D) (None unless ``gradient``) and the nearest-centroid distance
    in units of its spread (n,).  A numpy oracle of the same equations lives in tests/gate_oracle.py.
    """
    from . import _core

    return _core.gate_weights(gate, np.atleast_2d(np.asarray(P, dtype=float)), bool(gradient))


class Eq8Gate:
    """The paper's eq. 8 gate on standardised features (comparison only, not written to files).

    d_m = sigma_m sqrt(n_m) / |z - mu_m|^4, w = softmax(d), with mu_m, sigma_m the centroid and RMS
    spread of cluster m in standardised feature space z.
    """

    def __init__(self, cl: Clustering, Z: np.ndarray, labels: np.ndarray | None = None):
        """Z: standardised mean descriptors of the clustered structures, labels their clusters (default:
        cl.labels, every structure's; a clustering fitted on a sample gives the sample's)."""
        M = cl.n_clusters
        labels = cl.labels if labels is None else np.asarray(labels)
        self.standardiser = cl.standardiser
        self.mu = np.array([Z[labels == m].mean(axis=0) for m in range(M)])
        self.sigma = np.array([np.sqrt(((Z[labels == m] - self.mu[m]) ** 2).sum(axis=1).mean()) for m in range(M)])
        self.sigma = np.maximum(self.sigma, 1e-8)
        self.n = cl.sizes.astype(float)

    def weights(self, P: np.ndarray, gradient: bool = True):
        """w (n, M) and dw/dp (n, M, D), finite for every input.

        d_m grows without bound as z approaches a centroid (duplicated training structures put
        members exactly on it: |z - mu_m| = 0).  The squared distance is floored at ``r2_min``, the
        smallest value at which d_m and its gradient (|dd_m/dz| = 4 amp_m r2^-5/2) stay below
        ~1e280, and the softmax is taken as exp(d - logsumexp(d)) with the maximum subtracted, so
        it never evaluates inf - inf; at a centroid the weights are one-hot and dw = 0.
        """
        Z = self.standardiser(np.atleast_2d(P))
        diff = Z[:, None, :] - self.mu[None]                   # (n, M, D)
        amp = self.sigma * np.sqrt(self.n)
        r2_min = (4.0 * float(amp.max()) * 1e-280) ** 0.4
        r2 = np.maximum((diff ** 2).sum(axis=2), r2_min)
        d = amp[None, :] / r2 ** 2                             # finite by the floor
        d_max = d.max(axis=1, keepdims=True)
        with np.errstate(under="ignore"):     # exp of very negative numbers is 0, as it should be
            lse = d_max + np.log(np.exp(d - d_max).sum(axis=1, keepdims=True))
            w = np.exp(d - lse)
        if not gradient:
            return w, None
        # dd_m/dz = amp * (-2) r2^-3 * 2 diff = -4 amp r2^-5/2 (diff / |diff|): the unit vector and
        # r2^-5/2 separately, so no intermediate (r2^3) underflows
        unit = diff / np.sqrt(r2)[:, :, None]
        dd = -4.0 * (amp[None, :] * r2 ** -2.5)[:, :, None] * unit
        dbar = (w[:, :, None] * dd).sum(axis=1, keepdims=True)
        dw = w[:, :, None] * (dd - dbar) / self.standardiser.scale[None, None, :]
        return w, dw
