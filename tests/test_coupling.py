"""Tests of the invariant basis construction (dcace.coupling, dcace.basis_spec).

They pin the basis counts to ACEpotentials' and check every feature for rotation/reflection and
permutation invariance and linear independence with the independent numpy reference evaluator.
"""

import importlib
import math
import os
import sys
import types

import numpy as np
import pytest
from scipy.special import lpmv, sph_harm_y

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402


def _import(name):
    """Import dcace.<name>; if the package __init__ cannot be imported (compiled core not built),
    load the pure-Python submodule without running __init__."""
    try:
        return importlib.import_module(f"dcace.{name}")
    except ImportError:
        pkg_dir = os.path.join(os.path.dirname(HERE), "fitting", "dcace")
        pkg = types.ModuleType("dcace")
        pkg.__path__ = [pkg_dir]
        sys.modules["dcace"] = pkg
        for key in [k for k in sys.modules if k.startswith("dcace.")]:
            del sys.modules[key]
        return importlib.import_module(f"dcace.{name}")


basis_spec = _import("basis_spec")
coupling = _import("coupling")
build = basis_spec.build_basis_spec


def _nu(spec):
    return np.array([len(lab) for lab in spec["feature_labels"]])


# ----------------------------------------------------------------------------- counts

@pytest.mark.parametrize("degree, counts", [(12, [12, 67, 132]), (16, [16, 147, 505])])
def test_counts_match_acepotentials(degree, counts):
    # ACEpotentials / ace-jax, 1 element, order 3, w_L = 1.5: "12 two-body + 211" at D = 12 and
    # "16 + 668" at D = 16.  Their 211 / 668 is the many-body basis, which already contains the
    # nu = 1 functions A_{n00}; their extra 12 / 16 are a separate pair basis with its own radial
    # functions, which in dcace would duplicate A_{n00} exactly.  So K = 211 and 668 here.
    spec = build(1, 5.0, 4, degree)
    assert spec["n_features"] == sum(counts) == {12: 211, 16: 668}[degree]
    assert np.bincount(_nu(spec))[1:].tolist() == counts


def _su2_invariant_count(ls, pattern):
    """Number of SO(3) invariants of the symmetrised tensor product, from characters (Molien)."""
    N = 4 * (sum(ls) + 2) * 4 + 8
    th = 2 * np.pi * np.arange(N) / N

    def chi(l, k):  # character of V_l at rotation angle k*theta
        return 1 + 2 * sum(np.cos(m * k * th) for m in range(1, l + 1))

    # characters of Sym^k V_l by the cycle-index (Polya) formula
    sym = {
        1: lambda l: chi(l, 1),
        2: lambda l: (chi(l, 1) ** 2 + chi(l, 2)) / 2,
        3: lambda l: (chi(l, 1) ** 3 + 3 * chi(l, 1) * chi(l, 2) + 2 * chi(l, 3)) / 6,
        4: lambda l: (chi(l, 1) ** 4 + 6 * chi(l, 1) ** 2 * chi(l, 2) + 3 * chi(l, 2) ** 2
                      + 8 * chi(l, 1) * chi(l, 3) + 6 * chi(l, 4)) / 24,
    }
    f = np.ones(N)
    for g in set(pattern):
        pos = [t for t in range(len(ls)) if pattern[t] == g]
        f = f * sym[len(pos)](ls[pos[0]])
    return int(round(np.mean(f * (1 - np.cos(th)))))


def _patterns(nu):
    """All equality patterns of nu positions (set partitions, canonical labels)."""
    out = set()
    for labels in np.ndindex(*(nu,) * nu):
        out.add(coupling.equality_pattern(labels))
    return sorted(out)


@pytest.mark.parametrize("nu, lmax", [(1, 4), (2, 5), (3, 4), (4, 3)])
def test_invariant_counts_match_characters(nu, lmax):
    # completeness: as many independent (symmetrised) invariants as group theory allows
    import itertools
    for ls in itertools.combinations_with_replacement(range(lmax + 1), nu):
        for pattern in _patterns(nu):
            if any(pattern[a] == pattern[b] and ls[a] != ls[b]
                   for a in range(nu) for b in range(nu)):
                continue
            got = coupling.symmetric_invariants(ls, pattern).shape[0]
            want = _su2_invariant_count(ls, pattern) if sum(ls) % 2 == 0 else 0
            assert got == want, (ls, pattern)


