"""The neighbourhood gate: each atom gated on p_i = (B_i + sum_j f(r_ij) B_j) / (1 + sum_j f(r_ij))
over its same-species neighbours within r_g (cpp/src/neighbourhood_gate.cpp).

- the core's p_i and per-atom weights equal a numpy oracle (p_i from B and the neighbour list, the
  gate from tests/gate_oracle.py);
- locality on 7 + 7 stacked Zuo vacancy cells (9.45 A): forces on atoms farther than the force range
  2 (r_cut + r_g) from the other half equal those of the half alone to 1e-10 eV/A, and two slabs
  farther apart than the energy range r_cut + r_g have energies that add to 1e-10 relative;
- forces and stress equal central finite differences near a centroid, between clusters and far from
  all clusters (a sharp gate, tau = 0.3, and a short r_g too); per-atom virials sum to the virial;
- the fitting rows reproduce the potential's energy, forces and virial (the fit is linear in theta);
- the file (format 7, `gate neighbourhood`) round-trips exactly; a committed version-6 file loads;
- the low-body-order variant's projection is zero off its columns; bad options are clear errors;
- LAMMPS = ASE to round-off (the gate's forward and reverse communication) and 1, 2, 4 ranks agree.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

import dcace
from gate_oracle import gate_weights   # numpy oracle (tests/)
from test_dc_physics import check_derivatives, fd_forces, fd_stress, rattled_bulk
from test_local_gate import CUT, RTOL, stack, train, vacancy

DATA_DIR = Path(__file__).parent / "data"


@lru_cache(maxsize=None)
def fitted(body_order=0):
    pot = dcace.fit(train(), elements=["Mo"], cutoff=CUT, body_order=3, max_degree=8, experts=3,
                    temperatures=(0.5, 1.0), cv_folds=3, progress=False, gate="neighbourhood",
                    gate_body_order=body_order)
    assert pot.n_experts == 3 and pot.gate_kind == "neighbourhood"
    return pot


def with_gate(pot, tau=None, r_g=None):
    """The fitted experts under a changed gate (sharper tau, other r_g): the derivative tests check
    the evaluator, not the fit."""
    g = dict(pot.gate)
    if tau is not None:
        g = dict(g, temperature=tau, species=[dict(s, temperature=tau) for s in g["species"]])
    if r_g is not None:
        g["range"] = r_g
    return dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, g, {}, grade=pot.grade_matrices)


@lru_cache(maxsize=None)
def sharp():
    return with_gate(fitted(), tau=0.3)


def oracle_p(pot, atoms):
    """numpy p_i from the core's B_i and the neighbour list."""
    species, first, j, rij = pot.basis.neighbours(atoms)
    B = pot.basis.descriptors(atoms)
    rg = pot.gate["range"]
    P = B.copy()
    for i in range(len(atoms)):
        sl = slice(first[i], first[i + 1])
        r = np.linalg.norm(rij[sl], axis=1)
        f = np.where((r < rg) & (species[j[sl]] == species[i]), 0.5 * (1 + np.cos(np.pi * r / rg)), 0.0)
        P[i] = (B[i] + f @ B[j[sl]]) / (1 + f.sum())
    return P


def per_atom_nearest(pot, atoms):
    w, _, near = gate_weights(pot.gate["species"][0], oracle_p(pot, atoms), gradient=False)
    return w, near


def test_p_and_weights_match_the_oracle_and_virials_sum():
    pot = fitted()
    at = train()[30]
    sp, first, j, rij = pot.basis.neighbours(at)
    P = pot.basis.core_.neighbourhood_descriptors(sp, first, j, rij, pot.gate["range"])
    assert np.abs(P - oracle_p(pot, at)).max() <= 1e-12 * np.abs(P).max()
    assert pot.gate["range"] == CUT and pot.gate["body_order"] == 0
    out = pot.compute(at)
    w, _ = per_atom_nearest(pot, at)
    assert out["weights"].shape == (len(at), 3)
    assert np.abs(out["weights"] - w).max() <= 1e-12
    assert np.abs(out["virials"].sum(axis=0) - out["virial"]).max() <= 1e-10 * np.abs(out["virial"]).max()
    assert abs(out["energies"].sum() - out["energy"]) <= 1e-12 * abs(out["energy"])
    at = at.copy()   # ASE: results["expert_weights"] (N, M), the core's per-atom weights
    at.calc = dcace.Calculator(pot)
    at.get_potential_energy()
    assert np.array_equal(at.calc.results["expert_weights"], out["weights"])


