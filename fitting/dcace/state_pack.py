"""Packed storage of a fit state's normal equations (fit-state format version 2, docs/fit-state.md).

Every normal matrix of a fit is symmetric, so a state keeps only its upper triangle (float64), half
the bytes of version 1: for the linear model and the independent experts ``H[np.triu_indices(D')]``;
for a committee of M experts the upper block triangle (``_block_layout``: the blocks H_mq, m < q,
in full, then the upper triangles of the diagonal blocks H_mm), read and written block by block.

A jointly fitted committee is accumulated as "half blocks" S (``committee.JointAccumulator``:
H_mm' = S_mm' + S_m'm^T), which are not symmetric; the state keeps the assembled, symmetric H of
each fold, and a resumed fit continues from the canonical half blocks of that H:

    S_mm' = H_mm' (m < m'),   S_mm = H_mm / 2,   S_m'm = 0 (m < m'),

which assemble to the same H bit for bit (x + 0 = x, x/2 + x/2 = x).  A fit from scratch that
reuses a state (``fit(reuse=S)``) puts its sums in the same form after the state's structures
(``canonical_sums``), so an incremental refit still equals it bit for bit.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack_groups", "pack_joint", "restore_groups", "restore_joint", "canonical_sums"]


def _upper(n):
    return np.triu_indices(n)


def _symmetric_from_upper(A):
    """A (..., n, n) whose upper triangles hold symmetric matrices -> the full matrices."""
    U = np.triu(A)
    return U + np.swapaxes(np.triu(A, 1), -1, -2)


def _half_blocks(H, M, Dp):
    """Canonical half blocks (M, M, D', D') of an (M D', M D') matrix whose upper triangle holds H."""
    H4 = H.reshape(M, Dp, M, Dp)
    S = np.zeros((M, M, Dp, Dp))
    for m in range(M):
        S[m, m] = 0.5 * _symmetric_from_upper(H4[m, :, m, :])
        for q in range(m + 1, M):
            S[m, q] = H4[m, :, q, :]
    return S


def pack_groups(H):
    """(k, G, D', D') symmetric matrices -> (k, G, D'(D'+1)/2) upper triangles."""
    iu = _upper(H.shape[-1])
    return np.ascontiguousarray(H[..., iu[0], iu[1]])


def _block_layout(M, Dp):
    """Offsets of a committee's packed matrix: the blocks H_mq (m < q, row-major order) in full,
    then the upper triangle of each diagonal block H_mm -- n(n+1)/2 numbers, n = M D'."""
    off, pos = {}, 0
    for m in range(M):
        for q in range(m + 1, M):
            off[(m, q)] = pos
            pos += Dp * Dp
    tri = Dp * (Dp + 1) // 2
    for m in range(M):
        off[(m, m)] = pos
        pos += tri
    return off, pos


def pack_joint(acc):
    """A JointAccumulator's per-fold normal matrices, packed (k, n(n+1)/2) by blocks (_block_layout),
    straight from its half blocks: H_mq = S_mq + S_qm^T."""
    M, Dp = acc.M, acc.Dp
    off, size = _block_layout(M, Dp)
    iu = _upper(Dp)
    out = np.empty((acc.Sh.shape[0], size))
    for f in range(acc.Sh.shape[0]):
        S = acc.Sh[f]
        for (m, q), o in off.items():
            if m < q:
                np.add(S[m, q], S[q, m].T, out=out[f, o:o + Dp * Dp].reshape(Dp, Dp))
            else:
                out[f, o:o + len(iu[0])] = (S[m, m] + S[m, m].T)[iu]
    return out


def _fill_symmetric(out, P):
    """out (..., n, n) <- the symmetric matrices whose row-major upper triangles are P (..., n(n+1)/2),
    row by row (slices, no index arrays)."""
    n = out.shape[-1]
    o = 0
    for i in range(n):
        seg = P[..., o:o + n - i]
        out[..., i, i:] = seg
        out[..., i + 1:, i] = seg[..., 1:]
        o += n - i
    return out


def restore_groups(P, Dp):
    """Packed (k, G, D'(D'+1)/2) -> full symmetric (k, G, D', D')."""
    if P.shape[-1] != Dp * (Dp + 1) // 2:
        raise ValueError(f"{P.shape[-1]} numbers per matrix, {Dp} unknowns need {Dp * (Dp + 1) // 2}")
    return _fill_symmetric(np.empty(P.shape[:-1] + (Dp, Dp)), P)


def restore_joint(P, M, Dp):
    """Packed (k, n(n+1)/2) -> canonical half blocks (k, M, M, D', D')."""
    off, size = _block_layout(M, Dp)
    if P.shape[-1] != size:
        raise ValueError(f"{P.shape[-1]} numbers per fold, M = {M} experts of {Dp} unknowns need {size}")
    tri = Dp * (Dp + 1) // 2
    S = np.zeros((P.shape[0], M, M, Dp, Dp))
    for (m, q), o in off.items():
        if m < q:
            S[:, m, q] = P[:, o:o + Dp * Dp].reshape(-1, Dp, Dp)
        else:
            _fill_symmetric(S[:, m, m], P[:, o:o + tri])
            S[:, m, m] *= 0.5
    return S


def canonical_sums(groups, joint):
    """Put accumulated sums in the stored form (in place; the assembled matrices do not change)."""
    for f in range(groups.H.shape[0]):
        groups.H[f] = _symmetric_from_upper(groups.H[f])
    for acc in joint.values():
        for f in range(acc.Sh.shape[0]):
            acc.Sh[f] = _half_blocks(acc.matrix(f), acc.M, acc.Dp)
