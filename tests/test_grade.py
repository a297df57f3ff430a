"""The per-atom extrapolation grade (MaxVol active set per species; docs/extrapolation.md).

* a default-size Mo fit (body order 4, degree 12): every training atom <= 1 to round-off (MaxVol's
  tolerance 1e-6); the fraction recorded in the file is the one the core gives;
* physics: a ~300 K rattled bcc crystal stays <= 1 while a cell compressed to a/a0 = 0.8 and a dimer
  at 1.5 Å are far above 1; the grade is invariant under rotation, translation and permutation;
* the file: exact round trip, a format-version-1 file loads with the grade unavailable (None, not
  0), malformed grade records are errors naming the line;
* LAMMPS (real lmp / mpiexec): compute dcace/atom column 1 = results["extrapolation"], columns
  2..M+1 = the gate weights, on 1 and 2 ranks (to 2e-9: measured 4e-10, the level at which
  relabelling the atoms changes gamma in ASE alone); `fix halt` on the maximum grade stops a compressing
  run (and does not stop the same run without compression); a file without a grade is an error.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

import dcace
import dcace.grade
from dcace.grade import ROUNDOFF, grade_values, maxvol, maxvol_grade
import shared_fits

from test_lammps import bcc_mo, mean_descriptor, mo_deck_header, printed, read_dump, run_lmp, write_data

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
OLD_V1 = ROOT / "tests" / "data" / "old_v1_Mo.dcace"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("grade")


@pytest.fixture(scope="module")
def train():
    return read(MO_TRAIN, ":")


@pytest.fixture(scope="module")
def mo(train, work):
    """A linear Mo fit at the defaults of docs/fitting.md (body order 4, degree 12), with its grade."""
    pot = shared_fits.mo_default_linear()   # the same fit as test_short_range's restraint-cost study on Mo
    path = work / "mo.dcace"
    pot.save(path)
    return dcace.load(path), path


@pytest.fixture(scope="module")
def small(train, work):
    """A small Mo fit (K = 17) for file and LAMMPS tests."""
    pot = dcace.fit(train, elements=["Mo"], cutoff=5.0, body_order=3, max_degree=6, experts=1,
                    progress=False, compare=False)
    path = work / "small.dcace"
    pot.save(path)
    return pot, path


def rattled_bcc(u_rms, rep=4, seed=0):
    """bcc Mo with Gaussian displacements of 3-D rms u_rms (0.06 Å: about 300 K)."""
    at = bcc_mo(rep)
    at.positions += np.random.default_rng(seed).normal(scale=u_rms / np.sqrt(3.0), size=at.positions.shape)
    return at


def grade_of(pot, atoms):
    at = atoms.copy()
    at.calc = dcace.Calculator(pot)
    at.get_potential_energy()
    g = at.calc.results["extrapolation"]
    assert at.calc.results["max_extrapolation"] == (g.max() if g is not None else None)
    return g


# ------------------------------------------------------------------------------ MaxVol itself
def test_maxvol_bounds_every_row():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 12)) * np.logspace(0, 6, 12)   # badly scaled columns
    I, C, swaps, cmax = maxvol(X, tol=1e-6)
    assert len(set(I.tolist())) == 12 and cmax <= 1 + 1e-6
    assert np.allclose(C[I], np.eye(12), atol=1e-9)
    _, _, piv = __import__("scipy.linalg").linalg.qr(X.T, pivoting=True)
    # MaxVol does not decrease |det| from the QR start
    assert abs(np.linalg.det(X[I] / X.std(0))) >= abs(np.linalg.det(X[piv[:12]] / X.std(0))) * (1 - 1e-12)
    G, notes, _ = maxvol_grade(X)
    assert np.abs(grade_values(X, G) - np.abs(X @ G).max(axis=1)).max() == 0
    assert grade_values(X, G).max() <= 1 + 1e-6 and not notes


def test_maxvol_fewer_atoms_than_features():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(7, 20))
    G, notes, info = maxvol_grade(X)
    assert G.shape == (20, 7) and info["rank"] == 7 and notes
    assert grade_values(X, G).max() <= 1 + 1e-6
    assert grade_values(rng.normal(size=(50, 20)) * 5, G).max() > 1      # elsewhere: extrapolation


def test_subsample_is_seeded_and_graded_on_all_atoms(train):
    """max_atoms below the species' count: MaxVol on a seeded subsample (same seed, same matrix),
    the statistics still over every training atom, and the note says so."""
    basis = dcace.ACEBasis(["Mo"], 5.0, 3, 6)
    frames = train[:60]
    n = sum(len(a) for a in frames)
    G1, notes, st = dcace.grade.fit_grade(basis, frames, seed=3, max_atoms=500)
    G2, _, _ = dcace.grade.fit_grade(basis, frames, seed=3, max_atoms=500)
    G3, _, _ = dcace.grade.fit_grade(basis, frames, seed=4, max_atoms=500)
    assert np.array_equal(G1[0], G2[0]) and not np.array_equal(G1[0], G3[0])
    assert any(f"subsample of 500 of {n} atoms" in m for m in notes)
    X = np.concatenate([basis.descriptors(a) for a in frames])
    g = grade_values(X, G1[0])
    assert st["species"][0]["n_atoms"] == n
    assert st["fraction_above_1"] == np.mean(g > 1 + ROUNDOFF) and st["max_training_grade"] == g.max()
    Gall, _, st_all = dcace.grade.fit_grade(basis, frames, seed=3)
    assert st_all["max_training_grade"] <= 1 + 1e-6        # no subsample: every atom <= 1


# ------------------------------------------------------------------------------ training set and physics
def test_training_atoms_at_most_one(mo, train):
    pot, _ = mo
    assert pot.has_grade and pot.grade_matrices[0].shape == (211, 211)
    g = np.concatenate([pot.compute(a)["extrapolation"] for a in train])
    assert len(g) == 10087
    frac = float(np.mean(g > 1.0 + ROUNDOFF))
    print(f"training atoms: {100 * np.mean(g > 1.0):.2f} % above 1, {100 * frac:.3f} % above 1 + {ROUNDOFF:g}, "
          f"max {g.max():.9f}")
    assert g.max() <= 1.0 + 1e-5          # MaxVol converged to max |c| <= 1 + 1e-6 (numpy), core to round-off
    assert frac <= 1e-3                    # measured 0
    assert np.mean(g > 1.0) <= 0.03        # the strict count: active-set atoms at 1 + round-off (~1 %)
    assert pot.metadata["grade"]["fraction_above_1"] == pytest.approx(frac, abs=1e-4)
    assert np.mean(g) < 0.7                # most training atoms are well inside (measured mean 0.56)


def test_crystal_inside_compressed_and_dimer_outside(mo):
    pot, _ = mo
    warm = grade_of(pot, rattled_bcc(0.06))
    compressed = rattled_bcc(0.06)
    compressed.set_cell(compressed.cell * 0.8, scale_atoms=True)
    comp = grade_of(pot, compressed)
    dimer = grade_of(pot, Atoms("Mo2", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[20, 20, 20], pbc=False))
    print(f"max grade: 300 K-like crystal {warm.max():.3f}, a/a0 = 0.8 {comp.max():.3g}, dimer 1.5 Å {dimer.max():.3g}")
    assert warm.shape == (128,) and warm.max() <= 1.0
    assert comp.min() > 10.0               # every atom of the compressed cell extrapolates
    # the dimer is the short-range core's (ACE does not see a neighbour below its window): the
    # grade is hi / r = the data's shortest Mo-Mo distance over 1.5 Å
    hi = pot.basis.core_window[1][0, 0]
    assert dimer.min() == pytest.approx(hi / 1.5, rel=1e-12) and dimer.min() > 1.0


def test_grade_is_invariant(mo):
    pot, _ = mo
    at = rattled_bcc(0.1, rep=3, seed=2)
    g = grade_of(pot, at)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(at))
    b = at[perm]
    b.rotate(37, (1, 2, 3), rotate_cell=True)
    b.translate([0.3, -1.1, 2.0])
    b.wrap()
    # round-off only (measured 4e-10: gamma amplifies B's round-off by the cancellation in B G)
    assert np.abs(grade_of(pot, b) - g[perm]).max() <= 2e-9 * max(1.0, g.max())


# ------------------------------------------------------------------------------ the file
def test_round_trip_and_from_parts(small, work):
    pot, path = small
    text = Path(path).read_text()
    assert text.startswith("dcace-potential 8\n") and "\ngrade maxvol\ngrade_matrix 17 17\n" in text
    again = dcace.load(path)
    assert again.to_string() == text
    G = pot.grade_matrices
    assert all(np.array_equal(a, b) for a, b in zip(G, again.grade_matrices))
    p2 = dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, pot.metadata, grade=G)
    at = rattled_bcc(0.1, rep=3)
    assert np.array_equal(grade_of(p2, at), grade_of(again, at))
    with pytest.raises(ValueError, match="rows"):
        dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, {}, grade=[G[0][:-1]])
    with pytest.raises(ValueError, match="one matrix per species"):
        dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, {}, grade=[G[0], G[0]])
    bad = G[0].copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, {}, grade=[bad])


def test_species_without_training_atoms_and_switch_off(small, work):
    """r_s = 0 (no training atoms of that species): every atom has grade inf, never 0 or NaN; the
    file keeps it; Calculator(extrapolation=False) skips the grade."""
    pot, _ = small
    K = pot.core.n_features
    p0 = dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, {}, grade=[np.zeros((K, 0))])
    path = work / "empty_grade.dcace"
    p0.save(path)
    assert f"\ngrade maxvol\ngrade_matrix {K} 0\nend\n" in path.read_text()
    back = dcace.load(path)
    assert back.to_string() == p0.to_string() and back.grade_matrices[0].shape == (K, 0)
    g = grade_of(back, rattled_bcc(0.05, rep=2))
    assert np.all(np.isinf(g)) and np.all(g > 0)
    at = rattled_bcc(0.05, rep=2)
    at.calc = dcace.Calculator(pot, extrapolation=False)
    at.get_potential_energy()
    assert "extrapolation" not in at.calc.results and "max_extrapolation" not in at.calc.results


def test_overflowing_grade_is_an_error_not_inf(small, work):
    """A grade matrix of 1e308 loads (finite) but B G overflows: an error naming the cause, in ASE and
    in LAMMPS, never a silent inf or NaN."""
    pot, _ = small
    K = pot.core.n_features
    at = rattled_bcc(0.05, rep=2)
    B = pot.basis.descriptors(at)
    assert np.abs(B).sum(axis=1).min() > 2.0
    G = np.zeros((K, K))
    G[:, 0] = 1e308 * np.sign(B[0])            # (B_0 G)_0 = 1e308 sum |B_0| overflows
    big = dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, None, {}, grade=[G])
    with pytest.raises(ValueError, match="non-finite extrapolation grade"):
        big.compute(at)
    path = work / "big_grade.dcace"
    big.save(path)
    cwd = work / "big"
    cwd.mkdir(exist_ok=True)
    write_data(at, cwd / "s.data", ["Mo"])
    proc = run_lmp(grade_deck("s.data", path, 1), cwd, check=False)
    assert proc.returncode != 0
    assert "non-finite extrapolation grade" in proc.stdout + proc.stderr


def test_old_file_reports_no_grade(work):
    pot = dcace.load(OLD_V1)
    assert OLD_V1.read_text().startswith("dcace-potential 1\n")
    assert not pot.has_grade and pot.grade_matrices is None
    at = rattled_bcc(0.05, rep=3)
    at.calc = dcace.Calculator(pot)
    E = at.get_potential_energy()
    assert np.isfinite(E) and E < 0
    assert at.calc.results["extrapolation"] is None and at.calc.results["max_extrapolation"] is None
    assert pot.compute(at)["extrapolation"] is None
    # written again by this dcace: version 4 with an explicit `grade none`, still unavailable
    text = pot.to_string()
    assert text.startswith("dcace-potential 8\n") and "\ngrade none\nend\n" in text
    (work / "resaved.dcace").write_text(text)
    assert not dcace.load(work / "resaved.dcace").has_grade


@pytest.mark.parametrize("case, message", [
    ("kind", r"unknown extrapolation grade 'foo'"),
    ("nan", r"'nan' is not a finite number"),
    ("cols", r"row 1 of 'grade_matrix' has 17 numbers, expected 16"),
    ("rank", r"grade_matrix columns 18 is outside 0..17"),
    ("truncated", r"expected 'grade_matrix', found 'end'"),
])
def test_malformed_grade_records(small, work, case, message):
    _, path = small
    lines = Path(path).read_text().splitlines()
    g = lines.index("grade maxvol")
    if case == "kind":
        lines[g] = "grade foo"
    elif case == "nan":
        lines[g + 5] = " ".join(["nan"] + lines[g + 5].split()[1:])
    elif case == "cols":
        lines[g + 1] = "grade_matrix 17 16"
    elif case == "rank":
        lines[g + 1] = "grade_matrix 17 18"
    elif case == "truncated":
        lines = lines[:g + 1] + ["end"]
    bad = work / f"bad_{case}.dcace"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad_%s\.dcace:\d+: .*%s" % (case, message)):
        dcace.load(bad)


# ------------------------------------------------------------------------------ LAMMPS
@pytest.fixture(scope="module")
def dc(mo, work):
    """A 2-expert Mo potential with a gate that mixes both experts on a rattled crystal, plus the grade."""
    pot, _ = mo
    basis = pot.basis
    coef = np.concatenate([pot.coefficients, 1.01 * pot.coefficients])
    e0 = np.concatenate([pot.one_body, pot.one_body])
    p0 = mean_descriptor(basis, bcc_mo(3))
    axis = mean_descriptor(basis, rattled_bcc(0.1, rep=4)) - p0
    Y = np.linalg.norm(axis)
    gate = dict(temperature=1.0, mean=p0, scale=np.ones_like(p0), projection=(axis / Y)[None],
                centroids=np.array([[0.0], [Y]]), spread=np.full(2, 0.7 * Y), bias=np.zeros(2))
    path = work / "mo_dc_grade.dcace"
    dcace.Potential.from_parts(basis, coef, e0, gate, {"test": "dc-grade"}, grade=pot.grade_matrices).save(path)
    return path


def grade_deck(data, pot, M):
    cols = " ".join(f"c_g[{k}]" for k in range(1, M + 2))
    return mo_deck_header(data, pot) + f"""compute g all dcace/atom
