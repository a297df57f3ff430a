"""The off-data anchors in a fit state (format version 3, docs/fit-state.md).

A fit that writes a state gets the committees' off-data anchors (``dcace.anchors``) as a plain fit
does. Their structures are made from training structures (chosen by ``anchors.anchor_sources`` over
the fit's data), so they are a fixed part of the fit like its folds and clusters: a refit keeps the
state's anchors, it does not choose them again over the union. The state records

* ``anchors`` in ``__meta__``: the weight, the indices of the source structures and of the
  lowest-energy one (both among the state's first structures), and how many anchor structures
  they made (null when the fit had none: weight 0, independent experts with regularise="zero", no committee);
* ``anchors_Hp``: H_a (D' x D', the anchors' linear normal matrix) as an upper triangle, packed like
  the other normal matrices (``dcace.state_pack``) -- one extra D'^2 matrix.

A refit (``resume=``) takes H_a from the state and never featurises the anchors again; a fit from
scratch that reuses the state (``reuse=``) rebuilds them from the recorded sources and puts H_a in
the stored form (its upper triangle, mirrored), so the two equal each other bit for bit. States of
format versions 1 and 2 hold no anchors: fits that continue them have none, and say so.

Also here: the check that refuses an old state whose committee sums were accumulated with the
wrong frame weights (before the committee-weight fix d12ced5).
"""
from __future__ import annotations

import numpy as np

from .anchors import AnchorRows
from .state_pack import pack_groups, restore_groups

__all__ = ["fit_weight", "kept_sources", "stored_rows", "canonical", "record", "arrays",
           "check_committee_weights"]


def _has_record(state) -> bool:
    return int(state.meta.get("version", 0)) >= 3


def fit_weight(fixed, weight: float):
    """(weight, note) of a fit that may keep a state's parts (``fixed``): the state's anchors are the
    fit's, so a version-3 state fixes nothing here (its settings hold the weight, which a refit
    takes and a reuse= fit must match); an older state has none (weight 0 and a note; the
    settings then keep no 'anchors' key, as the state's do)."""
    if fixed is None or _has_record(fixed):
        return weight, None
    return 0.0, (f"off-data anchors off: the fit state {fixed.path} (format version {fixed.meta.get('version')}) "
                 "was written without them and this fit keeps its parts; a fit from scratch (or --recluster) "
                 "has them")


def kept_sources(fixed):
    """(sources, ground) of the state's anchors, or None when the state's fit had none."""
    rec = fixed.meta.get("anchors") if _has_record(fixed) else None
    if not rec:
        return None
    return [int(i) for i in rec["sources"]], (None if rec["ground"] is None else int(rec["ground"]))


def stored_rows(state, Dp: int):
    """(AnchorRows from the state's H_a, note) for a refit of Dp unknowns per expert, or (None, None)
    when the state's fit had no anchor structures."""
    from .state import StateError

    rec = state.meta.get("anchors") if _has_record(state) else None
    if not rec or not rec.get("n_structures"):
        return None, None
    P = np.ascontiguousarray(state.arrays["anchors_Hp"], dtype=float)   # load_state checked it is there
    try:
        H = restore_groups(P, Dp)
    except ValueError as exc:
        raise StateError(f"{state.path}: anchors_Hp of shape {P.shape} does not fit this fit: {exc}") from None
    rows = AnchorRows.from_matrix(H, int(rec["n_structures"]))
    return rows, (f"off-data anchors: the state's {rec['n_structures']} anchor structures (made from "
                  f"{len(rec['sources'])} of its training structures; weight {rec['weight']:g}), kept by the refit: "
                  "H_a read from the state, not featurised again (dcace.state_anchors)")


def canonical(rows):
    """H_a in the form a state stores it (its upper triangle, mirrored; in place), as a refit reads it."""
    if rows is not None:
        rows.H = restore_groups(pack_groups(rows.H), rows.H.shape[0])
    return rows


def record(weight, sources, rows):
    """The ``anchors`` record of ``__meta__`` (None: the fit had no anchors)."""
    if sources is None:
        return None
    spread, ground = sources
    return {"weight": float(weight), "sources": [int(i) for i in spread],
            "ground": None if ground is None else int(ground),
            "n_structures": 0 if rows is None else int(rows.n_structures)}


def arrays(rows) -> dict:
    return {} if rows is None else {"anchors_Hp": pack_groups(rows.H)}


def check_committee_weights(state):
    """Refuse a state of format version 1 or 2 that holds jointly fitted committees and frame weights
    other than 1: such states may have been written before the committee-weight fix (d12ced5), whose
    accumulator weighted the committees' gate-gradient force and virial rows omega^3 / omega^4
    instead of omega^2. A refit would add correctly weighted rows to those sums and differ from a
    fit from scratch (tests/test_refit.py measures it); the version does not tell the two apart."""
    from .state import StateError

    if _has_record(state) or not state.meta.get("joint_keys"):
        return
    w = np.asarray(state.arrays["weights"], dtype=float)
    if np.all(w == 1.0):
        return
    vals = ", ".join(f"{x:g}" for x in np.unique(w)[:6])
    raise StateError(f"{state.path}: fit-state format version {state.meta.get('version')} with frame weights "
                f"({vals}) and jointly fitted committees: states before version 3 may have been written before "
                "the committee-weight fix (d12ced5), whose committee sums weight the gate-gradient force and "
                "virial rows omega^3/omega^4, and a refit from them is wrong. Refit from scratch (--recluster "
                "reads the state's training files again) or fit the union with dcace fit")
