"""Fit state and incremental refit (issue 14; docs/fit-state.md).

* A fit on Zuo Mo structures 0-149 saved with its state, then ``refit`` adding 150-193, equals the
  from-scratch fit on 0-193 that reuses the state's folds, clusters, e_ref and core (``reuse=``):
  coefficients, one-body terms and gate to 1e-10 relative (measured: bit for bit), the same model
  selection, identical test-set errors and CV table; training errors (from the stored sums in the
  refit, from the C++ core in the full fit) agree to round-off.  The refit's wall time vs the full
  fit's is printed (the target 0.35x is a benchmark matter, not asserted).
* The state file: versioned, its size reported and made of the normal equations (independent of
  the data) plus O(K) numbers per structure.
* The off-data anchors (format version 3, dcace.state_anchors): a fit that writes a state has the
  anchors of the same fit without one (bit for bit); the refit keeps them (H_a from the state) and
  the ``reuse=`` fit rebuilds them from the recorded sources -- equal, as above.
* Old states (committed in tests/data, written by dcace 6263d1c: tests/data/make_old_states.py):
  versions 1 and 2 resume without anchors and say so, equal to the ``reuse=`` fit; a version-2 state
  with frame weights written with the accumulator before the committee-weight fix (d12ced5) would
  resume to a wrong committee (measured here) and is refused.
* Bad input: a state of another format version or dcace version, a file that is no state, new data
  with an element the potential lacks, ``--add`` without ``--resume``, settings typed with
  ``--resume``, ``-o`` naming the state, ``reuse=`` with other settings or other leading structures.
  Nothing is overwritten.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write

import dcace
from dcace.cli import main
from dcace import state_anchors
from dcace.state import STATE_VERSION, StateError, load_state, refit

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
MO_TEST = ROOT / "examples" / "data" / "zuo2020" / "Mo_test.xyz"
KW = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=8, max_experts=5, progress=False)
DATA = ROOT / "tests" / "data"
#: the settings and weights of the committed old states (tests/data/make_old_states.py)
OLD_KW = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, experts=2, temperatures=(0.5,),
              compare=False, progress=False)
OLD_WEIGHTS = {"Vacancy": 2.0, "AIMD-NVT": 1.0, "Surface": 0.5, "Elastic": 1.5}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("refit")


@pytest.fixture(scope="module")
def frames():
    return read(MO_TRAIN, ":")


@pytest.fixture(scope="module")
def fits(frames, work):
    """(first fit on 0-149 with state, refit + 150-193, from-scratch fit on 0-193 reusing the state, the
    state); the from-scratch fit writes its state too (Mo194full.npz)."""
    state = work / "Mo150.npz"
    t = time.perf_counter()
    p0 = dcace.fit(frames[:150], state=state, test=str(MO_TEST), **KW)
    t0 = time.perf_counter() - t
    p0.save(work / "Mo150.dcace")
    t = time.perf_counter()
    p1 = refit(frames[150:], resume=state, test=str(MO_TEST), progress=False, state=work / "Mo194.npz")
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    p2 = dcace.fit(frames, reuse=state, test=str(MO_TEST), state=work / "Mo194full.npz", **KW)
    t2 = time.perf_counter() - t
    print(f"\nfit 0-149 {t0:.2f} s; refit +44 {t1:.2f} s; full fit 0-193 {t2:.2f} s; refit / full = {t1 / t2:.2f}")
    return p0, p1, p2, state


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


def test_refit_equals_fit_from_scratch(fits):
    p0, p1, p2, _ = fits
    assert p1.n_experts == p2.n_experts > 1
    assert rel(p1.coefficients, p2.coefficients) <= 1e-10
    assert rel(p1.one_body, p2.one_body) <= 1e-10
    for k in ("centroids", "spread", "mean", "scale", "projection"):
        assert rel(p1.gate[k], p2.gate[k]) <= 1e-10
    s1, s2 = p1.report.selection, p2.report.selection
    for k in ("n_experts", "temperature", "ridge", "ridge_experts", "cluster_sizes", "e_ref", "eq9"):
        assert s1[k] == s2[k], k
    # both probe the state's lowest-energy training structure (format version 4, dcace.state_ground): the kink
    # check (dcace.gate_kinks) judged the same committees the same way
    assert s1["gate_kinks"]["checked"] and s1["gate_kinks"] == s2["gate_kinks"]
    assert [r["loss"] for r in p1.report.cv_table] == pytest.approx([r["loss"] for r in p2.report.cv_table],
                                                                    rel=1e-10)
    for model, sets in p2.report.errors.items():
        assert p1.report.errors[model]["test"] == pytest.approx(sets["test"], rel=1e-10), model
    # training errors: the refit has only the sums (no old structures), the full fit the C++ core
    for model in ("linear", "dc"):
        a, b = p1.report.errors[model]["train"], p2.report.errors[model]["train"]
        assert a["n_structures"] == b["n_structures"] == 194 and a["n_atoms"] == b["n_atoms"]
        for k in ("energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "energy_max_mev_per_atom",
                  "stress_mae_gpa", "stress_rmse_gpa"):
            assert a[k] == pytest.approx(b[k], rel=1e-9), (model, k)
        # the force RMSE is a difference of large quadratic forms: round-off at ~1e-6 relative
        assert a["force_rmse_ev_per_a"] == pytest.approx(b["force_rmse_ev_per_a"], rel=1e-5), model
        assert a["force_mae_ev_per_a"] is None
    # the refit really changed the potential: the selection saw 44 more structures
    assert rel(p1.coefficients[0], p0.coefficients[0]) > 1e-6 or p1.n_experts != p0.n_experts
    r = s1["refit"]
    assert r["added"] == 44 and r["previous"] == 150 and sum(r["received"]) == 44


def test_fit_with_a_state_has_the_anchors_and_the_refit_keeps_them(fits, frames, work):
    """A fit that writes a state has the off-data anchors of the same fit without a state (the same
    coefficients, bit for bit); the state holds H_a (one packed D' x D' matrix) and the anchors'
    sources; the refit reads H_a (it featurises no anchor structure), the reuse= fit rebuilds it
    from the recorded sources: the same matrix, and both say so."""
    p0, p1, p2, state = fits
    plain = dcace.fit(frames[:150], test=str(MO_TEST), **KW)
    assert p0.n_experts == plain.n_experts > 1
    np.testing.assert_array_equal(p0.coefficients, plain.coefficients)
    np.testing.assert_array_equal(p0.one_body, plain.one_body)
    assert p0.report.errors["dc"]["test"] == plain.report.errors["dc"]["test"]
    assert p0.report.settings["anchors"] == plain.report.settings["anchors"] == 0.03
    assert any(n.startswith("off-data anchors:") for n in p0.report.notes)
    assert not any("anchors off" in n for n in p0.report.notes + p1.report.notes + p2.report.notes)
    s150, s194, full = (load_state(p) for p in (state, work / "Mo194.npz", work / "Mo194full.npz"))
    rec = s150.meta["anchors"]
    Dp = p0.basis.n_features + 1
    assert rec["weight"] == 0.03 and rec["n_structures"] > 100 and len(rec["sources"]) == 16
    assert s150.arrays["anchors_Hp"].shape == (Dp * (Dp + 1) // 2,)
    assert s194.meta["anchors"] == full.meta["anchors"] == rec   # kept, not chosen again over 194
    np.testing.assert_array_equal(s194.arrays["anchors_Hp"], s150.arrays["anchors_Hp"])
    np.testing.assert_array_equal(full.arrays["anchors_Hp"], s150.arrays["anchors_Hp"])
    assert any("kept by the refit: H_a read from the state" in n for n in p1.report.notes)
    assert any(n.startswith("off-data anchors:") and "compressed and rattled" in n for n in p2.report.notes)
    # the anchors matter here: without them the refit is another potential
    bare = refit(frames[150:], resume=_without_anchors(state, work, "bare.npz"), progress=False, compare=False)
    assert bare.coefficients.shape != p1.coefficients.shape or rel(bare.coefficients, p1.coefficients) > 1e-6   # (M may differ)


def test_refit_touches_only_the_new_structures(fits, work):
    """The refit's state is the union's: the same sums as a state saved by the full fit, and its
    pass 1 and 2 ran over the 44 new structures only (per-structure arrays extended, not recomputed)."""
    _, p1, p2, state = fits
    s150, s194 = load_state(state), load_state(work / "Mo194.npz")
    assert s194.n == 194 and s150.n == 150
    np.testing.assert_array_equal(s194.arrays["Bsum"][:150], s150.arrays["Bsum"])
    np.testing.assert_array_equal(s194.arrays["folds"][:150], s150.arrays["folds"])
    assert np.bincount(s194.arrays["folds"]).max() - np.bincount(s194.arrays["folds"]).min() <= 1   # balanced
    for M in s150.meta["clusterings"]:
        np.testing.assert_array_equal(s194.arrays[f"cluster{M}_labels"][:150], s150.arrays[f"cluster{M}_labels"])
        np.testing.assert_array_equal(s194.arrays[f"cluster{M}_centroids"], s150.arrays[f"cluster{M}_centroids"])
    H150, H194 = s150.arrays["groups_Hp"], s194.arrays["groups_Hp"]
    assert H194.shape == H150.shape and not np.array_equal(H194, H150)
    # normal equations are independent of the data size; the per-structure part is O(K) each
    b150, b194 = s150.nbytes(), s194.nbytes()
    assert b150["normal_equations"] == b194["normal_equations"]
    per150 = b150["per_structure"] / 150
    assert b194["per_structure"] == pytest.approx(194 * per150, rel=0.15)
    size = p1.report.selection["state"]
    assert size["bytes"] == (work / "Mo194.npz").stat().st_size
    # the refit's cost estimate takes the update time the state's fit measured (it does not time a
    # pass over all accumulators again) and hands it on to the next state
    assert s150.update_seconds > 0 and p1.report.cost["update_s_per_structure"] == s150.update_seconds
    assert s194.update_seconds == s150.update_seconds
    assert p2.report.cost["update_s_per_structure"] != s150.update_seconds   # a fit measures its own
    assert size["normal_equations"] > 5 * size["per_structure"]   # packed (version 2): 7x here


def test_refit_changes_only_experts_that_received_structures(frames, work):
    """The paper's independent experts (ridge toward 0, at a fixed ridge): an expert whose cluster
    received none of the 44 new structures keeps its coefficients bit for bit, the others change;
    the report says which.  Ridged toward the global solution (the default), every expert moves."""
    kw = dict(KW, experts=3, committee="independent", ridge=1e-8, compare=False, temperatures=(0.5,),
              regularise="zero")
    state = work / "ind.npz"
    p0 = dcace.fit(frames[:150], state=state, **kw)
    p1 = refit(frames[150:], resume=state, progress=False, compare=False)
    r = p1.report.selection["refit"]
    print("\nindependent experts, regularise zero:", r["received"], r["relative_change"])
    assert r["committee"] == "independent" and len(r["received"]) == 3 and sum(r["received"]) == 44
    assert 0 in r["received"]                     # the case this test is about: an untouched cluster
    change = np.linalg.norm((p1.coefficients - p0.coefficients).reshape(3, -1), axis=1) / np.linalg.norm(
        p0.coefficients.reshape(3, -1), axis=1)
    assert r["relative_change"] == pytest.approx(change.tolist(), rel=1e-2, abs=1e-300)
    for m in range(3):
        if r["received"][m]:
            assert m in r["changed"] and change[m] > 1e-6
        else:
            assert m not in r["changed"] and change[m] == 0.0
            np.testing.assert_array_equal(p1.one_body[m], p0.one_body[m])
    p0g = dcace.fit(frames[:150], state=work / "indg.npz", **{**kw, "regularise": "global"})
    pg = refit(frames[150:], resume=work / "indg.npz", progress=False, compare=False)
    rg = pg.report.selection["refit"]
    print("independent experts, regularise global:", rg["received"], rg["relative_change"])
    assert rg["changed"] == [0, 1, 2] and p0g.n_experts == 3
    # these experts have the off-data anchors (they ridge toward the linear model): kept by the refit
    assert load_state(work / "indg.npz").meta["anchors"]["n_structures"] > 0
    ref = dcace.fit(frames, reuse=work / "indg.npz", **{**kw, "regularise": "global"})
    assert rel(pg.coefficients, ref.coefficients) <= 1e-10 and rel(pg.one_body, ref.one_body) <= 1e-10


# ------------------------------------------------------------------------------------ bad input
def _tampered(state, work, name, **meta):
    z = dict(np.load(state, allow_pickle=False))
    m = json.loads(str(z.pop("__meta__")))
    m.update(meta)
    out = work / name
    with open(out, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(m)), **z)
    return out


def test_state_of_another_version_or_dcace_is_refused(fits, work, frames):
    state = fits[3]
    bad = _tampered(state, work, "v99.npz", version=99)
    with pytest.raises(StateError, match=r"v99.npz: fit-state format version 99"):
        refit(frames[150:152], resume=bad, progress=False)
    other = _tampered(state, work, "old.npz", dcace_version="0.0.1")
    with pytest.raises(StateError, match=r"old.npz: written by dcace 0.0.1"):
        refit(frames[150:152], resume=other, progress=False)
    with pytest.raises(StateError, match=r"Mo150.dcace: not a dcace fit state"):
        refit(frames[150:152], resume=work / "Mo150.dcace", progress=False)
    with pytest.raises(StateError, match="no such state file"):
        refit(frames[150:152], resume=work / "missing.npz", progress=False)


def _without_anchors(state, work, name, version=2):
    """The state as format version 2 wrote it: no anchors (no H_a, no record, no weight setting)."""
    z = dict(np.load(state, allow_pickle=False))
    m = json.loads(str(z.pop("__meta__")))
    z.pop("anchors_Hp", None)
    m.pop("anchors", None)
    m["settings"].pop("anchors", None)
    m["version"] = version
    out = work / name
    with open(out, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(m)), **z)
    return out


def _as_version_1(state, work, name):
    """The state rewritten as format version 1 wrote it (no anchors): full normal matrices of the linear model
    and independent experts, and each committee's half blocks S (here the canonical ones of
    dcace.state_pack, which assemble to the stored matrices bit for bit; tests/data/make_old_states.py
    wrote the committed v1 fixture with the same function)."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from make_old_states import as_version_1

    out = work / name
    as_version_1(_without_anchors(state, work, name), out)
    return out