compute gmax all reduce max c_g[1]
thermo_style custom step pe c_gmax
dump d all custom 1 grade.dump id {cols}
dump_modify d sort id format float %.17g
run 0
print "GMAX $(c_gmax:%.17g)"
"""


@pytest.mark.parametrize("nprocs", [None, 2])
def test_lammps_compute_matches_calculator(mo, dc, work, nprocs):
    cwd = work / f"lmp_{nprocs or 1}"
    cwd.mkdir(exist_ok=True)
    at = rattled_bcc(0.12, rep=4, seed=5)
    at.positions[0] += [1.1, 0.44, 0.0]      # one atom far off its site (grade ~2.4): a spread of grades
    back = write_data(at, cwd / "s.data", ["Mo"])
    for pot_path, M in ((mo[1], 1), (dc, 2)):
        proc = run_lmp(grade_deck("s.data", pot_path, M), cwd, nprocs=nprocs)
        dump = read_dump(cwd / "grade.dump")
        ref = back.copy()
        ref.calc = dcace.Calculator(str(pot_path))
        ref.get_potential_energy()
        g, w = ref.calc.results["extrapolation"], ref.calc.results["expert_weights"]
        assert dump.shape == (len(at), M + 2)
        err = np.abs(dump[:, 1] - g).max()
        print(f"M={M}, ranks {nprocs or 1}: grade {g.min():.3f}..{g.max():.3f}, max |LAMMPS - ASE| {err:.1e}, w {w}")
        # round-off: gamma amplifies the round-off of B_i (neighbour order differs between LAMMPS and
        # ASE) by the cancellation in B_i G; relabelling the atoms in ASE alone moves gamma by 3e-10
        assert err <= 2e-9 * max(1.0, g.max())
        assert np.abs(dump[:, 2:] - w[None, :]).max() <= 1e-12
        # the reduced maximum is one of the per-atom values above: the same round-off bound
        assert abs(printed(proc.stdout, "GMAX")[0] - g.max()) <= 2e-9 * max(1.0, g.max())
        if M == 2:
            assert 0.05 < w.min()            # the gate really mixes the two experts here
        assert g.max() > 1.0 > np.median(g)  # the displaced atom extrapolates, the rest does not


def halt_deck(pot, deform, temperature=300):
    squeeze = "fix sq all deform 1 x scale 0.8 y scale 0.8 z scale 0.8 remap x" if deform else ""
    return f"""
