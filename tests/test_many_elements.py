"""Many elements: per-block degrees, the species-embedded (chemical-channel) basis, and the cost a fit
announces before pass 2.

* per-block degrees: the basis is exactly the subset of the full basis whose functions meet their
  block's degree; count_features agrees with the build; bad blocks are errors naming the option;
* embedded basis: with C = S (orthogonal embedding) its invariants span those of the explicit basis
  (so the C++ weighting is right), K depends on C only, forces and stress are derivatives of the
  energy, rotations and permutations of atoms leave it invariant, files round-trip exactly;
* file format 4: a version-3 file still loads, a chemical_channels record in a v3 file or with bad
  sizes is an error naming the line;
* cost: the lines printed before pass 2 (K, unknowns, memory per candidate, estimated time), the
  refusal over the budget naming the figure and the options, progress lines when stderr is a file;
  the estimate's counted batches and blocks are those pass 2 adds, its timed updates add nothing;
* unlike-pair core windows: the "mean" rule (not the default) and its limits.

Real data: tests/data/nbmota_binaries.xyz holds six 16-atom binary solid-solution frames of the
Nb-Mo-Ta set (../shared/data/nbmota, maml, BSD-3-Clause; VASP PBE), the Mo fits use examples/data.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

import dcace
from dcace import cost
from dcace.baseline import core_window
from dcace.basis_spec import build_basis_spec, count_features, fixed_embedding

HERE = Path(__file__).resolve().parent
NBMOTA = HERE / "data" / "nbmota_binaries.xyz"
V3_FILE = HERE / "data" / "v3_NbMoTa.dcace"
V4_FILE = HERE / "data" / "v4_NbMoTa_core.dcace"
MO_TRAIN = HERE.parent / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
EL = ["Nb", "Mo", "Ta"]


def ternary(seed=0, index=0):
    """A binary test cell with its species reassigned at random over Nb, Mo, Ta (no DFT label)."""
    at = read(NBMOTA, index)
    rng = np.random.default_rng(seed)
    at.set_chemical_symbols(list(rng.choice(EL, size=len(at))))
    at.rattle(0.05, seed=seed)
    return at


# --------------------------------------------------------------------------- per-block degrees
def _degree(label, w_L=1.5):
    return sum(n + 1 + w_L * l for _, n, l in label)


def test_block_degrees_are_the_subset_of_the_full_basis():
    full = build_basis_spec(3, 5.0, 4, 10)
    blocks = {2: 8, 3: 6}
    sub = build_basis_spec(3, 5.0, 4, 10, max_degree_blocks=blocks)
    keep = [lab for lab in full["feature_labels"]
            if _degree(lab) <= blocks.get(len({z for z, _, _ in lab}), 10) + 1e-9]
    assert sorted(sub["feature_labels"]) == sorted(keep)
    assert sub["n_features"] == len(keep) < full["n_features"]
    assert count_features(3, 4, 10, max_degree_blocks=blocks) == sub["n_features"]
    # a block at the global degree changes nothing; a larger unary degree adds unary functions only
    assert count_features(3, 4, 10, max_degree_blocks={1: 10, 2: 10}) == full["n_features"]
    big = build_basis_spec(3, 5.0, 4, 10, max_degree_blocks={1: 12})
    extra = set(big["feature_labels"]) - set(full["feature_labels"])
    assert extra and all(len({z for z, _, _ in lab}) == 1 for lab in extra)


@pytest.mark.parametrize("blocks, n_el, body_order, match", [
    ({5: 6}, 3, 4, r"block 5 .* does not exist with 3 element\(s\); the blocks are 1..3"),
    ({4: 6}, 4, 4, r"block 4 .* does not exist at body order 4"),
    ({0: 6}, 3, 4, r"block must be >= 1"),
    ({2: -1}, 3, 4, r"degree of block 2 must be >= 0"),
    ("2:10", 3, 4, r"must map a number of distinct species to a degree"),
])
def test_bad_blocks_name_the_option(blocks, n_el, body_order, match):
    with pytest.raises(ValueError, match=r"max_degree_blocks \(--max-degree-blocks\).*" + match):
        count_features(n_el, body_order, 10, max_degree_blocks=blocks)


def test_block_forces_are_energy_derivatives():
    basis = dcace.ACEBasis(EL, 4.6, 4, 8, max_degree_blocks={2: 6, 3: 5})
    at = ternary(1)
    _check_fd(basis, at)


# --------------------------------------------------------------------------- embedded basis
def _check_fd(basis, at, h=1e-5):
    r = basis.fitting_rows(at)
    c = np.random.default_rng(0).normal(size=r.energy.shape)
    energy = lambda a: basis.fitting_rows(a).energy @ c  # noqa: E731
    F = (r.forces @ c).reshape(-1, 3)
    for k in (0, 3, 7):
        for d in range(3):
            p, m = at.copy(), at.copy()
            p.positions[k, d] += h
            m.positions[k, d] -= h
            fd = -(energy(p) - energy(m)) / (2 * h)
            assert abs(fd - F[k, d]) <= 1e-7 * max(1.0, np.abs(F).max()), (k, d, fd, F[k, d])
    # stress: homogeneous strain derivative of the energy
    sig = r.stress @ c
    V = at.get_volume()
    for a, b, voigt in ((0, 0, 0), (1, 2, 3), (0, 1, 5)):
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / (1 if a == b else 2)
        def strained(sign):
            x = at.copy()
            x.set_cell(at.cell[:] @ (np.eye(3) + sign * eps), scale_atoms=True)
            return energy(x)
        fd = (strained(1) - strained(-1)) / (2 * h) / V
        assert abs(fd - sig[voigt]) <= 1e-7 * max(1e-3, np.abs(sig).max()), (voigt, fd, sig[voigt])


def test_embedding_with_all_channels_spans_the_explicit_basis():
    frames = read(NBMOTA, ":") + [ternary(s) for s in range(2)]
    bx = dcace.ACEBasis(EL, 4.6, 4, 7)
    be = dcace.ACEBasis(EL, 4.6, 4, 7, chemical_channels=3)
    assert be.n_features == bx.n_features
    W = be.embedding
    assert np.allclose(W @ W.T, np.diag(np.diag(W @ W.T))) and np.allclose(W[0], 1.0)
    Bx = np.concatenate([bx.descriptors(a) for a in frames])
    Be = np.concatenate([be.descriptors(a) for a in frames])
    T, *_ = np.linalg.lstsq(Bx, Be, rcond=None)
    assert np.abs(Bx @ T - Be).max() <= 1e-11 * np.abs(Be).max()
    # fewer channels: not in the span of a smaller explicit set, and K as for C species
    for C in (1, 2):
        assert dcace.ACEBasis(EL, 4.6, 4, 7, chemical_channels=C).n_features == count_features(C, 4, 7)
    assert count_features(5, 4, 10, chemical_channels=2) == count_features(2, 4, 10)


def test_embedded_forces_stress_and_invariance():
    basis = dcace.ACEBasis(EL, 4.6, 4, 8, chemical_channels=2)
    at = ternary(2)
    _check_fd(basis, at)
    B = basis.descriptors(at)
    rot = at.copy()
    R, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    rot.set_cell(at.cell[:] @ R.T, scale_atoms=True)
    perm = np.random.default_rng(4).permutation(len(at))
    sh = at[perm]
    assert np.abs(basis.descriptors(rot) - B).max() <= 1e-10 * np.abs(B).max()
    assert np.abs(basis.descriptors(sh) - B[perm]).max() <= 1e-12 * np.abs(B).max()
    # the embedding really weighs species: swapping two species changes the descriptors
    sw = at.copy()
    sym = np.array(at.get_chemical_symbols())
    sw.set_chemical_symbols(np.where(sym == "Nb", "Ta", np.where(sym == "Ta", "Nb", sym)))
    assert np.abs(basis.descriptors(sw) - B).max() > 1e-3 * np.abs(B).max()


@pytest.mark.parametrize("C, match", [(0, r"between 1 and the number of elements \(3\), got 0"),
                                      (4, r"between 1 and the number of elements \(3\), got 4"),
                                      (1.5, r"must be an integer")])
def test_bad_channel_count_names_the_option(C, match):
    with pytest.raises(ValueError, match=r"chemical_channels \(--chemical-channels\).*" + match):
        dcace.ACEBasis(EL, 4.6, 3, 6, chemical_channels=C)
    with pytest.raises(ValueError, match=r"--chemical-channels"):
        count_features(3, 3, 6, chemical_channels=C)


def test_blocks_and_channels_together_are_refused():
    with pytest.raises(ValueError, match=r"--max-degree-blocks.*cannot be combined with.*--chemical-channels"):
        count_features(3, 4, 8, max_degree_blocks={2: 6}, chemical_channels=2)


def _small_potential(basis, seed=0):
    rng = np.random.default_rng(seed)
    S, K = basis.n_species, basis.n_features
    return dcace.Potential.from_parts(basis, 0.1 * rng.normal(size=(1, S, K)), -rng.random((1, S)),
                                      metadata={"test": "many elements"})


def test_embedded_file_round_trip(tmp_path):
    basis = dcace.ACEBasis(EL, 4.6, 3, 6, chemical_channels=2)
    pot = _small_potential(basis)
    path = tmp_path / "emb.dcace"
    pot.save(path)
    text = path.read_text()
    assert text.startswith("dcace-potential 8\n") and "\nchemical_channels 2 3\n" in text
    back = dcace.Potential.load(path)
    assert back.to_string() == text
    assert back.basis.chemical_channels == 2 and np.array_equal(back.basis.embedding, basis.embedding)
    at = ternary(5)
    a, b = pot.compute(at), back.compute(at)
    assert a["energy"] == b["energy"] and np.array_equal(a["forces"], b["forces"])
    # bad records: named with file and line
    lines = text.splitlines()
    k = lines.index("chemical_channels 2 3")
    for bad, match in (("chemical_channels 4 3", r"number of chemical channels 4 is outside 1..3"),
                       ("chemical_channels 2 2", r"chemical_channels columns .* 2 is outside 3..3")):
        p = tmp_path / "bad.dcace"
        p.write_text("\n".join(lines[:k] + [bad] + lines[k + 1:]) + "\n")
        with pytest.raises(Exception, match=rf"bad.dcace:{k + 1}: {match}"):
            dcace.Potential.load(p)
    p = tmp_path / "nan.dcace"
    p.write_text("\n".join(lines[:k + 1] + ["nan 1 1"] + lines[k + 2:]) + "\n")
    with pytest.raises(Exception, match=rf"nan.dcace:{k + 2}: 'nan' is not a finite number"):
        dcace.Potential.load(p)
    # a version-4 file cannot hold the record
    p = tmp_path / "v4.dcace"
    p.write_text(text.replace("dcace-potential 8", "dcace-potential 4", 1))
    with pytest.raises(Exception, match=rf"v4.dcace:{k + 1}: expected 'channels', found 'chemical_channels'"):
        dcace.Potential.load(p)


@pytest.mark.parametrize("path, version", [(V3_FILE, 3), (V4_FILE, 4)])
def test_older_three_element_files_still_load(path, version):
    text = path.read_text()
    assert text.startswith(f"dcace-potential {version}\n")
    pot = dcace.Potential.load(path)
    assert pot.elements == EL and pot.basis.chemical_channels is None
    out = pot.compute(ternary(6))
    assert np.isfinite(out["energy"]) and np.isfinite(out["forces"]).all()
    assert pot.to_string() == text.replace(f"dcace-potential {version}", "dcace-potential 8", 1)
    assert ("\ncore_shift 3 3\n" in text) == (version == 4)   # the v4 file has the short-range core


# --------------------------------------------------------------------------- cost before work
SMALL = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, cv_folds=3, compare=False)


def test_fit_prints_its_cost_before_pass_2(capsys):
    frames = read(MO_TRAIN, "::4")
    pot = dcace.fit(frames, experts="auto", max_experts=2, temperatures=(0.5,), progress=True, **SMALL)
    err = capsys.readouterr().err
    K = pot.basis.n_features
    assert f"cost: K = {K} features per species x 1 species -> {K + 1} unknowns per expert" in err
    assert re.search(r"cost: normal equations \(3 folds\): linear model .*MiB, pass-2 work arrays and solve "
                     r"copies .*MiB", err)
    assert re.search(rf"cost:   committee M=2, tau=0.5: {2 * (K + 1)} unknowns, .*MiB", err)
    assert re.search(r"cost: pass 2 estimated at \d\d:\d\d for \d+ structures / \d+ atoms \(timed on 8", err)
    # said before pass 2 starts; pass lines on a non-terminal stderr end with the pass's time
    assert err.index("cost: pass 2 estimated") < err.index("pass 2/3 fitting rows")
    n = len(frames)
    for p in ("pass 1/3 descriptors", "pass 2/3 fitting rows", "pass 3/3 training errors"):
        assert re.search(rf"{p}: {n}/{n} done, elapsed \d\d:\d\d", err), p
    c = pot.report.cost
    assert c["K"] == K and c["seconds"] > 0 and c["pass2_measured_s"] > 0
    assert set(c["memory_bytes"]) == {"linear+independent", "M=2,tau=0.5"}
    # the memory figures are those of the accumulators: 8 bytes x folds x (M D')^2
    assert c["memory_bytes"]["M=2,tau=0.5"] == 8 * 3 * (2 * (K + 1)) ** 2
    # the stress rows rank 0 keeps for the selection (6 rows of S K + S numbers per structure with a
    # stress) are said and counted in the expected peak: they are what grows with the data
    n_stress = sum(1 for a in frames if "stress" in a.calc.results or "virial" in a.info)
    assert 0 < n_stress <= n
    assert c["stress_bytes"] == 8 * 6 * K * n_stress
    # ... and the grade's MaxVol on the training atoms (all of them here: fewer than its 50,000 per species)
    assert c["grade_bytes"] == 8 * cost.GRADE_COPIES * sum(len(a) for a in frames) * K
    assert f"will keep {cost._size(c['stress_bytes'])} of stress rows and the grade's MaxVol takes " \
           f"{cost._size(c['grade_bytes'])}: expected peak about {cost._size(c['expected_peak_bytes'])}" in err
    assert c["expected_peak_bytes"] == cost.expected_peak(1, K, c["memory_bytes"]["linear+independent"],
                                                          {(2, 0.5): c["memory_bytes"]["M=2,tau=0.5"]},
                                                          c["resident_bytes"], c["stress_bytes"], c["grade_bytes"])


def test_progress_lines_with_eta_when_stderr_is_a_file(tmp_path):
    import time

    path = tmp_path / "stderr.txt"
    with open(path, "w") as stream:
        def slow():
            for k in range(25):
                time.sleep(0.06)
                yield k
        assert list(cost.progress(slow(), 25, "pass 2/3 fitting rows", True, stream=stream)) == list(range(25))
    lines = path.read_text().splitlines()
    eta = [x for x in lines if re.fullmatch(r"pass 2/3 fitting rows: \d+/25 \(\d+ %\), elapsed 00:0\d, ETA 00:0\d", x)]
    assert 1 <= len(eta) <= 9, lines
    assert re.fullmatch(r"pass 2/3 fitting rows: 25/25 done, elapsed 00:0[12]", lines[-1]), lines


def test_refusal_names_the_figure_and_the_options():
    K = count_features(3, 4, 10)
    need = cost.linear_nbytes(3, K, 5)
    with pytest.raises(ValueError) as exc:
        dcace.fit(read(NBMOTA, ":"), elements=EL, cutoff=4.6, body_order=4, max_degree=10, progress=False,
                  memory_budget_gb=0.5)
    msg = str(exc.value)
    assert f"K = {K} features per species ({3 * K + 3} columns)" in msg
    assert f"need {need / 2**30:.1f} GiB (5 folds)" in msg and "memory budget of 0.50 GiB" in msg
    for opt in ("--max-degree", "--body-order", "--max-degree-blocks", "--chemical-channels", "--memory-budget"):
        assert opt in msg


# --------------------------------------------------------------------------- LAMMPS = ASE
def test_lammps_matches_ase_for_embedded_and_block_potentials(tmp_path):
    """pair_style dcace reads the v4 records through the core: an embedded 3-element (C = 2, and C = 1
    with a data-driven-like W) and a per-block 2-element potential agree with dcace.Calculator on real binary cells and random
    ternary ones, with the LAMMPS types in another order than the file.  Coefficients are random
    (the six 16-atom cells are too few for a well-posed fit: their l = 1 total densities vanish to
    round-off, which a least-squares fit turns into 1e15 coefficients)."""
    from test_lammps import assert_matches, lammps_results, reference, run_lmp, structure_deck, write_data

    tial = read(HERE.parent / "examples" / "data" / "tial" / "TiAl_tutorial.xyz", "::6")
    cases = {
        "emb": (dcace.ACEBasis(EL, 4.6, 3, 6, chemical_channels=2),
                [read(NBMOTA, 1), read(NBMOTA, 4), ternary(7), ternary(8, 3)], ["Ta", "Nb", "Mo"]),
        # a data-driven-like W (not the cosine one, rows not orthogonal): the file's weights are used as read
        "dd": (dcace.ACEBasis(EL, 4.6, 3, 6, chemical_channels=1, embedding=np.array([[0.20, 1.56, 0.73]])),
               [ternary(9), read(NBMOTA, 2)], ["Mo", "Ta", "Nb"]),
        "blk": (dcace.ACEBasis(["Ti", "Al"], 5.0, 4, 8, max_degree_blocks={2: 6}),
                [tial[3].repeat((2, 2, 2)), next(f for f in tial if len(f) > 50)], ["Al", "Ti"]),
    }
    deck, seen = "", {}
    for tag, (basis, structures, order) in cases.items():
        path = tmp_path / f"{tag}.dcace"
        _small_potential(basis).save(path)
        for k, at in enumerate(structures):
            at = at.copy()
            at.wrap()
            seen[f"{tag}{k}"] = (path, write_data(at, tmp_path / f"{tag}{k}.data", order))
            deck += structure_deck(f"{tag}{k}.data", ["pair_style dcace", f"pair_coeff * * {path} {' '.join(order)}"],
                                   1, f"{tag}{k}")
    assert dcace.load(tmp_path / "emb.dcace").basis.chemical_channels == 2
    out = run_lmp(deck, tmp_path).stdout
    for key, (path, at) in seen.items():
        ref = reference(path, at)
        assert np.abs(ref["forces"]).max() > 1e-3, key   # the forces are not trivially zero
        assert_matches(lammps_results(out, tmp_path, key, 1), ref, 1, key)


# --------------------------------------------------------------------------- command line
def test_cli_many_element_defaults_and_bad_options(tmp_path, capsys, monkeypatch):
    from dcace.cli import main
    import dcace.pipeline

    out = str(tmp_path / "x.dcace")
    base = ["fit", "--train", str(NBMOTA), "--elements", "Nb", "Mo", "Ta", "--cutoff", "4.6", "-o", out]
    # bad blocks / channel counts: exit status 2, the option named, nothing written
    for extra, match in ((["--max-degree-blocks", "5:6"], "--max-degree-blocks): block 5"),
                         (["--max-degree-blocks", "2-6"], "--max-degree-blocks '2-6': each block must be"),
                         (["--chemical-channels", "4"], "--chemical-channels) must be between 1 and the number")):
        assert main(base + ["--quiet"] + extra) == 2
        assert match in capsys.readouterr().err
    assert not Path(out).exists()

    seen = {}

    class Stop(Exception):
        pass

    def record(train, **kw):
        seen.update(kw)
        raise Stop
    monkeypatch.setattr(dcace.pipeline, "fit", record)
    with pytest.raises(Stop):
        main(base)
    err = capsys.readouterr().err
    body, D, blocks = cost.default_many_element_basis(3, 5, 1.2 * 2**30)
    assert (seen["body_order"], seen["max_degree"], seen["max_degree_blocks"]) == (body, D, blocks)
    assert (body, D, blocks) == (4, 9, {2: 7, 3: 5})   # docs/fitting.md: 172 MiB <= 1.2 GiB / 4
    K = count_features(3, 4, 9, max_degree_blocks=blocks)
    assert cost.linear_nbytes(3, K, 5) <= 1.2 * 2**30 / 4 < cost.linear_nbytes(
        3, count_features(3, 4, 10, max_degree_blocks={2: 8, 3: 6}), 5)
    assert "3 elements and no basis options: --body-order 4 --max-degree 9 --max-degree-blocks 2:7,3:5" in err
    # any basis option given: no default applied; a larger budget allows a larger degree
    seen.clear()
    with pytest.raises(Stop):
        main(base + ["--chemical-channels", "2", "--quiet"])
    assert seen["chemical_channels"] == 2 and seen["max_degree"] == 12 and seen["max_degree_blocks"] is None
    with pytest.raises(Stop):
        main(base + ["--memory-budget", "8", "--quiet"])
    assert seen["max_degree"] == 11


# --------------------------------------------------------------------------- data-driven embedding
SHARED_TRAIN = HERE.parent.parent / "shared" / "data" / "nbmota" / "NbMoTa_train.xyz"
if not SHARED_TRAIN.exists():
    SHARED_TRAIN = Path("/work/shared/data/nbmota/NbMoTa_train.xyz")


@pytest.fixture(scope="module")
def nbmota_frames():
    """Every 40th training structure of the published Nb-Mo-Ta set: all six groups (unary, binary)."""
    from dcace.data import read_data

    data = read_data(read(SHARED_TRAIN, "::40"), elements=EL)
    return [f for _, f in data.kept]


@pytest.mark.parametrize("kind", ["pca", "fit"])
def test_data_driven_embedding_follows_the_species(kind, nbmota_frames):
    from dcace.embedding import choose_embedding

    opts = dict(max_degree=8, inner_cutoff=0.5, w_L=1.5, core_window=None, energy_weight=300.0, force_weight=1.0)
    W = choose_embedding(kind, nbmota_frames, EL, 5.0, 2, **opts)
    assert W.shape == (2, 3) and np.allclose(np.linalg.norm(W, axis=1), np.sqrt(3))
    assert np.all(W.sum(axis=1) > 0) and abs(W[0] @ W[1]) < 1e-9   # orthogonal rows (PCA / SVD)
    assert not np.allclose(np.abs(W), np.abs(fixed_embedding(3, 2)), atol=0.05)   # it is not the cosine one
    # the embedding belongs to the species, not to their order: permuted elements permute its columns
    perm = [2, 0, 1]
    Wp = choose_embedding(kind, nbmota_frames, [EL[i] for i in perm], 5.0, 2, **opts)
    assert np.allclose(Wp, W[:, perm], atol=1e-8)
    if kind == "pca":   # the leading eigenvector of a non-negative second moment is positive
        assert np.all(W[0] > 0)


def test_fit_with_data_driven_embedding_stores_it(tmp_path, nbmota_frames):
    frames = [f.atoms for f in nbmota_frames]
    for f, at in zip(nbmota_frames, frames):
        at.calc = None
        at.info["energy"], at.arrays["forces"] = f.energy, f.forces
    pot = dcace.fit(frames, elements=EL, cutoff=4.6, body_order=3, max_degree=6, experts=1, cv_folds=3,
                    compare=False, progress=False, chemical_channels=2, chemical_embedding="fit")
    fit_settings = pot.metadata["fit"]
    W = np.asarray(fit_settings["chemical_embedding_weights"])
    assert fit_settings["chemical_embedding"] == "fit" and np.array_equal(pot.basis.embedding, W)
    path = tmp_path / "fit-embedding.dcace"
    pot.save(path)
    back = dcace.Potential.load(path)
    assert np.array_equal(back.basis.embedding, W)   # the file holds W: no refit of it at load
    at = ternary(3)
    assert back.compute(at)["energy"] == pot.compute(at)["energy"]
    # an explicit W (what a refit passes on) gives the same basis and the same fit
    again = dcace.fit(frames, elements=EL, cutoff=4.6, body_order=3, max_degree=6, experts=1, cv_folds=3,
                      compare=False, progress=False, chemical_channels=2, chemical_embedding=W)
    assert np.array_equal(again.basis.embedding, W)
    assert np.allclose(again.compute(at)["forces"], pot.compute(at)["forces"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kw, match", [
    (dict(chemical_channels=2, chemical_embedding="spectral"), r"chemical_embedding \(--chemical-embedding\) must "
                                                               r"be one of cosine, pca, fit, got 'spectral'"),
    (dict(chemical_embedding="pca"), r"chemical_embedding \(--chemical-embedding\) = 'pca' needs chemical_channels"),
    (dict(chemical_channels=2, chemical_embedding=np.ones((3, 3))), r"or a finite 2 x 3 matrix"),
])
def test_bad_embedding_names_the_option(kw, match):
    with pytest.raises(ValueError, match=match):
        dcace.fit(read(NBMOTA, ":"), elements=EL, cutoff=4.6, body_order=3, max_degree=6, experts=1,
                  compare=False, progress=False, **kw)


# --------------------------------------------------------------------------- restraint memory
def test_restraint_normal_equations_are_one_matrix_summed_over_the_dimers():
    """The repulsion restraints hold one D' x D' matrix (not one per dimer: that took 6 GB at K = 1,068),
    equal to the sum of the dimers' force-row products."""
    from dcace.restraints import pure_zbl, restraint_batch, restraint_dimers

    S = 3
    lo, shortest = np.full((S, S), 1.6), np.full((S, S), 2.2)
    window = (lo, np.full((S, S), 2.0))
    basis = dcace.ACEBasis(EL, 4.6, 3, 6, core_window=window)
    dimers = restraint_dimers(EL, shortest, lo, 4.6)
    zero = dcace.Potential.from_parts(basis, np.zeros((1, S, basis.n_features)), np.zeros((1, S)), None, {})
    sums = restraint_batch(basis, zero, dimers, 1.0, 0.5)
    D = S * basis.n_features
    assert len(dimers) == 6 * 13 and sums.H.shape == (D + S, D + S) and sums.n == len(dimers)
    zbl = pure_zbl(EL, 4.6, 0.5, 1.5)
    H = sum(basis.fitting_rows(at).forces.T @ basis.fitting_rows(at).forces for _, at in dimers) * 0.25
    h = sum(basis.fitting_rows(at).forces.T @ zbl.compute(at)["forces"].ravel() for _, at in dimers) * 0.25
    assert np.allclose(sums.H[:D, :D], H, rtol=1e-12, atol=1e-12 * np.abs(H).max())
    assert np.allclose(sums.h[:D], h, rtol=1e-12, atol=1e-12 * np.abs(h).max())
    assert not sums.H[D:].any() and not sums.H[:, D:].any()   # the one-body columns get nothing


