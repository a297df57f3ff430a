"""The atom (local) gate: each atom gated on its own descriptor B_i (cpp/src/local_gate.cpp).

- locality on stacked Zuo vacancy cells (9.45 A): forces on atoms farther than 2 r_cut from the other
  half equal those of the half alone to 1e-10 eV/A, and the energies of two clusters farther apart
  than r_cut (slabs across vacuum) add to 1e-10 relative -- and the structure gate fails both (the test can fail);
- forces and stress equal central finite differences near a centroid, between clusters and far
  from all clusters; per-atom virials sum to the virial; the core's per-atom weights equal the
  numpy oracle (dcace.clustering.gate_weights on the species' gate);
- the fitting rows reproduce the potential's energy, forces and virial (the fit is linear in theta);
- the file (format 6, `gate atom`) round-trips exactly;
- LAMMPS = ASE to round-off (energies, forces, per-atom energies and virials, pressure, per-atom gate
  weights from compute dcace/atom) and 1, 2 and 4 ranks agree;
- experts="auto": M by CV over the candidates (each recorded; the winner equals that fixed-M fit), limited
  by the atoms of each CV fold and the memory budget;
- bad input: an unknown gate, too many experts for a species, a non-integer M, no candidate M.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

import dcace
from gate_oracle import gate_weights   # numpy oracle (tests/)
from test_dc_physics import check_derivatives, fd_forces, fd_stress, rattled_bulk
from test_lammps import bcc_mo, mo_deck_header, printed, read_dump, run_lmp, write_data

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"
CUT = 5.2
RTOL = 1e-6


@lru_cache(maxsize=None)
def train():
    return read(DATA / "Mo_train.xyz", "::2")


@lru_cache(maxsize=None)
def fitted(gate):
    pot = dcace.fit(train(), elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, experts=3,
                    temperatures=(0.5, 1.0), cv_folds=3, progress=False, gate=gate)
    assert pot.n_experts == 3 and pot.gate_kind == gate
    return pot


@lru_cache(maxsize=None)
def sharp():
    """The fitted atom-gate experts under a sharper gate (tau = 0.3): large gate gradients for the
    derivative tests (they check the evaluator, not the fit)."""
    pot = fitted("atom")
    g = dict(pot.gate, temperature=0.3, species=[dict(s, temperature=0.3) for s in pot.gate["species"]])
    return dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, g, {})


def vacancy(i):
    frames = [f for f in read(DATA / "Mo_train.xyz", ":") if f.info.get("config_type") == "Vacancy"]
    return frames[i]


def stack(cells, reps):
    """Cells (same lattice) tiled along x: reps[k] copies of cells[k], one after the other."""
    L = cells[0].cell[0, 0]
    pos, n = [], 0
    for c, r in zip(cells, reps):
        for k in range(r):
            pos.append(c.positions + [(n + k) * L, 0, 0])
        n += r
    cell = cells[0].cell.array.copy()
    cell[0] *= n
    return Atoms(f"Mo{len(np.concatenate(pos))}", positions=np.concatenate(pos), cell=cell, pbc=True)


def locality(pot, reps=4):
    """max |F(stack) - F(half alone)| over atoms of half A farther than 2 r_cut from half B."""
    a, b = vacancy(0), vacancy(11)
    both = stack([a, b], [reps, reps])
    alone = stack([a], [reps])
    nA = len(alone)
    L = reps * a.cell[0, 0]
    x = alone.positions[:, 0]
    far = (x > 2 * CUT + 0.5) & (x < L - 2 * CUT - 0.5)
    dF = np.abs(pot.compute(both)["forces"][:nA][far] - pot.compute(alone)["forces"][far]).max()
    return dF, int(far.sum())


def slabs_energy_gap(pot, gap=12.0):
    """(E(A + B) - E(A) - E(B)) / |E(A + B)| for two slabs of two vacancy cells each (periodic in y
    and z) separated by vacuum gaps of 12 A (> r_cut, the range of an atom energy) in one cell."""
    a, b = vacancy(0), vacancy(11)
    L = a.cell[0, 0]
    pos = [a.positions, a.positions + [L, 0, 0],
           b.positions + [2 * L + gap, 0, 0], b.positions + [3 * L + gap, 0, 0]]
    cell = a.cell.array.copy()
    cell[0, 0] = 4 * L + 2 * gap
    both = Atoms(f"Mo{4 * len(a)}", positions=np.concatenate(pos), cell=cell, pbc=True)
    E = lambda at: pot.compute(at)["energy"]   # noqa: E731
    Eab = E(both)
    return abs(Eab - E(both[:2 * len(a)]) - E(both[2 * len(a):])) / abs(Eab)


def test_locality_atom_gate_and_not_structure_gate():
    dF, n_far = locality(fitted("atom"))
    gap = slabs_energy_gap(fitted("atom"))
    dF_s, _ = locality(fitted("structure"))
    gap_s = slabs_energy_gap(fitted("structure"))
    print(f"atom gate: max dF {dF:.1e} eV/A on {n_far} far atoms, energy gap {gap:.1e}; "
          f"structure gate: max dF {dF_s:.2e} eV/A, energy gap {gap_s:.1e}")
    assert n_far > 50
    assert dF <= 1e-10 and gap <= 1e-10
    assert dF_s > 1e-4 and gap_s > 1e-6     # the same test sees the structure gate's non-locality


def per_atom_nearest(pot, atoms):
    """Oracle: weights (N, M) and nearest-centroid distances (N,) from the numpy gate of the species."""
    g = pot.gate["species"][0]
    w, _, near = gate_weights(g, pot.basis.descriptors(atoms), gradient=False)
    return w, near


def test_weights_match_the_oracle_and_virials_sum():
    pot = fitted("atom")
    at = train()[30]
    out = pot.compute(at)
    w, _ = per_atom_nearest(pot, at)
    assert out["weights"].shape == (len(at), 3)
    assert np.abs(out["weights"] - w).max() <= 1e-12
    assert np.abs(out["virials"].sum(axis=0) - out["virial"]).max() <= 1e-10 * np.abs(out["virial"]).max()
    assert abs(out["energies"].sum() - out["energy"]) <= 1e-12 * abs(out["energy"])


def test_fd_near_a_centroid():
    pot = sharp()
    at = min(train()[10:40:3], key=lambda a: per_atom_nearest(pot, a)[1].min())
    w, near = per_atom_nearest(pot, at)
    assert near.min() < 1.0 and w.max() > 0.9
    err_f, err_s, _ = check_derivatives(pot, at, n_components=40)
    print(f"near a centroid: FD force {err_f:.1e}, stress {err_s:.1e} (relative)")
    assert err_f < RTOL and err_s < RTOL


def test_fd_between_clusters():
    """FD on the atom whose two largest weights are closest (and on its neighbours' components)."""
    pot = sharp()
    best = None
    for at in train()[::5]:
        w, _ = per_atom_nearest(pot, at)
        top2 = np.sort(w, axis=1)[:, -2]
        i = int(np.argmax(top2))
        if best is None or top2[i] > best[0]:
            best = (top2[i], at, i)
    second, at, i = best
    assert second > 0.3
    d = np.linalg.norm(at.get_distances(i, range(len(at)), mic=True)[:, None], axis=1)
    near = np.flatnonzero(d < CUT)[:6]
    comps = np.concatenate([3 * near + a for a in range(3)])
    out = pot.compute(at)
    fd = fd_forces(pot, at, components=comps)
    scale = np.abs(out["forces"]).max()
    err_f = max(abs(out["forces"].ravel()[c] - v) for c, v in fd.items()) / scale
    err_s = np.abs(fd_stress(pot, at) - out["stress"]).max() / np.abs(out["stress"]).max()
    print(f"between clusters (second weight {second:.2f}): FD force {err_f:.1e}, stress {err_s:.1e}")
    assert err_f < RTOL and err_s < RTOL


def test_fd_far_from_all_clusters():
    pot = sharp()
    squeezed = rattled_bulk(a=2.75, seed=3, rep=2)
    _, near = per_atom_nearest(pot, squeezed)
    assert near.min() > 3.0
    err_f, err_s, _ = check_derivatives(pot, squeezed)
    print(f"far from all clusters (nearest {near.min():.1f} spreads): FD force {err_f:.1e}, stress {err_s:.1e}")
    assert err_f < RTOL and err_s < RTOL


def test_fitting_rows_reproduce_the_potential():
    """E, F and the virial are row @ theta: the fit's linear system is the potential's."""
    pot = fitted("atom")
    at = train()[7]
    sp, first, j, rij = pot.basis.neighbours(at)
    e, F, V = pot.core.local_fitting_rows(sp, first, j, rij)
    theta = np.concatenate([pot.coefficients.reshape(3, -1), pot.one_body], axis=1).ravel()
    out = dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, pot.gate, {}).compute(at)
    assert abs(e @ theta - out["energy"]) <= 1e-10 * abs(out["energy"])
    assert np.abs(F @ theta - out["forces"].ravel()).max() <= 1e-10
    assert np.abs(V @ theta - out["virial"]).max() <= 1e-9
    # several temperatures in one call (what the fit does): each equals its own gate's rows
    tau = pot.gate["temperature"]
    e2, F2, V2 = pot.core.local_fitting_rows(sp, first, j, rij, [0.3, tau])
    e3, F3, _ = sharp().core.local_fitting_rows(sp, first, j, rij)
    assert np.array_equal(e2[1], e) and np.array_equal(F2[1], F) and np.array_equal(V2[1], V)
    assert np.array_equal(e2[0], e3) and np.array_equal(F2[0], F3) and not np.allclose(F2[0], F)


