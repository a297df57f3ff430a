"""ASE calculator for dcace potentials.

For a structure of N atoms the energy is E = sum_m w_m(p) E_m with p the mean descriptor
(for M = 1 simply E = sum_i c_{Z_i} . B_i + e0_{Z_i}); forces are F_k = -dE/dr_k including the
gate's gradient (c_eff in the C++ core), the stress is (1/V) dE/d(strain) in ASE's Voigt order
(xx yy zz yz xz xy) and is offered for 3-D periodic cells only.  Per-atom energies sum to E.
"stresses" (N, 6) are per-atom stresses as ASE's LennardJones gives them: -(per-atom virial) / V,
each pair's virial split half-half between its two atoms; they sum to the stress.
The potential is the ASE parameter `potential` (a .dcace path, or a dcace.Potential): todict()
gives the path, set(potential=...) loads another one and discards the results.
results["expert_weights"] holds the gate weights w_m: shape (M,) for the structure gate (and (1,) for
a linear potential), shape (N, M), one row per atom, for a local (atom) gate.
results["nearest_centroid"] is the structure gate's distance to the nearest cluster centroid in units
of its spread (0 for a local gate).  results["extrapolation"] is the per-atom
extrapolation grade gamma (N,) (<= 1 on the training atoms, > 1 extrapolation; docs/extrapolation.md)
and results["max_extrapolation"] its maximum; both are None for a potential without a grade.
"""
from __future__ import annotations

import os

from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import all_changes, equal

from .potential import Potential


class Calculator(_ASECalculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    default_parameters = {"extrapolation": True}

    def __init__(self, potential=None, extrapolation: bool = True, **kwargs):
        """extrapolation=False skips the grade (about as costly as the forces; the two results keys
        are then absent)."""
        self.potential = None
        super().__init__(potential=potential, extrapolation=bool(extrapolation), **kwargs)
        if self.potential is None:
            raise ValueError("dcace.Calculator needs a potential: a .dcace file or a dcace.Potential")
        if self.potential.delta_baseline is not None:
            import warnings

            warnings.warn(f"this potential was fitted on top of the baseline {self.potential.delta_baseline}; "
                          "its energies and forces are the correction only: combine it with that baseline "
                          "(ase.calculators.mixing.SumCalculator([baseline, dcace.Calculator(...)]))", stacklevel=2)

    @property
    def extrapolation(self) -> bool:
        return bool(self.parameters.get("extrapolation", True))

    def set(self, **kwargs):
        if "potential" in kwargs and not equal(kwargs["potential"], self.parameters.get("potential")):
            value = kwargs["potential"]
            if value is not None and not isinstance(value, Potential):
                kwargs["potential"] = value = os.fspath(value)
                pot = Potential.load(value)  # errors before anything changes
            else:
                pot = value
            changed = super().set(**kwargs)
            self.potential = pot
            self.reset()
            return changed
        changed = super().set(**kwargs)
        if "extrapolation" in changed:
            self.reset()
        return changed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        out = self.potential.compute(self.atoms, extrapolation=self.extrapolation)
        self.results["energy"] = out["energy"]
        self.results["free_energy"] = out["energy"]
        self.results["energies"] = out["energies"]
        self.results["forces"] = out["forces"]
        self.results["expert_weights"] = out["weights"]
        self.results["nearest_centroid"] = out["nearest"]
        if self.extrapolation:
            g = out["extrapolation"]
            self.results["extrapolation"] = g
            self.results["max_extrapolation"] = (float(g.max()) if len(g) else 0.0) if g is not None else None
        if out["stress"] is not None:
            self.results["stress"] = out["stress"]
            self.results["stresses"] = out["stresses"]
        elif "stress" in properties or "stresses" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
