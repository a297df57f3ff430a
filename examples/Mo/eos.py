"""Equation of state and lattice constant of bcc Mo from a dcace potential, compared with the DFT
Elastic frames of the Zuo et al. data (uniaxially strained 54-atom cells around equilibrium).

    python examples/Mo/eos.py Mo.dcace [--plot eos.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.eos import EquationOfState
from ase.io import read
from ase.units import GPa

import dcace

DATA = Path(__file__).resolve().parents[1] / "data" / "zuo2020"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("potential")
    ap.add_argument("--plot", default=None, help="write the E(V) plot here (PNG)")
    a = ap.parse_args(argv)
    calc = dcace.Calculator(a.potential)

    # model: isotropic EOS of the 2-atom bcc cell
    lattice = np.linspace(3.02, 3.32, 13)
    vols, ens = [], []
    for x in lattice:
        at = bulk("Mo", "bcc", a=x, cubic=True)
        at.calc = calc
        vols.append(at.get_volume() / len(at))
        ens.append(at.get_potential_energy() / len(at))
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    v0, e0, B = eos.fit()
    a0 = (2 * v0) ** (1 / 3)

    # DFT: uniaxial strains along x, y or z of the 3x3x3 equilibrium cell
    frames = [f for name in ("Mo_train.xyz", "Mo_test.xyz") for f in read(DATA / name, ":")
              if f.info.get("config_type") == "Elastic" and len(f) == 54]
    uni = []
    for f in frames:
        cp = f.cell.cellpar()
        if np.allclose(cp[3:], 90) and np.sum(~np.isclose(cp[:3], np.median(cp[:3]))) == 1:
            uni.append(f)
    L = np.array([max(f.cell.cellpar()[:3], key=lambda v: abs(v - np.median(f.cell.cellpar()[:3]))) for f in uni])
    E_dft = np.array([f.get_potential_energy() / len(f) for f in uni])
    E_mod = []
    for f in uni:
        g = f.copy()
        g.calc = calc
        E_mod.append(g.get_potential_energy() / len(g))
    E_mod = np.array(E_mod)
    L_ref = np.median([np.median(f.cell.cellpar()[:3]) for f in uni])

    def minimum(y):
        c = np.polyfit(L, y, 4)
        grid = np.linspace(L.min(), L.max(), 4001)
        return grid[np.argmin(np.polyval(c, grid))] / 3

    a_dft, a_mod = minimum(E_dft), minimum(E_mod)
    print(f"model isotropic EOS (Birch-Murnaghan): a0 = {a0:.4f} A, V0 = {v0:.3f} A^3/atom, "
          f"B = {B / GPa:.0f} GPa, E0 = {e0:.4f} eV/atom")
    print(f"uniaxial strain of the {L_ref:.3f} A DFT reference cell ({len(uni)} DFT frames):")
    print(f"  energy minimum along the strained axis: DFT a = {a_dft:.4f} A, model a = {a_mod:.4f} A")
    print(f"  model vs DFT energy on these frames: MAE {1000 * np.mean(np.abs(E_mod - E_dft)):.2f} meV/atom, "
          f"max {1000 * np.max(np.abs(E_mod - E_dft)):.2f} meV/atom")
    print(f"{'L (A)':>8} {'E_DFT':>12} {'E_model':>12}  (eV/atom)")
    for i in np.argsort(L):
        print(f"{L[i]:8.3f} {E_dft[i]:12.5f} {E_mod[i]:12.5f}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
        ax[0].plot(vols, ens, "o", label="dcace")
        vv = np.linspace(min(vols), max(vols), 200)
        ax[0].plot(vv, eos.func(vv, *eos.eos_parameters), "-", label="Birch-Murnaghan fit")
        ax[0].set(xlabel="V (A^3/atom)", ylabel="E (eV/atom)", title=f"bcc Mo, a0 = {a0:.3f} A")
        ax[0].legend()
        o = np.argsort(L)
        ax[1].plot(L[o], E_dft[o], "s", label="DFT (Elastic frames)")
        ax[1].plot(L[o], E_mod[o], "o-", label="dcace")
        ax[1].set(xlabel="strained cell length (A)", ylabel="E (eV/atom)", title="uniaxial strain")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"plot written to {a.plot}")
    return a0, a_dft, a_mod


if __name__ == "__main__":
    main()
