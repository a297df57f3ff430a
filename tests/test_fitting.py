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
import gate_oracle
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
    l1b, c1b, _ = kmeans(Y, 3, seed=5)
    assert np.array_equal(l1, l1b) and np.array_equal(c1, c1b)          # seeded: same bits
    # the order of the structures does not matter: the clusters of permuted data are the same sets
    # (labels map 1:1; their numbers may differ, ties in size are broken by the first member)
    perm = np.random.default_rng(3).permutation(len(Y))
    l2, c2, i2 = kmeans(Y[perm], 3, seed=5)
    pairs = set(zip(l1[perm].tolist(), l2.tolist()))
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3 and len({b for _, b in pairs}) == 3
    for a, b in pairs:
        assert np.allclose(c1[a], c2[b], rtol=1e-12, atol=1e-12)
    assert i2 == pytest.approx(i1, rel=1e-12)
    assert sorted(np.bincount(l1)) == [30, 30, 30]
    assert (np.diff(np.bincount(l1)) <= 0).all()  # numbered by decreasing size


@pytest.mark.parametrize("n_distinct", [1, 2])
def test_kmeans_with_fewer_distinct_points_than_clusters_has_no_empty_cluster(n_distinct):
    """Identical descriptors (a data set of repeated dimers, as experts="auto" meets) used to leave a cluster
    empty after re-seeding and its centroid the mean of nothing (NaN, with a RuntimeWarning). Now every cluster
    keeps a point, the centroids are points of the data and the inertia is that of the distinct points."""
    import warnings

    rng = np.random.default_rng(1)
    points = rng.normal(size=(n_distinct, 3))
    Y = points[[i % n_distinct for i in range(5)]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(20):
            labels, C, inertia = kmeans(Y, 4, seed=seed)
            assert (np.bincount(labels, minlength=4) > 0).all()
            assert np.isfinite(C).all() and all(np.min(np.abs(C[m] - points).sum(axis=1)) < 1e-12 for m in range(4))
            assert inertia == pytest.approx(0.0, abs=1e-20)


def test_gate_mirror_matches_core():
    fr = mo_frames(10)
    basis = dcace.ACEBasis(["Mo"], 5.2, 3, 6)
    P = np.array([basis.descriptor_sums(a)[0].ravel() / len(a) for a in fr])
    cl = cluster(P, 3, seed=0)
    g = gate_dict(cl, 0.7)
    K = basis.n_features
    pot = dcace.Potential.from_parts(basis, np.zeros((3, 1, K)), np.zeros((3, 1)), g, {})
    w, dw, near = gate_oracle.gate_weights(g, P)       # numpy, in tests/ only
    wb, dwb, nb = gate_weights(g, P)                     # the fit's: the core, many rows at once
    w1, dw1, n1 = gate_weights(g, P, gradient=False)
    assert dw1 is None and np.array_equal(w1, wb) and np.array_equal(n1, nb)
    for i in range(len(P)):
        wc, dwc, nc = pot.core.gate_weights(P[i])        # the potential file's gate
        assert np.array_equal(wb[i], wc) and np.array_equal(dwb[i], dwc) and nb[i] == nc
        assert np.allclose(w[i], wc, rtol=1e-12, atol=1e-14)
        assert np.allclose(dw[i], dwc, rtol=1e-9, atol=1e-12 * np.abs(dwc).max())
        assert np.isclose(near[i], nc, rtol=1e-12)
    assert w.std() > 0.05 and np.abs(dw).max() > 0   # a gate that switches: the comparison can fail
    with pytest.raises(ValueError, match="spread"):
        gate_weights({**g, "spread": np.zeros(3)}, P)


@pytest.mark.parametrize("weighted", [False, True])
def test_joint_normal_equations_equal_brute_force(weighted):
    """The committee's normal equations equal those of its explicit rows (energy, and force and
    virial rows with the gate-gradient term), each structure's rows times its weight omega (the
    pipeline's per-frame and per-config_type weights: A, v, yy x omega^2, u, y_E x omega)."""
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
        om = (0.5, 1.0, 2.0)[i % 3] if weighted else 1.0
        A = om ** 2 * (wF ** 2 * Phi.T @ Phi + wS ** 2 * Psi.T @ Psi)
        v = om ** 2 * (wF ** 2 * Phi.T @ fv + wS ** 2 * Psi.T @ sig)
        yy = om ** 2 * (wF ** 2 * fv @ fv + wS ** 2 * sig @ sig)
        u = np.concatenate([r.energy, r.counts]) / N[i]
        bt = Batch(i % 2, A[None], v[None], np.array([yy]), om * u[None], om * yE[i:i + 1], P[i:i + 1], np.array([i]),
                   np.array([om]) if weighted else None)
        acc.add(bt)
        lin.add(bt)
        w, dw, _ = gate_weights(g, P[i:i + 1])
        T = np.concatenate([w[0, m] * np.eye(D, Dp) + np.outer(dw[0, m], u) for m in range(3)], axis=1)
        X = om * np.concatenate([wF * Phi @ T, wS * Psi @ T, wE * np.concatenate([w[0, m] * u for m in range(3)])[None]])
        y = om * np.concatenate([wF * fv, wS * sig, [wE * yE[i]]])
        Hb += X.T @ X
        hb += X.T @ y
        yyb += y @ y
    H, h = acc.total()
    assert np.abs(H - Hb).max() <= 1e-13 * np.abs(Hb).max()
    assert np.abs(h - hb).max() <= 1e-13 * np.abs(hb).max()
    assert np.isclose(acc.yy.sum(), yyb, rtol=1e-13)
    if weighted:
        return
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
    """The streamed normal equations give numpy.linalg.lstsq's solution of the explicit weighted
    design matrix (energy-per-atom, force and virial-per-atom rows) with the ridge written as extra
    rows sqrt(lam) theta_j / sc_j, sc_j = 1 / |column j| (energies relative to the per-species
    reference energies, whose one-body columns get the tiny ONE_BODY_LAMBDA)."""
    from dcace.pipeline import _reference_energies
    from dcace.ridge import ONE_BODY_LAMBDA

    frames = mo_frames(3)
    wE, wF, wS, lam = 300.0, 1.0, 1.0, 1e-8
    pot = dcace.fit(frames, experts=1, ridge=lam, cv_folds=3, energy_weight=wE, force_weight=wF, stress_weight=wS,
                    repulsion_restraints=0, **SMALL)   # the dimer restraint rows are not in the reference below
    assert pot.n_experts == 1
    rep = pot.report
    assert set(rep.errors) == {"linear"}
    ds_full = read_data(list(frames), elements=["Mo"])
    # the experts are fitted on DFT minus the short-range baseline, in the basis with its core window
    basis = pot.basis
    assert basis.core_window is not None and pot.short_range is not None
    K = basis.n_features
    base = dcace.Potential.from_parts(basis, np.zeros((1, 1, K)), np.zeros((1, 1)), short_range=pot.short_range)
    ds = dcace.baseline.residual_dataset(ds_full, base)
    e_ref = _reference_energies(np.array([f.energy for f in ds]), np.array([[f.n_atoms] for f in ds], float))
    X, y = [], []
    for fr in ds:
        r = basis.fitting_rows(fr.atoms)
        N = fr.n_atoms
        X.append(wE * np.concatenate([r.energy, r.counts])[None] / N)
        y.append([wE * (fr.energy - N * e_ref[0]) / N])
        X.append(wF * np.pad(r.forces, ((0, 0), (0, 1))))
        y.append(wF * fr.forces.ravel())
        sc = r.volume / N
        X.append(wS * sc * np.pad(r.stress, ((0, 0), (0, 1))))
        y.append(wS * sc * fr.stress)
    X, y = np.concatenate(X), np.concatenate(y)
    norms = np.linalg.norm(X, axis=0)
    pen = np.append(np.full(X.shape[1] - 1, lam), ONE_BODY_LAMBDA)
    Xa = np.vstack([X, np.diag(np.sqrt(pen) * norms)])
    ref = np.linalg.lstsq(Xa, np.concatenate([y, np.zeros(X.shape[1])]), rcond=None)[0]
    theta = np.concatenate([pot.coefficients.ravel(), pot.one_body.ravel() - e_ref])
    assert np.abs(X @ theta - X @ ref).max() <= 1e-8 * np.abs(X @ ref).max()
    assert np.allclose(theta, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    loss = lambda t: np.sum((Xa @ t - np.concatenate([y, np.zeros(X.shape[1])])) ** 2)  # noqa: E731
    assert loss(theta) == pytest.approx(loss(ref), rel=1e-12)
    # the reported training errors are those of this solution
    tr = rep.errors["linear"]["train"]
    e_err = [abs(pot.compute(f.atoms)["energy"] - f.energy) / f.n_atoms for f in ds_full]
    assert tr["n_structures"] == len(frames)
    assert tr["energy_mae_mev_per_atom"] == pytest.approx(1000 * np.mean(e_err), rel=1e-9)
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
        out = pot.compute(a)
        for predict, gate in ((committee_predict, gate_weights),                             # the core
                              (gate_oracle.committee_predict, gate_oracle.gate_weights)):    # numpy oracle
            E, w, c_eff = predict(th, lambda Pm: gate(g, Pm)[:2], r.energy[None], r.counts[None])
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
    eq9 = rep.selection["eq9"]
    # eq. 9: g(M) = sup error of the linear model / sup error of M experts, on the training set;
    # the sup of the linear model is the largest training energy error of the fitted linear model
    assert eq9["sup_err_linear_mev_per_atom"] == pytest.approx(
        rep.errors["linear"]["train"]["energy_max_mev_per_atom"], rel=1e-6)
    for key in ("paper", "joint"):
        g = {int(m): v for m, v in eq9[f"{key}_g"].items()}
        assert g[1] == 1.0 and set(g) == {1, 2} and all(np.isfinite(v) and v > 0 for v in g.values())
        assert eq9[f"{key}_M"] == max(g, key=lambda m: (g[m], -m))


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
    import re

    from dcace.committee import joint_nbytes

    budget_gb = 0.0002
    pot = dcace.fit(mo_frames(3), experts="auto", max_experts=4, temperatures=(0.5,), cv_folds=3,
                    memory_budget_gb=budget_gb, **SMALL)
    rep = pot.report
    Dp = pot.basis.n_features + 1
    skipped = []
    for note in rep.notes:
        num = r"([0-9.e+-]+)"
        m = re.match(rf"candidate M=(\d+), tau=0.5 skipped: its normal equations \({num} MiB for 3 folds\) on top of "
                     rf"the {num} MiB already allocated \({num} MiB in total\) exceed the memory budget \({num} MiB", note)
        if m:
            M = int(m.group(1))
            need, used, total, budget = map(float, m.groups()[1:])
            skipped.append(M)
            # the note states the cumulative figure, and it is the one that exceeds the budget
            assert need == pytest.approx(joint_nbytes(3, M, Dp) / 2**20, rel=5e-3)
            assert total == pytest.approx(used + need, rel=5e-3)
            assert budget == pytest.approx(budget_gb * 2**30 / 2**20, rel=5e-3) and total > budget
    assert skipped, rep.notes
    cands = {r["M"] for r in rep.cv_table}
    assert not cands & set(skipped) and cands - {1}     # some committees fit, the skipped ones were not tried
    # the chosen M is the fewest experts within the parsimony margin of the best CV loss
    lam = rep.selection["ridge"]
    lam_dc0 = max(lam, 1e-10)      # the committees' first ridge (DEFAULTS["ridge_experts_floor"]), before refinement
    rows = [r for r in rep.cv_table if (r["fit"], r["ridge"]) in (("linear", lam), ("joint", lam_dc0))]
    assert {r["M"] for r in rows} == cands
    best = min(r["loss"] for r in rows)
    M_exp = min(r["M"] for r in rows if r["loss"] <= best * 1.01)
    assert pot.n_experts == M_exp


def test_agreement_penalty_and_zero_regularisation_options():
    base = dict(experts=3, temperatures=(0.5,), cv_folds=3, **SMALL)
    p0 = dcace.fit(mo_frames(3), **base)
    p1 = dcace.fit(mo_frames(3), agreement=1.0, **base)          # only the agreement penalty changes
    assert p1.report.settings["agreement"] == 1.0 and p1.report.settings["regularise"] == "global"
    assert not np.allclose(p0.coefficients, p1.coefficients)
    # with a strong agreement penalty the experts' energies on the training set move toward the
    # global model's: the spread of expert energies shrinks
    def spread(pot):
        out = [pot.compute(a)["expert_energies"] / len(a) for a in mo_frames(6)]
        return float(np.mean([np.ptp(e) for e in out]))
    assert spread(p1) < spread(p0)
    # ridge toward zero instead of toward the global solution (the only change): other coefficients
    p2 = dcace.fit(mo_frames(3), regularise="zero", **base)
    assert p2.report.settings["regularise"] == "zero" and p2.report.settings["agreement"] == 0.0
    assert not np.allclose(p0.coefficients, p2.coefficients)


# ------------------------------------------------------------------------------------------ issue 12
def _duplicated(frames, copies):
    out = []
    for a in frames:
        for _ in range(copies):
            b = a.copy()
            b.calc = a.calc
            out.append(b)
    return out


def test_eq8_gate_is_finite_at_a_centroid():
    """Duplicated structures put cluster members exactly on their centroid (|z - mu| = 0), where the
    eq. 8 gate's d_m = sigma sqrt(n) / |z - mu|^4 is infinite: the weights must be the one-hot limit
    and the gradient finite; elsewhere the gradient is the derivative of the weights."""
    from dcace.clustering import Eq8Gate, fit_standardiser

    basis = dcace.ACEBasis(["Mo"], 5.2, 2, 5)
    fr = read(MO_TRAIN, "::40")[:3]
    P0 = np.array([basis.descriptor_sums(a)[0].ravel() / len(a) for a in fr])
    P = np.repeat(P0, 2, axis=0)
    st = fit_standardiser(P)
    cl = cluster(P, 3, seed=0, standardiser=st)
    eq8 = Eq8Gate(cl, st(P))
    assert (np.abs(eq8.mu[cl.labels] - st(P)).max(axis=1) == 0).all()   # members sit exactly on centroids
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        w, dw = eq8.weights(P)
    assert np.isfinite(w).all() and np.isfinite(dw).all()
    assert np.array_equal(w, np.eye(3)[cl.labels]) and np.abs(dw).max() == 0
    # a gate of distinct structures, between its clusters: dw matches central differences of w
    Pd = np.array([basis.descriptor_sums(a)[0].ravel() / len(a) for a in read(MO_TRAIN, "::7")])
    std = fit_standardiser(Pd)
    cld = cluster(Pd, 3, seed=0, standardiser=std)
    gd = Eq8Gate(cld, std(Pd))
    ws = gd.weights(Pd, gradient=False)[0]
    i = int(np.argmin(ws.max(axis=1)))               # the most mixed training structure
    p = Pd[i]
    w0, dw0 = gd.weights(p[None])
    assert 0.05 < w0.max() < 0.95 and np.abs(dw0).max() > 0
    for j in range(P.shape[1]):
        h = 1e-5 * std.scale[j]
        e = np.zeros_like(p)
        e[j] = h
        fd = (gd.weights((p + e)[None], gradient=False)[0] - gd.weights((p - e)[None], gradient=False)[0]) / (2 * h)
        assert np.allclose(dw0[0, :, j], fd[0], rtol=1e-4, atol=1e-6 * np.abs(dw0).max())


def test_duplicated_frames_with_three_experts_fit_and_save(tmp_path):
    """Zuo Mo frames, each four times: the comparison-only eq. 8 gate used to overflow and abort the
    fit ("Out of range float values are not JSON compliant"); now the fit completes and the file
    holds only finite numbers or null."""
    import json

    frames = _duplicated(read(MO_TRAIN, "::40")[:3], 4)
    pot = dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=2, max_degree=5, experts=3, cv_folds=2,
                    progress=False, test=frames[::4], anchors=0)   # anchors pull experts to the linear model
    assert pot.n_experts == 3
    path = tmp_path / "dup.dcace"
    pot.save(path)
    meta = dcace.load(path).metadata
    text = json.dumps(meta, allow_nan=False)     # raises on NaN / inf
    assert "paper-eq8" in meta["errors"] and json.loads(text)["selection"]["eq9"]["paper_M"] in (1, 3)
    g = meta["selection"]["eq9"]["paper_g"]
    assert all(v is None or np.isfinite(v) for v in g.values())
    # the report's JSON is strict too, even with a non-finite comparison number in it
    rep = pot.report
    rep.errors["paper-eq8"]["test"]["energy_mae_mev_per_atom"] = float("nan")
    assert json.loads(rep.to_json())["errors"]["paper-eq8"]["test"]["energy_mae_mev_per_atom"] is None
    assert "| paper-eq8 | test | — |" in rep.table()
    # three distinct structures, three experts: the committee is exact on the training energies
    assert pot.report.errors["dc"]["train"]["energy_mae_mev_per_atom"] < 1e-3


def test_experts_above_the_cv_limit_is_an_error():
    frames = mo_frames(3)
    n = len(frames)
    with pytest.raises(ValueError, match=rf"--experts {n // 6 + 1} is too many for {n} training structures "
                                         rf"with 3-fold cross-validation: the largest allowed is M = {n // 6}"):
        dcace.fit(frames, experts=n // 6 + 1, cv_folds=3, **SMALL)
    # "auto" stops at the limit and says so
    pot = dcace.fit(frames[:24], experts="auto", max_experts=8, temperatures=(0.5,), cv_folds=3, **SMALL)
    assert {r["M"] for r in pot.report.cv_table} <= {1, 2, 3, 4}
    assert any("tried M <= 4, not up to --max-experts 8: 24 training structures" in x for x in pot.report.notes)


def test_linear_memory_is_checked_before_the_basis_is_built():
    from dcace.basis_spec import build_basis_spec, count_features

    for args in ((1, 4, 12), (2, 3, 8), (1, 5, 10), (3, 2, 7)):
        assert count_features(*args) == build_basis_spec(args[0], 5.0, args[1], args[2])["n_features"]
    assert count_features(1, 4, 12, w_L=1.0) == build_basis_spec(1, 5.0, 4, 12, w_L=1.0)["n_features"] == 347
    # 8 bytes x (D + S)^2 x (folds + 5); K = 79 at body order 3, degree 12
    need = 8 * 80 ** 2 * 8
    with pytest.raises(ValueError, match=r"K = 79 .*memory budget.*--max-degree.*--memory-budget"):
        dcace.fit(mo_frames(3), elements=["Mo"], cutoff=5.2, body_order=3, max_degree=12, cv_folds=3,
                  memory_budget_gb=0.99 * need / 2**30, progress=False)


def test_stress_key_named_but_absent_everywhere_is_an_error(tmp_path):
    frames = [_atoms(stress=np.zeros(6)), _atoms()]
    p = write_subset(tmp_path / "s.xyz", frames)
    with pytest.raises(DataError, match=r"s.xyz: no frame has a stress under key 'dft_stress' .*keys present: "
                                        r"\[.*'stress'.*\]"):
        read_data(p, elements=["Mo"], stress_key="dft_stress")
    with pytest.raises(DataError, match=r"no frame has a virial under key 'virial'"):
        read_data(p, elements=["Mo"], virial_key="virial")
    with pytest.raises(DataError, match=r"no frame has a stress under key 'dft_stress'"):
        read_data([p, p], elements=["Mo"], stress_key="dft_stress")
    # the default key absent everywhere: data without stresses, no error
    q = write_subset(tmp_path / "n.xyz", [_atoms(), _atoms()])
    assert read_data(q, elements=["Mo"]).n_with_stress == 0
    # a key present on one frame of one file is enough
    assert read_data([q, p], elements=["Mo"], stress_key="stress").n_with_stress == 1
    assert read_data(q, elements=["Mo"], stress_key="dft_stress", required_keys=()).n_with_stress == 0


def test_report_from_metadata_survives_save_and_load(tmp_path):
    from dcace.report import FitReport

    pot = small_fit(experts=3)
    path = tmp_path / "r.dcace"
    pot.save(path)
    rep = FitReport.from_metadata(dcace.load(path).metadata)
    # the same table, up to the 6 significant digits the file stores
    a, b = rep.table().splitlines(), pot.report.table().splitlines()
    assert len(a) == len(b) > 4 and a[:2] == b[:2]
    for la, lb in zip(a[2:], b[2:]):
        ca, cb = la.split("|")[1:-1], lb.split("|")[1:-1]
        assert ca[:2] == cb[:2]
        for x, y in zip(ca[2:], cb[2:]):
            assert x.strip() == y.strip() == "—" or float(x) == pytest.approx(float(y), rel=1e-3, abs=2e-3)
    assert rep.selection["summary"] == pot.report.selection["summary"]
    assert rep.notes == pot.report.notes and rep.settings["seed"] == pot.report.settings["seed"]
    assert [(r["M"], r["fit"]) for r in rep.cv_table] == [(r["M"], r["fit"]) for r in pot.report.cv_table]
    assert str(rep).splitlines()[0] == str(pot.report).splitlines()[0]
    assert "| dc | train |" in rep.table() and rep.cv_markdown().count("\n") == len(rep.cv_table) + 1


# ------------------------------------------------------------------------------ weights
def _weight_fit(frames, **kw):
    return dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, experts=1, ridge=1e-8,
                     cv_folds=3, progress=False, compare=False, baseline=None, **kw)


def test_config_type_weight_zero_equals_leaving_the_frames_out():
    """A weight multiplies every row of its frames: weight 0 is the fit without them (coefficients
    and one-body terms), and the same through a per-frame info weight."""
    frames = mo_frames(3)
    kinds = [f.info["config_type"] for f in frames]
    drop = "Elastic"
    assert 0 < kinds.count(drop) < len(frames)
    kept = [f for f, k in zip(frames, kinds) if k != drop]
    ref = _weight_fit(kept)
    zero = _weight_fit(frames, weights={"config_type": {drop: 0.0}})
    c0, c1 = ref.coefficients, zero.coefficients
    assert np.abs(c1 - c0).max() <= 1e-7 * np.abs(c0).max()
    assert np.allclose(zero.one_body, ref.one_body, rtol=0, atol=1e-7)
    tagged = []
    for f, k in zip(frames, kinds):
        g = f.copy()
        g.calc = f.calc
        g.info["w"] = 0.0 if k == drop else 1.0
        tagged.append(g)
    per_frame = _weight_fit(tagged, weight_key="w")
    assert np.abs(per_frame.coefficients - c0).max() <= 1e-7 * np.abs(c0).max()
    # a weight changes the fit (the test above is not trivially satisfied)
    half = _weight_fit(frames, weights={drop: 0.5})
    assert np.abs(half.coefficients - c0).max() > 1e-4 * np.abs(c0).max()
    assert zero.metadata["fit"]["weights"] == {drop: 0.0}


def test_bad_weights_are_clear_errors():
    frames = mo_frames(3)
    with pytest.raises(ValueError, match=r"config_type\(s\) \['Surfaces'\] that no training frame has \(present: \["):
        _weight_fit(frames, weights={"Surfaces": 2.0})
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        _weight_fit(frames, weights={"Elastic": -1})
    bad = [f.copy() for f in frames]
    for g, f in zip(bad, frames):
        g.calc = f.calc
    bad[2].info["weight"] = "heavy"
    with pytest.raises(DataError, match=r"frame 2: weight 'weight' = 'heavy' is not a number"):
        _weight_fit(bad)


# ------------------------------------------------------------------------------ isolated atoms
TIAL_KW = dict(elements=["Ti", "Al"], cutoff=5.5, body_order=3, max_degree=6, experts=1, cv_folds=3,
               forces_key="force", virial_key="virial", progress=False, compare=False)


def test_isolated_atom_energies_fix_the_one_body_terms():
    """Least squares on atom counts cannot separate Ti from Al on (near-)equiatomic data; given
    isolated-atom energies (e0= or isolated_atom frames) the free atoms have exactly those energies."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    # every 8th frame (42 structures): what is checked is exact (the fixed one-body terms) or off by
    # ~850 eV (the free least-squares split), not a size effect; every 4th took 41 s for the same checks
    frames = read(DATA / "tial" / "TiAl_tutorial.xyz", "::8")
    e0 = {"Ti": -1.23, "Al": -0.45}
    pot = dcace.fit(frames, e0=e0, **TIAL_KW)
    assert pot.metadata["fit"]["e0"] == e0
    dc = dcace.fit(frames, e0=e0, **dict(TIAL_KW, experts=2))   # a committee: every expert's e0 fixed
    assert dc.n_experts == 2 and np.allclose(dc.one_body, [[-1.23, -0.45]] * 2, atol=1e-6)
    box = 40.0
    for el, v in e0.items():
        assert pot.compute(Atoms(el, positions=[[0, 0, 0]], cell=[box] * 3))["energy"] == pytest.approx(v, abs=1e-6)
    free = dcace.fit(frames, **TIAL_KW)
    assert abs(free.one_body[0, 0] - (-1.23)) > 1.0     # without it: the least-squares split
    # the same through isolated_atom frames in the data
    atoms = []
    for el, v in e0.items():
        a = Atoms(el, positions=[[0, 0, 0]], cell=[box] * 3, pbc=False)
        a.calc = SinglePointCalculator(a, energy=v, forces=np.zeros((1, 3)))
        a.info["config_type"] = "isolated_atom"
        atoms.append(a)
    for a in atoms:   # the tutorial file's keys: forces under 'force'
        a.arrays["force"] = np.zeros((1, 3))
    from_frames = dcace.fit(list(frames) + atoms, **TIAL_KW)
    assert np.allclose(from_frames.one_body, pot.one_body, atol=1e-6)
    assert any("isolated_atom frames" in n for n in from_frames.report.notes)
    with pytest.raises(ValueError, match=r"e0 names 'Nb', which is not one of the elements \['Ti', 'Al'\]"):
        dcace.fit(frames, e0={"Nb": -2.0}, **TIAL_KW)


def test_plot_arrays_are_relative_to_the_reference_energies(tmp_path):
    """The parity plot's energies are E - sum_s n_s e_s per atom (meV/atom errors visible), and the
    figures are written."""
    from dcace.plots import write_fit_plots

    frames = mo_frames(3)
    pot = dcace.fit(frames, experts=2, keep_arrays=True, **dict(SMALL, cv_folds=3))
    e_ref_sp = pot.report.selection["e_ref"][0]
    e_ref, e_pred, _, _ = pot.report.arrays["train"]["linear"]
    absolute = np.array([f.get_potential_energy() / len(f) for f in frames])
    assert np.allclose(e_ref, absolute - e_ref_sp, rtol=0, atol=1e-9)
    assert np.abs(e_ref).max() < 2.0 < np.abs(absolute).min()
    files = write_fit_plots(pot.report, tmp_path)
    assert {Path(f).name for f in files} == {"parity.png", "errors.png", "clusters.png"}
