"""The potential file and the DC combination in the C++ core: exact round trip, strict parser with
line numbers, conservative DC forces and stress (gate gradient included) and the ASE calculator."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

import dcace
from dcace._core import PotentialFileError


def mo_cell(rng, strain=0.0, rattle=0.08, rep=(2, 2, 2)):
    at = bulk("Mo", "bcc", a=3.16 * (1 + strain), cubic=True).repeat(rep)
    at.positions += rattle * rng.normal(size=at.positions.shape)
    return at


@pytest.fixture(scope="module")
def basis():
    return dcace.ACEBasis(["Mo"], cutoff=4.6, body_order=4, max_degree=8)


def random_dc(basis, rng, M=3, structures=None, temperature=1.0):
    """A DC potential with random experts whose gate centroids sit on given structures."""
    S, K = basis.n_species, basis.n_features
    D = S * K
    P = np.array([basis.descriptor_sums(s)[0].ravel() / len(s) for s in structures])
    mean = P.mean(axis=0)
    scale = P.std(axis=0) + 1e-3 * np.abs(P).max(axis=0) + 1e-12
    Z = (P - mean) / scale
    # 2-D projection onto the two leading directions of the centroid structures
    _, _, vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    proj = vt[:2]
    cent = Z @ proj.T
    spread = np.full(M, max(np.linalg.norm(cent[0] - cent[1]), 1e-3) / 2)
    gate = dict(temperature=temperature, mean=mean, scale=scale, projection=proj, centroids=cent[:M],
                spread=spread, bias=np.zeros(M))
    coef = rng.normal(size=(M, S, K)) * 0.05
    e0 = -10.0 + 0.1 * rng.normal(size=(M, S))
    return dcace.Potential.from_parts(basis, coef, e0, gate, {"test": True})


@pytest.fixture(scope="module")
def dc(basis):
    rng = np.random.default_rng(0)
    structures = [mo_cell(rng, s) for s in (-0.03, 0.0, 0.03)]
    return random_dc(basis, rng, structures=structures)


def fd_forces_stress(pot, at, h=1e-5):
    F = np.zeros((len(at), 3))
    for k in range(len(at)):
        for a in range(3):
            p = at.copy(); p.positions[k, a] += h
            m = at.copy(); m.positions[k, a] -= h
            F[k, a] = -(pot.compute(p)["energy"] - pot.compute(m)["energy"]) / (2 * h)
    S = np.zeros(6)
    for q, (a, c) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        eps = np.zeros((3, 3)); eps[a, c] += 0.5 * h; eps[c, a] += 0.5 * h
        E = []
        for sgn in (1, -1):
            s = at.copy()
            s.set_cell(at.cell[:] @ (np.eye(3) + sgn * eps), scale_atoms=True)
            E.append(pot.compute(s)["energy"])
        S[q] = (E[0] - E[1]) / (2 * h) / at.get_volume()
    return F, S


@pytest.mark.parametrize("strain", [0.0, -0.015, 0.08])  # near a centroid, between, far from all
def test_dc_forces_and_stress_are_conservative(dc, strain):
    rng = np.random.default_rng(1)
    at = mo_cell(rng, strain)
    out = dc.compute(at)
    w = out["weights"]
    assert abs(w.sum() - 1) < 1e-12
    assert abs(out["energies"].sum() - out["energy"]) < 1e-9 * abs(out["energy"])
    F, S = fd_forces_stress(dc, at)
    scale = np.abs(F).max()
    assert np.abs(out["forces"] - F).max() < 1e-6 * scale
    assert np.abs(out["stress"] - S).max() < 1e-6 * np.abs(S).max()


def test_gate_gradient_matters_between_clusters(dc, basis):
    """Without the gate-gradient term the forces would not be -dE/dr: the test above could not pass."""
    rng = np.random.default_rng(2)
    at = mo_cell(rng, -0.015)
    out = dc.compute(at)
    assert out["weights"].max() < 0.999  # really between experts
    c_mix = (out["weights"][:, None, None] * dc.coefficients).sum(axis=0)
    e0_mix = (out["weights"][:, None] * dc.one_body).sum(axis=0)
    _, _, F_mix, _ = basis.core_.energy_forces(*basis.neighbours(at), c_mix, e0_mix)
    assert np.abs(F_mix - out["forces"]).max() > 1e-6


def test_round_trip_is_exact(dc, tmp_path):
    path = tmp_path / "dc.dcace"
    dc.save(path)
    again = dcace.load(path)
    assert again.to_string() == dc.to_string()
    assert path.read_text() == again.to_string()
    np.testing.assert_array_equal(again.coefficients, dc.coefficients)
    at = mo_cell(np.random.default_rng(3))
    a, b = dc.compute(at), again.compute(at)
    assert a["energy"] == b["energy"]
    np.testing.assert_array_equal(a["forces"], b["forces"])
    assert again.metadata["test"] is True


def test_calculator(dc, tmp_path):
    path = tmp_path / "dc.dcace"
    dc.save(path)
    at = mo_cell(np.random.default_rng(4))
    at.calc = dcace.Calculator(str(path))
    E = at.get_potential_energy()
    ref = dc.compute(at)
    assert E == pytest.approx(ref["energy"], rel=1e-14)
    assert at.get_forces().shape == (len(at), 3)
    assert at.get_stress().shape == (6,)
    assert np.allclose(at.get_potential_energies().sum(), E, rtol=1e-12)
    assert at.calc.results["expert_weights"].shape == (3,)
    assert at.get_potential_energy(force_consistent=True) == E


def test_linear_potential_matches_basis_evaluation(basis):
    rng = np.random.default_rng(5)
    coef = rng.normal(size=(1, 1, basis.n_features))
    pot = dcace.Potential.from_parts(basis, coef, [[-10.0]], None, {})
    at = mo_cell(rng)
    rows = basis.fitting_rows(at)
    out = pot.compute(at)
    assert out["energy"] == pytest.approx(rows.energy @ coef.ravel() - 10.0 * len(at), rel=1e-13)
    assert np.allclose(out["forces"].ravel(), rows.forces @ coef.ravel(), atol=1e-12)
    assert np.allclose(out["stress"], rows.stress @ coef.ravel(), atol=1e-13)


# ------------------------------------------------------------------------------ malformed files
def mutate(text, old, new, count=1):
    assert old in text
    return text.replace(old, new, count)


def line_of(text, needle):
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith(needle):
            return no
    raise AssertionError(needle)


@pytest.mark.parametrize("case", ["truncated", "bad-number", "nan", "version", "element-count",
                                  "feature-terms", "trailing", "gate-size"])
def test_malformed_files_name_the_line(dc, tmp_path, case):
    text = dc.to_string()
    if case == "truncated":
        bad = "\n".join(text.splitlines()[: line_of(text, "coefficients") + 1]) + "\n"
        msg = r":\d+: unexpected end of file"
    elif case == "bad-number":
        no = line_of(text, "gate_temperature")
        bad = mutate(text, text.splitlines()[no - 1], "gate_temperature 1.0x")
        msg = rf":{no}: '1.0x' is not a finite number"
    elif case == "nan":
        no = line_of(text, "r_cut")
        bad = mutate(text, text.splitlines()[no - 1], "r_cut nan")
        msg = rf":{no}: 'nan' is not a finite number"
    elif case == "version":
        bad = mutate(text, text.splitlines()[0], "dcace-potential 7")
        msg = r":1: format version 7 is newer"
    elif case == "element-count":
        no = line_of(text, "elements")
        bad = mutate(text, "elements 1 Mo", "elements 2 Mo")
        msg = rf":{no}: 'elements' announces 2 names"
    elif case == "feature-terms":
        no = line_of(text, "features") + 1
        lines = text.splitlines()
        lines[no - 1] = lines[no - 1] + " 3"
        bad = "\n".join(lines) + "\n"
        msg = rf":{no}: feature 0 announces"
    elif case == "trailing":
        bad = text + "extra 1\n"
        msg = r"unexpected content after 'end'"
    else:
        no = line_of(text, "gate_centroids")
        bad = mutate(text, "gate_centroids 3 2", "gate_centroids 3 5")
        msg = rf":{no}: 'gate_centroids' must be 3 x 2"
    path = tmp_path / "bad.dcace"
    path.write_text(bad)
    with pytest.raises(PotentialFileError, match=msg) as err:
        dcace.load(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        dcace.load(tmp_path / "nope.dcace")