units metal
atom_style atomic
boundary p p p
lattice bcc 3.16
region b block 0 4 0 4 0 4
create_box 1 b
create_atoms 1 box
mass 1 95.95
pair_style dcace
pair_coeff * * {pot} Mo
velocity all create {temperature} 4928 mom yes rot yes
timestep 0.001
compute g all dcace/atom
compute gmax all reduce max c_g[1]
variable gmax equal c_gmax
fix nve all nve
{squeeze}
fix stop all halt 10 v_gmax > 1.0 error soft
thermo_style custom step temp pe c_gmax
thermo 50
run 1000
print "END $(step) $(v_gmax:%.10g)"
"""


def test_fix_halt_stops_an_extrapolating_run(mo, work):
    cwd = work / "halt"
    cwd.mkdir(exist_ok=True)
    proc = run_lmp(halt_deck(mo[1], deform=True), cwd)
    step, gmax = printed(proc.stdout, "END")
    print(f"compressing run halted at step {step:.0f} with max grade {gmax:.3f}")
    assert "Fix halt condition" in proc.stdout + proc.stderr
    assert 10 <= step < 1000 and step % 10 == 0 and gmax > 1.0
    # a/a0 at the halt: the box shrinks linearly to 0.8 over 1000 steps
    assert 1 - 0.2 * step / 1000 > 0.9      # stopped early in the compression
    control = run_lmp(halt_deck(mo[1], deform=False), cwd)
    step0, gmax0 = printed(control.stdout, "END")
    print(f"same run without compression: {step0:.0f} steps, max grade {gmax0:.3f}")
    assert step0 == 1000 and gmax0 <= 1.0


def test_fix_halt_stops_a_hot_run(mo, work):
    """9000 K initial velocities on the perfect lattice (~4500 K after equipartition, far above the
    melting point): the grade exceeds 1 within the first picosecond and the run stops."""
    cwd = work / "hot"
    cwd.mkdir(exist_ok=True)
    proc = run_lmp(halt_deck(mo[1], deform=False, temperature=9000), cwd)
    step, gmax = printed(proc.stdout, "END")
    print(f"hot run halted at step {step:.0f} with max grade {gmax:.3f}")
    assert 10 <= step < 1000 and gmax > 1.0


def test_lammps_compute_needs_a_grade(work):
    cwd = work / "old"
    cwd.mkdir(exist_ok=True)
    back = write_data(rattled_bcc(0.05, rep=3), cwd / "s.data", ["Mo"])
    proc = run_lmp(grade_deck("s.data", OLD_V1, 1), cwd, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"potential file \S*old_v1_Mo\.dcace has no extrapolation grade \(format version < 3\); "
                     r"refit with this dcace", text), text[-2000:]
    assert len(back) == 54


def recipe_from_docs():
    """The recipe block of docs/pair_style_dcace.md (the second code block after its heading)."""
    text = (ROOT / "docs" / "pair_style_dcace.md").read_text()
    part = text.split("Recipe: stop a run that extrapolates", 1)[1]
    return part.split("```", 2)[1].strip("\n")


def test_documented_recipe(mo, work):
    """The documented deck, verbatim, on a cell compressed while it runs: it dumps only frames with
    some atom above 1 and halts at the first check above 2."""
    cwd = work / "recipe"
    cwd.mkdir(exist_ok=True)
    recipe = recipe_from_docs()
    assert "dcace/atom" in recipe and "fix stop all halt" in recipe
    deck = f"""
