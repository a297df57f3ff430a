"""The probe structure in a fit state (format version 4, docs/fit-state.md).

The crystal constraints (dcace.crystal_constraints) and the kink check (dcace.gate_kinks) probe a fit
on bcc and fcc of every element at the volume per atom of its lowest-energy training structure, and on
that structure itself. A refit (``resume=``) has none of the state's training structures at hand, so
until version 4 it ran neither. The state now stores that structure (atomic numbers, cell, positions,
periodicity, as float64 arrays: exact), and every fit that continues a state probes the state's
structure -- the refit, and the ``reuse=`` fit from scratch that must equal it bit for bit -- as it
keeps the state's folds, clusters and anchors. A state before version 4 has none: such fits skip both,
with a note.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["arrays", "kept_ground"]

_KEYS = ("ground_numbers", "ground_cell", "ground_positions", "ground_pbc")


def arrays(ground) -> dict:
    """The state arrays of the probe structure (none: no structure)."""
    if ground is None:
        return {}
    return {"ground_numbers": np.asarray(ground.numbers, dtype=np.int64),
            "ground_cell": np.asarray(ground.cell.array, dtype=float),
            "ground_positions": np.asarray(ground.positions, dtype=float),
            "ground_pbc": np.asarray(ground.pbc, dtype=bool)}


def kept_ground(state):
    """The state's probe structure (Atoms), or None (a state before version 4, or a fit that had none)."""
    if int(state.meta.get("version", 0)) < 4 or not all(k in state.arrays for k in _KEYS):
        return None
    a = state.arrays
    return Atoms(numbers=a["ground_numbers"], cell=a["ground_cell"], positions=a["ground_positions"],
                 pbc=a["ground_pbc"])