def test_file_round_trip(tmp_path):
    pot = fitted("atom")
    path = tmp_path / "Mo_atom.dcace"
    pot.save(path)
    text = path.read_text()
    assert text.startswith("dcace-potential 8\n") and "\ngate atom\n" in text
    back = dcace.Potential.load(path)
    assert back.to_string() == text and back.gate_kind == "atom"
    at = train()[3]
    a, b = pot.compute(at), back.compute(at)
    assert a["energy"] == b["energy"] and np.array_equal(a["forces"], b["forces"])
    bad = text.replace("\ngate atom\n", "\ngate atomic\n")
    with pytest.raises(ValueError, match=r"unknown gate type 'atomic' \(known: gaussian, atom, neighbourhood\)"):
        dcace.Potential(dcace._core.PotentialCore.parse(bad, "bad.dcace"))


def test_version_5_file_loads_and_cannot_hold_an_atom_gate(tmp_path):
    """tests/data/v5_Mo_dc.dcace (structure gate, M = 2): loads, evaluates with per-atom weights equal
    to the structure's, re-writes as the current version; a version-5 header cannot announce `gate atom`."""
    v5 = Path(__file__).parent / "data" / "v5_Mo_dc.dcace"
    text = v5.read_text()
    assert text.startswith("dcace-potential 5\n")
    pot = dcace.Potential.load(v5)
    assert pot.gate_kind == "structure" and pot.n_experts == 2
    out = pot.compute(train()[5])
    assert out["weights"].shape == (2,) and np.allclose(out["atom_weights"], out["weights"][None, :], rtol=0, atol=0)
    assert pot.to_string() == text.replace("dcace-potential 5", "dcace-potential 8", 1)
    atom = fitted("atom").to_string().replace("dcace-potential 8", "dcace-potential 5", 1)
    with pytest.raises(ValueError, match=r"unknown gate type 'atom' \(known in version 5: gaussian\)"):
        dcace._core.PotentialCore.parse(atom, "old.dcace")


