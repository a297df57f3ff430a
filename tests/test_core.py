"""Physics of the C++ ACE core: invariances, derivatives against finite differences, smoothness at
the cutoff, linear independence on real data, agreement with the numpy reference, bad input."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.io import read

import dcace
import reference as ref

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


@lru_cache(maxsize=None)
def basis(elements: tuple, body_order: int, degree: float, cutoff: float = 4.5):
    return dcace.ACEBasis(list(elements), cutoff=cutoff, body_order=body_order, max_degree=degree)


def random_rotation(rng, reflect=False):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if reflect:
        q = q @ np.diag([1.0, 1.0, -1.0])
    return q


def rattled_mo(rng, rep=(2, 2, 2), amp=0.15):
    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(rep)
    at.positions += amp * rng.normal(size=at.positions.shape)
    return at


def triclinic_pair(rng):
    cell = np.array([[3.1, 0.0, 0.0], [1.2, 2.9, 0.0], [0.7, 0.9, 3.3]])
    at = Atoms("MoNbMoNb", cell=cell, pbc=True,
               scaled_positions=rng.uniform(size=(4, 3)))
    # keep atoms apart
    at.set_scaled_positions([[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.6, 0.1], [0.7, 0.15, 0.8]])
    at.positions += 0.05 * rng.normal(size=(4, 3))
    return at


def cluster(rng, symbols="Mo6Nb5"):
    at = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((2, 2, 2))[:11]
    at.set_chemical_symbols(list(Atoms(symbols).get_chemical_symbols()))
    at.pbc = False
    at.cell = np.zeros((3, 3))
    at.positions += 0.1 * rng.normal(size=at.positions.shape)
    return at


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ------------------------------------------------------------------------------ invariance
@pytest.mark.parametrize("body_order", [2, 3, 4, 5])
def test_rotation_reflection_translation_invariance(body_order):
    rng = np.random.default_rng(body_order)
    b = basis(("Mo", "Nb"), body_order, 8 if body_order < 5 else 7)
    at = triclinic_pair(rng).repeat((2, 1, 1))
    B0 = b.descriptors(at)
    for reflect in (False, True):
        Q = random_rotation(rng, reflect)
        at2 = at.copy()
        at2.set_cell(at.cell[:] @ Q.T, scale_atoms=False)
        at2.positions = at.positions @ Q.T + rng.normal(size=3)
        assert rel(b.descriptors(at2), B0) < 1e-10
    mol = cluster(rng)
    B1 = b.descriptors(mol)
    mol2 = mol.copy()
    mol2.positions = mol.positions @ random_rotation(rng, True).T + 7.3
    assert rel(b.descriptors(mol2), B1) < 1e-10


def test_permutation_invariance():
    rng = np.random.default_rng(3)
    b = basis(("Mo", "Nb"), 4, 8)
    at = cluster(rng)
    perm = rng.permutation(len(at))
    B = b.descriptors(at)
    assert rel(b.descriptors(at[perm]), B[perm]) < 1e-12


def test_supercell_and_reduced_cell_give_same_descriptors():
    rng = np.random.default_rng(4)
    b = basis(("Mo", "Nb"), 4, 8)
    at = triclinic_pair(rng)
    B = b.descriptors(at)
    sc = at.repeat((2, 3, 1))
    assert rel(b.descriptors(sc), np.tile(B, (6, 1))) < 1e-10
    # a sheared (non-reduced) description of the same lattice: c' = c + a + b
    P = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]])
    at2 = make_supercell(at, P)
    assert len(at2) == len(at)
    B2 = b.descriptors(at2)
    # same atoms in the same order up to wrapping
    assert rel(B2, B) < 1e-10
    # a cell smaller than the cutoff: one atom sees its own images
    one = bulk("Mo", "bcc", a=3.16)
    big = one.repeat((3, 3, 3))
    bb = basis(("Mo",), 4, 10, cutoff=5.2)
    assert rel(bb.descriptors(big), np.tile(bb.descriptors(one), (27, 1))) < 1e-10


# ------------------------------------------------------------------------------ derivatives
def finite_difference_rows(b, at, h=1e-5):
    """Central differences of the energy row with respect to positions and strain."""
    n = len(at)
    K = b.n_species * b.n_features
    dF = np.zeros((3 * n, K))
    for k in range(n):
        for a in range(3):
            p = at.copy(); p.positions[k, a] += h
            m = at.copy(); m.positions[k, a] -= h
            dF[3 * k + a] = -(b.fitting_rows(p).energy - b.fitting_rows(m).energy) / (2 * h)
    dS = None
    if at.pbc.all():
        dS = np.zeros((6, K))
        pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
        for q, (a, c) in enumerate(pairs):
            eps = np.zeros((3, 3)); eps[a, c] += 0.5 * h; eps[c, a] += 0.5 * h
            rows = []
            for sgn in (1, -1):
                s = at.copy()
                s.set_cell(at.cell[:] @ (np.eye(3) + sgn * eps), scale_atoms=True)
                rows.append(b.fitting_rows(s).energy)
            dS[q] = (rows[0] - rows[1]) / (2 * h) / at.get_volume()
    return dF, dS


CASES = [
    ("Mo",), ("Mo", "Nb"),
]


@pytest.mark.parametrize("body_order", [2, 3, 4, 5])
@pytest.mark.parametrize("elements", CASES)
@pytest.mark.parametrize("geometry", ["triclinic", "cluster"])
def test_force_and_stress_rows_match_finite_differences(body_order, elements, geometry):
    rng = np.random.default_rng(10 * body_order + len(elements))
    b = basis(elements, body_order, 8 if body_order < 5 else 6)
    at = triclinic_pair(rng) if geometry == "triclinic" else cluster(rng)[:7]
    if len(elements) == 1:
        at.set_chemical_symbols(["Mo"] * len(at))
    rows = b.fitting_rows(at)
    dF, dS = finite_difference_rows(b, at)
    assert rel(rows.forces, dF) < 1e-6
    if dS is not None:
        assert rel(rows.stress, dS) < 1e-6
    else:
        assert rows.stress is None


def test_adjoint_energy_forces_virial_match_finite_differences():
    rng = np.random.default_rng(7)
    b = basis(("Mo", "Nb"), 4, 8)
    at = triclinic_pair(rng).repeat((1, 2, 1))
    S, K = b.n_species, b.n_features
    coef = rng.normal(size=(S, K))
    e0 = rng.normal(size=S)
    args = b.neighbours(at)
    E, energies, F, V = b.core_.energy_forces(*args, coef, e0)
    rows = b.fitting_rows(at)
    assert abs(E - (rows.energy @ coef.ravel() + rows.counts @ e0)) < 1e-10 * abs(E)
    assert abs(energies.sum() - E) < 1e-10 * abs(E)
    h = 1e-5
    for k in range(len(at)):
        for a in range(3):
            p = at.copy(); p.positions[k, a] += h
            m = at.copy(); m.positions[k, a] -= h
            Ep = b.core_.energy_forces(*b.neighbours(p), coef, e0)[0]
            Em = b.core_.energy_forces(*b.neighbours(m), coef, e0)[0]
            assert abs(F[k, a] + (Ep - Em) / (2 * h)) < 1e-6 * np.abs(F).max()
    assert rel(V, rows.virial @ coef.ravel()) < 1e-10


def test_two_pass_route_equals_one_pass():
    """LAMMPS's DC path (values-only pass 1, pass 2 from the kept A) gives the same numbers."""
    rng = np.random.default_rng(8)
    for elements, bo, deg in [(("Mo",), 4, 10), (("Mo", "Nb"), 5, 7)]:
        b = basis(elements, bo, deg)
        rij = rng.normal(size=(30, 3)) * 2.0
        rij = rij[np.linalg.norm(rij, axis=1) > 1.0]
        zj = rng.integers(0, len(elements), len(rij)).astype(np.int32)
        coef = rng.normal(size=b.n_features)
        E1, g1, B1 = b.core_.atom_energy_gradient(rij, zj, coef, False)
        E2, g2, B2 = b.core_.atom_energy_gradient(rij, zj, coef, True)
        assert abs(E1 - E2) <= 1e-13 * abs(E1)
        assert np.abs(g1 - g2).max() <= 1e-13 * np.abs(g1).max()
        assert np.abs(B1 - B2).max() <= 1e-14 * np.abs(B1).max()
        assert abs(coef @ B1 - E1) <= 1e-12 * abs(E1)