def test_state_is_packed_and_version_1_still_loads(fits, work, frames):
    """Format version 2 keeps the upper triangles of the symmetric normal matrices: the normal
    equations take (n + 1) / 2n of version 1's bytes; a version 1 state loads and gives the same
    refit bit for bit."""
    state = fits[3]
    st = load_state(state)
    assert st.meta["version"] == STATE_VERSION == 4
    v1 = _as_version_1(state, work, "v1.npz")
    st1 = load_state(v1)
    ne1, ne2 = st1.nbytes()["normal_equations"], st.nbytes()["normal_equations"]
    print(f"\nnormal equations: version 1 {ne1 / 2**20:.2f} MiB, version 2 {ne2 / 2**20:.2f} MiB; files "
          f"{v1.stat().st_size / 2**20:.2f} / {state.stat().st_size / 2**20:.2f} MiB")
    assert 0.5 < ne2 / ne1 < 0.52
    new = frames[150:170]
    a = refit(new, resume=_without_anchors(state, work, "v2.npz"), progress=False, compare=False)
    b = refit(new, resume=v1, progress=False, compare=False)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    np.testing.assert_array_equal(a.one_body, b.one_body)


def test_old_states_resume_without_anchors(frames):
    """The committed version-1 and version-2 states (written by dcace 6263d1c, which kept no anchors)
    still load and resume, without anchors, and the report says so; the refit equals the reuse= fit
    on the union (which has none either), and the two versions give the same refit bit for bit.
    The committed states' sums were accumulated with 6263d1c's numpy gate, the reuse= fit's with the
    C++ core's (e60a42b): the same equations, round-off apart (~1e-16 in the sums), which the
    committee solve amplifies to ~3e-8 in the coefficients; hence 1e-6 here, while states written by
    this code refit to 1e-10 (test_refit_equals_fit_from_scratch)."""
    new = frames[150:194:4]
    a = refit(new, resume=DATA / "v2_state_Mo.npz", progress=False, compare=False)
    b = refit(new, resume=DATA / "v1_state_Mo.npz", progress=False, compare=False)
    assert [load_state(DATA / f).meta["version"] for f in ("v1_state_Mo.npz", "v2_state_Mo.npz")] == [1, 2]
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    for pot in (a, b):
        assert any("off-data anchors off: the fit state" in n and "was written without them" in n
                   for n in pot.report.notes)
        assert any(n.startswith("kink check: not done (the fit state") and "holds no probe structure" in n
                   for n in pot.report.notes)   # (dcace.state_ground: format version 4)
    full = dcace.fit(frames[0:150:4] + new, reuse=DATA / "v2_state_Mo.npz", **OLD_KW)
    assert any("off-data anchors off" in n for n in full.report.notes)
    assert a.n_experts == full.n_experts == 2 and a.report.selection["refit"]["added"] == 11
    assert rel(a.coefficients, full.coefficients) <= 1e-6 and rel(a.one_body, full.one_body) <= 1e-6


