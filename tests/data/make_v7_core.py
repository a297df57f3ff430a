"""Writes v7_Mo_core.dcace and v7_Mo_core_expected.json: a small linear Mo potential with the
short-range core as the format-7 writer wrote it (density core without a wall), and its energy,
per-atom energies, forces and stress on two compressed bcc cells (inside the density window and
beyond it) as that dcace evaluated them. tests/test_short_range.py checks that this dcace loads the
file and evaluates it exactly as before. Run once with the dcace of commit 8d36a63 (format 7):

    python tests/data/make_v7_core.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import read

import dcace
from dcace import _core

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"


def compressed(pot, where, rattle=0.03, seed=3):
    """16-atom bcc Mo scaled so that the perfect crystal sits `where` inside the density window."""
    sr = pot.short_range
    target = sr["rho_lo"][0] + where * (sr["rho_hi"][0] - sr["rho_lo"][0])
    lo, hi = 0.6, 1.0
    for _ in range(50):
        s = 0.5 * (lo + hi)
        at = bulk("Mo", "bcc", a=3.16 * s, cubic=True).repeat(2)
        _, first, _, rij = pot.basis.neighbours(at)
        lo, hi = (s, hi) if _core.core_density(first, rij, sr["density_cutoff"])[0] > target else (lo, s)
    at.positions += np.random.default_rng(seed).normal(scale=rattle, size=at.positions.shape)
    return at


def main():
    pot = dcace.fit(read(TRAIN, "::4"), elements=["Mo"], cutoff=5.2, body_order=2, max_degree=6, experts=1,
                    progress=False, compare=False, cv_folds=2)
    text = pot.to_string()
    assert text.startswith("dcace-potential 7\n"), text[:40]
    (HERE / "v7_Mo_core.dcace").write_text(text)
    out = {}
    for where in (0.5, 1.5):
        at = compressed(pot, where)
        r = pot.compute(at)
        out[str(where)] = {"cell": at.cell.array.tolist(), "positions": at.positions.tolist(),
                           "energy": r["energy"], "energies": r["energies"].tolist(),
                           "forces": r["forces"].tolist(), "stress": r["stress"].tolist()}
    (HERE / "v7_Mo_core_expected.json").write_text(json.dumps(out, indent=0) + "\n")


if __name__ == "__main__":
    main()
