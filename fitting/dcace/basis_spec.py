"""Build the linear ACE basis specification (the C++ ``BasisSpec``) from a few user settings.

Why this file exists: choosing which invariants form the basis (degree truncation, coupling,
permutation reduction, expansion into monomials of A) happens once, in Python, at fit time; the
result is stored in the potential file and the C++ core only multiplies and adds.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import coupling

__all__ = ["build_basis_spec", "count_features", "check_degree_blocks", "check_chemical_channels",
           "fixed_embedding", "DEGREE_CONVENTION"]

MAX_ORDER = 4  # kMaxOrder of ace_basis.hpp (body order 5)
_DROP_TOL = 1e-14  # relative to a feature's largest monomial coefficient
_DEG_EPS = 1e-9  # n + w_L l is compared with max_degree with this slack

DEGREE_CONVENTION = (
    "ACEpotentials total degree: a feature couples nu = 1..body_order-1 channels (z_t, n_t, l_t) "
    "and is kept if sum_t (n_t + 1 + w_L * l_t) <= max_degree, where n_t is the C++ radial index "
    "(chan_n, 0-based; the degree uses n + 1 >= 1).  nu = 1 gives A_{z n 0 0} (2-body).  Only "
    "rotation- and inversion-invariant couplings (sum_t l_t even) are kept; repeated channels are "
    "reduced to an independent set.  Feature labels list the channels (z, n, l) of each feature, "
    "with 0-based n, sorted by (z, l, n) like the channels."
)


def _check_int(name, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def _check_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _validate(n_species, cutoff, body_order, max_degree, inner_cutoff, w_L):
    n_species = _check_int("n_species", n_species, lo=1)
    cutoff = _check_real("cutoff", cutoff)
    if cutoff <= 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    body_order = _check_int("body_order", body_order, lo=2, hi=MAX_ORDER + 1)
    max_degree = _check_real("max_degree", max_degree)
    if max_degree < 0:
        raise ValueError(f"max_degree must be >= 0, got {max_degree}")
    inner_cutoff = _check_real("inner_cutoff", inner_cutoff)
    if not 0 <= inner_cutoff < cutoff:
        raise ValueError(f"inner_cutoff must be in [0, cutoff={cutoff}), got {inner_cutoff}")
    w_L = _check_real("w_L", w_L)
    if w_L <= 0:
        raise ValueError(f"w_L must be > 0, got {w_L}")
    return n_species, cutoff, body_order, max_degree, inner_cutoff, w_L


def check_degree_blocks(blocks, n_species, body_order, max_degree):
    """{number of distinct species: max degree} from a dict (or None), validated.

    A function coupling b distinct species (the pacemaker UNARY/BINARY/... blocks) is kept if its
    degree is <= blocks.get(b, max_degree).  Block b exists for 1 <= b <= min(n_species,
    body_order - 1); naming another one is an error naming the option."""
    if blocks is None:
        return {}
    opt = "max_degree_blocks (--max-degree-blocks)"
    if not isinstance(blocks, dict):
        raise ValueError(f"{opt} must map a number of distinct species to a degree, e.g. {{2: 10, 3: 8}}, "
                         f"got {blocks!r}")
    top = min(n_species, body_order - 1)
    out = {}
    for b, d in blocks.items():
        if isinstance(b, str) and b.strip().isdigit():   # JSON keys (settings stored in files and states)
            b = int(b)
        b = _check_int(f"{opt}: block", b, lo=1)
        d = _check_real(f"{opt}: degree of block {b}", d)
        if b > top:
            why = (f"with {n_species} element(s)" if b > n_species
                   else f"at body order {body_order} (a function couples at most {body_order - 1} channels)")
            raise ValueError(f"{opt}: block {b} (functions coupling {b} distinct species) does not exist "
                             f"{why}; the blocks are 1..{top}")
        if d < 0:
            raise ValueError(f"{opt}: the degree of block {b} must be >= 0, got {d:g}")
        out[b] = d
    return out


def check_chemical_channels(C, n_species):
    """The number of chemical channels (None = the explicit basis), validated against the species."""
    if C is None:
        return None
    opt = "chemical_channels (--chemical-channels)"
    if isinstance(C, bool) or not isinstance(C, numbers.Integral):
        raise ValueError(f"{opt} must be an integer, got {C!r}")
    if not 1 <= int(C) <= n_species:
        raise ValueError(f"{opt} must be between 1 and the number of elements ({n_species}), got {C}")
    return int(C)


def fixed_embedding(n_species, C, order=None):
    """The fixed species embedding W (C x S) of the tensor-reduced basis, no training involved.

    Rows are the first C cosine (DCT-II) vectors over the species ranked by `order` (e.g. atomic
    number; default: index): W_{k z} = cos(pi k (rank_z + 1/2) / S).  Row 0 is all ones, SNAP's
    total density; the rows are orthogonal, so C = S spans the explicit basis exactly."""
    rank = np.argsort(np.argsort(np.arange(n_species) if order is None else np.asarray(order), kind="stable"),
                      kind="stable")
    k = np.arange(C)[:, None]
    W = np.cos(np.pi * k * (rank[None, :] + 0.5) / n_species)
    return np.where(np.abs(W) < 1e-12, 0.0, W)   # cos(pi/2) is 6e-17 in floating point: exactly 0


def _channel_tuples(n_species, nu, max_degree, w_L, blocks=None):
    """Sorted channel multisets of size nu within the degree budget, with at least one invariant.

    Channels are (z, l, n) key tuples, n 1-based (degree convention); yields (tuple, pattern).
    blocks: {distinct species: degree} limits (check_degree_blocks); the enumeration runs to the
    largest of them and max_degree, each tuple is then held to its block's limit.
    """
    blocks = blocks or {}
    limit = {b: blocks.get(b, max_degree) for b in range(1, nu + 1)}
    max_degree = max(limit.values())
    budget1 = max_degree - (nu - 1) + _DEG_EPS  # the other nu-1 channels cost >= 1 each
    cands = []
    for z in range(n_species):
        l = 0
        while 1 + w_L * l <= budget1:
            n = 1
            while n + w_L * l <= budget1:
                cands.append((z, l, n, n + w_L * l))
                n += 1
            l += 1
    cands.sort()

    def rec(start, left, budget, cur):
        if left == 0:
            yield cur
            return
        for i in range(start, len(cands)):
            d = cands[i][3]
            if d + (left - 1) <= budget:
                yield from rec(i, left - 1, budget - d, cur + (cands[i][:3],))

    for tup in rec(0, nu, max_degree + _DEG_EPS, ()):
        if blocks and sum(c[2] + w_L * c[1] for c in tup) > limit[len({c[0] for c in tup})] + _DEG_EPS:
            continue
        ls = tuple(c[1] for c in tup)
        if sum(ls) % 2 or 2 * max(ls) > sum(ls):
            continue
        pattern = coupling.equality_pattern(tup)
        offsets, W = coupling.coupling_terms(ls, pattern)
        if W.shape[0]:
            yield tup, ls, offsets, W


def count_features(n_species, body_order, max_degree, *, w_L=1.5, max_degree_blocks=None,
                   chemical_channels=None) -> int:
    """K, the number of features per centre species, without building the basis.

    Enumerates the channel tuples and their couplings (the cheap part; it also fills the coupling
    cache the build reuses) but not the expansion into monomials of A: about a second for the
    60,982 features of body order 4, degree 40.  Equal to ``build_basis_spec(...)["n_features"]``.
    """
    n_species, _, body_order, max_degree, _, w_L = _validate(n_species, 1.0, body_order, max_degree, 0.0, w_L)
    n_z, blocks = _channel_species(n_species, body_order, max_degree, max_degree_blocks, chemical_channels)
    return sum(W.shape[0] for nu in range(1, body_order)
               for *_, W in _channel_tuples(n_z, nu, max_degree, w_L, blocks))


def _channel_species(n_species, body_order, max_degree, blocks, C):
    """(range of the channels' z, validated blocks): species, or chemical channels if C is given."""
    C = check_chemical_channels(C, n_species)
    blocks = check_degree_blocks(blocks, n_species, body_order, max_degree)
    if C is not None and blocks:
        raise ValueError("max_degree_blocks (--max-degree-blocks) cannot be combined with chemical_channels "
                         "(--chemical-channels): embedded channels mix every species")
    return (n_species if C is None else C), blocks


def build_basis_spec(n_species, cutoff, body_order, max_degree, *, inner_cutoff=0.5,
                     w_L=1.5, max_degree_blocks=None, chemical_channels=None, embedding=None) -> dict:
    """The ACE basis of the given size, as the fields of the C++ ``BasisSpec``.

    Returns a dict with n_species, r_cut, r_inner, n_radial, l_max, chan_z, chan_n, chan_l (int32),
    mono_idx (int32, n_mono x 4, sorted compact A indices, -1 padded), n_features, feat_ptr,
    feat_mono (int32), feat_coef (float64), plus ``feature_labels`` (per feature: tuple of channel
    (z, n, l) triples, n 0-based) and ``degree_convention`` (text).  Raises ValueError on bad input.

    max_degree_blocks: {b: degree}, a smaller degree for functions coupling b distinct species.
    chemical_channels: C, the species-embedded basis (channel z = chemical channel k, A_{k n l m} =
    sum_j W_{k z_j} R_n Y_lm): K is that of C species, whatever n_species; embedding: W (C x S),
    default ``fixed_embedding``.  Adds n_chem (0 = explicit) and chem_weights (C x S or None).
    """
    n_species, cutoff, body_order, max_degree, inner_cutoff, w_L = _validate(
        n_species, cutoff, body_order, max_degree, inner_cutoff, w_L)
    n_z, blocks = _channel_species(n_species, body_order, max_degree, max_degree_blocks, chemical_channels)
    chem_W = None
    if chemical_channels is not None:
        chem_W = fixed_embedding(n_species, n_z) if embedding is None else np.asarray(embedding, dtype=float)
        if chem_W.shape != (n_z, n_species) or not np.isfinite(chem_W).all():
            raise ValueError(f"embedding must be a finite {n_z} x {n_species} matrix, got shape {chem_W.shape}")

    # 1. the features: (channel tuple, coupling offsets, coupling coefficient rows)
    groups = []
    for nu in range(1, body_order):
        groups.extend(_channel_tuples(n_z, nu, max_degree, w_L, blocks))
    if not groups:
        raise ValueError(f"max_degree={max_degree} admits no basis function "
                         "(the smallest, A_{z,n=1,l=0}, has degree 1)")

    # 2. channels in (z, l, n) order, compact A offsets
    chans = sorted({c for tup, *_ in groups for c in tup})
    chan_index = {c: i for i, c in enumerate(chans)}
    chan_z = np.array([c[0] for c in chans], dtype=np.int32)
    chan_l = np.array([c[1] for c in chans], dtype=np.int32)
    chan_n = np.array([c[2] - 1 for c in chans], dtype=np.int32)  # C++ n = n_conv - 1
    chan_offset = np.concatenate([[0], np.cumsum(2 * chan_l + 1)]).astype(np.int64)
    n_A = int(chan_offset[-1])

    # monomial keys: (order, sorted indices + 1, zero padded) as one int64, ordered by (order, idx)
    base = n_A + 1
    if (MAX_ORDER + 1) * base ** MAX_ORDER >= 2 ** 62:
        raise ValueError(f"basis too large: {n_A} A entries")
    powers = base ** np.arange(MAX_ORDER - 1, -1, -1, dtype=np.int64)

    # 3. expand every feature into monomials of A
    feat_keys, feat_vals, labels = [], [], []
    for tup, ls, offsets, W in groups:
        nu = len(tup)
        cidx = np.array([chan_index[c] for c in tup])
        K = np.sort(offsets + chan_offset[cidx], axis=1)
        keys = nu * base ** MAX_ORDER + (K + 1) @ powers[:nu]
        ukeys, inv = np.unique(keys, return_inverse=True)
        label = tuple((c[0], c[2] - 1, c[1]) for c in tup)
        for w in W:
            coef = np.bincount(inv, weights=w, minlength=len(ukeys))
            keep = np.abs(coef) >= _DROP_TOL * np.abs(coef).max()
            feat_keys.append(ukeys[keep])
            feat_vals.append(coef[keep])
            labels.append(label)

    all_keys = np.unique(np.concatenate(feat_keys))
    digits = (all_keys[:, None] // powers[None, :]) % base  # drops the order digit
    mono_idx = (digits - 1).astype(np.int32)  # padding digit 0 -> -1

    feat_ptr = np.zeros(len(feat_keys) + 1, dtype=np.int64)
    feat_ptr[1:] = np.cumsum([len(k) for k in feat_keys])
    feat_mono = np.searchsorted(all_keys, np.concatenate(feat_keys)).astype(np.int32)
    feat_coef = np.concatenate(feat_vals).astype(np.float64)
    if feat_ptr[-1] >= 2 ** 31:
        raise ValueError(f"basis too large: {feat_ptr[-1]} non-zeros")

    return {
        "n_species": n_species,
        "r_cut": cutoff,
        "r_inner": inner_cutoff,
        "n_chem": 0 if chem_W is None else n_z,
        "chem_weights": None if chem_W is None else np.ascontiguousarray(chem_W),
        "n_radial": int(chan_n.max()) + 1,
        "l_max": int(chan_l.max()),
        "chan_z": chan_z,
        "chan_n": chan_n,
        "chan_l": chan_l,
        "mono_idx": mono_idx,
        "n_features": len(labels),
        "feat_ptr": feat_ptr.astype(np.int32),
        "feat_mono": feat_mono,
        "feat_coef": feat_coef,
        "feature_labels": labels,
        "degree_convention": DEGREE_CONVENTION + f" Here w_L = {w_L:g}, max_degree = "
                             f"{max_degree:g}, body_order = {body_order}."
                             + ("" if not blocks else " Block degrees (distinct species: degree): "
                                + ", ".join(f"{b}: {d:g}" for b, d in sorted(blocks.items())) + ".")
                             + ("" if chem_W is None else f" Species-embedded: z in the labels is one of {n_z} "
                                "chemical channels, A_{k n l m} = sum_j W_{k z_j} R_n Y_lm."),
    }