units metal
atom_style atomic
boundary p p p
lattice bcc 3.16
region b block 0 4 0 4 0 4
create_box 1 b
create_atoms 1 box
mass 1 95.95
pair_style dcace
pair_coeff * * {mo[1]} Mo
velocity all create 300 4928 mom yes rot yes
timestep 0.001
fix nve all nve
fix sq all deform 1 x scale 0.8 y scale 0.8 z scale 0.8 remap x
{recipe}
thermo 100
run 2000
print "END $(step) $(v_gmax:%.10g)"
"""
    proc = run_lmp(deck, cwd)
    step, gmax = printed(proc.stdout, "END")
    frames = read(cwd / "extrapolative.dump", ":", format="lammps-dump-text")
    grades = [f.arrays["c_g[1]"].max() if "c_g[1]" in f.arrays else None for f in frames]
    print(f"recipe: halted at step {step:.0f} (max grade {gmax:.3g}); dumped {len(frames)} frames, "
          f"grades {[round(float(g), 2) for g in grades]}")
    assert step < 2000 and step % 100 == 0 and gmax > 2.0
    assert frames and all(g is not None and g >= 1.0 for g in grades)
    assert len(frames[0]) == 128 and np.abs(frames[0].get_forces()).max() > 0


def test_two_species_in_ase_and_lammps(work):
    """TiAl (file order Ti Al): per-species matrices, mixed species in one block of atoms, LAMMPS types
    in the other order."""
    tial = ROOT / "examples" / "data" / "tial" / "TiAl_tutorial.xyz"
    frames = read(tial, "::2")
    pot = dcace.fit(frames, elements=["Ti", "Al"], cutoff=5.0, body_order=3, max_degree=8, experts=1,
                    forces_key="force", virial_key="virial", stress_key=None, progress=False, compare=False)
    path = work / "tial.dcace"
    pot.save(path)
    G = pot.grade_matrices
    K = pot.core.n_features
    assert len(G) == 2 and all(g.shape[0] == K for g in G)
    gtrain = np.concatenate([pot.compute(a)["extrapolation"] for a in frames])
    assert gtrain.max() <= 1 + 1e-5
    at = next(a for a in frames if len(a) >= 54).copy()
    at.positions += np.random.default_rng(0).normal(scale=0.15, size=at.positions.shape)
    g = grade_of(pot, at)
    B = pot.basis.descriptors(at)
    sp = pot.basis.species_of(at)
    ref = np.array([np.abs(B[i] @ G[s]).max() for i, s in enumerate(sp)])
    assert len(set(sp[:16])) == 2                     # the first block mixes Ti and Al
    assert np.abs(g - ref).max() <= 2e-9 * max(1.0, ref.max())
    cwd = work / "tial_lmp"
    cwd.mkdir(exist_ok=True)
    back = write_data(at, cwd / "s.data", ["Al", "Ti"])
    deck = grade_deck("s.data", path, 1).replace(f"pair_coeff * * {path} Mo", f"pair_coeff * * {path} Al Ti")
    run_lmp(deck, cwd)
    dump = read_dump(cwd / "grade.dump")
    gb = grade_of(pot, back)
    print(f"TiAl: grade {gb.min():.3f}..{gb.max():.3f}, LAMMPS - ASE {np.abs(dump[:, 1] - gb).max():.1e}")
    assert np.abs(dump[:, 1] - gb).max() <= 2e-9 * max(1.0, gb.max())


def test_lammps_compute_under_hybrid_with_null_type_and_group(mo, work):
    """`pair_style hybrid/overlay dcace lj/cut`, type 2 (Ar) NULL for dcace: the compute finds the
    sub-style; Ar atoms and atoms outside the group get 0; the others equal the calculator on the
    structure without the Ar atoms."""
    cwd = work / "hybrid"
    cwd.mkdir(exist_ok=True)
    at = rattled_bcc(0.08, rep=4, seed=7)
    sym = np.array(at.get_chemical_symbols())
    sym[[3, 40, 77]] = "Ar"
    at.set_chemical_symbols(sym)
    seen = write_data(at, cwd / "h.data", ["Mo", "Ar"])
    is_ar = np.array(seen.get_chemical_symbols()) == "Ar"
    deck = f"""