def slabs_energy_gap(pot, gap):
    """(E(A + B) - E(A) - E(B)) / |E(A + B)|, two slabs of two vacancy cells across vacuum gaps."""
    from ase import Atoms

    a, b = vacancy(0), vacancy(11)
    L = a.cell[0, 0]
    pos = [a.positions, a.positions + [L, 0, 0], b.positions + [2 * L + gap, 0, 0], b.positions + [3 * L + gap, 0, 0]]
    cell = a.cell.array.copy()
    cell[0, 0] = 4 * L + 2 * gap
    both = Atoms(f"Mo{4 * len(a)}", positions=np.concatenate(pos), cell=cell, pbc=True)
    E = lambda at: pot.compute(at)["energy"]   # noqa: E731
    Eab = E(both)
    return abs(Eab - E(both[:2 * len(a)]) - E(both[2 * len(a):])) / abs(Eab)


def test_locality_on_stacked_cells():
    """7 + 7 stacked cells: the force range is 2 (r_cut + r_g) = 20.8 A; the same test with the force
    range taken as the atom gate's 2 r_cut sees the neighbourhood gate's longer reach (it can fail)."""
    pot = fitted()
    rg = pot.gate["range"]
    a, b = vacancy(0), vacancy(11)
    both, alone = stack([a, b], [7, 7]), stack([a], [7])
    nA, L = len(alone), 7 * a.cell[0, 0]
    x = alone.positions[:, 0]
    F_both, F_alone = pot.compute(both)["forces"][:nA], pot.compute(alone)["forces"]
    R = 2 * (CUT + rg)
    far = (x > R + 0.3) & (x < L - R - 0.3)
    dF = np.abs(F_both[far] - F_alone[far]).max()
    near = (x > 2 * CUT + 0.3) & (x < L - 2 * CUT - 0.3) & ~far   # beyond 2 r_cut, within 2 (r_cut + r_g)
    dF_near = np.abs(F_both[near] - F_alone[near]).max()
    gap = slabs_energy_gap(pot, gap=CUT + rg + 1.0)
    print(f"neighbourhood gate: max dF {dF:.1e} eV/A on {int(far.sum())} atoms beyond 2 (r_cut + r_g), "
          f"{dF_near:.1e} on {int(near.sum())} atoms between 2 r_cut and there; energy gap {gap:.1e}")
    assert far.sum() > 50 and near.sum() > 50
    assert dF <= 1e-10 and gap <= 1e-10
    assert dF_near > 1e-8   # the gate does reach beyond 2 r_cut


def test_fd_near_a_centroid():
    pot = sharp()
    at = min(train()[10:40:3], key=lambda a: per_atom_nearest(pot, a)[1].min())
    w, near = per_atom_nearest(pot, at)
    assert near.min() < 1.0 and w.max() > 0.9
    err_f, err_s, _ = check_derivatives(pot, at, n_components=30)
    print(f"near a centroid: FD force {err_f:.1e}, stress {err_s:.1e} (relative)")
    assert err_f < RTOL and err_s < RTOL