def test_refit_keeps_the_data_driven_embedding(tmp_path, nbmota_frames):
    """The state's normal equations are built with its W: a refit must not recompute W from new data."""
    from dcace.embedding import choose_embedding

    frames = []
    for f in nbmota_frames:
        at = f.atoms.copy()
        at.info["energy"], at.arrays["forces"] = f.energy, f.forces
        frames.append(at)
    opts = dict(elements=EL, cutoff=4.6, body_order=2, max_degree=6, experts=1, cv_folds=3, compare=False,
                progress=False, chemical_channels=1, chemical_embedding="pca")
    state = tmp_path / "pca.state.npz"
    first = dcace.fit(frames[1::4], state=state, **opts)
    W = first.basis.embedding
    redo = choose_embedding("pca", nbmota_frames[1::4] + nbmota_frames[::4], EL, 4.6, 1, max_degree=6,
                            inner_cutoff=0.5, w_L=1.5, core_window=first.basis.core_window, energy_weight=300.0,
                            force_weight=1.0)   # what W would be on all the data
    assert not np.allclose(redo, W, rtol=0, atol=1e-6)
    pot = dcace.refit(frames[::4], resume=state, progress=False, compare=False, keep_core=True)
    assert np.array_equal(pot.basis.embedding, W)
    assert pot.metadata["fit"]["chemical_embedding"] == "pca"


