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


def test_save_is_atomic(dc, tmp_path, monkeypatch):
    """A save that fails at the last step (the rename) leaves the existing file as it was and no
    temporary file behind; a save that succeeds replaces it completely."""
    import dcace.atomic

    path = tmp_path / "pot.dcace"
    path.write_text("previous content\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dcace.atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        dc.save(path)
    assert path.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pot.dcace"]
    monkeypatch.undo()
    dc.save(path)
    assert path.read_text() == dc.to_string()


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
        bad = mutate(text, text.splitlines()[0], "dcace-potential 9")
        msg = r":1: format version 9 is newer"
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


# ------------------------------------------------------------------------------ issue 12: strict reader
def load_bytes(tmp_path, data, name="bad.dcace"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def replace_line(text, needle, new):
    lines = text.splitlines()
    no = line_of(text, needle)
    lines[no - 1] = new
    return "\n".join(lines) + "\n", no


@pytest.mark.parametrize("record,count", [("monomials", 268435456), ("channels", 16777216),
                                          ("features", 16777216), ("experts", 1048576)])
def test_huge_counts_are_refused_before_allocating(dc, tmp_path, record, count):
    """A 4 KB file must not make the reader allocate gigabytes: the count is checked against the
    lines left in the file, with an error naming file, line and count."""
    import resource
    text = dc.to_string()
    old = text.splitlines()[line_of(text, record + " ") - 1].split()
    new = " ".join([record, str(count)] + old[2:])
    bad, no = replace_line(text, record + " ", new)
    if record == "experts":  # a consistent one_body header: only the data lines are missing
        bad = mutate(bad, "one_body 3 1", f"one_body {count} 1")
    path = load_bytes(tmp_path, bad.encode())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PotentialFileError, match=rf"bad\.dcace:\d+: .*{count}") as err:
        dcace.load(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"the reader grew by {grown_mb:.0f} MB"
    if record == "experts":  # the error is at the first matrix the count sizes
        no = line_of(bad, "one_body")
    assert f":{no}:" in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("case", ["metadata-bytes", "number-bytes", "element-bytes"])
def test_non_utf8_bytes_name_file_and_line(dc, tmp_path, case):
    text = dc.to_string()
    if case == "metadata-bytes":
        no = line_of(text, "metadata")
        data = text.encode().replace(b'{"basis"', b'{"caf\xe9":1,"basis"', 1)
        msg = rf":{no}: metadata is not valid UTF-8"
    elif case == "number-bytes":
        no = line_of(text, "r_cut")
        data = text.encode().replace(b"r_cut ", b"r_cut \xff", 1)
        msg = rf":{no}: '\\xff.*' is not a finite number"
    else:
        no = line_of(text, "elements")
        data = text.encode().replace(b"elements 1 Mo", b"elements 1 M\xf6", 1)
        msg = rf":{no}: element name 'M\\xf6' is not valid UTF-8"
    path = load_bytes(tmp_path, data)
    with pytest.raises(PotentialFileError, match=msg) as err:
        dcace.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("meta", ['[1, 2]', '"text"', '42', 'null', ''])
def test_metadata_must_be_a_json_object(dc, tmp_path, meta):
    text = dc.to_string()
    bad, no = replace_line(text, "metadata", f"metadata {meta}".rstrip())
    path = load_bytes(tmp_path, bad.encode())
    with pytest.raises(PotentialFileError, match=rf"bad\.dcace:{no}: metadata must be one JSON object"):
        dcace.load(path)


def test_metadata_must_be_an_object_in_memory_too(basis):
    """A potential built in memory with metadata that is JSON but not an object is refused (it
    could be written but not read back)."""
    from dcace import _core
    good = dcace.Potential.from_parts(basis, np.zeros((1, 1, basis.n_features)), [[0.0]], None, {})
    for meta in ("[1]", "", '"x"'):
        with pytest.raises(ValueError, match=r"metadata must be one JSON object"):
            _core.PotentialCore(good.elements, basis.spec_, good.coefficients, good.one_body, 1, None, meta)


@pytest.mark.parametrize("case", ["hex-float", "inf", "plus-index", "hex-index", "nul-cut",
                                  "version-leading-zero", "version-plus", "plus-float"])
def test_reader_is_as_strict_as_the_format(dc, tmp_path, case):
    text = dc.to_string()
    if case == "hex-float":
        bad, no = replace_line(text, "gate_temperature", "gate_temperature 0x10")
        msg = rf":{no}: '0x10' is not a finite number"
    elif case == "inf":
        bad, no = replace_line(text, "gate_temperature", "gate_temperature infinity")
        msg = rf":{no}: 'infinity' is not a finite number"
    elif case == "plus-index":
        bad, no = replace_line(text, "n_radial", "n_radial +8")
        msg = rf":{no}: n_radial: '\+8' is not an integer"
    elif case == "hex-index":
        bad, no = replace_line(text, "l_max", "l_max 0x2")
        msg = rf":{no}: l_max: '0x2' is not an integer"
    elif case == "nul-cut":
        no = line_of(text, "r_cut")
        data = text.encode().replace(b"r_cut 4.5999999999999996", b"r_cut 4.5\x00999", 1)
        msg = rf":{no}: NUL byte in column 10"
    elif case == "version-leading-zero":
        bad, no = replace_line(text, "dcace-potential", "dcace-potential 01")
        msg = r":1: format version '01' must be a plain integer without leading zeros"
    elif case == "version-plus":
        bad, no = replace_line(text, "dcace-potential", "dcace-potential +1")
        msg = r":1: format version: '\+1' is not an integer"
    else:
        bad, no = replace_line(text, "r_inner", "r_inner +0.5")
        msg = rf":{no}: '\+0\.5' is not a finite number"
    path = load_bytes(tmp_path, data if case == "nul-cut" else bad.encode())
    with pytest.raises(PotentialFileError, match=msg) as err:
        dcace.load(path)
    assert str(path) in str(err.value)


def test_accepts_what_the_writer_writes(basis):
    """%.17g output: exponents with a sign, negative numbers, integers without a sign."""
    coef = np.array([[[1e-300, -2.5e+20, 3.0] + [0.0] * (basis.n_features - 3)]])
    pot = dcace.Potential.from_parts(basis, coef, [[-1e-5]], None, {})
    text = pot.to_string()
    assert "e-300" in text and "e+20" in text
    again = dcace.Potential(dcace._core.PotentialCore.parse(text, "x"))
    np.testing.assert_array_equal(again.coefficients, pot.coefficients)


def test_directory_is_reported_as_a_directory(tmp_path):
    d = tmp_path / "pot.dcace"
    d.mkdir()
    with pytest.raises(PotentialFileError, match=rf"{d}: cannot open the potential file: it is a directory"):
        dcace.load(d)


# ------------------------------------------------------------------------------ issue 12 item 17: calculator
def test_per_atom_virials_sum_to_the_virial(dc, basis):
    rng = np.random.default_rng(11)
    at = mo_cell(rng, 0.01)
    out = dc.compute(at)
    assert out["virials"].shape == (len(at), 6)
    np.testing.assert_allclose(out["virials"].sum(axis=0), out["virial"], rtol=0,
                               atol=1e-12 * np.abs(out["virial"]).max())
    assert np.abs(out["virials"] - out["virials"].mean(axis=0)).max() > 1e-4  # really per atom
    np.testing.assert_allclose(out["stresses"].sum(axis=0), out["stress"], rtol=0,
                               atol=1e-12 * np.abs(out["stress"]).max())


def test_calculator_stresses_follow_ase(dc, tmp_path):
    """ASE's convention (lj.py, Atoms.get_stresses): Voigt (N, 6), -(per-atom virial) / V, sum = stress."""
    path = tmp_path / "dc.dcace"
    dc.save(path)
    at = mo_cell(np.random.default_rng(12))
    at.calc = dcace.Calculator(path)
    s = at.get_stresses()
    assert s.shape == (len(at), 6)
    np.testing.assert_allclose(s.sum(axis=0), at.get_stress(), rtol=0, atol=1e-12 * np.abs(s).max() * len(at))
    full = at.get_stresses(voigt=False)
    assert full.shape == (len(at), 3, 3) and np.allclose(full, full.transpose(0, 2, 1))
    # the same split as ASE's own pair potential would give for a pair term: compare with LennardJones
    from ase.calculators.lj import LennardJones
    lj = at.copy()
    lj.calc = LennardJones(sigma=2.5, epsilon=0.01, rc=4.0)
    assert lj.get_stresses().shape == s.shape
    mol = at.copy()
    mol.pbc = False
    mol.calc = dcace.Calculator(path)
    from ase.calculators.calculator import PropertyNotImplementedError
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stresses()


def test_calculator_potential_is_an_ase_parameter(dc, basis, tmp_path):
    a, b = tmp_path / "a.dcace", tmp_path / "b.dcace"
    dc.save(a)
    rng = np.random.default_rng(13)
    lin = dcace.Potential.from_parts(basis, rng.normal(size=(1, 1, basis.n_features)) * 0.05, [[-9.0]], None, {})
    lin.save(b)
    calc = dcace.Calculator(potential=a)
    assert calc.parameters["potential"] == str(a)
    assert calc.todict() == {"potential": str(a)}
    at = mo_cell(rng)
    at.calc = calc
    Ea = at.get_potential_energy()
    assert calc.set(potential=str(a)) == {}  # unchanged: results kept
    assert calc.results
    changed = calc.set(potential=b)
    assert changed == {"potential": str(b)} and calc.results == {}
    Eb = at.get_potential_energy()
    assert Eb == pytest.approx(lin.compute(at)["energy"], rel=1e-14) and abs(Ea - Eb) > 1e-3
    assert dcace.Calculator(dc).potential is dc  # a Potential object works too
    with pytest.raises(ValueError, match="needs a potential"):
        dcace.Calculator()


def test_calculator_caches_results(dc, tmp_path):
    path = tmp_path / "dc.dcace"
    dc.save(path)
    at = mo_cell(np.random.default_rng(14))
    calc = dcace.Calculator(path)
    at.calc = calc
    calls = []
    compute = calc.potential.compute
    calc.potential.compute = lambda atoms, **kw: (calls.append(1), compute(atoms, **kw))[1]
    F1 = at.get_forces()
    at.get_forces(); at.get_potential_energy(); at.get_stress(); at.get_stresses()
    assert len(calls) == 1
    at.positions[3, 0] += 0.01
    F2 = at.get_forces()
    assert len(calls) == 2 and np.abs(F2 - F1).max() > 1e-5


# ------------------------------------------------------------------------------ issue 12 item 21d: shapes
def test_wrong_array_shapes_raise_value_errors(dc, basis):
    core, bc = dc.core, basis.core_
    S, K = basis.n_species, basis.n_features
    at = mo_cell(np.random.default_rng(15))
    species, first, j, rij = basis.neighbours(at)
    rng = np.random.default_rng(16)
    r = rng.normal(size=(6, 3)) + 2.0
    z = np.zeros(6, dtype=np.int32)
    cases = [
        (lambda: core.combine(np.zeros(S * K - 1), np.ones(S)), r"combine: Bsum must have shape \(n_species, n_features\) = \(1, %d\) or \(%d,\), got \(%d,\)" % (K, K, K - 1)),
        (lambda: core.combine(np.zeros((S, K)), np.ones(S + 1)), r"combine: counts must have shape \(n_species,\) = \(1,\), got \(2,\)"),
        (lambda: core.compute(species, first, j, rij[:-1]), r"rij must have shape \(n_pairs, 3\)"),
        (lambda: core.compute(species, first, j, rij.ravel()), r"rij must have shape \(n_pairs, 3\)"),
        (lambda: core.compute(species, first[:-1], j, rij), r"first must have shape \(n_atoms \+ 1,\)"),
        (lambda: core.compute(species[:, None], first, j, rij), r"species must have shape \(n_atoms,\)"),
        (lambda: core.compute(species, first, j[:-1], rij), r"j must have shape \(n_pairs,\)"),
        (lambda: bc.energy_forces(species, first, j, rij, np.zeros(K + 1), np.zeros(S)), r"energy_forces: coef must have shape \(n_species, n_features\)"),
        (lambda: bc.energy_forces(species, first, j, rij, np.zeros((S, K)), np.zeros(2)), r"energy_forces: e0 must have shape \(n_species,\)"),
        (lambda: bc.atom_descriptors(r[:5], z), r"atom_descriptors: rij must have shape \(n_neighbours, 3\) with n_neighbours = len\(zj\) = \(6, 3\), got \(5, 3\)"),
        (lambda: bc.atom_descriptors(r.ravel(), z), r"atom_descriptors: rij must have shape"),
        (lambda: bc.atom_descriptors(r, z[:, None]), r"atom_descriptors: zj must have shape \(n_neighbours,\)"),
        (lambda: bc.atom_energy_gradient(r, z[:4], np.zeros(K)), r"atom_energy_gradient: rij must have shape"),
        (lambda: bc.atom_energy_gradient(r, z, np.zeros(K - 1)), r"atom_energy_gradient: coef must have shape \(n_features,\)"),
        (lambda: bc.atom_descriptor_gradients(r[:, :2], z), r"atom_descriptor_gradients: rij must have shape"),
    ]
    bad_first = first.copy()
    bad_first[1] = first[-1] + 100  # past the end, then decreasing again
    cases += [(lambda: core.compute(species, bad_first, j, rij), r"first must be non-decreasing .*first\[1\] = ")]
    cases += [(lambda: dcace._core.real_sph_harm(16, r), r"real_sph_harm: l_max must be in 0\.\.15, got 16"),
              (lambda: dcace._core.real_sph_harm(-2, r), r"l_max must be in 0\.\.15, got -2")]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call()
    # and the right shapes still work
    core.combine(np.zeros((S, K)), np.ones(S))
    bc.atom_energy_gradient(r, z, np.zeros(K))
