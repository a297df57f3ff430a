"""Fitting front end: data loading and validation, ridge, k-means, gate mirror, the streamed normal
equations (against a brute-force design matrix), reproducibility of the potential file, round trips,
multi-element data with other key names."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import dcace
from dcace.clustering import cluster, gate_dict, gate_weights, kmeans
from dcace.committee import Batch, GroupAccumulator, JointAccumulator, committee_predict
from dcace.data import DataError, read_data
from dcace.ridge import column_scale, penalty_vector, ridge_solve

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
MO_TRAIN = DATA / "zuo2020" / "Mo_train.xyz"
MO_TEST = DATA / "zuo2020" / "Mo_test.xyz"
TIAL = DATA / "tial" / "TiAl_tutorial.xyz"

SMALL = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, progress=False)


@lru_cache(maxsize=None)
def mo_frames(step=3):
    return read(MO_TRAIN, f"::{step}")


def write_subset(path, frames):
    write(path, frames, format="extxyz")
    return path


# ------------------------------------------------------------------------------------------ data
def test_read_zuo_data():
    ds = read_data(MO_TRAIN, elements=["Mo"])
    assert len(ds) == 194 and ds.n_atoms == 10087
    assert ds.n_with_stress == 194 and not ds.notes
    f = ds[0]
    assert f.forces.shape == (f.n_atoms, 3) and f.stress.shape == (6,)
    assert f.energy < 0 and f.atoms.calc is None
    assert len(ds.files[0]["sha256"]) == 64


def test_read_tial_keys_and_virial():
    ds = read_data(TIAL, elements=["Ti", "Al"], forces_key="force", virial_key="virial")
    assert len(ds) == 329 and ds.n_atoms == 1756
    a = read(TIAL, 0)
    vir = np.array(a.info["virial"]).reshape(3, 3)
    expect = -vir / a.get_volume()
    assert np.allclose(ds[0].stress[:3], np.diag(expect))
    # the default forces key does not exist there: a clear error naming file and frame
    with pytest.raises(DataError, match=r"TiAl_tutorial.xyz, frame 0: no forces under key 'forces'.*force"):
        read_data(TIAL, elements=["Ti", "Al"])


def _atoms(n=2, energy=-1.0, forces=None, stress=None, symbols=None):
    a = bulk("Mo", "bcc", a=3.16, cubic=True)
    if symbols:
        a.set_chemical_symbols(symbols)
    f = np.zeros((len(a), 3)) if forces is None else forces
    results = {"forces": f}
    if energy is not None:
        results["energy"] = energy
    if stress is not None:
        results["stress"] = stress
    a.calc = SinglePointCalculator(a, **results)
    return a


def test_bad_inputs_name_file_and_frame(tmp_path):
    good = _atoms()
    cases = {
        "no_energy": ([good, _atoms(energy=None)], r"frame 1: no energy under key 'energy'"),
        "nan_force": ([_atoms(forces=np.array([[0, 0, np.nan], [0, 0, 0]]))], r"frame 0: forces 'forces' contain NaN or inf \(first at atom 0\)"),
        "inf_energy": ([good, _atoms(energy=np.inf)], r"frame 1: energy 'energy' is inf"),
        "nan_stress": ([_atoms(stress=np.full(6, np.nan))], r"frame 0: stress 'stress' contains NaN or inf"),
        "unlisted_element": ([good, _atoms(symbols=["Mo", "Nb"])], r"frame 1: element\(s\) Nb present but not listed"),
    }
    for name, (frames, pattern) in cases.items():
        p = tmp_path / f"{name}.xyz"
        write(p, frames, format="extxyz")
        with pytest.raises(DataError, match=rf"{name}.xyz, {pattern}"):
            read_data(p, elements=["Mo"])
    # forces with two columns (written by hand: ASE refuses to write them)
    p = tmp_path / "bad_force_shape.xyz"
    p.write_text('2\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:2 energy=-1.0 pbc="T T T"\n'
                 "Mo 0 0 0 0.1 0.2\nMo 1.5 1.5 1.5 0.3 0.4\n")
    with pytest.raises(DataError, match=r"bad_force_shape.xyz, frame 0: forces 'forces' have shape \(2, 2\), expected \(2, 3\)"):
        read_data(p, elements=["Mo"])
    # no forces at all
    a = bulk("Mo", "bcc", a=3.16, cubic=True)
    a.info["energy"] = -2.0
    p = tmp_path / "noforces.xyz"
    write(p, [a], format="extxyz")
    with pytest.raises(DataError, match=r"noforces.xyz, frame 0: no forces under key 'forces'"):
        read_data(p, elements=["Mo"])
    # NaN position
    b = _atoms()
    b.positions[1, 0] = np.nan
    with pytest.raises(DataError, match=r"<atoms>, frame 0: positions contain NaN or inf"):
        read_data([b], elements=["Mo"])


def test_empty_unreadable_missing_files(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.xyz: the file is empty"):
        read_data(empty)
    junk = tmp_path / "junk.xyz"
    junk.write_text("3\nnot a header\nMo 0 0\n")
    with pytest.raises(DataError, match=r"junk.xyz, frame 0: cannot read"):
        read_data(junk)
    with pytest.raises(DataError, match="nothere.xyz: no such file"):
        read_data(tmp_path / "nothere.xyz")
    with pytest.raises(DataError, match="empty"):
        read_data([])


def test_stress_on_some_frames_is_skipped_and_reported(tmp_path):
    frames = [_atoms(stress=np.zeros(6)), _atoms(), _atoms(stress=np.ones(6) * 1e-3)]
    p = write_subset(tmp_path / "partial.xyz", frames)
    ds = read_data(p, elements=["Mo"])
    assert [f.stress is not None for f in ds] == [True, False, True]
    assert ds.n_without_stress == 1
    assert any("1 of 3 frames have no usable stress" in n and "frames 1" in n for n in ds.notes)


# ------------------------------------------------------------------------------------------ numerics
def test_ridge_solve_matches_lstsq():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 8)) * np.logspace(-3, 3, 8)
    y = rng.normal(size=60)
    H, h = X.T @ X, X.T @ y
    sc = column_scale(np.diag(H))
    lam = 1e-3
    th = ridge_solve(H, h, sc, np.full(8, lam))
    Xs = X * sc
    aug = np.vstack([Xs, np.sqrt(lam) * np.eye(8)])
    ref = np.linalg.lstsq(aug, np.concatenate([y, np.zeros(8)]), rcond=None)[0] * sc
    assert np.allclose(th, ref, rtol=1e-9, atol=1e-12)
    # ridge toward a prior
    prior = rng.normal(size=8)
    th2 = ridge_solve(H, h, sc, np.full(8, lam), prior)
    ref2 = np.linalg.lstsq(aug, np.concatenate([y, np.sqrt(lam) * prior / sc]), rcond=None)[0] * sc
    assert np.allclose(th2, ref2, rtol=1e-9, atol=1e-12)
    assert penalty_vector(3, 1, 2, 0.5).tolist() == [0.5] * 3 + [1e-9] + [0.5] * 3 + [1e-9]


def test_kmeans_is_seeded_and_canonical():
    rng = np.random.default_rng(0)
    Y = np.concatenate([rng.normal(size=(30, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    l1, c1, i1 = kmeans(Y, 3, seed=5)
    l2, c2, i2 = kmeans(Y[::-1][::-1].copy(), 3, seed=5)
    assert np.array_equal(l1, l2) and np.array_equal(c1, c2)
    assert sorted(np.bincount(l1)) == [30, 30, 30]
    assert (np.diff(np.bincount(l1)) <= 0).all()  # numbered by decreasing size


def test_gate_mirror_matches_core():
    fr = mo_frames(10)
    basis = dcace.ACEBasis(["Mo"], 5.2, 3, 6)
    P = np.array([basis.descriptor_sums(a)[0].ravel() / len(a) for a in fr])
    cl = cluster(P, 3, seed=0)
    g = gate_dict(cl, 0.7)
    K = basis.n_features
    pot = dcace.Potential.from_parts(basis, np.zeros((3, 1, K)), np.zeros((3, 1)), g, {})
    w, dw, near = gate_weights(g, P)
    for i in range(len(P)):
        wc, dwc, nc = pot.core.gate_weights(P[i])
        assert np.allclose(w[i], wc, rtol=1e-12, atol=1e-14)
        assert np.allclose(dw[i], dwc, rtol=1e-9, atol=1e-12 * np.abs(dwc).max())
        assert np.isclose(near[i], nc, rtol=1e-12)


def test_joint_normal_equations_equal_brute_force():
    fr = read_data(MO_TRAIN, elements=["Mo"]).frames[::25]
    basis = dcace.ACEBasis(["Mo"], 5.2, 3, 6)
    D = basis.n_features
    Dp = D + 1
    rows = [basis.fitting_rows(f.atoms) for f in fr]
    Bs = np.array([r.energy for r in rows])
    cnt = np.array([r.counts for r in rows])
    N = cnt.sum(axis=1)
    P = Bs / N[:, None]
    g = gate_dict(cluster(P, 3, seed=1), 0.7)
    wE, wF, wS = 7.0, 1.3, 2.0
    acc = JointAccumulator(2, D, 1, g, wE, lambda Pm: gate_weights(g, Pm)[:2])
    lin = GroupAccumulator(2, D, 1, np.ones((len(fr), 1)), wE)
    yE = np.array([f.energy for f in fr]) / N + 10.0
    Hb = np.zeros((3 * Dp, 3 * Dp))
    hb = np.zeros(3 * Dp)
    yyb = 0.0
    for i, (f, r) in enumerate(zip(fr, rows)):
        Phi, fv = r.forces, f.forces.ravel()
        sc = r.volume / f.n_atoms
        Psi, sig = r.stress * sc, f.stress * sc
        A = wF ** 2 * Phi.T @ Phi + wS ** 2 * Psi.T @ Psi
        v = wF ** 2 * Phi.T @ fv + wS ** 2 * Psi.T @ sig
        yy = wF ** 2 * fv @ fv + wS ** 2 * sig @ sig
        u = np.concatenate([r.energy, r.counts]) / N[i]
        bt = Batch(i % 2, A[None], v[None], np.array([yy]), u[None], yE[i:i + 1], P[i:i + 1], np.array([i]))
        acc.add(bt)
        lin.add(bt)
        w, dw, _ = gate_weights(g, P[i:i + 1])
        T = np.concatenate([w[0, m] * np.eye(D, Dp) + np.outer(dw[0, m], u) for m in range(3)], axis=1)
        X = np.concatenate([wF * Phi @ T, wS * Psi @ T, wE * np.concatenate([w[0, m] * u for m in range(3)])[None]])
        y = np.concatenate([wF * fv, wS * sig, [wE * yE[i]]])
        Hb += X.T @ X
        hb += X.T @ y
        yyb += y @ y
    H, h = acc.total()
    assert np.abs(H - Hb).max() <= 1e-13 * np.abs(Hb).max()
    assert np.abs(h - hb).max() <= 1e-13 * np.abs(hb).max()
    assert np.isclose(acc.yy.sum(), yyb, rtol=1e-13)
    # the linear model: rows [wF Phi, 0], [wS Psi, 0], wE u
    Hl = np.zeros((Dp, Dp))
    for i, (f, r) in enumerate(zip(fr, rows)):
        sc = r.volume / f.n_atoms
        X = np.concatenate([np.pad(wF * r.forces, ((0, 0), (0, 1))), np.pad(wS * sc * r.stress, ((0, 0), (0, 1))),
                            wE * np.concatenate([r.energy, r.counts])[None] / N[i]])
        Hl += X.T @ X
    assert np.abs(lin.H.sum(axis=0)[0] - Hl).max() <= 1e-13 * np.abs(Hl).max()


# ------------------------------------------------------------------------------------------ fits
@lru_cache(maxsize=None)
def small_fit(experts=3, seed=0, committee="joint"):
    frames = mo_frames(3)
    return dcace.fit(frames, experts=experts, seed=seed, temperatures=(0.5,), cv_folds=3, committee=committee,
                     **SMALL)


def test_linear_fit_reproduces_least_squares_and_reports():
    pot = small_fit(experts=1)
    assert pot.n_experts == 1
    rep = pot.report
    assert set(rep.errors) == {"linear"}
    tr = rep.errors["linear"]["train"]
    assert tr["n_structures"] == len(mo_frames(3))
    assert 0 < tr["energy_mae_mev_per_atom"] < 50 and 0 < tr["force_mae_ev_per_a"] < 0.5
    assert "| linear | train |" in str(rep)


def test_dc_fit_prediction_mirror_matches_core():
    pot = small_fit(experts=3)
    assert pot.n_experts == 3
    basis = pot.basis
    K = basis.n_features
    th = np.concatenate([pot.coefficients.reshape(3, K), pot.one_body], axis=1)
    g = pot.gate
    for a in read(MO_TEST, "::5"):
        r = basis.fitting_rows(a)
        E, w, c_eff = committee_predict(th, lambda Pm: gate_weights(g, Pm)[:2], r.energy[None], r.counts[None])
        out = pot.compute(a)
        assert np.isclose(E[0], out["energy"], rtol=1e-12, atol=1e-9)
        assert np.allclose(r.forces @ c_eff[0], out["forces"].ravel(), atol=1e-9)
        assert np.allclose(r.stress @ c_eff[0], out["stress"], atol=1e-11)
        assert np.allclose(w[0], out["weights"], atol=1e-12)


def test_same_seed_same_bytes_and_round_trip(tmp_path):
    frames = mo_frames(3)
    kw = dict(experts=2, seed=7, temperatures=(0.5,), cv_folds=3, **SMALL)
    p1 = dcace.fit(frames, **kw)
    p2 = dcace.fit(frames, **kw)
    a, b = tmp_path / "a.dcace", tmp_path / "b.dcace"
    p1.save(a)
    p2.save(b)
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.dcace"
    dcace.load(a).save(c)
    assert c.read_bytes() == a.read_bytes()
    meta = dcace.load(a).metadata
    assert meta["fit"]["seed"] == 7 and meta["dcace_version"] == dcace.__version__
    assert len(meta["data"]["train"][0]["sha256"]) == 64
    assert "train" in meta["errors"]["dc"] and "cv" in meta["errors"]["dc"]
    assert "\n" not in dcace.load(a).core.metadata
    # a different seed changes folds/clusters and hence the file
    p3 = dcace.fit(frames, **{**kw, "seed": 8})
    p3.save(c)
    assert c.read_bytes() != a.read_bytes()


def test_independent_committee_option_and_comparison():
    pot = small_fit(experts=2, committee="independent")
    rep = pot.report
    assert rep.settings["committee"] == "independent"
    assert {"linear", "dc", "dc-joint", "paper-eq8"} <= set(rep.errors)
    assert rep.selection["eq9"]["paper_M"] in (1, 2)


def test_tial_multi_element_fit():
    frames = read(TIAL, "::2")
    pot = dcace.fit(frames, elements=["Ti", "Al"], cutoff=5.0, body_order=3, max_degree=6, experts=1,
                    forces_key="force", virial_key="virial", progress=False, cv_folds=3)
    tr = pot.report.errors["linear"]["train"]
    assert pot.elements == ["Ti", "Al"]
    mean_f = np.abs(np.concatenate([a.arrays["force"].ravel() for a in frames])).mean()  # about 1.8 eV/Å
    mean_s = np.mean([np.abs(a.info["virial"]).mean() / a.get_volume() for a in frames]) * 160.2
    assert tr["energy_mae_mev_per_atom"] < 30 and tr["force_mae_ev_per_a"] < 0.4 * mean_f
    # the virial is converted with the right sign: stress errors far below the stresses themselves
    assert tr["stress_mae_gpa"] is not None and tr["stress_mae_gpa"] < 0.3 * mean_s


def test_elements_missing_from_fit_list_is_an_error():
    frames = read(TIAL, ":3")
    with pytest.raises(DataError, match=r"frame 0: element\(s\) Al present but not listed"):
        dcace.fit(frames, elements=["Ti"], cutoff=5.0, body_order=2, max_degree=4, experts=1,
                  forces_key="force", progress=False, cv_folds=2)


def test_bad_fit_options():
    frames = mo_frames(3)
    for kw, msg in ((dict(experts="many"), "experts must be"), (dict(energy_weight=-1.0), "energy_weight"),
                    (dict(committee="both"), "committee"), (dict(temperatures=(0.0,)), "temperatures"),
                    (dict(cv_folds=1), "cv_folds")):
        with pytest.raises(ValueError, match=msg):
            dcace.fit(frames, **{**SMALL, **kw})


def test_memory_budget_skips_candidates_and_reports():
    pot = dcace.fit(mo_frames(3), experts="auto", max_experts=4, temperatures=(0.5,), cv_folds=3,
                    memory_budget_gb=0.0002, **SMALL)
    notes = " ".join(pot.report.notes)
    assert "exceed the memory budget" in notes
    assert pot.n_experts in (1, 2, 3, 4)


def test_agreement_penalty_and_zero_regularisation_options():
    base = dict(experts=3, temperatures=(0.5,), cv_folds=3, **SMALL)
    p0 = dcace.fit(mo_frames(3), **base)
    p1 = dcace.fit(mo_frames(3), agreement=1.0, regularise="zero", **base)
    assert p1.report.settings["agreement"] == 1.0 and p1.report.settings["regularise"] == "zero"
    assert not np.allclose(p0.coefficients, p1.coefficients)
    # with a strong agreement penalty the experts' energies on the training set move toward the
    # global model's: the spread of expert energies shrinks
    def spread(pot):
        out = [pot.compute(a)["expert_energies"] / len(a) for a in mo_frames(6)]
        return float(np.mean([np.ptp(e) for e in out]))
    assert spread(p1) < spread(p0)