def test_state_before_the_committee_weight_fix_is_refused(frames, work, monkeypatch, capsys):
    """A version-2 state with config_type weights whose committee sums were accumulated as before the
    committee-weight fix d12ced5 (tests/data/make_old_states.py) resumes to a wrong committee: with
    the check off the refit differs from the fit from scratch on the union (which recomputes the
    sums). So states before version 3 with frame weights and joint committees are refused, naming
    the file and the fix (the version cannot tell a state written after the fix from one before)."""
    bad, new = DATA / "v2_state_Mo_weighted_prefix.npz", frames[150:194:4]
    with pytest.raises(StateError, match=r"v2_state_Mo_weighted_prefix.npz: fit-state format version 2 with "
                                         r"frame weights \(0.5, 1, 1.5, 2\).*committee-weight fix \(d12ced5\)"):
        refit(new, resume=bad, progress=False, compare=False)
    xyz = work / "new_w.xyz"
    write(xyz, new, format="extxyz")
    assert main(["fit", "--resume", str(bad), "--add", str(xyz), "-o", str(work / "w.dcace"), "--quiet"]) == 2
    assert "committee-weight fix" in capsys.readouterr().err and not (work / "w.dcace").exists()
    monkeypatch.setattr(state_anchors, "check_committee_weights", lambda st: None)
    wrong = refit(new, resume=bad, progress=False, compare=False)
    right = dcace.fit(frames[0:150:4] + new, reuse=bad, weights=OLD_WEIGHTS, **OLD_KW)
    f_wrong, f_right = (p.report.errors["dc"]["train"]["force_rmse_ev_per_a"] for p in (wrong, right))
    print(f"\npre-fix weighted state: refit vs fit from scratch, coefficients "
          f"{rel(wrong.coefficients, right.coefficients):.3g} relative, training force RMSE {f_wrong:.6g} vs "
          f"{f_right:.6g} eV/A")
    assert wrong.n_experts == right.n_experts == 2
    # measured: 5.0e-9 (the refit's bar is 1e-10; this gate is nearly hard on these 49 structures) and
    # the training force RMSE, which a refit takes from the sums, 0.309 vs 0.334 eV/A; at the default
    # temperatures on 150 + 44 structures the CV picks another M (benchmarks/old_state_weights.py)
    assert rel(wrong.coefficients, right.coefficients) > 1e-9
    assert abs(f_wrong / f_right - 1) > 0.03
    # the same weights in a state of this dcace (version 3) resume to the fit from scratch
    good = work / "weighted_v3.npz"
    dcace.fit(frames[0:150:4], state=good, weights=OLD_WEIGHTS, **OLD_KW)
    ok = refit(new, resume=good, progress=False, compare=False)
    ref = dcace.fit(frames[0:150:4] + new, reuse=good, weights=OLD_WEIGHTS, **OLD_KW)
    assert rel(ok.coefficients, ref.coefficients) <= 1e-10 and rel(ok.one_body, ref.one_body) <= 1e-10