# ------------------------------------------------------------------------------ smoothness
def test_cutoff_crossing_is_smooth():
    b = basis(("Mo",), 4, 10, cutoff=4.5)
    rc = b.cutoff
    rng = np.random.default_rng(5)
    base = rng.normal(size=(6, 3)) * 0.8 + np.array([1.5, 0, 0])
    base = base[np.linalg.norm(base, axis=1) > 1.2]
    u = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    out = []
    for r in (rc - 1e-6, rc + 1e-6):
        rij = np.vstack([base, r * u])
        z = np.zeros(len(rij), dtype=np.int32)
        B, dB = b.core_.atom_descriptor_gradients(rij, z)
        out.append((B, dB[:-1]))
    assert np.max(np.abs(out[0][0] - out[1][0])) < 1e-8
    assert np.max(np.abs(out[0][1] - out[1][1])) < 1e-8
    # the radial functions and their first two derivatives vanish at r_cut
    R, dR = b.core_.radial(np.array([rc * (1 - 1e-9), rc]))
    assert np.max(np.abs(R)) < 1e-12 and np.max(np.abs(dR)) < 1e-12


# ------------------------------------------------------------------------------ data
def test_feature_matrix_on_mo_training_set_is_independent():
    frames = read(DATA / "zuo2020" / "Mo_train.xyz", ":")
    b = basis(("Mo",), 4, 12, cutoff=5.2)
    assert b.n_features == 211  # 12 + 67 + 132 (ACEpotentials count 12 + 211 includes a duplicate pair basis)
    X = np.vstack([b.descriptors(at) for at in frames])
    assert X.shape == (10087, 211)
    Xs = X / np.linalg.norm(X, axis=0)
    sv = np.linalg.svd(Xs, compute_uv=False)
    cond = sv[0] / sv[-1]
    print(f"\nMo training set, per-atom feature matrix {X.shape}: condition number after column "
          f"scaling {cond:.3e}")
    assert sv[-1] > 1e-10 * sv[0]
    # no duplicated columns
    C = Xs.T @ Xs
    np.fill_diagonal(C, 0.0)
    assert np.max(np.abs(C)) < 1 - 1e-8


