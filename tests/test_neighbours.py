"""Tests of dcace.neighbours against ase.neighborlist.neighbor_list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"

import dcace.neighbours as nb

neighbour_list = nb.neighbour_list


# --------------------------------------------------------------------------- #
# helpers


def reference(atoms, cutoff):
    """ase's list, sorted by (i, j, shift).

    ase raises "Singular matrix" when a *non-periodic* cell vector is zero or
    coplanar with the others; those vectors play no role in the list, so they
    are replaced by an orthonormal complement of the periodic ones first.
    """
    a = atoms
    if abs(np.linalg.det(atoms.cell.array)) < 1e-12:
        a = atoms.copy()
        cell = a.cell.array.copy()
        pbc = a.pbc
        q = np.linalg.qr(cell[pbc].T, mode="complete")[0] if pbc.any() else np.eye(3)
        cell[~pbc] = q[:, pbc.sum() :].T
        a.set_cell(cell, scale_atoms=False)
    i, j, s, d = ase_neighbor_list("ijSD", a, cutoff)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    return i[order], j[order], s[order], d[order]


def assert_matches_ase(atoms, cutoff, nl):
    i, j, s, d = reference(atoms, cutoff)
    assert nl.n_pairs == len(i)
    np.testing.assert_array_equal(nl.centres(), i)
    np.testing.assert_array_equal(nl.j, j)
    np.testing.assert_array_equal(nl.shift, s)
    np.testing.assert_allclose(nl.rij, d, rtol=0, atol=1e-12)


def assert_csr_invariants(atoms, cutoff, nl):
    n, p = len(atoms), nl.n_pairs
    assert nl.first.dtype == np.int64 and nl.first.shape == (n + 1,)
    assert nl.j.dtype == np.int32 and nl.j.shape == (p,)
    assert nl.rij.dtype == np.float64 and nl.rij.shape == (p, 3)
    assert nl.shift.dtype == np.int32 and nl.shift.shape == (p, 3)
    assert nl.first[0] == 0 and nl.first[-1] == p
    assert np.all(np.diff(nl.first) >= 0)
    assert p == 0 or (nl.j.min() >= 0 and nl.j.max() < n)
    i = nl.centres()
    # sorted by (i, j, shift), no duplicates
    key = np.column_stack([i, nl.j, nl.shift])
    if p > 1:
        diff = np.diff(key, axis=0)
        first_nonzero = diff[np.arange(p - 1), np.argmax(diff != 0, axis=1)]
        assert np.all(first_nonzero > 0)
    # vectors and distances
    pos, cell = atoms.positions, atoms.cell.array
    expected = pos[nl.j] + nl.shift @ cell - pos[i]
    np.testing.assert_allclose(nl.rij, expected, rtol=0, atol=1e-12)
    dist = np.linalg.norm(nl.rij, axis=1)
    assert np.all(dist > 0) and np.all(dist < cutoff)
    # no shift along non-periodic directions
    assert np.all(nl.shift[:, ~atoms.pbc] == 0)
    # full list: (i, j, S) present iff (j, i, -S) present, with rij negated
    back = np.column_stack([nl.j, i, -nl.shift])
    order_back = np.lexsort(back.T[::-1])
    np.testing.assert_array_equal(back[order_back], key)
    np.testing.assert_allclose(-nl.rij[order_back], nl.rij, rtol=0, atol=1e-12)


@pytest.fixture(params=["auto", "ase-fallback"])
def backend(request, monkeypatch):
    """Run a test with the default back end and with the forced ase fallback."""
    if request.param == "ase-fallback":
        monkeypatch.setattr(nb, "_vesin_is_safe", lambda *args: False)
    return request.param


# --------------------------------------------------------------------------- #
# structures


def _cases():
    rng = np.random.default_rng(0)
    cases = {}
    cases["bcc_1atom_rc5.2"] = (bulk("Mo", "bcc", a=3.16), 5.2)
    cases["bcc_cubic"] = (bulk("Mo", "bcc", a=3.16, cubic=True), 5.2)
    a = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3)
    a.rattle(0.1, seed=1)
    cases["bcc_54_rattled"] = (a, 5.2)
    skewed = np.array([[3.0, 0, 0], [2.7, 1.2, 0], [1.9, 2.5, 1.1]])
    cases["skewed_triclinic"] = (
        ase.Atoms("Mo3", cell=skewed, pbc=True, scaled_positions=rng.random((3, 3))),
        5.2,
    )
    skewed2 = np.array([[5.0, 0, 0], [-4.6, 2.0, 0], [0.3, -0.4, 4.0]])
    cases["skewed_triclinic_obtuse"] = (
        ase.Atoms("Mo4", cell=skewed2, pbc=True, scaled_positions=rng.random((4, 3))),
        6.0,
    )
    a = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    a.pbc = (True, True, False)
    cases["slab_pbc_TTF"] = (a, 5.2)
    a = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((1, 1, 3))
    a.pbc = (True, False, False)
    a.rattle(0.05, seed=2)
    cases["wire_pbc_TFF"] = (a, 5.2)
    a = bulk("Mo", "bcc", a=3.16)
    a.pbc = (False, True, True)
    cases["bcc_1atom_pbc_FTT"] = (a, 5.2)
    cases["skewed_mixed_TFT"] = (
        ase.Atoms("Mo3", cell=skewed2, pbc=(True, False, True), scaled_positions=rng.random((3, 3))),
        5.2,
    )
    # rotated triclinic cell, mixed pbc, all coordinates negative
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    a = ase.Atoms("Mo5", cell=skewed2 @ rot, pbc=(False, True, True),
                  scaled_positions=rng.uniform(-0.5, 1.5, (5, 3)))
    a.positions -= 100.0
    cases["rotated_mixed_negative"] = (a, 5.2)
    cases["molecule_no_cell"] = (molecule("CH3CH2OH"), 3.0)
    m = molecule("C6H6")
    m.center(vacuum=4.0)
    cases["molecule_in_cell_pbc_false"] = (m, 4.0)
    m = molecule("C6H6")
    m.cell = np.eye(3)  # cell much smaller than the molecule, but not periodic
    cases["molecule_tiny_cell_pbc_false"] = (m, 4.0)
    cases["single_atom_no_pbc"] = (ase.Atoms("Mo", positions=[[1.0, 2.0, 3.0]]), 5.0)
    cases["single_atom_tiny_cube"] = (ase.Atoms("Mo", cell=np.eye(3) * 1.5, pbc=True), 5.2)
    a = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    a.positions += rng.normal(0, 4, a.positions.shape)  # not wrapped into the cell
    cases["unwrapped_positions"] = (a, 5.2)
    cases["slab_zero_c_vector"] = (
        ase.Atoms("Mo2", cell=[[2.0, 0, 0], [0, 2.5, 0], [0, 0, 0]], pbc=(True, True, False),
                  positions=[[0, 0, 0], [1, 1, 1]]),
        5.2,
    )
    cases["slab_c_in_plane"] = (
        ase.Atoms("Mo4", cell=[[3.0, 0, 0], [1.0, 2.8, 0], [1.0, 1.0, 0]], pbc=(True, True, False),
                  positions=rng.random((4, 3)) * [3, 3, 8]),
        5.2,
    )
    cases["wire_only_a_vector"] = (
        ase.Atoms("Mo4", cell=[[3.0, 0.5, 0.2], [0, 0, 0], [0, 0, 0]], pbc=(True, False, False),
                  positions=rng.random((4, 3)) * [3, 6, 8]),
        5.2,
    )
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_matches_ase(name, backend):
    atoms, cutoff = CASES[name]
    nl = neighbour_list(atoms, cutoff)
    assert_matches_ase(atoms, cutoff, nl)
    assert_csr_invariants(atoms, cutoff, nl)


def test_known_counts():
    # 8 + 6 + 12 neighbours of bcc below 5.2 A (next shell at a*sqrt(11)/2 = 5.24)
    assert neighbour_list(*CASES["bcc_1atom_rc5.2"]).n_pairs == 26
    nl = neighbour_list(*CASES["single_atom_tiny_cube"])
    assert nl.n_pairs == 178  # images of itself only, up to 3 cells away
    assert np.all(nl.j == 0) and np.abs(nl.shift).max() == 3
    assert neighbour_list(*CASES["single_atom_no_pbc"]).n_pairs == 0
    nl = neighbour_list(*CASES["single_atom_no_pbc"])
    np.testing.assert_array_equal(nl.first, [0, 0])


def test_random_cells(backend):
    rng = np.random.default_rng(42)
    done = 0
    while done < 40:
        n = int(rng.integers(1, 10))
        cell = rng.normal(size=(3, 3)) * rng.uniform(2, 5)
        volume = abs(np.linalg.det(cell))
        widths = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        if widths.min() < 0.8:
            continue
        pbc = rng.random(3) < 0.6
        atoms = ase.Atoms(f"Mo{n}", cell=cell, pbc=pbc,
                          scaled_positions=rng.uniform(-1.0, 2.0, (n, 3)))
        if n > 1 and atoms.get_all_distances()[np.triu_indices(n, 1)].min() < 0.1:
            continue
        cutoff = float(rng.uniform(1.0, 6.0))
        nl = neighbour_list(atoms, cutoff)
        assert_matches_ase(atoms, cutoff, nl)
        assert_csr_invariants(atoms, cutoff, nl)
        done += 1


def test_mo_training_set():
    frames = ase.io.read(MO_TRAIN, ":")
    assert len(frames) == 194
    for atoms in frames[::8]:
        nl = neighbour_list(atoms, 5.2)
        assert_matches_ase(atoms, 5.2, nl)
        assert_csr_invariants(atoms, 5.2, nl)


def test_deterministic():
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(6)
    atoms.rattle(0.05, seed=3)
    first = neighbour_list(atoms, 5.2)
    for _ in range(3):
        again = neighbour_list(atoms, 5.2)
        for field in ("first", "j", "rij", "shift"):
            np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    # vesin and the ase fallback give bit-identical topology
    fallback = nb._to_csr(len(atoms), *nb._pairs_ase(
        atoms.positions, atoms.cell.array.copy(), atoms.pbc, 5.2))
    np.testing.assert_array_equal(fallback.first, first.first)
    np.testing.assert_array_equal(fallback.j, first.j)
    np.testing.assert_array_equal(fallback.shift, first.shift)


# --------------------------------------------------------------------------- #
# vesin 0.6.2 crashes (SIGFPE) on very elongated boxes: the wrapper must
# detect them and use the ase fallback.  Run in a subprocess so that a
# regression kills the child, not the test session.

ELONGATED = {
    "line_1e7_no_pbc": ("H3", [[0, 0, 0], [1e7, 0, 0], [1e7, 1, 0]], np.zeros((3, 3)), False),
    "line_1e6_no_pbc": ("H3", [[0, 0, 0], [1e6, 0, 0], [1e6, 1, 0.5]], np.zeros((3, 3)), False),
    "long_periodic_box": ("H2", [[0, 0, 0], [1, 1, 1]], np.diag([6e5, 4.0, 4.0]), True),
}


@pytest.mark.parametrize("name", list(ELONGATED))
def test_elongated_boxes_do_not_crash(name):
    symbols, positions, cell, pbc = ELONGATED[name]
    atoms = ase.Atoms(symbols, positions=positions, cell=cell, pbc=pbc)
    box = nb._periodic_box(atoms.positions, atoms.cell.array, atoms.pbc, 5.2)
    assert not nb._vesin_is_safe(atoms.positions, box, 5.2)
    code = (
        "import numpy as np, ase\n"
        "import dcace.neighbours as m\n"
        f"a = ase.Atoms({symbols!r}, positions={positions!r}, cell={cell.tolist()!r}, pbc={pbc!r})\n"
        "print(m.neighbour_list(a, 5.2).n_pairs)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == len(reference(atoms, 5.2)[0])


def test_vesin_used_for_ordinary_systems():
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(10)
    box = nb._periodic_box(atoms.positions, atoms.cell.array, atoms.pbc, 5.2)
    assert nb._vesin_is_safe(atoms.positions, box, 5.2)


def test_tiny_cutoff():
    atoms = ase.Atoms("Mo3", positions=[[0, 0, 0], [1, 1, 1], [1, 1, 2.5]], cell=np.eye(3) * 3, pbc=True)
    nl = neighbour_list(atoms, 1e-9)
    assert nl.n_pairs == 0
    np.testing.assert_array_equal(nl.first, [0, 0, 0, 0])


# --------------------------------------------------------------------------- #
# errors


def test_empty_atoms():
    with pytest.raises(ValueError, match="empty"):
        neighbour_list(ase.Atoms(), 5.0)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_positions(value):
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True)
    atoms.positions[1, 2] = value
    with pytest.raises(ValueError, match=r"positions contain NaN or inf.*atom 1"):
        neighbour_list(atoms, 5.0)


@pytest.mark.parametrize("pbc", [True, False])
def test_non_finite_cell(pbc):
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True)
    cell = atoms.cell.array.copy()
    cell[2, 2] = np.nan
    atoms.set_cell(cell, scale_atoms=False)
    atoms.pbc = pbc
    with pytest.raises(ValueError, match="cell contains NaN or inf"):
        neighbour_list(atoms, 5.0)


@pytest.mark.parametrize("cutoff", [0.0, -1.0, np.nan, np.inf, "abc", None])
def test_bad_cutoff(cutoff):
    with pytest.raises(ValueError, match="cutoff must be"):
        neighbour_list(bulk("Mo", "bcc", a=3.16), cutoff)


@pytest.mark.parametrize(
    "cell, pbc",
    [
        (np.zeros((3, 3)), True),  # ase.Atoms default cell with pbc=True
        ([[3, 0, 0], [6, 0, 0], [0, 0, 3]], True),  # two parallel vectors
        ([[3, 0, 0], [0, 3, 0], [3, 3, 0]], True),  # coplanar vectors
        ([[3, 0, 0], [6, 0, 0], [0, 0, 3]], (True, True, False)),  # parallel periodic pair
        ([[3, 0, 0], [0, 0, 0], [0, 0, 3]], (True, True, False)),  # zero periodic vector
        ([[0, 0, 0], [0, 0, 0], [0, 0, 0]], (False, False, True)),
    ],
)
def test_degenerate_periodic_cell(cell, pbc):
    atoms = ase.Atoms("Mo2", positions=[[0, 0, 0], [1, 1, 1]], cell=cell, pbc=pbc)
    with pytest.raises(ValueError, match="degenerate"):
        neighbour_list(atoms, 5.0)


def test_degenerate_non_periodic_direction_is_fine():
    # the same parallel vectors are harmless when the parallel one is not periodic
    atoms = ase.Atoms("Mo2", positions=[[0, 0, 0], [1, 1, 1]],
                      cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=(True, False, True))
    nl = neighbour_list(atoms, 5.0)
    assert_matches_ase(atoms, 5.0, nl)


def test_cell_too_small_for_cutoff():
    atoms = ase.Atoms("Mo", cell=np.eye(3) * 1e-3, pbc=True)
    with pytest.raises(ValueError, match="cell too small for cutoff"):
        neighbour_list(atoms, 5.0)


@pytest.mark.parametrize("pbc", [True, False])
def test_overlapping_atoms(pbc):
    atoms = ase.Atoms("Mo4", positions=[[0, 0, 0], [1, 1, 1], [2, 2, 2], [1, 1, 1 + 1e-9]],
                      cell=np.eye(3) * 4, pbc=pbc)
    with pytest.raises(ValueError, match=r"atoms 1 and 3 are at the same position"):
        neighbour_list(atoms, 3.0)


def test_overlapping_periodic_image():
    atoms = ase.Atoms("Mo3", positions=[[0, 0, 0], [1, 1, 1], [1, 1, 4]], cell=np.eye(3) * 3, pbc=True)
    with pytest.raises(ValueError, match=r"atoms 1 and 2 are at the same position \(periodic image"):
        neighbour_list(atoms, 5.0)


def test_overlap_detected_with_tiny_cutoff():
    atoms = ase.Atoms("Mo3", positions=[[0, 0, 0], [1, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="atoms 1 and 2 are at the same position"):
        neighbour_list(atoms, 1e-9)