# --------------------------------------------------------------------------- the pass-2 estimate's counts
def test_estimate_counts_the_batches_and_blocks_pass_2_does(monkeypatch):
    """The estimate (dcace.estimate) multiplies timed unit costs by counted operations: the batches
    (and their sizes) added to every accumulator and the block merges. Counted here from the
    accumulators' own add calls and accumulate_blocks' blocks in a real committee fit (batch size 4,
    so blocks hold several batches and a remainder); the estimate's timed updates are not counted."""
    from dcace import estimate, parallel, pipeline
    from dcace.committee import GroupAccumulator, JointAccumulator

    calls, blocks, timing = {"group": [], "joint": []}, [], [False]
    for cls, key in ((GroupAccumulator, "group"), (JointAccumulator, "joint")):
        def spy(self, bt, _add=cls.add, _key=key):
            if not timing[0]:
                calls[_key].append(bt.size)
            return _add(self, bt)
        monkeypatch.setattr(cls, "add", spy)

    def timed(*a, _f=estimate.time_updates, **k):
        timing[0] = True
        try:
            return _f(*a, **k)
        finally:
            timing[0] = False

    def merged(ranks, bl, *a, _f=parallel.accumulate_blocks, **k):
        blocks.extend(bl)
        return _f(ranks, bl, *a, **k)

    monkeypatch.setattr(estimate, "time_updates", timed)
    monkeypatch.setattr(pipeline, "accumulate_blocks", merged)
    frames = read(MO_TRAIN, "::4")
    pot = dcace.fit(frames, experts=2, temperatures=(0.5,), progress=False, batch_size=4, anchors=0, **SMALL)
    c = pot.report.cost
    assert calls["group"] == calls["joint"] == cost.pass2_batches(blocks, 4)
    assert c["n_batches"] == len(calls["joint"]) and sum(calls["joint"]) == len(frames) == c["n_structures"]
    assert c["n_blocks"] == len(blocks) and max(calls["joint"]) == 4 and min(calls["joint"]) < 4
    u = c["unit_costs"]
    assert u["alpha"] >= 0 and u["beta"] >= 0 and u["merge"] > 0 and set(u["warm_update_s"]) == {1, 4}
    assert c["seconds"] == pytest.approx(c["rows_and_products_s"] + c["updates_s"] + c["merges_s"])
    assert c["updates_s"] == pytest.approx(c["n_batches"] * u["alpha"] + len(frames) * u["beta"] + u["first_touch"])