def test_coupling_terms_unit_norm_and_real():
    for ls, pattern in [((2, 2), (0, 0)), ((1, 2, 3), (0, 1, 2)), ((2, 2, 2, 2), (0, 0, 1, 1)),
                        ((3, 3, 3, 3), (0, 0, 0, 0)), ((1, 1, 2, 4), (0, 0, 1, 2))]:
        offsets, W = coupling.coupling_terms(ls, pattern)
        assert W.dtype == np.float64 and offsets.shape == (W.shape[1], len(ls))
        assert np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-14)
        assert np.allclose(W @ W.T, np.eye(len(W)), atol=1e-13)
        assert np.all(offsets >= 0) and np.all(offsets <= 2 * np.array(ls))


def test_distinct_four_fold_count_is_number_of_trees():
    for ls in [(1, 2, 3, 4), (2, 2, 3, 3), (0, 2, 2, 4), (3, 3, 3, 3)]:
        trees = len(set(range(abs(ls[0] - ls[1]), ls[0] + ls[1] + 1))
                    & set(range(abs(ls[2] - ls[3]), ls[2] + ls[3] + 1)))
        assert coupling.invariants(ls).shape[0] == trees


# ----------------------------------------------------------------------------- real harmonics

def _real_Y_header(l, m, vec):
    """The header's formula with scipy's P_l^m (which includes the Condon-Shortley phase)."""
    x, y, z = vec / np.linalg.norm(vec)
    phi = math.atan2(y, x)
    am = abs(m)
    N = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - am) / math.factorial(l + am))
    P = lpmv(am, l, z)
    if m == 0:
        return N * P
    return math.sqrt(2) * N * P * (math.cos(am * phi) if m > 0 else math.sin(am * phi))


def test_real_from_complex_matches_header_convention():
    rng = np.random.default_rng(0)
    for l in range(9):
        U = coupling.real_from_complex(l)
        assert np.allclose(U @ U.conj().T, np.eye(2 * l + 1), atol=1e-14)
        for _ in range(5):
            v = rng.normal(size=3)
            th = math.acos(v[2] / np.linalg.norm(v))
            ph = math.atan2(v[1], v[0])
            Yc = np.array([sph_harm_y(l, m, th, ph) for m in range(-l, l + 1)])
            Yr = np.array([_real_Y_header(l, m, v) for m in range(-l, l + 1)])
            assert np.allclose(U @ Yc, Yr, atol=1e-13, rtol=0)
            assert np.allclose(reference.real_sph_harm(l, v)[0, l * l:], Yr, atol=1e-13, rtol=0)


def test_header_example_values():
    # Y_1,1 = -sqrt(3/4pi) x, Y_1,-1 = -sqrt(3/4pi) y, Y_10 = sqrt(3/4pi) z (unit vector)
    v = np.array([0.3, -0.5, 0.8])
    u = v / np.linalg.norm(v)
    Y = reference.real_sph_harm(1, v)[0]
    c = math.sqrt(3 / (4 * math.pi))
    assert np.allclose(Y, [1 / math.sqrt(4 * math.pi), -c * u[1], c * u[2], -c * u[0]])


# ----------------------------------------------------------------------------- invariance

def _random_rotation(rng, reflect=False):
    Q, R = np.linalg.qr(rng.normal(size=(3, 3)))
    Q = Q * np.sign(np.diag(R))
    if np.linalg.det(Q) < 0:
        Q[:, 0] *= -1
    return -Q if reflect else Q


