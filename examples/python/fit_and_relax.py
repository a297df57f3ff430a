"""Fit a dcace potential from a Python script and use it as an ASE calculator: the relaxed vacancy
formation energy of bcc Mo (DFT-PBE literature value: about 2.6-3.0 eV).

    python examples/python/fit_and_relax.py [--quick] [-o Mo.dcace]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ase.build import bulk
from ase.filters import ExpCellFilter
from ase.io import read
from ase.optimize import BFGS

import dcace

DATA = Path(__file__).resolve().parents[1] / "data" / "zuo2020"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small basis and cell (for tests)")
    ap.add_argument("-o", "--output", default="Mo.dcace")
    a = ap.parse_args(argv)

    train = read(DATA / "Mo_train.xyz", ":")
    test = read(DATA / "Mo_test.xyz", ":")
    settings = dict(body_order=3, max_degree=8, experts=2) if a.quick else \
        dict(body_order=4, max_degree=12, experts="auto")
    pot = dcace.fit(train, elements=["Mo"], cutoff=5.2, test=test, **settings)
    pot.save(a.output)
    calc = dcace.Calculator(a.output)

    # relaxed lattice constant
    cell = bulk("Mo", "bcc", a=3.16, cubic=True)
    cell.calc = calc
    BFGS(ExpCellFilter(cell), logfile=None).run(fmax=1e-4)
    a0 = cell.cell.cellpar()[0]
    e_bulk = cell.get_potential_energy() / len(cell)

    # vacancy in a 3x3x3 (54-site) or 4x4x4 (128-site) supercell, positions relaxed
    n = 3 if a.quick else 4
    sc = cell.repeat((n, n, n))
    del sc[0]
    sc.calc = calc
    BFGS(sc, logfile=None).run(fmax=1e-3)
    e_vac = sc.get_potential_energy() - len(sc) * e_bulk
    print(f"bcc Mo: a0 = {a0:.4f} A, E_coh(model, total energy) = {e_bulk:.4f} eV/atom")
    print(f"vacancy formation energy ({len(sc) + 1}-site cell, relaxed): {e_vac:.3f} eV")
    print(f"expert weights of the vacancy cell: {sc.calc.results['expert_weights']}")
    return a0, e_vac


if __name__ == "__main__":
    main()