def test_timed_updates_leave_the_accumulators_zero():
    """The estimate's updates add zero batches into one-fold partials and merge them: the real
    accumulators stay exactly zero (the fit's normal equations are not touched)."""
    from dcace.committee import Batch, GroupAccumulator, JointAccumulator
    from dcace.estimate import time_updates

    rng = np.random.default_rng(0)
    D, S, n = 12, 2, 6
    groups = GroupAccumulator(3, D, S, np.ones((n, 1)), 2.0)
    gate = {"spread": np.ones(2)}
    joint = JointAccumulator(3, D, S, gate, 2.0, lambda P: (np.full((len(P), 2), 0.5), rng.normal(size=(len(P), 2, D))))

    def zero_batch(idx):
        B = len(idx)
        return Batch(0, np.zeros((B, D, D)), np.zeros((B, D)), np.zeros(B), np.zeros((B, D + S)), np.zeros(B),
                     rng.normal(size=(B, D)), np.asarray(idx))

    u = time_updates([groups, joint], zero_batch, np.arange(n), 4)
    assert set(u["warm_update_s"]) == {1, 4}
    for arr in (groups.H, groups.h, groups.yy, joint.Sh, joint.h, joint.yy):
        assert not arr.any()


# --------------------------------------------------------------------------- unlike-pair core windows
def test_unlike_windows_are_at_most_the_mean_of_the_like_windows():
    """The "mean" rule (dcace.baseline.UNLIKE_PAIRS, not the default: docs/many-elements-summary.md)
    lowers an unlike window to the mean of the like windows where the data's unlike pairs start
    farther out, never raises one, and leaves the user's windows alone; "data" is the default."""
    el = ["Nb", "Mo", "Ta"]
    r = np.array([[2.20, 2.74, 2.85], [2.74, 2.18, 2.71], [2.85, 2.71, 2.11]])
    lo0, hi0, _ = core_window(el, r, 5.0, 0.5)
    lo, hi, notes = core_window(el, r, 5.0, 0.5, unlike_pairs="mean")
    assert np.allclose(np.diag(hi), np.diag(hi0)) and np.allclose(np.diag(lo), np.diag(lo0))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert hi[a, b] == pytest.approx(0.5 * (hi0[a, a] + hi0[b, b])) == hi[b, a] < hi0[a, b]
        assert lo[a, b] == pytest.approx(0.5 * (lo0[a, a] + lo0[b, b]))
        assert lo[a, b] < hi[a, b]
    assert len(notes) == 3 and "Nb-Ta core window 2.550-2.800 A lowered to" in notes[1]
    # an unlike pair closer than the mean keeps its window; one the user placed is not moved
    r2 = r.copy()
    r2[0, 2] = r2[2, 0] = 2.0
    lo2, hi2, _ = core_window(el, r2, 5.0, 0.5, core_range={"Nb-Mo": (2.3, 2.6)}, unlike_pairs="mean")
    assert hi2[0, 2] == pytest.approx(1.95) and (lo2[0, 1], hi2[0, 1]) == (2.3, 2.6)
    with pytest.raises(ValueError, match="unlike_pairs must be 'mean' or 'data', got 'max'"):
        core_window(el, r, 5.0, 0.5, unlike_pairs="max")