def _environment(rng, spec, n_neigh=14):
    rc, ri = spec["r_cut"], spec["r_inner"]
    d = rng.normal(size=(n_neigh, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    r = rng.uniform(ri + 0.05 * (rc - ri), 0.98 * rc, size=n_neigh)
    z = rng.integers(0, spec["n_species"], size=n_neigh)
    return d * r[:, None], z


def _abs_base(rij, zj, spec):
    """A with every neighbour contribution replaced by its absolute value."""
    r = np.linalg.norm(rij, axis=1)
    R = np.abs(reference.radial(r, spec["n_radial"], spec["r_cut"], spec["r_inner"]))
    Y = np.abs(reference.real_sph_harm(spec["l_max"], rij))
    return np.concatenate([R[zj == z, n] @ Y[zj == z, l * l:(l + 1) ** 2] for z, n, l in
                           zip(spec["chan_z"], spec["chan_n"], spec["chan_l"])])


def _term_scale(rij, zj, spec):
    """Per feature sum_t |coef_t| prod |A| with |A| = sum_j |R Y|: the round-off scale of B."""
    mono = np.prod(np.append(_abs_base(rij, zj, spec), 1.0)[spec["mono_idx"]], axis=1)
    ptr, cols, coef = spec["feat_ptr"], spec["feat_mono"], spec["feat_coef"]
    return np.array([np.abs(coef[ptr[v]:ptr[v + 1]]) @ mono[cols[ptr[v]:ptr[v + 1]]]
                     for v in range(spec["n_features"])])


SMALL_SPECS = [
    (1, 2, 6), (1, 3, 10), (1, 4, 10), (1, 5, 9),
    (2, 2, 4), (2, 3, 7), (2, 4, 7), (2, 5, 7),
]


@pytest.mark.parametrize("n_species, body_order, degree", SMALL_SPECS)
def test_rotation_reflection_permutation_invariance(n_species, body_order, degree):
    spec = build(n_species, 4.5, body_order, degree, inner_cutoff=0.8)
    rng = np.random.default_rng(100 * n_species + 10 * body_order + degree)
    for trial in range(4):
        rij, zj = _environment(rng, spec)
        B = reference.descriptors(rij, zj, spec)
        scale = _term_scale(rij, zj, spec)
        assert np.all(scale > 0)
        for reflect in (False, True):
            Q = _random_rotation(rng, reflect)
            B2 = reference.descriptors(rij @ Q.T, zj, spec)
            assert np.all(np.abs(B2 - B) <= 1e-12 * scale), np.max(np.abs(B2 - B) / scale)
        perm = rng.permutation(len(zj))
        B3 = reference.descriptors(rij[perm], zj[perm], spec)
        assert np.all(np.abs(B3 - B) <= 1e-12 * scale)


def test_two_body_features_and_power_spectrum():
    spec = build(1, 5.0, 3, 8)
    rng = np.random.default_rng(3)
    rij, zj = _environment(rng, spec)
    A = reference.atomic_base(rij, zj, spec)
    B = reference.product_basis(A, spec)
    off = np.concatenate([[0], np.cumsum(2 * spec["chan_l"] + 1)])
    cidx = {(z, n, l): c for c, (z, n, l) in
            enumerate(zip(spec["chan_z"], spec["chan_n"], spec["chan_l"]))}
    for v, lab in enumerate(spec["feature_labels"]):
        if len(lab) == 1:  # A_{z n 0 0}, coefficient 1
            assert lab[0][2] == 0
            assert B[v] == pytest.approx(A[off[cidx[lab[0]]]], rel=1e-14)
        elif len(lab) == 2:  # SOAP power spectrum: +-(2l+1)^(-1/2) sum_m A_{c1 m} A_{c2 m}
            a, b = (A[off[cidx[c]]:off[cidx[c] + 1]] for c in lab)
            p = a @ b / math.sqrt(len(a))
            assert abs(abs(B[v]) - abs(p)) <= 1e-13 * (np.abs(a) @ np.abs(b))


# ----------------------------------------------------------------------------- independence

@pytest.mark.parametrize("n_species, body_order, degree", [
    (1, 4, 10), (1, 5, 9), (2, 3, 8), (2, 4, 6), (2, 5, 6)])
def test_features_linearly_independent(n_species, body_order, degree):
    spec = build(n_species, 4.5, body_order, degree, inner_cutoff=0.8)
    K = spec["n_features"]
    rng = np.random.default_rng(7)
    X = np.array([reference.descriptors(*_environment(rng, spec, n_neigh=24), spec)
                  for _ in range(3 * K)])
    X /= np.linalg.norm(X, axis=0)
    s = np.linalg.svd(X, compute_uv=False)
    assert s[-1] / s[0] > 1e-8, (K, s[-1] / s[0])


# ----------------------------------------------------------------------------- structure

def _equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("args", [(1, 5.0, 5, 10), (2, 4.0, 4, 8)])
def test_deterministic(args):
    coupling.clear_cache()
    a = build(*args)
    coupling.clear_cache()
    b = build(*args)
    _equal(a, b)
    _equal(a, build(*args))  # cached couplings


def test_spec_layout():
    spec = build(2, 5.0, 5, 9, inner_cutoff=0.7)
    K = spec["n_features"]
    assert spec["r_cut"] == 5.0 and spec["r_inner"] == 0.7 and spec["n_species"] == 2
    for key in ("chan_z", "chan_n", "chan_l", "mono_idx", "feat_ptr", "feat_mono"):
        assert spec[key].dtype == np.int32, key
    assert spec["feat_coef"].dtype == np.float64
    keys = list(zip(spec["chan_z"], spec["chan_l"], spec["chan_n"]))
    assert keys == sorted(set(keys))  # channels unique and ordered (z, l, n)
    assert spec["n_radial"] == spec["chan_n"].max() + 1
    assert spec["l_max"] == spec["chan_l"].max()
    n_A = int(np.sum(2 * spec["chan_l"] + 1))
    idx = spec["mono_idx"]
    assert idx.shape[1] == 4 and idx.max() < n_A
    order = np.sum(idx >= 0, axis=1)
    for row, k in zip(idx, order):
        assert np.all(row[:k] >= 0) and np.all(row[k:] == -1)
        assert np.all(np.diff(row[:k]) >= 0)
    assert len({tuple(r) for r in idx}) == len(idx)  # no duplicate monomials
    ptr = spec["feat_ptr"]
    assert ptr[0] == 0 and ptr[-1] == len(spec["feat_mono"]) == len(spec["feat_coef"])
    assert len(ptr) == K + 1 and np.all(np.diff(ptr) > 0)
    assert len(spec["feature_labels"]) == K
    used = np.zeros(len(idx), bool)
    for v in range(K):
        cols = spec["feat_mono"][ptr[v]:ptr[v + 1]]
        assert np.all(np.diff(cols) > 0)
        assert np.all(order[cols] == len(spec["feature_labels"][v]))
        used[cols] = True
    assert used.all()
    assert isinstance(spec["degree_convention"], str)
    # all features respect the degree bound and use only listed channels
    chans = set(zip(spec["chan_z"].tolist(), spec["chan_n"].tolist(), spec["chan_l"].tolist()))
    for lab in spec["feature_labels"]:
        assert sum(n + 1 + 1.5 * l for _, n, l in lab) <= 9 + 1e-9
        assert set(lab) <= chans


def test_two_species_contains_one_species_basis():
    one = build(1, 5.0, 4, 10)
    two = build(2, 5.0, 4, 10)
    assert two["n_features"] > one["n_features"]
    assert sum(all(z == 0 for z, _, _ in lab) for lab in two["feature_labels"]) \
        == one["n_features"]


# ----------------------------------------------------------------------------- input errors

@pytest.mark.parametrize("args, kwargs, text", [
    ((0, 5.0, 4, 12), {}, "n_species"),
    ((1, 0.0, 4, 12), {}, "cutoff"),
    ((1, -2.0, 4, 12), {}, "-2.0"),
    ((1, float("nan"), 4, 12), {}, "cutoff"),
    ((1, 5.0, 1, 12), {}, "body_order"),
    ((1, 5.0, 6, 12), {}, "6"),
    ((1, 5.0, 4, -1), {}, "max_degree"),
    ((1, 5.0, 4, 0), {}, "max_degree=0"),
    ((1, 5.0, 4, 12), {"inner_cutoff": 5.0}, "inner_cutoff"),
    ((1, 5.0, 4, 12), {"inner_cutoff": -0.1}, "-0.1"),
    ((1, 5.0, 4, 12), {"w_L": 0.0}, "w_L"),
    ((1.5, 5.0, 4, 12), {}, "1.5"),
])
def test_bad_input_raises_value_error(args, kwargs, text):
    with pytest.raises(ValueError, match=text.replace(".", r"\.").replace("-", r"\-")):
        build(*args, **kwargs)


def test_reference_rejects_too_close_neighbour():
    spec = build(1, 5.0, 2, 4, inner_cutoff=0.5)
    with pytest.raises(ValueError, match="r_inner"):
        reference.descriptors(np.array([[0.3, 0.0, 0.0]]), np.array([0]), spec)


def test_reference_descriptors_on_atoms():
    from ase.build import bulk
    spec = build(2, 4.0, 3, 6)
    atoms = bulk("NaCl", "rocksalt", a=4.1).repeat((2, 1, 1))
    B = reference.reference_descriptors(atoms, spec, {11: 0, 17: 1})
    assert B.shape == (len(atoms), spec["n_features"])
    # equivalent sites of the same species have the same descriptors
    na = atoms.numbers == 11
    assert np.allclose(B[na], B[na][0], atol=1e-12)
    assert not np.allclose(B[na][0], B[~na][0])
    # the same neighbours given directly, rotated
    Q = _random_rotation(np.random.default_rng(1))
    atoms2 = atoms.copy()
    atoms2.set_cell(atoms.cell[:] @ Q.T, scale_atoms=True)
    B2 = reference.reference_descriptors(atoms2, spec, lambda Z: {11: 0, 17: 1}[Z])
    assert np.allclose(B, B2, rtol=1e-11, atol=1e-11)
