"""Pressure kinks of a committee along its crystals: where the structure gate switches within a step.

Why this file exists: CV may choose a sharp softmax (the default Zuo Cu committee: M = 8, tau = 0.35).
Off the data the gate's logits are differences of squared distances to the centroids, which grow with
the distance from the data, so such a gate passes from one expert to another within 0.0003 a0 of a
compressed crystal. The pressure there spikes by about half the two experts' difference: 81.9 GPa at
0.945 a0 of fcc Cu, where P is 147 GPa (docs/short-range.md, "Session 19"). The energy stays monotone,
so the compression probes (dcace.crystal_probe) pass; MD that crosses the spike gets a force kick. The
selection (dcace.pipeline, ``kink_check``) scans every committee it would keep with ``worst_kink`` and,
when one kinks, takes the next candidate by CV.

How: each crystal (dcace.anchor_choice.probe_crystals: bcc and fcc of every element and the lowest-energy
training structure) is scaled from 0.85 to 1.10 of its own a0 (dcace.crystal_probe.own_a0) in coarse
steps of COARSE. Where the gate's weights move by more than FLAG within a coarse step and bend by more
than FLAG at one of its ends (a switch within the step; a soft gate's drift does not bend), that step is
scanned again in steps of FINE (the step of benchmarks/gate_grid.py), and the kink
|P_k - (P_k-1 + P_k+1) / 2| is measured there against the bound KINK_GPA + KINK_REL * |P|. A smooth
curve gives FINE^2 P'' / 2 (far below the bound); a switch within a fine step gives about half the
experts' pressure difference. Where the weights do not move, the committee is as smooth as its experts.
Everything is evaluated by the C++ core (``Potential.compute``).
"""
from __future__ import annotations

import numpy as np

from .crystal_probe import own_a0
from .probes import compression_curve

__all__ = ["SCAN", "COARSE", "FINE", "FLAG", "KINK_GPA", "KINK_REL", "pressure_kinks", "weight_steps",
           "kink_bound", "crystal_kinks", "worst_kink"]

SCAN = (0.85, 1.10)   # a / a0
FINE = 0.00015        # a / a0: the rescan's step
COARSE = 16 * FINE    # a / a0: the first scan's step
FLAG = 0.01           # weight moved (and bent) within a coarse step that makes it rescanned
KINK_GPA, KINK_REL = 0.5, 0.01   # the bound: 0.5 GPa + 1 % of |P|


def pressure_kinks(P):
    """|P_k - (P_k-1 + P_k+1) / 2| at the interior points of a scan (GPa)."""
    P = np.asarray(P, dtype=float)
    return np.abs(P[1:-1] - 0.5 * (P[:-2] + P[2:]))


def weight_steps(W):
    """How much of the gate's weight moves from one scan point to the next (0 for a linear potential)."""
    W = np.asarray(W, dtype=float)
    return np.abs(np.diff(W, axis=0)).sum(1) / 2 if W.ndim == 2 and W.shape[1] > 1 else np.zeros(max(len(W) - 1, 1))


def kink_bound(P):
    """The largest kink allowed at pressures P (GPa)."""
    return KINK_GPA + KINK_REL * np.abs(np.asarray(P, dtype=float))


def _sharp_steps(W):
    """The coarse steps where the gate may switch within a fine step: its weights move by more than FLAG
    and bend by more than FLAG at one end of the step (a smooth drift, as a soft gate's, bends little)."""
    step = weight_steps(W)
    if W.ndim != 2 or W.shape[1] < 2:
        return np.zeros(0, dtype=int)
    bend = np.abs(W[2:] - 2 * W[1:-1] + W[:-2]).sum(1) / 2
    bend = np.concatenate([[np.inf], bend, [np.inf]])   # (the ends: by the step alone)
    return np.flatnonzero((step > FLAG) & (np.maximum(bend[:-1], bend[1:]) > FLAG))


def crystal_kinks(pot, atoms) -> dict:
    """The largest kink of `atoms` (at its volume-matched lattice constant) scaled from SCAN[0] to SCAN[1]
    of the potential's own a0: {"ratio": kink / bound (0 where the gate does not move), "kink_gpa",
    "a_over_a0", "p_gpa" there, "rescanned": how many coarse steps were scanned again, "a0_scale"} (None
    values with no a0: the compression probe reports that crystal)."""
    s0 = own_a0(pot, atoms)
    out = {"ratio": 0.0, "kink_gpa": 0.0, "a_over_a0": None, "p_gpa": None, "rescanned": 0, "a0_scale": s0}
    if s0 is None:
        return out
    coarse = np.arange(SCAN[0], SCAN[1] + COARSE / 2, COARSE)
    *_, W = compression_curve(pot, atoms, s0 * coarse, weights=True)
    for k in _sharp_steps(W):
        fine = coarse[k] + FINE * np.arange(-1, round(COARSE / FINE) + 2)
        _, P = compression_curve(pot, atoms, s0 * fine)
        ratios = pressure_kinks(P) / kink_bound(P[1:-1])
        j = int(np.argmax(ratios))
        out["rescanned"] += 1
        if ratios[j] > out["ratio"]:
            out.update(ratio=float(ratios[j]), kink_gpa=float(pressure_kinks(P)[j]), a_over_a0=float(fine[j + 1]),
                       p_gpa=float(P[j + 1]))
    return out


def worst_kink(pot, crystals) -> dict:
    """crystal_kinks of the crystal [(label, Atoms)] with the largest ratio, with its "label" (ratio 0 and
    label None when there are none)."""
    worst = {"ratio": 0.0, "label": None}
    for label, atoms in crystals:
        k = crystal_kinks(pot, atoms)
        if k["ratio"] > worst["ratio"]:
            worst = dict(k, label=label)
    return worst