# --------------------------------------------------------------------------- a ridge per species block
def _labelled(nbmota_frames):
    frames = []
    for f in nbmota_frames:
        at = f.atoms.copy()
        at.calc = None
        at.info["energy"], at.arrays["forces"] = f.energy, f.forces
        frames.append(at)
    return frames


BR_OPTS = dict(elements=EL, cutoff=4.6, body_order=3, max_degree=6, experts=1, cv_folds=3, compare=False,
               progress=False, baseline=None)   # (no ZBL core: its dimer checks would take most of the time)


def test_column_blocks_are_the_species_a_column_sees(nbmota_frames):
    """A column of block b couples b distinct species: it is exactly zero on every structure with fewer
    species (C++ descriptors), and every block is non-zero on some structure with enough species."""
    from dcace.block_ridge import column_blocks

    basis = dcace.ACEBasis(EL, 4.6, 4, 6)
    blocks = column_blocks(basis)
    assert blocks.shape == (3 * basis.n_features,) and set(blocks) == {1, 2, 3}
    from_labels = [len({z for z, _, _ in lab} | {s}) for s in range(3) for lab in basis.spec_["feature_labels"]]
    assert blocks.tolist() == from_labels   # from the spec's arrays: a basis read from a file has no labels
    seen = np.zeros(len(blocks), bool)
    for f in nbmota_frames:
        n_species = len(set(f.atoms.get_chemical_symbols()))
        B = np.asarray(basis.descriptor_sums(f.atoms)[0]).ravel()
        assert not B[blocks > n_species].any()
        seen |= B != 0
    at = ternary(1)
    seen |= np.asarray(basis.descriptor_sums(at)[0]).ravel() != 0
    assert all(seen[blocks == b].any() for b in (1, 2, 3))