def test_core_agrees_with_numpy_reference():
    rng = np.random.default_rng(11)
    for elements, bo, deg in [(("Mo",), 3, 8), (("Mo", "Nb"), 4, 6), (("Mo",), 5, 7)]:
        b = basis(elements, bo, deg)
        at = cluster(rng)[:8]
        if len(elements) == 1:
            at.set_chemical_symbols(["Mo"] * len(at))
        B = b.descriptors(at)
        index = {int(Atoms(el).numbers[0]): s for s, el in enumerate(elements)}
        Bref = ref.reference_descriptors(at, b.spec_, index)
        assert rel(B, Bref) < 1e-11


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, word", [
    (dict(elements=["Xx"]), "Xx"),
    (dict(cutoff=0.0), "0"),
    (dict(cutoff=-1.0), "-1"),
    (dict(body_order=1), "1"),
    (dict(body_order=6), "6"),
    (dict(max_degree=-2), "-2"),
])
def test_bad_basis_parameters(kwargs, word):
    args = dict(elements=["Mo"], cutoff=5.0, body_order=3, max_degree=6) | kwargs
    with pytest.raises(ValueError, match=word):
        dcace.ACEBasis(**args)


def test_bad_structures():
    b = basis(("Mo",), 3, 6)
    with pytest.raises(ValueError, match="Nb"):
        b.descriptors(Atoms("MoNb", positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(ValueError, match="no atoms|empty"):
        b.descriptors(Atoms())
    with pytest.raises(ValueError, match="same position|0 and 1|overlap"):
        b.descriptors(Atoms("Mo2", positions=[[0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="(?i)nan|finite"):
        b.descriptors(Atoms("Mo2", positions=[[0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="inner cutoff"):
        b.descriptors(Atoms("Mo2", positions=[[0, 0, 0], [0.3, 0, 0]]))


# ----------------------------------------------------------------------------- harmonics

def test_real_sph_harm_against_scipy_and_fd():
    """The C++ harmonics (tabulated normalised recursion) equal scipy's to 1e-12 up to l = 15,
    including the poles, and their r-gradient equals central finite differences; the values-only
    path used by the DC gate's first pass gives the same Y as the gradient path."""
    from dcace import _core

    rng = np.random.default_rng(7)
    v = np.vstack([rng.normal(size=(40, 3)) * rng.uniform(0.5, 3.0, size=(40, 1)),
                   [[0, 0, 1.3], [0, 0, -0.7], [1e-9, 0, 2.0], [2.0, 0, 0], [0, -1.5, 0]]])
    for l_max in (0, 1, 3, 8, 15):
        Y, dY = _core.real_sph_harm(l_max, v)
        # (not the vector 1e-9 off the pole: the reference's arccos loses digits there)
        ok = np.arange(len(v)) != 42
        assert np.abs(Y - ref.real_sph_harm(l_max, v))[ok].max() < 1e-12, l_max
        assert np.isfinite(Y).all() and np.isfinite(dY).all()
        h = 1e-6
        for q in range(3):
            e = np.zeros(3)
            e[q] = h
            fd = (_core.real_sph_harm(l_max, v + e)[0] - _core.real_sph_harm(l_max, v - e)[0]) / (2 * h)
            assert np.abs(fd - dY[:, :, q]).max() < 1e-6 * max(1.0, np.abs(dY).max()), (l_max, q)
    # Y is a function of the direction only: dY is tangential (dY . r = 0)
    Y, dY = _core.real_sph_harm(15, v)
    assert np.abs(np.einsum("nkq,nq->nk", dY, v)).max() < 1e-10
    with pytest.raises(ValueError, match="zero-length"):
        _core.real_sph_harm(2, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="l_max"):
        _core.real_sph_harm(16, v[:1])