def test_gate_auto_picks_the_lowest_cv_loss():
    pot = dcace.fit(train(), elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, experts=3,
                    temperatures=(0.5, 1.0), cv_folds=3, progress=False, gate="auto")
    sel = pot.report.selection
    cv = sel["gate_cv"]
    print("gate auto:", cv, "->", sel["gate"])
    assert set(cv) == {"linear", "structure", "atom", "neighbourhood"} and cv["atom"] > 0 and cv["neighbourhood"] > 0
    stage = ("structure", cv["structure"]) if cv["structure"] is not None else ("none", cv["linear"])
    best = stage
    for kind in ("atom", "neighbourhood"):   # in this order; a tie keeps the earlier
        if cv[kind] < best[1]:
            best = (kind, cv[kind])
    assert sel["gate"] == best[0]
    assert pot.gate_kind == (sel["gate"] if pot.n_experts > 1 else "none")
    assert any(r.get("gate") == "atom" for r in pot.report.cv_table)   # every candidate reported
    assert any(r.get("gate") == "neighbourhood" for r in pot.report.cv_table)


@lru_cache(maxsize=None)
def fitted_M(experts, gate="atom"):
    """The small atom-gate fit with experts="auto" over M = 2, 4 (max_experts=4) or an integer M."""
    return dcace.fit(train(), elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, experts=experts,
                     max_experts=4, temperatures=(0.5, 1.0), cv_folds=3, progress=False, gate=gate)