def test_block_ridge_is_the_uniform_ridge_on_rescaled_columns(nbmota_frames, monkeypatch):
    """A factor f on the ridge of block 2 is the uniform ridge on block-2 columns scaled by 1/sqrt(f) more:
    a fit with block_ridge={2: f} equals one whose column scaling is divided so (1e-10 of the largest
    coefficient, at a ridge where round-off is not amplified past that: at 1e-4 x 1e-3 the two solves
    differ by 1e-5); factors of 1 (a grid (1,) or {1: 1, 2: 1}) are today's fit bit for bit."""
    import dcace.selection
    from dcace.block_ridge import column_blocks

    frames = _labelled(nbmota_frames)
    one = dcace.fit(frames, **BR_OPTS)
    for setting in ((1.0,), {1: 1.0, 2: 1.0}):
        same = dcace.fit(frames, block_ridge=setting, **BR_OPTS)
        assert np.array_equal(same.coefficients, one.coefficients) and np.array_equal(same.one_body, one.one_body)
    f2, lam = 0.1, 1e-2
    per_block = dcace.fit(frames, ridge=lam, block_ridge={2: f2}, **BR_OPTS)
    uniform = dcace.fit(frames, ridge=lam, **BR_OPTS)
    assert np.abs(per_block.coefficients - uniform.coefficients).max() > 1e-3 * np.abs(uniform.coefficients).max()
    blocks = column_blocks(per_block.basis)
    extra = np.concatenate([np.where(blocks == 2, 1 / np.sqrt(f2), 1.0), np.ones(3)])
    base = dcace.selection.column_scale
    monkeypatch.setattr(dcace.selection, "column_scale", lambda diag: base(diag) * extra)
    scaled = dcace.fit(frames, ridge=lam, **BR_OPTS)
    scale = np.abs(per_block.coefficients).max()
    assert np.allclose(scaled.coefficients, per_block.coefficients, rtol=0, atol=1e-10 * scale)
    assert np.allclose(scaled.one_body, per_block.one_body, rtol=0, atol=1e-10 * np.abs(per_block.one_body).max())