def test_new_element_is_refused(fits, work):
    nb = Atoms("MoNb", positions=[[0, 0, 0], [2.2, 0, 0]], cell=[8, 8, 8], pbc=True)
    nb.info["energy"] = -20.0
    nb.arrays["forces"] = np.zeros((2, 3))
    path = work / "nb.xyz"
    write(path, nb, format="extxyz")
    with pytest.raises(ValueError, match=r"nb.xyz.*Nb"):
        refit(str(path), resume=fits[3], progress=False)


def test_reuse_needs_the_same_settings_and_structures(fits, frames):
    state = fits[3]
    with pytest.raises(StateError, match=r"max_degree = 7.0 here, 8.0 in the state"):
        dcace.fit(frames, reuse=state, **{**KW, "max_degree": 7})
    with pytest.raises(StateError, match="training structure 0 differs"):
        dcace.fit(frames[1:], reuse=state, **KW)


def test_cli_refit_errors_and_nothing_overwritten(fits, work, frames, capsys):
    state = fits[3]
    new = work / "new.xyz"
    write(new, frames[150:], format="extxyz")
    before = state.read_bytes()
    pot_before = (work / "Mo150.dcace").read_text()
    cases = [
        (["fit", "--add", str(new), "-o", str(work / "x.dcace")], "--add/--recluster/--keep-core need --resume"),
        (["fit", "--resume", str(state), "-o", str(work / "x.dcace")], "needs --add"),
        (["fit", "--resume", str(state), "--add", str(new), "--cutoff", "5", "-o", str(work / "x.dcace")],
         "takes the fit settings from the state.*--cutoff"),
        (["fit", "--resume", str(state), "--add", str(new), "--anchors", "0.1", "--no-pca", "-o", str(work / "x.dcace")],
         "takes the fit settings from the state.*--anchors, --no-pca"),
        # the ridge options a refit takes from the state, and the local gates' (no state): typed, an error
        (["fit", "--resume", str(state), "--add", str(new), "--top-degree-ridge", "7", "--degree-ridge", "1",
          "-o", str(work / "x.dcace")], "takes the fit settings from the state.*--degree-ridge, --top-degree-ridge"),
        (["fit", "--resume", str(state), "--add", str(new), "--gate-range", "4", "-o", str(work / "x.dcace")],
         "takes the fit settings from the state.*--gate-range"),
        (["fit", "--resume", str(state), "--add", str(new), "-o", str(state)], "is the --resume file"),
        (["fit", "--resume", str(state), "--add", str(new), "-o", str(work / "x.dcace"), "--save-state", str(new)],
         "--save-state .* is the --add file"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "dcace: error:" in err and __import__("re").search(msg, err), (argv, err)
    assert state.read_bytes() == before and (work / "Mo150.dcace").read_text() == pot_before
    assert not (work / "x.dcace").exists()


def test_cli_refit_writes_potential_and_state(fits, work, frames, capsys):
    state = fits[3]
    new = work / "new2.xyz"
    write(new, frames[150:], format="extxyz")
    out, st2 = work / "cli.dcace", work / "cli.npz"
    assert main(["fit", "--resume", str(state), "--add", str(new), "-o", str(out), "--save-state", str(st2),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "refit: 44 structures added to the 150" in text and "wrote fit state" in text
    pot = dcace.load(out)
    assert rel(pot.coefficients, fits[1].coefficients) <= 1e-10
    assert load_state(st2).n == 194


def _pair_at(atoms, d):
    """A copy of atoms with atom 1 moved along its bond to atom 0 (minimum image) to distance d."""
    a = atoms.copy()
    v = a.get_distance(0, 1, mic=True, vector=True)
    a.positions[1] = a.positions[0] + v * (d / np.linalg.norm(v))
    a.calc = atoms.calc
    return a


def test_new_data_in_the_core_is_an_error_unless_kept(fits, work, frames, capsys):
    """The state's core window for Mo-Mo is 1.583-1.833 A (shortest distance of structures 0-149:
    1.883 A).  A new structure with a pair inside it is an error naming the file, frame, pair and
    distance (nothing written; the exact alternative, a fit from scratch, is --recluster); with
    keep_core the refit runs and says so.  A pair between the window and the state's shortest
    distance is fitted by ACE and gets a note."""
    state = fits[3]
    new = work / "close.xyz"
    write(new, [_pair_at(frames[150], 1.70), _pair_at(frames[151], 1.86)], format="extxyz")
    with pytest.raises(StateError, match=r"close.xyz, frame 0: Mo-Mo pair at 1.700 A, inside the state's core "
                                         r"window 1.583-1.833 A.*--recluster.*--keep-core"):
        refit(str(new), resume=state, progress=False, compare=False)
    out = work / "close.dcace"
    assert main(["fit", "--resume", str(state), "--add", str(new), "-o", str(out), "--quiet"]) == 2
    assert "frame 0: Mo-Mo pair at 1.700 A" in capsys.readouterr().err and not out.exists()
    pot = refit(str(new), resume=state, progress=False, compare=False, keep_core=True)
    notes = " ".join(pot.report.notes)
    assert "core stays that of the state (--keep-core)" in notes and "frame 0: Mo-Mo pair at 1.700 A" in notes
    assert "closer than the state's shortest distances" in notes and "frame 1: Mo-Mo 1.860 A" in notes


def test_recluster_is_a_full_refit_from_the_state_files(frames, work, capsys):
    """--recluster cannot reuse the sums (new clusters change every gate): it reads the state's
    training files again and fits from scratch on old + new -- the same potential as a plain fit on
    all the data -- and says so; a state fitted from Atoms (no files) is refused."""
    a, b = work / "rc_a.xyz", work / "rc_b.xyz"
    write(a, frames[:40], format="extxyz")
    write(b, frames[150:160], format="extxyz")
    kw = dict(KW, experts=2, temperatures=(0.5,), compare=False)
    dcace.fit(str(a), state=work / "rc.npz", **kw)
    pot = refit(str(b), resume=work / "rc.npz", recluster=True, progress=False, compare=False)
    assert any("--recluster" in n and "refitted from scratch" in n for n in pot.report.notes)
    ref = dcace.fit([str(a), str(b)], **kw)
    assert rel(pot.coefficients, ref.coefficients) <= 1e-10
    dcace.fit(frames[:40], state=work / "rc_atoms.npz", **kw)
    with pytest.raises(StateError, match="--recluster needs a full refit.*given as Atoms"):
        refit(str(b), resume=work / "rc_atoms.npz", recluster=True, progress=False)
