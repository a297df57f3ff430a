"""What a pressure kink does in MD: NVE of fcc Cu at the volume where the unchecked committee's gate switches.

Fits the default Zuo Cu potential twice, with the kink check (dcace.gate_kinks, the default) and with
`kink_check=False`. Then it scans fcc Cu of the unchecked fit uniformly from 0.90 to 1.10 of its own a0
in steps of 0.00015 a0, to find its largest pressure kink (above the core's hand-over at 0.86-0.88 a0).
At that lattice constant it runs both potentials in the wheel's lmp: 4 x 4 x 4 cubic cells (256 atoms),
velocities for 600 K, NVE at dt = 1 fs for 10 ps. Printed per potential: M, tau, the kink, the
temperature range, the largest |E_total(t) - E_total(0)| per atom, and the pressure's range, mean and
standard deviation (docs/short-range.md, "Pressure kinks").

    python benchmarks/kink_md.py [--steps 10000] [--dt 0.001]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from ase.build import bulk

import dcace
from dcace.crystal_probe import own_a0
from dcace.gate_kinks import kink_bound, pressure_kinks
from dcace.probes import compression_curve
from lammps_common import run_lmp, thermo_table
from zuo_table import CUTOFF

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"
CELLS, T0, SEED = 4, 600, 4928459
DECK = """units metal
atom_style atomic
boundary p p p
lattice fcc {a:.6f}
region box block 0 {n} 0 {n} 0 {n}
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style dcace
pair_coeff * * {potential} Cu
velocity all create {T0} {seed} mom yes rot yes dist gaussian
timestep {dt}
fix 1 all nve
thermo_style custom step temp etotal press
thermo_modify format float %.10g
thermo 10
run {steps}
"""


def fcc_largest_kink(pot, lo=0.90, hi=1.10, step=0.00015):
    """(a in A, kink GPa, P GPa, kink / bound) of fcc Cu's largest pressure kink from lo to hi of a0."""
    fcc = bulk("Cu", "fcc", a=3.62, cubic=True)
    s0 = own_a0(pot, fcc)
    x = np.arange(lo, hi, step)
    _, P = compression_curve(pot, fcc, s0 * x)
    ratio = pressure_kinks(P) / kink_bound(P[1:-1])
    k = int(np.argmax(ratio))
    return 3.62 * s0 * x[k + 1], float(pressure_kinks(P)[k]), float(P[k + 1]), float(ratio[k])


def nve(pot_path, a, dt, steps, tmp):
    """(T min, T max, max |dE| per atom, P min, max, mean, sd in GPa) of the NVE run."""
    deck = DECK.format(a=a, n=CELLS, potential=pot_path, T0=T0, seed=SEED, dt=dt, steps=steps)
    header, rows = thermo_table(run_lmp(deck, tmp)["stdout"])
    c = {h: i for i, h in enumerate(header)}
    n = 4 * CELLS ** 3
    E, P, T = rows[:, c["TotEng"]] / n, rows[:, c["Press"]] / 1e4, rows[:, c["Temp"]]
    return T.min(), T.max(), float(np.abs(E - E[0]).max()), P.min(), P.max(), P.mean(), P.std()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--dt", type=float, default=0.001, help="ps")
    args = ap.parse_args(argv)
    kw = dict(elements=["Cu"], cutoff=CUTOFF["Cu"], test=str(DATA / "Cu_test.xyz"), progress=False)
    pots = {"kink_check=False": dcace.fit(str(DATA / "Cu_train.xyz"), kink_check=False, **kw),
            "default (kink check)": dcace.fit(str(DATA / "Cu_train.xyz"), **kw)}
    a, kink, p, ratio = fcc_largest_kink(pots["kink_check=False"])
    print(f"fcc Cu of the unchecked fit: largest kink above 0.90 a0 {kink:.3g} GPa at a = {a:.4f} A "
          f"(P = {p:.4g} GPa, {ratio:.3g}x the bound); NVE there, {4 * CELLS ** 3} atoms, {T0} K start, "
          f"dt = {args.dt:g} ps, {args.steps} steps\n")
    print("| potential | M (tau) | test E meV/atom | largest kink / bound above 0.90 a0 | T (K) | max abs dE (eV/atom) "
          "| P min-max (GPa) | P mean +- sd (GPa) |\n|---|---|---:|---:|---|---:|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, pot in pots.items():
            path = Path(tmp) / "Cu.dcace"
            pot.save(path)
            tmin, tmax, dE, pmin, pmax, pmean, psd = nve(path, a, args.dt, args.steps, tmp)
            model = "dc" if pot.n_experts > 1 else "linear"
            e = pot.report.errors[model]["test"]["energy_mae_mev_per_atom"]
            tau = pot.report.selection["temperature"]
            print(f"| {name} | {pot.n_experts} ({tau:g}) | {e:.3f} | {fcc_largest_kink(pot)[3]:.3g} | {tmin:.0f}-{tmax:.0f} "
                  f"| {dE:.3g} | {pmin:.2f}-{pmax:.2f} | {pmean:.2f} +- {psd:.2f} |", flush=True)


if __name__ == "__main__":
    main()