def test_block_ridge_by_cv_is_recorded_and_refit_keeps_it(tmp_path, nbmota_frames):
    """The grid search: the chosen factors have the lowest CV loss of the rows tried, the final model is
    the fixed-factor fit at them (bit for bit), the file says them, and a refit searches again."""
    frames = _labelled(nbmota_frames)
    grid = (1e-3, 1.0, 1e3)
    state = tmp_path / "br.state.npz"
    pot = dcace.fit(frames[1::2], block_ridge=grid, state=state, **BR_OPTS)
    rec = pot.report.selection["block_ridge"]
    losses = [r["loss"] for r in rec["cv"]]
    n_blocks = len(rec["factors"])   # the blocks with data: 1 and 2 (no ternary structure)
    assert n_blocks == 2 and rec["searched"] and rec["cv_loss"] == min(losses)
    assert len(rec["cv"]) == 1 + n_blocks * (len(grid) - 1)
    assert [r["factors"] for r in rec["cv"]].count(rec["factors"]) >= 1
    assert rec["factors"] != {"1": 1.0, "2": 1.0}   # on these data the blocks want other ridges
    fixed = dcace.fit(frames[1::2], ridge=pot.report.selection["ridge"],
                      block_ridge={int(b): f for b, f in rec["factors"].items()}, **BR_OPTS)
    assert np.array_equal(fixed.coefficients, pot.coefficients)
    path = tmp_path / "br.dcace"
    pot.save(path)
    meta = dcace.Potential.load(path).metadata
    assert meta["fit"]["block_ridge"] == list(grid) and meta["selection"]["block_ridge"]["factors"] == rec["factors"]
    again = dcace.refit(frames[::2], resume=state, progress=False, compare=False, keep_core=True)
    assert again.metadata["fit"]["block_ridge"] == list(grid) and "block_ridge" in again.report.selection


@pytest.mark.parametrize("kw, match", [
    (dict(block_ridge={4: 1.0}), r"block 4 .* does not exist with 3 element\(s\) at body order 3; the blocks are 1..3"),
    (dict(block_ridge={2: 0.0}), r"the factor of block 2 must be a finite number > 0, got 0.0"),
    (dict(block_ridge=(1.0, float("nan"))), r"a grid factor must be a finite number > 0, got nan"),
    (dict(block_ridge=()), r"the grid of factors is empty"),
    (dict(block_ridge=1e-3), r"must be a grid of factors"),
    (dict(block_ridge=(1.0,), chemical_channels=2), r"needs the explicit basis"),
])
def test_bad_block_ridge_names_the_option(kw, match):
    with pytest.raises(ValueError, match=r"block_ridge \(--block-ridge\)"):
        dcace.fit(read(NBMOTA, ":"), **{**BR_OPTS, **kw})
    with pytest.raises(ValueError, match=match):
        dcace.fit(read(NBMOTA, ":"), **{**BR_OPTS, **kw})


def test_cli_block_ridge_parses_a_grid_or_fixed_factors():
    from dcace.cli import parse_block_ridge, parse_degree_ridge

    assert parse_degree_ridge("4") == 4.0 and parse_degree_ridge("0,2,4") == (0.0, 2.0, 4.0)

    assert parse_block_ridge("1e-4,1,1e4") == (1e-4, 1.0, 1e4)
    assert parse_block_ridge("2:1e-4,1:1") == {2: 1e-4, 1: 1.0}
    with pytest.raises(ValueError, match=r"--block-ridge '2:1e-4,1': give factors .* not a mix"):
        parse_block_ridge("2:1e-4,1")


def test_column_degrees_are_the_features_degrees():
    from dcace.block_ridge import column_degrees

    basis = dcace.ACEBasis(EL, 4.6, 4, 7)
    assert column_degrees(basis).tolist() == [_degree(lab) for _ in range(3) for lab in basis.spec_["feature_labels"]]


def test_degree_ridge_is_the_uniform_ridge_on_rescaled_columns(nbmota_frames, monkeypatch):
    """The smoothness prior lam (d / d_min)^p is the uniform ridge on columns scaled by (d / d_min)^(-p/2)
    more (1e-10 of the largest coefficient); by CV the exponent with the lowest loss is taken (p = 0, the
    uniform ridge, is always a candidate) and a refit keeps the setting."""
    import dcace.selection
    from dcace.block_ridge import column_degrees

    frames = _labelled(nbmota_frames)
    prior = dcace.fit(frames, ridge=1e-2, degree_ridge=2, **BR_OPTS)
    deg = column_degrees(prior.basis)
    extra = np.concatenate([(deg / deg.min()) ** -1.0, np.ones(3)])
    base = dcace.selection.column_scale
    with monkeypatch.context() as mp:
        mp.setattr(dcace.selection, "column_scale", lambda diag: base(diag) * extra)
        scaled = dcace.fit(frames, ridge=1e-2, **BR_OPTS)
    assert np.allclose(scaled.coefficients, prior.coefficients, rtol=0,
                       atol=1e-10 * np.abs(prior.coefficients).max())
    grid = (0.5, 2.0)
    pot = dcace.fit(frames, degree_ridge=grid, **BR_OPTS)
    rec = pot.report.selection["degree_ridge"]
    assert [r["exponent"] for r in rec["cv"]] == [0.0, 0.5, 2.0]
    assert rec["cv_loss"] == min(r["loss"] for r in rec["cv"])
    assert pot.metadata["fit"]["degree_ridge"] == list(grid)
    fixed = dcace.fit(frames, ridge=pot.report.selection["ridge"], degree_ridge=rec["exponent"], **BR_OPTS)
    assert np.array_equal(fixed.coefficients, pot.coefficients)


@pytest.mark.parametrize("value, match", [(-1.0, r"an exponent must be a finite number >= 0, got -1.0"),
                                          ((), r"the grid of exponents is empty"),
                                          ("4", r"must be an exponent \(e.g. 4\) or a grid")])
def test_bad_degree_ridge_names_the_option(value, match):
    with pytest.raises(ValueError, match=r"degree_ridge \(--degree-ridge\)\W.*" + match):
        dcace.fit(read(NBMOTA, ":"), degree_ridge=value, **BR_OPTS)