def test_fd_between_clusters():
    """FD on the atom whose two largest weights are closest and on atoms around it (within r_g they
    move its p_i), under the fitted r_g and a shorter one (3.5 A: the switch's slope inside the shell)."""
    for r_g in (None, 3.5):
        pot = with_gate(fitted(), tau=0.3, r_g=r_g)
        best = None
        for at in train()[::5]:
            w = pot.compute(at)["weights"]
            top2 = np.sort(w, axis=1)[:, -2]
            i = int(np.argmax(top2))
            if best is None or top2[i] > best[0]:
                best = (top2[i], at, i)
        second, at, i = best
        assert second > 0.3
        d = at.get_distances(i, range(len(at)), mic=True)
        comps = np.concatenate([3 * np.flatnonzero(d < CUT)[:5] + a for a in range(3)])
        out = pot.compute(at)
        fd = fd_forces(pot, at, components=comps)
        scale = np.abs(out["forces"]).max()
        err_f = max(abs(out["forces"].ravel()[c] - v) for c, v in fd.items()) / scale
        err_s = np.abs(fd_stress(pot, at) - out["stress"]).max() / np.abs(out["stress"]).max()
        print(f"between clusters (r_g {pot.gate['range']}, second weight {second:.2f}): FD force {err_f:.1e}, "
              f"stress {err_s:.1e}")
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
    """E, F and the virial are row @ theta, at a short r_g too (the pair term of the switch)."""
    for r_g in (None, 3.5):
        pot = with_gate(fitted(), r_g=r_g)
        at = train()[7]
        sp, first, j, rij = pot.basis.neighbours(at)
        e, F, V = pot.core.local_fitting_rows(sp, first, j, rij)
        theta = np.concatenate([pot.coefficients.reshape(3, -1), pot.one_body], axis=1).ravel()
        out = pot.compute(at)
        assert abs(e @ theta - out["energy"]) <= 1e-10 * abs(out["energy"])
        assert np.abs(F @ theta - out["forces"].ravel()).max() <= 1e-10
        assert np.abs(V @ theta - out["virial"]).max() <= 1e-9
    tau = fitted().gate["temperature"]
    e2, F2, _ = pot.core.local_fitting_rows(sp, first, j, rij, [0.3, tau])
    assert np.array_equal(F2[1], F) and not np.allclose(F2[0], F)


def test_file_round_trip_and_version_6_loads(tmp_path):
    pot = fitted()
    path = tmp_path / "Mo_nbh.dcace"
    pot.save(path)
    text = path.read_text()
    assert text.startswith("dcace-potential 8\n")
    assert "\ngate neighbourhood\ngate_temperature " in text and "\ngate_range 5.2000000000000002\ngate_body_order 0\n" in text   # %.17g
    back = dcace.Potential.load(path)
    assert back.to_string() == text and back.gate_kind == "neighbourhood"
    at = train()[3]
    a, b = pot.compute(at), back.compute(at)
    assert a["energy"] == b["energy"] and np.array_equal(a["forces"], b["forces"])
    for bad, msg in ((text.replace("\ngate_range 5.2000000000000002\n", "\ngate_range 6\n"), r"gate_range must be in \(0, r_cut\]"),
                     (text.replace("dcace-potential 8", "dcace-potential 6", 1),
                      r"unknown gate type 'neighbourhood' \(known in version 6: gaussian, atom\)")):
        with pytest.raises(ValueError, match=msg):
            dcace._core.PotentialCore.parse(bad, "bad.dcace")
    v6 = DATA_DIR / "v6_Mo_atom.dcace"   # written by the format-6 writer (atom gate, M = 2)
    old = v6.read_text()
    assert old.startswith("dcace-potential 6\n") and "\ngate atom\n" in old
    p6 = dcace.Potential.load(v6)
    assert p6.gate_kind == "atom" and p6.to_string() == old.replace("dcace-potential 6", "dcace-potential 8", 1)
    assert p6.compute(at)["weights"].shape == (len(at), 2)


def test_low_body_order_variant():
    """gate_body_order 2 (bo3 basis: the 2-body part): the projection is zero on the 3-body columns,
    and the file records it."""
    from dcace.neighbourhood_gate import feature_body_orders

    pot = fitted(2)
    P = pot.gate["species"][0]["projection"]
    high = feature_body_orders(pot.basis) > 2
    assert high.any() and (~high).any()
    assert np.all(P[:, high] == 0.0) and np.abs(P[:, ~high]).max() > 0
    assert pot.gate["body_order"] == 2 and "\ngate_body_order 2\n" in pot.to_string()


