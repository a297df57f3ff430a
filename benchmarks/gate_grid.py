"""What the default gate temperature grid picks, and how smooth the picked committee's pressure is.

For each default data set (the six Zuo et al. elements at the paper's cutoffs, and TiAl), one default
fit (`dcace.fit` with no basis options, `--experts auto`) with the temperature grid given; prints the
chosen M and tau, the test errors (or the CV errors when there is no test file), the fit time, and
along the ground-state crystal scaled from 0.85 to 1.10 a0 in steps of 0.00015 a0: the largest pressure
kink |P_k - (P_k-1 + P_k+1) / 2| (GPa) with a/a0 and P there, the largest kink within 5 % of a0, the
largest change of the gate weights per step, and the largest ratio of kink to 0.5 GPa + 1 % of |P|
(a bound a smooth committee meets: the core's hand-over to ZBL stays below 0.6 of it).
docs/short-range.md, "Session 19": the default grid 0.35/0.7 against 0.7/1.4.

With --tial-md, instead: the committee of examples/TiAl/run.sh's QUICK settings (body order 3, degree 8,
M = 2) fitted at each temperature given, run through the example's own deck (examples/TiAl/in.md: L1_0
TiAl, 3x3x3 cells, velocities for 600 K, NVT at 300 K) for 200 steps in the wheel's lmp; prints the
temperature, the potential energy per atom and the first expert's weight every 20 steps.

    python benchmarks/gate_grid.py [--temperatures 0.35 0.7] [--sets Cu Mo ...]
    python benchmarks/gate_grid.py --tial-md --temperatures 0.7 1.4
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

import dcace
from dcace.gate_kinks import kink_bound
from gate_notch import along, pressure_kinks, weight_steps
from lammps_common import run_lmp, thermo_table
from zuo_table import CUTOFF

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GROUND = {"Mo": ("bcc", 3.16), "Si": ("diamond", 5.43), "Ge": ("diamond", 5.66), "Cu": ("fcc", 3.62),
          "Ni": ("fcc", 3.52), "Li": ("bcc", 3.44)}   # the Zuo elements' ground-state crystals (a in A)
SETS = {  # train file, test file, elements, cutoff (the paper's), ground-state crystal
    **{el: (f"zuo2020/{el}_train.xyz", f"zuo2020/{el}_test.xyz", [el], CUTOFF[el],
            lambda el=el, phase=phase, a=a: bulk(el, phase, a=a, cubic=True)) for el, (phase, a) in GROUND.items()},
    "TiAl": ("tial/TiAl_tutorial.xyz", None, ["Ti", "Al"], 5.5,
             lambda: Atoms("Ti2Al2", cell=[4.00, 4.00, 4.08], pbc=True,
                           scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])),
}
KEYS = {"TiAl": dict(forces_key="force", virial_key="virial")}
SCALES = np.arange(0.85, 1.10, 0.00015)


def scaled(crystal):
    """The crystal scaled isotropically to each a/a0 of SCALES."""
    for f in SCALES:
        atoms = crystal.copy()
        atoms.set_cell(crystal.cell * f, scale_atoms=True)
        yield atoms


def kink_summary(P, W):
    """Largest kink (GPa) with a/a0 and P there, largest within 5 % of a0, largest weight step, largest
    kink / (0.5 GPa + 1 % of |P|)."""
    k, x = pressure_kinks(P), SCALES[1:-1]
    j = int(np.argmax(k))
    near = (x > 0.95) & (x < 1.05)
    ratio = k / kink_bound(P[1:-1])
    return k[j], x[j], P[j + 1], k[near].max(), weight_steps(W).max(), ratio.max()


def tial_md(temperatures):
    """The TiAl example's QUICK committee at each temperature in the example's MD deck (--tial-md)."""
    root = Path(__file__).resolve().parents[1]
    train, _, elements, rc, crystal = SETS["TiAl"]
    deck = (root / "examples" / "TiAl" / "in.md").read_text().replace("thermo          100", "thermo          20")
    with tempfile.TemporaryDirectory() as tmp:
        crystal().write(Path(tmp) / "TiAl.data", format="lammps-data", specorder=elements, masses=True)
        for tau in temperatures:
            pot = dcace.fit(str(DATA / train), elements=elements, cutoff=rc, body_order=3, max_degree=8, experts=2,
                            temperatures=(tau,), progress=False, compare=False, **KEYS["TiAl"])
            pot.save(Path(tmp) / "TiAl.dcace")
            head = f"variable potential string TiAl.dcace\nvariable data string TiAl.data\n" \
                   f"variable cells string 3\nvariable steps string 200\n"
            header, rows = thermo_table(run_lmp(head + deck, tmp)["stdout"])
            n = len(crystal()) * 27   # the deck's 3 x 3 x 3 cells
            cols = {h: i for i, h in enumerate(header)}
            print(f"tau {tau:g} (train E MAE {pot.report.errors['dc']['train']['energy_mae_mev_per_atom']:.3f} "
                  f"meV/atom): step / T (K) / PE per atom (eV) / weight of expert 1: " + "; ".join(
                      f"{r[cols['Step']]:.0f} / {r[cols['Temp']]:.0f} / {r[cols['PotEng']] / n:.4f} / "
                      f"{r[cols['c_w[1]']]:.3f}" for r in rows), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--temperatures", type=float, nargs="+", default=None, help="default: the fit's default grid")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--tial-md", action="store_true", help="the TiAl example's QUICK committee in its MD deck")
    args = ap.parse_args(argv)
    if args.tial_md:
        return tial_md(args.temperatures or [0.7, 1.4])
    extra = {} if args.temperatures is None else {"temperatures": tuple(args.temperatures)}
    print("| set | M (τ) | test E meV/atom / F eV/Å | fit s | largest kink GPa (a/a0, P GPa) | within 5 % of a0 | "
          "weight step | kink / bound |\n|---|---|---|---:|---|---:|---:|---:|", flush=True)
    for name in args.sets:
        train, test, elements, rc, crystal = SETS[name]
        t0 = time.perf_counter()
        pot = dcace.fit(str(DATA / train), test=None if test is None else str(DATA / test), elements=elements,
                        cutoff=rc, progress=False, compare=False, **KEYS.get(name, {}), **extra)
        seconds = time.perf_counter() - t0
        errs = pot.report.errors.get("dc") or pot.report.errors["linear"]
        which = "test" if errs.get("test") else "cv"
        e = errs[which]
        force = e.get("force_mae_ev_per_a") if which == "test" else e.get("force_rmse_ev_per_a")
        _, P, W = along(pot, scaled(crystal()))
        k, x, p, near, step, ratio = kink_summary(P, W)
        tau = pot.report.selection.get("temperature")
        print(f"| {name} | {pot.n_experts}" + (f" ({tau:g})" if pot.n_experts > 1 else "")
              + f" | {e['energy_mae_mev_per_atom']:.3f} / {force:.4f}" + ("" if which == "test" else " (CV, RMSE F)")
              + f" | {seconds:.0f} | {k:.2f} ({x:.3f}, {p:.0f}) | {near:.3f} | {step:.3f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
