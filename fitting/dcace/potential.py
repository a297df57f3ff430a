"""A fitted dcace potential in Python: build, save, load and evaluate one `.dcace` file.

The file is written and parsed by the C++ core (`PotentialCore`), the same reader pair_style dcace
uses, so Python and LAMMPS see identical numbers.  Metadata (provenance, fit settings, errors) is
one line of JSON inside the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from . import _core
from .basis import ACEBasis


class Potential:
    """A linear (M = 1) or divide-and-conquer (M > 1) ACE potential."""

    def __init__(self, core: "_core.PotentialCore"):
        self.core = core
        try:
            self.metadata = json.loads(core.metadata) if core.metadata.strip() else {}
        except json.JSONDecodeError:
            self.metadata = {"raw": core.metadata}
        if not isinstance(self.metadata, dict):  # the file reader accepts only {...}; guard the rest
            raise ValueError(f"potential metadata must be a JSON object, got {type(self.metadata).__name__}")
        self.basis = ACEBasis.from_core(core.elements, core.basis, self.metadata.get("basis"))
        from .report import FitReport   # a fit's report, as far as the file's metadata holds it

        self.report = FitReport.from_metadata(self.metadata)

    # -- construction and files ----------------------------------------------------------------
    @classmethod
    def from_parts(cls, basis: ACEBasis, coefficients, one_body, gate: dict | None = None,
                   metadata: dict | None = None, short_range: dict | None = None, grade=None) -> "Potential":
        """Assemble a potential from expert coefficients (M, S, K), one-body terms (M, S), a gate, the
        short-range core and an optional extrapolation grade.

        short_range: the short-range core (dcace.baseline), None or ``{"density_cutoff": r or None,
        "rho_lo": [...], "rho_hi": [...], "pair_shift": S x S or None, "density_wall": [[L, B], ...] per
        species or None}`` (ZBL with the basis's core windows; atomic numbers from the elements; the
        density wall, format version 8, is chosen by dcace.density_wall).  grade: a list of per-species (K, r_s) matrices (dcace.grade), or None."""
        coefficients = np.ascontiguousarray(coefficients, dtype=float)
        if coefficients.ndim == 2:
            coefficients = coefficients[None]
        one_body = np.ascontiguousarray(one_body, dtype=float).reshape(coefficients.shape[0], -1)
        M = coefficients.shape[0]
        meta = dict(metadata or {})
        meta.setdefault("basis", {"body_order": basis.body_order, "max_degree": basis.max_degree,
                                  "w_L": basis.w_L, "cutoff": basis.cutoff,
                                  "inner_cutoff": basis.inner_cutoff})
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
        if short_range is not None:
            short_range = dict(short_range, atomic_numbers=[float(atomic_numbers[el]) for el in basis.elements])
        core = _core.PotentialCore(basis.elements, basis.spec_, coefficients, one_body, M,
                                   gate if M > 1 else None, text, short_range)
        if grade is not None:
            core.set_grade([np.ascontiguousarray(g, dtype=float) for g in grade])
        return cls(core)

    @classmethod
    def load(cls, path) -> "Potential":
        return cls(_core.PotentialCore.read(str(path)))

    def save(self, path) -> None:
        """Write the potential file; atomically (a failure leaves an existing file untouched)."""
        from .atomic import write_text_atomic

        write_text_atomic(path, self.core.write())

    def to_string(self) -> str:
        return self.core.write()

    # -- properties ------------------------------------------------------------------------------
    @property
    def elements(self) -> list[str]:
        return list(self.core.elements)

    @property
    def n_experts(self) -> int:
        return int(self.core.n_experts)

    @property
    def cutoff(self) -> float:
        return float(self.core.cutoff)

    @property
    def coefficients(self) -> np.ndarray:
        return self.core.coefficients

    @property
    def one_body(self) -> np.ndarray:
        return self.core.one_body

    @property
    def baseline(self) -> str | None:
        """'zbl' when the potential has the ZBL short-range baseline, else None."""
        return None if self.core.short_range is None else "zbl"

    @property
    def delta_baseline(self) -> dict | None:
        """The external baseline this potential was fitted on top of (it is not in the file's
        energies: add it with ASE's SumCalculator or LAMMPS's pair_style hybrid/overlay), or None."""
        return (self.metadata.get("basis") or {}).get("delta_baseline")

    @property
    def short_range(self) -> dict | None:
        """The short-range core: ZBL atomic numbers, density cutoff and thresholds (or None)."""
        return self.core.short_range

    @property
    def gate(self) -> dict:
        return self.core.gate()

    @property
    def has_grade(self) -> bool:
        """Whether the file has an extrapolation grade (format version >= 3)."""
        return bool(self.core.has_grade)

    @property
    def grade_matrices(self) -> list | None:
        """Per-species grade matrices G_s (K, r_s), or None (no grade)."""
        return list(self.core.grade_matrices()) if self.core.has_grade else None

    @property
    def gate_kind(self) -> str:
        """"none" (one expert), "structure" (the paper's gate on the mean descriptor), "atom" (the
        local gate on each atom's own descriptor B_i) or "neighbourhood" (the local gate on the
        smooth average p_i of B over the atom and its same-species neighbours within r_g)."""
        return self.core.gate_kind

    def gate_weights(self, p):
        """Structure gate: w (M), dw/dp (M, S*K) and nearest-centroid distance for a mean descriptor p."""
        return self.core.gate_weights(np.ascontiguousarray(p, dtype=float).ravel())

    def __repr__(self) -> str:
        return (f"Potential(elements={self.elements}, n_experts={self.n_experts}, "
                f"n_features={self.core.n_features}, cutoff={self.cutoff})")

    # -- evaluation ------------------------------------------------------------------------------
    def compute(self, atoms, extrapolation: bool = True) -> dict:
        """Energy, per-atom energies, forces, stress (ASE Voigt; None unless 3-D periodic),
        expert weights, the nearest-centroid distance and the per-atom extrapolation grade
        (None if the potential file has none, or with extrapolation=False) of one structure.

        "weights": the gate weights, (M,) for the structure gate and a linear potential, (N, M) (one
        row per atom) for a local gate; "atom_weights" is always (N, M).  "nearest" is the
        structure gate's nearest-centroid distance (0 for a local gate)."""
        species, first, j, rij = self.basis.neighbours(atoms)
        out = self.core.compute(species, first, j, rij)
        grade = self.core.extrapolation(species, first, j, rij) if extrapolation and self.core.has_grade else None
        res = {
            "energy": float(out["energy"]),
            "energies": out["energies"],
            "forces": out["forces"],
            "virial": out["virial"],
            "virials": out["virials"],
            "weights": out["atom_weights"] if self.core.gate_kind in ("atom", "neighbourhood") else out["weights"],
            "atom_weights": out["atom_weights"],
            "expert_energies": out["expert_energies"],
            "nearest": float(out["nearest"]),
            "stress": None,
            "stresses": None,
            "extrapolation": grade,
        }
        if atoms.pbc.all():
            res["stress"] = -out["virial"] / abs(atoms.get_volume())
            res["stresses"] = -out["virials"] / abs(atoms.get_volume())  # per atom, sums to stress
        return res


def load(path) -> Potential:
    """Read a `.dcace` potential file."""
    return Potential.load(path)