def test_bad_options():
    frames = train()[:30]
    kw = dict(elements=["Mo"], cutoff=CUT, body_order=2, max_degree=4, cv_folds=3, progress=False)
    with pytest.raises(ValueError, match=r"gate_range \(--gate-range\) must be a number in \(0, r_cut = 5.2\] A"):
        dcace.fit(frames, gate="neighbourhood", gate_range=6.0, **kw)
    with pytest.raises(ValueError, match=r"gate_body_order \(--gate-body-order\) must be an integer >= 2"):
        dcace.fit(frames, gate="neighbourhood", gate_body_order=1, **kw)
    dimer = [f for f in read(Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz", ":")
             if len(f) == 2]
    with pytest.raises(ValueError, match="gate='neighbourhood' with 8 experts: element Mo has only 6 training atoms"):
        dcace.fit(dimer * 3, gate="neighbourhood", experts=8, **kw)
    pot = fitted()
    with pytest.raises(ValueError, match=r"range r_g must be in \(0, r_cut"):
        with_gate(pot, r_g=0.0)


def test_lammps_matches_ase_on_1_2_4_ranks(tmp_path):
    """pair_style dcace with the neighbourhood gate (forward communication of y, reverse of dE/dy):
    energy, forces, per-atom energies and virials, pressure and per-atom weights equal ASE's; 1, 2 and
    4 ranks agree (a short r_g too: the switch's slope inside the shell)."""
    from test_lammps import bcc_mo, printed, read_dump, run_lmp, write_data
    from test_local_gate import DECK

    for tag, pot in (("full", fitted()), ("short", with_gate(fitted(), r_g=3.5))):
        pfile = tmp_path / f"Mo_nbh_{tag}.dcace"
        pot.save(pfile)
        at = bcc_mo(6)
        at.positions += np.random.default_rng(5).normal(scale=0.08, size=at.positions.shape)
        at.wrap()
        seen = write_data(at, tmp_path / "mo.data", ["Mo"])
        ref = pot.compute(seen)
        nktv2p = 1.6021765e6
        runs = {}
        for n in (1, 2, 4):
            proc = run_lmp(DECK.format(data="mo.data", pot=pfile, tag=f"{tag}{n}"), tmp_path, nprocs=n,
                           name=f"in.{tag}{n}")
            runs[n] = (printed(proc.stdout, "RES"), read_dump(tmp_path / f"{tag}{n}.dump"))
        res, dump = runs[1]
        E = ref["energy"]
        dE = abs(res[0] - E) / abs(E)
        dF = np.abs(dump[:, 1:4] - ref["forces"]).max()
        de = np.abs(dump[:, 4] - ref["energies"]).max()
        va = -ref["virials"][:, [0, 1, 2, 5, 4, 3]] * nktv2p
        dva = np.abs(dump[:, 5:11] - va).max() / np.abs(va).max()
        dw = np.abs(dump[:, 11:14] - ref["weights"]).max()
        P = -np.array(ref["stress"])[[0, 1, 2, 5, 4, 3]] * nktv2p
        dP = np.abs(res[1:7] - P).max() / np.abs(P).max()
        print(f"LAMMPS vs ASE, neighbourhood gate (r_g {pot.gate['range']}), {len(seen)} atoms: dE/E {dE:.1e}, "
              f"dF {dF:.1e} eV/A, de_i {de:.1e} eV, dW_i/max {dva:.1e}, dP/P {dP:.1e}, dw {dw:.1e}")
        assert dE <= 1e-12 and dF <= 1e-10 and de <= 1e-12 and dva <= 1e-10 and dP <= 1e-10 and dw <= 1e-12
        for n in (2, 4):
            r, d = runs[n]
            print(f"  {n} ranks vs 1: dE {abs(r[0] - res[0]):.1e}, dF {np.abs(d[:, 1:4] - dump[:, 1:4]).max():.1e}, "
                  f"dw {np.abs(d[:, 11:14] - dump[:, 11:14]).max():.1e}")
            assert abs(r[0] - res[0]) <= 1e-12 * abs(res[0])
            assert np.abs(d[:, 1:4] - dump[:, 1:4]).max() <= 1e-10
            assert np.abs(d[:, 11:14] - dump[:, 11:14]).max() <= 1e-13
            assert np.abs(r[1:7] - res[1:7]).max() <= 1e-10 * np.abs(P).max()