# --------------------------------------------------------------------------- the top degree shell's ridge
def test_top_degree_ridge_nests_the_smaller_basis_and_is_chosen_by_cv(nbmota_frames, monkeypatch):
    """top_degree_ridge=D: lambda is chosen with the shell of degrees > D at the grid's largest factor
    (there the fit predicts what the max-degree-D basis predicts: nested), then the shell's factor by CV
    (the lowest loss of the rows, the final model the fixed-factor fit bit for bit); a fixed factor f is
    the uniform ridge on the shell's columns scaled by 1/sqrt(f) more; the setting is kept in the file."""
    import dcace.selection
    from dcace.block_ridge import column_degrees
    from dcace.pipeline import DEFAULTS

    frames = _labelled(nbmota_frames)
    grid = DEFAULTS["top_degree_ridge_grid"]
    pot = dcace.fit(frames, top_degree_ridge=5, **BR_OPTS)
    rec, lam = pot.report.selection["top_degree_ridge"], pot.report.selection["ridge"]
    top = column_degrees(pot.basis) > 5
    assert rec["searched"] and rec["n_columns"] == int(top.sum()) > 0 and not top.all()
    assert [r["factor"] for r in rec["cv"]] == sorted(grid, reverse=True)
    assert rec["cv_loss"] == min(r["loss"] for r in rec["cv"]) and rec["factor"] < max(grid)
    off = dcace.fit(frames, top_degree_ridge=(5, max(grid)), **BR_OPTS)   # lambda chosen the same way
    assert off.report.selection["ridge"] == lam
    fixed = dcace.fit(frames, ridge=lam, top_degree_ridge=(5, rec["factor"]), **BR_OPTS)
    assert np.array_equal(fixed.coefficients, pot.coefficients)
    assert pot.metadata["fit"]["top_degree_ridge"] == {"degree": 5.0, "factor": None}
    # nested: with the shell at the largest factor the fit is the degree-5 basis's fit at the same ridge
    small = dcace.fit(frames, ridge=1e-2, **{**BR_OPTS, "max_degree": 5})
    shut = dcace.fit(frames, ridge=1e-2, top_degree_ridge=(5, max(grid)), **BR_OPTS)
    n = np.array([len(f) for f in frames])
    e_small = np.array([small.compute(f)["energy"] for f in frames]) / n
    e_shut = np.array([shut.compute(f)["energy"] for f in frames]) / n
    assert np.abs(e_shut - e_small).max() < 1e-7
    uniform = dcace.fit(frames, ridge=1e-2, **BR_OPTS)
    e_all = np.array([uniform.compute(f)["energy"] for f in frames]) / n
    assert np.abs(e_all - e_small).max() > 1e-5   # (the shell's functions do change the fit)
    assert dcace.fit(frames, **BR_OPTS).report.selection["ridge"] != lam   # (and, here, the ridge CV picks)
    # a fixed factor: the uniform ridge on rescaled shell columns
    f_top = 10.0
    per_shell = dcace.fit(frames, ridge=1e-2, top_degree_ridge=(5, f_top), **BR_OPTS)
    extra = np.concatenate([np.where(top, 1 / np.sqrt(f_top), 1.0), np.ones(3)])
    base = dcace.selection.column_scale
    monkeypatch.setattr(dcace.selection, "column_scale", lambda diag: base(diag) * extra)
    scaled = dcace.fit(frames, ridge=1e-2, **BR_OPTS)
    assert np.allclose(scaled.coefficients, per_shell.coefficients, rtol=0,
                       atol=1e-10 * np.abs(per_shell.coefficients).max())


@pytest.mark.parametrize("value, match", [
    (6, r"no feature has a degree above 6: the basis's max_degree \(--max-degree\) is 6"),
    ((5, 0.0), r"the factor must be a finite number > 0, got 0.0"),
    ("5", r"the degree must be a finite number >= 0, got '5'"),
    ((5, 1.0, 2.0), r"must be a degree D or a pair \(D, factor\)"),
])
def test_bad_top_degree_ridge_names_the_option(value, match):
    with pytest.raises(ValueError, match=r"top_degree_ridge \(--top-degree-ridge\)\W.*" + match):
        dcace.fit(read(NBMOTA, ":"), top_degree_ridge=value, **BR_OPTS)


def test_cli_top_degree_ridge_parses_a_degree_or_degree_and_factor():
    from dcace.block_ridge import check_top_degree_ridge, stored_top
    from dcace.cli import parse_top_degree_ridge

    assert parse_top_degree_ridge("9") == 9.0 and parse_top_degree_ridge("9:1e4") == (9.0, 1e4)
    with pytest.raises(ValueError, match=r"--top-degree-ridge '9:x': give a degree \(9\) or DEGREE:FACTOR"):
        parse_top_degree_ridge("9:x")
    for value in ((9.0, None), (9.0, 1e4)):   # the form a file and a state keep reads back the same
        assert check_top_degree_ridge(stored_top(value), 10) == value


# --------------------------------------------------------------------------- the table's kept rows
def test_table_keep_merges_new_rows_into_the_committed_page():
    """benchmarks/kept_rows.merge: a page made from a work directory with two of the models (and no
    committee-cost run) merged into the committed page gives the committed page back; a new row replaces
    the kept row of its model, in its place, and a model unknown to the page is added in MODELS order."""
    import sys
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from kept_rows import merge

    page = (HERE.parent / "docs" / "many-elements.md").read_text().rstrip("\n")
    order = [ln.split()[3] for ln in page.split("\n") if ln.startswith("python") and " fit " in ln]
    keep, first = order[1:3], order[0]
    def is_row(ln):
        return ln.startswith("| ") and ln.split("|")[1].strip() in order
    lines, fresh = page.split("\n"), []
    for ln in lines[:next(k for k, ln in enumerate(lines) if ln.startswith("## What a DC committee"))]:
        if (is_row(ln) and ln.split("|")[1].strip() not in keep) or (
                ln.startswith("python") and (" dc-cost" in ln or (" fit " in ln and ln.split()[3] not in keep))):
            continue
        fresh.append(ln)
    assert len(fresh) < len(lines) - 3 * (len(order) - 2)
    assert merge("\n".join(fresh), page, order) == page
    # a rerun row replaces the kept one in place; a new model comes after the ones before it in the order
    rows = [k for k, ln in enumerate(fresh) if is_row(ln) and ln.split("|")[1].strip() == keep[0]]
    changed = list(fresh)
    changed[rows[0]] = f"| {keep[0]} | new |"
    changed.insert(rows[0] + 1, "| brand-new | x |")
    out = merge("\n".join(changed), page, [first, keep[0], "brand-new", *order[2:]]).split("\n")
    at = out.index(f"| {keep[0]} | new |")
    assert out[at + 1] == "| brand-new | x |" and out[at - 1].startswith(f"| {first} |")
    assert sum(ln.startswith(f"| {keep[0]} |") for ln in out) == 3   # the other two tables keep their rows