def test_experts_auto_chooses_M_by_cv_and_equals_that_fixed_M():
    """experts="auto" with a local gate: one fit per candidate M (2 and 4 under max_experts=4), the lowest CV
    loss wins, every M is in the report; the winner is the fit with experts=<that M> (same coefficients), and
    each candidate's recorded loss, tau and ridge are those of the fixed-M fit (so the comparison is real)."""
    pot = fitted_M("auto")
    sel = pot.report.selection
    rec = sel["experts_cv"]["atom"]
    losses = {r["M"]: r["cv_loss"] for r in rec["candidates"]}
    print("experts auto, atom gate:", rec)
    assert sorted(losses) == [2, 4]
    best = min(losses, key=lambda M: (losses[M], M))
    assert rec["chosen"] == best == pot.n_experts == sel["n_experts"]
    assert sel["gate_cv"]["atom"] == losses[best]
    assert pot.metadata["fit"]["experts"] == "auto"
    assert any(n.startswith("atom gate, --experts auto: CV loss M = 2 ") and f"chosen: M = {best}" in n
               for n in pot.report.notes)
    assert any("2 local passes" in line for line in pot.report.cost["lines"])
    assert {r["M"] for r in pot.report.cv_table if r.get("gate") == "atom"} == {2, 4}
    t = pot.report.timings   # each M's wall time in the report (the file holds none), inside the fit's total
    assert all(0 < t[f"atom_gate_M{M}"] for M in (2, 4))
    assert t["atom_gate_M2"] + t["atom_gate_M4"] <= t["atom_gate"] <= t["total"]
    assert "atom_gate_M2" not in pot.to_string()
    for M in (2, 4):
        fixed = fitted_M(M)
        fsel = fixed.report.selection
        r = next(r for r in rec["candidates"] if r["M"] == M)
        assert fixed.n_experts == M and "experts_cv" not in fsel and fixed.metadata["fit"]["experts"] == M
        assert (fsel["gate_cv"]["atom"], fsel["temperature"], fsel["ridge_experts"]) == (r["cv_loss"], r["tau"],
                                                                                          r["ridge"])
        if M == best:
            np.testing.assert_allclose(pot.coefficients, fixed.coefficients, rtol=0, atol=1e-12 * np.abs(
                fixed.coefficients).max())
            np.testing.assert_allclose(pot.one_body, fixed.one_body, rtol=0, atol=1e-12 * np.abs(fixed.one_body).max())
            at = vacancy(3)   # the same gate too: the two potentials' energies and forces agree
            a, b = pot.compute(at), fixed.compute(at)
            assert abs(a["energy"] - b["energy"]) <= 1e-10 * abs(b["energy"])
            assert np.abs(a["forces"] - b["forces"]).max() <= 1e-10


def test_experts_auto_candidates_limited_by_data_and_memory():
    """experts="auto" drops the M a CV fold's training atoms cannot cluster (3 dimers, 3 folds: 4 atoms) and
    the M over the memory budget, each with a note; all over the budget is the memory error before any work."""
    from dcace import cost, pipeline

    dimer = [f for f in read(DATA / "Mo_train.xyz", ":") if len(f) == 2]
    kw = dict(elements=["Mo"], cutoff=CUT, body_order=2, max_degree=4, cv_folds=3, progress=False, gate="atom")
    pot = dcace.fit(dimer * 3, experts="auto", **kw)
    assert [r["M"] for r in pot.report.selection["experts_cv"]["atom"]["candidates"]] == [2, 4]
    assert any("M = 2, 4 tried, not 6, 8 (element Mo has 4 training atoms in a CV fold's training part" in n
               for n in pot.report.notes)
    kw3 = dict(elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, cv_folds=3, temperatures=(0.5, 1.0),
               progress=False, gate="atom", experts="auto")
    need2, need4 = (cost.local_gate_nbytes(1, 31, M, 3, 2) for M in (2, 4))
    pot = dcace.fit(train()[:30], memory_budget_gb=0.5 * (need2 + need4) / 2**30, **kw3)
    assert [r["M"] for r in pot.report.selection["experts_cv"]["atom"]["candidates"]] == [2]
    assert any("M = 2 tried, not 4, 6, 8 (over the memory budget" in n for n in pot.report.notes)

    def no_pass(*a, **k):
        raise AssertionError("a pass over the data ran before the memory check")
    pipeline_pass = pipeline._descriptor_pass
    try:
        pipeline._descriptor_pass = no_pass
        with pytest.raises(ValueError, match=r"the atom gate's committee has M = 2 experts x 32 columns"):
            dcace.fit(train()[:30], memory_budget_gb=0.5 * need2 / 2**30, **kw3)
    finally:
        pipeline._descriptor_pass = pipeline_pass