units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data h.data
pair_style hybrid/overlay dcace lj/cut 4.0
pair_coeff * * dcace {mo[1]} Mo NULL
pair_coeff * 2 lj/cut 0.01 2.2
group low id <= 100
compute g low dcace/atom
dump d all custom 1 grade.dump id type c_g[1] c_g[2]
dump_modify d sort id format float %.17g
run 0
"""
    run_lmp(deck, cwd)
    dump = read_dump(cwd / "grade.dump")
    ref = grade_of(mo[0], seen[~is_ar])
    ids = dump[:, 0].astype(int)
    inside = (ids <= 100) & ~is_ar
    assert np.all(dump[~inside, 2:] == 0.0)
    assert np.all(dump[inside, 3] == 1.0)
    assert np.abs(dump[inside, 2] - ref[inside[~is_ar]]).max() <= 2e-9 * max(1.0, ref.max())


def test_cli_eval_reports_the_grade(mo, capsys):
    from dcace.cli import main
    import json
    test = ROOT / "examples" / "data" / "zuo2020" / "Mo_test.xyz"
    assert main(["eval", str(mo[1]), str(test), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    gm = [mo[0].compute(a)["extrapolation"].max() for a in read(test, ":")]
    assert d["max_extrapolation"] == pytest.approx(max(gm), rel=1e-12)
    assert d["extrapolating_structures"] == pytest.approx(np.mean(np.array(gm) > 1))
    assert main(["eval", str(OLD_V1), str(test)]) == 0
    assert "extrapolation grade: not available" in capsys.readouterr().out
