"""Notches in a committee's crystal energy where the structure gate switches experts off the data.

Scans E(a) per atom of a cubic crystal on a fine grid and prints, per potential, the lowest-energy lattice
constant, every local minimum on its expanded side, the deepest fall while expanding beyond the minimum
(meV/atom) and the largest |d2E/da2| (eV/A^2 per atom), with the gate weights across the sharpest point.
A linear potential's curve is smooth; a committee whose gate switches within a few mA of lattice constant
shows a notch the size of its experts' disagreement (docs/short-range.md, "Session 18").

    python benchmarks/gate_notch.py Cu fcc 3.3 4.0 LINEAR.dcace DC.dcace [--step 0.0005]
"""
from __future__ import annotations

import argparse

import numpy as np
from ase.build import bulk

import dcace
from dcace.gate_kinks import pressure_kinks, weight_steps   # noqa: F401 (gate_grid.py, gate_softness.py)
from dcace.probes import pressure_gpa


def along(pot, structures):
    """Energies per atom (eV), pressures (GPa, dcace.probes.pressure_gpa) and gate weights of pot
    on each structure (also benchmarks/gate_softness.py's and gate_grid.py's scans)."""
    E, P, W = [], [], []
    for atoms in structures:
        r = pot.compute(atoms)
        E.append(r["energy"] / len(r["energies"]))
        P.append(pressure_gpa(r))
        W.append(np.atleast_1d(r["weights"]))
    return np.array(E), np.array(P), np.array(W)


def scan(pot, element, phase, a):
    """along() for the cubic crystal `phase` of `element` at the lattice constants a."""
    return along(pot, (bulk(element, phase, a=x, cubic=True) for x in a))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("element")
    ap.add_argument("phase", help="an ase.build.bulk crystal structure: fcc, bcc, diamond, ...")
    ap.add_argument("a_lo", type=float)
    ap.add_argument("a_hi", type=float)
    ap.add_argument("potentials", nargs="+")
    ap.add_argument("--step", type=float, default=0.0005, help="lattice-constant step (A)")
    args = ap.parse_args(argv)
    a = np.arange(args.a_lo, args.a_hi, args.step)
    for path in args.potentials:
        E, _, W = scan(dcace.load(path), args.element, args.phase, a)
        k0 = int(np.argmin(E))
        minima = [round(float(a[i]), 4) for i in range(k0 + 1, len(E) - 1) if E[i] < E[i - 1] and E[i] <= E[i + 1]]
        fall = 1000 * float(np.max(np.maximum.accumulate(E[k0:]) - E[k0:]))
        d2 = np.abs(np.diff(E, 2)) / args.step ** 2
        j = int(np.argmax(d2)) + 1
        lo, hi = max(j - 10, 0), min(j + 10, len(a) - 1)
        print(f"{path}: {args.phase} {args.element}, lowest at a = {a[k0]:.4f} A; local minima beyond it: "
              f"{minima or 'none'}; deepest fall while expanding {fall:.2f} meV/atom; max |d2E/da2| "
              f"{d2.max():.1f} eV/A^2 per atom at a = {a[j]:.4f} A; gate weights at a = {a[lo]:.4f} / {a[hi]:.4f}: "
              f"{np.round(W[lo], 3).tolist()} / {np.round(W[hi], 3).tolist()}")


if __name__ == "__main__":
    main()