def test_bad_gate_options():
    frames = train()[:30]
    kw = dict(elements=["Mo"], cutoff=CUT, body_order=2, max_degree=4, cv_folds=3, progress=False)
    with pytest.raises(ValueError, match="unknown gate 'atoms'; known gates: structure, atom, neighbourhood, auto"):
        dcace.fit(frames, gate="atoms", **kw)
    dimer = [f for f in read(DATA / "Mo_train.xyz", ":") if len(f) == 2]
    with pytest.raises(ValueError, match="element Mo has only 6 training atoms, fewer than the number of experts"):
        dcace.fit(dimer * 3, gate="atom", experts=8, **kw)
    with pytest.raises(ValueError, match="integer >= 2"):
        dcace.fit(frames, gate="atom", experts=1, **kw)
    with pytest.raises(ValueError, match=r"experts='auto' tries M = 2, 4, 6, 8 up to max_experts \(--max-experts\), "
                                         r"which is 1"):
        dcace.fit(frames, gate="atom", experts="auto", max_experts=1, **kw)


def test_local_gate_over_the_memory_budget_is_refused_before_any_work(monkeypatch):
    """The local committee's normal equations (M D')^2 per fold and temperature are counted before the data
    are read: over --memory-budget, a clear error with the figure and the options, not a 2.4 GB process
    (TiAl, body order 4, degree 10, M = 4: 2.05 GiB against the default 1.2)."""
    from dcace import cost, pipeline

    def no_pass(*a, **k):
        raise AssertionError("a pass over the data ran before the memory check")
    monkeypatch.setattr(pipeline, "_descriptor_pass", no_pass)
    kw = dict(elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, cv_folds=3, temperatures=(0.5, 1.0),
              progress=False)
    need = cost.local_gate_nbytes(1, 31, 3, 3, 2)   # K = 31 at body order 3, degree 8
    assert need == 8 * 96 ** 2 * (3 * 2 + 3) and cost.linear_nbytes(1, 31, 3) < need / 8
    for gate in ("atom", "neighbourhood"):
        with pytest.raises(ValueError, match=rf"the {gate} gate's committee has M = 3 experts x 32 columns = 96 "
                                             r"unknowns; its normal equations need 0\.0 GiB \(3 folds x 2 "
                                             r"temperatures\).*fewer --experts or --temperatures.*--memory-budget"):
            dcace.fit(train(), gate=gate, experts=3, memory_budget_gb=0.5 * need / 2**30, **kw)


DECK = mo_deck_header("{data}", "{pot}") + """compute pe all pe/atom
compute sa all stress/atom NULL virial
compute g all dcace/atom
compute pv all pressure NULL virial
dump d all custom 1 {tag}.dump id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6] c_g[2] c_g[3] c_g[4]
dump_modify d sort id format float %.17g
run 0
print "RES $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) $(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g)"
"""


def test_lammps_matches_ase_on_1_2_4_ranks(tmp_path):
    pot = fitted("atom")
    pfile = tmp_path / "Mo_atom.dcace"
    pot.save(pfile)
    at = bcc_mo(6)
    at.positions += np.random.default_rng(5).normal(scale=0.08, size=at.positions.shape)
    at.wrap()
    seen = write_data(at, tmp_path / "mo.data", ["Mo"])
    ref = pot.compute(seen)
    assert np.sort(ref["weights"], axis=1)[:, -2].max() > 0.2    # mixed gates somewhere
    V = seen.get_volume()
    nktv2p = 1.6021765e6
    runs = {}
    for n in (1, 2, 4):
        proc = run_lmp(DECK.format(data="mo.data", pot=pfile, tag=f"n{n}"), tmp_path, nprocs=n, name=f"in.n{n}")
        dump = read_dump(tmp_path / f"n{n}.dump")
        runs[n] = (printed(proc.stdout, "RES"), dump)
    res, dump = runs[1]
    E = ref["energy"]
    dE = abs(res[0] - E) / abs(E)
    dF = np.abs(dump[:, 1:4] - ref["forces"]).max()
    de = np.abs(dump[:, 4] - ref["energies"]).max()
    # compute stress/atom (bar A^3, xx yy zz xy xz yz) is minus the per-atom virial
    va = -ref["virials"][:, [0, 1, 2, 5, 4, 3]] * nktv2p
    dva = np.abs(dump[:, 5:11] - va).max() / np.abs(va).max()
    dw = np.abs(dump[:, 11:14] - ref["weights"]).max()
    P = -np.array(ref["stress"])[[0, 1, 2, 5, 4, 3]] * nktv2p
    dP = np.abs(res[1:7] - P).max() / np.abs(P).max()
    print(f"LAMMPS vs ASE, atom gate, {len(seen)} atoms: dE/E {dE:.1e}, dF {dF:.1e} eV/A, de_i {de:.1e} eV, "
          f"dW_i/max {dva:.1e}, dP/P {dP:.1e}, dw {dw:.1e}")
    assert dE <= 1e-12 and dF <= 1e-10 and de <= 1e-12 and dva <= 1e-10 and dP <= 1e-10 and dw <= 1e-12
    for n in (2, 4):
        r, d = runs[n]
        print(f"{n} ranks vs 1: dE {abs(r[0] - res[0]):.1e}, dF {np.abs(d[:, 1:4] - dump[:, 1:4]).max():.1e}, "
              f"dw {np.abs(d[:, 11:14] - dump[:, 11:14]).max():.1e}")
        assert abs(r[0] - res[0]) <= 1e-12 * abs(res[0])
        assert np.abs(d[:, 1:4] - dump[:, 1:4]).max() <= 1e-10
        assert np.abs(d[:, 11:14] - dump[:, 11:14]).max() <= 1e-13
        assert np.abs(r[1:7] - res[1:7]).max() <= 1e-10 * np.abs(P).max()


def test_cli_gate_option(tmp_path, capsys):
    """dcace fit --gate atom writes a `gate atom` file; --gate neighbourhood with --gate-range and
    --gate-body-order a `gate neighbourhood` one; a bad --gate-range is a clear error, nothing written."""
    from ase.io import write

    from dcace.cli import main

    train_file = tmp_path / "train.xyz"
    write(train_file, train()[::3], format="extxyz")
    base = ["fit", "--train", str(train_file), "--elements", "Mo", "--cutoff", str(CUT), "--body-order", "2",
            "--max-degree", "6", "--cv-folds", "3", "--temperatures", "0.5", "--quiet"]
    out = tmp_path / "Mo_atom.dcace"
    assert main(base + ["--gate", "atom", "--experts", "2", "--output", str(out)]) == 0
    pot = dcace.Potential.load(out)
    assert pot.gate_kind == "atom" and pot.n_experts == 2 and pot.metadata["fit"]["gate"] == "atom"
    capsys.readouterr()
    out = tmp_path / "Mo_nbh.dcace"
    assert main(base + ["--gate", "neighbourhood", "--experts", "2", "--gate-range", "4.5", "--gate-body-order", "2",
                        "--output", str(out)]) == 0
    pot = dcace.Potential.load(out)
    assert pot.gate_kind == "neighbourhood" and pot.gate["range"] == 4.5 and pot.gate["body_order"] == 2
    assert pot.metadata["fit"]["gate_range"] == 4.5 and pot.metadata["fit"]["gate_body_order"] == 2
    capsys.readouterr()
    code = main(base + ["--gate", "neighbourhood", "--gate-range", "9", "--output", str(tmp_path / "n.dcace")])
    err = capsys.readouterr().err
    assert code != 0 and "gate_range (--gate-range) must be a number in (0, r_cut = 5.2] A, got 9.0" in err
    assert not (tmp_path / "n.dcace").exists()
