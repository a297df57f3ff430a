"""Stage 1 of a fit, before any data is read: the settings checked, resolved and turned into the file's record.

``checked(settings, ranks, resume)`` validates every option a fit can check without data (the messages
are the ones tests match: keep them word for word) and returns ``Checked``, the resolved numbers the
later stages read (weights, folds, the candidate numbers of experts, the gate kinds to fit ...).
``record(...)`` is the ``settings`` dict of the potential file's metadata (``metadata["fit"]``), the
report's and the fit state's: a key absent before an option existed stays absent while it is off, so
older files, states and refits keep their bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .anchor_choice import anchor_weight
from .local_gate import LOCAL_GATES, check_gate_option
from .neighbourhood_gate import check_range, gate_columns_check
from .settings import FitSettings

__all__ = ["Checked", "checked", "record"]

#: the gate kinds a gate option fits with the local-gate machinery (dcace.local_gate), in order
_LOCAL_KINDS = {"atom": ["atom"], "neighbourhood": ["neighbourhood"], "auto": ["atom", "neighbourhood"]}


@dataclass
class Checked:
    """The settings as the stages read them (resolved defaults, numbers as floats / ints)."""
    wE: float
    wF: float
    wS: float
    w_rest: float                 # weight of the dimer restraints
    w_anchor: float               # weight of the off-data anchors (auto: the grid's largest, until chosen)
    auto_anchors: bool
    k_folds: int
    max_M: int
    temps: tuple                  # gate temperatures
    budget: float                 # memory budget of the normal equations, bytes
    frames_budget: float          # GB
    bsize: int                    # structures per block
    gate_kind: str                # structure | atom | neighbourhood | auto
    local_kinds: list             # the local gates to fit
    gate_range: object
    gate_body_order: object
    M_atom: object                # the largest M of the local gates (None: none)
    experts: object               # 'auto' or M of the structure machinery (1 with a local gate only)
    compare: bool                 # fit and report the paper's variant too
    Ms: list = field(default_factory=list)   # candidate numbers of experts (before the data's limit)
    M_fixed: object = None        # experts as an integer (None: 'auto')
    rows_budget: float = None     # GB: rank 0's per-structure rows in memory below it (dcace.rowstore)
    cluster_sample: int = None    # structures the structure gate's clustering is fitted on
    M_atoms: list = field(default_factory=list)   # the local gates' candidate M (experts="auto": CV picks)
    local_auto: bool = False      # experts="auto" with a local gate: M by CV over M_atoms
    local_notes: list = field(default_factory=list)   # why candidates of M_atoms were dropped (the fit's notes)


def checked(s: FitSettings, ranks, resume) -> Checked:
    """The checks of the options (in the order the fit has always made them) and their resolved values."""
    wE, wF, wS = float(s.energy_weight), float(s.force_weight), float(s.stress_weight)
    for name, v in (("energy_weight", wE), ("force_weight", wF), ("stress_weight", wS)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if wE == 0 and wF == 0:
        raise ValueError("energy_weight and force_weight cannot both be 0")
    w_rest = float(s.repulsion_restraints)
    if not (math.isfinite(w_rest) and w_rest >= 0):
        raise ValueError(f"repulsion_restraints must be a finite number >= 0, got {s.repulsion_restraints}")
    w_anchor, auto_anchors = anchor_weight(s.anchors, s.anchors_auto_grid)
    k_folds, max_M = int(s.cv_folds), int(s.max_experts)
    temps = tuple(float(t) for t in s.temperatures)
    budget = float(s.memory_budget_gb) * 2**30
    frames_budget = float(s.frames_budget_gb)
    if not (math.isfinite(frames_budget) and frames_budget >= 0):
        raise ValueError(f"frames_budget_gb (--frames-budget) must be a finite number >= 0, got {s.frames_budget_gb!r}")
    rows_budget = float(s.rows_budget_gb)
    if not (math.isfinite(rows_budget) and rows_budget >= 0):
        raise ValueError(f"rows_budget_gb (--rows-budget) must be a finite number >= 0, got {s.rows_budget_gb!r}")
    if not isinstance(s.cluster_sample, (int, np.integer)) or isinstance(s.cluster_sample, bool) or s.cluster_sample < 2:
        raise ValueError(f"cluster_sample (--cluster-sample) must be an integer >= 2, got {s.cluster_sample!r}")
    bsize = int(s.batch_size)
    if s.committee not in ("joint", "independent"):
        raise ValueError(f"committee must be 'joint' or 'independent', got {s.committee!r}")
    if s.regularise not in ("zero", "global"):
        raise ValueError(f"regularise must be 'zero' or 'global', got {s.regularise!r}")
    if any(not (t > 0 and math.isfinite(t)) for t in temps) or not temps:
        raise ValueError(f"temperatures must be positive numbers, got {temps}")
    gate_kind = check_gate_option(s.gate)
    if gate_kind != "structure" and ranks.size > 1:   # LocalGateRows reads every structure in one process
        raise ValueError(f"gate={gate_kind!r} (--gate) is not available in an MPI fit yet: the atom gate's "
                         f"clustering and rows read every training structure in one process; fit it without "
                         f"mpiexec (threads), or use gate='structure'")
    c = Checked(wE, wF, wS, w_rest, w_anchor, auto_anchors, k_folds, max_M, temps, budget, frames_budget, bsize,
                gate_kind, _LOCAL_KINDS.get(gate_kind, []), s.gate_range, s.gate_body_order, None, s.experts,
                s.compare)
    c.rows_budget, c.cluster_sample = rows_budget, int(s.cluster_sample)
    _check_gates(c, s, resume)
    _check_experts(c)
    if k_folds < 2:
        raise ValueError(f"cv_folds must be >= 2, got {k_folds}")
    _check_cv_groups(s.cv_groups, ranks)
    if s.ridge is not None and not (s.ridge >= 0 and math.isfinite(s.ridge)):
        raise ValueError(f"ridge must be a finite number >= 0, got {s.ridge}")
    return c


def _check_cv_groups(spec, ranks) -> None:
    """cv_groups: None, 'trajectory' or an atoms.info key (a non-empty string); serial fits only."""
    if spec is None:
        return
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"cv_groups (--cv-groups) must be 'trajectory' or the name of an atoms.info key "
                         f"(a non-empty string), got {spec!r}")
    if ranks.size > 1:   # the folds of an MPI fit are planned from the frame count, before any frame is read
        raise ValueError(f"cv_groups={spec!r} (--cv-groups) is not available in an MPI fit yet: its folds are "
                         f"planned from the number of frames before any frame is read; fit without mpiexec "
                         f"(threads), or without --cv-groups")


def _check_gates(c: Checked, s: FitSettings, resume) -> None:
    """The neighbourhood gate's range and columns; M of the local gates (their machinery fits the rest)."""
    if "neighbourhood" in c.local_kinds:
        c.gate_range = check_range(s.gate_range, s.cutoff)
        c.gate_body_order = gate_columns_check(s.gate_body_order)
    if c.gate_kind in LOCAL_GATES or c.gate_kind == "auto":
        c.M_atoms = atom_experts(s.experts, s.state, s.reuse, resume, c.gate_kind, s.local_experts_grid, c.max_M)
        c.M_atom, c.local_auto = max(c.M_atoms), s.experts == "auto"
    if c.gate_kind in LOCAL_GATES:   # the structure machinery fits the linear model only; local_gate the rest
        c.experts, c.compare = 1, False


def _check_experts(c: Checked) -> None:
    """The candidate numbers of experts of the structure machinery."""
    experts = c.experts
    if experts == "auto":
        c.Ms = list(range(1, c.max_M + 1))
        return
    try:
        M_fixed = int(experts)
    except (TypeError, ValueError):
        raise ValueError(f"experts must be 'auto' or a positive integer, got {experts!r}") from None
    if M_fixed < 1 or M_fixed != experts and str(M_fixed) != str(experts):
        raise ValueError(f"experts must be 'auto' or a positive integer, got {experts!r}")
    c.Ms, c.M_fixed = ([1, M_fixed] if M_fixed > 1 else [1]), M_fixed


def atom_experts(experts, state, reuse, resume, gate, grid, max_M):
    """The candidate M of the local gates, with their limits: [M] for an integer, and for experts="auto" the
    grid's M <= max_experts (CV picks one; the data and the memory budget may drop more, later)."""
    if state is not None or reuse is not None or resume is not None:
        raise ValueError(f"gate={gate!r} fits cannot write or reuse a fit state yet (state=, reuse=, refit)")
    if experts == "auto":
        Ms = sorted({int(M) for M in grid if 2 <= M <= max_M})
        if not Ms:
            raise ValueError(f"gate={gate!r} with experts='auto' tries M = {', '.join(str(M) for M in grid)} up to "
                             f"max_experts (--max-experts), which is {max_M}: give --max-experts 2 or more, or an "
                             f"integer --experts >= 2")
        return Ms
    if isinstance(experts, bool) or not isinstance(experts, (int, np.integer)) or experts < 2:
        raise ValueError(f"gate={gate!r} needs experts = 'auto' or an integer >= 2, got {experts!r}")
    return [int(experts)]


def record(s: FitSettings, c: Checked, *, core, elements, basis_blocks, chemical_channels, embedding_kind,
           block_ridge, degree_ridge, top_degree_ridge, w_anchor, anchor_off, fixed) -> dict:
    """The ``settings`` of the file's metadata, the report and the fit state, in their keys' fixed order
    (the file's bytes depend on it).  ``anchor_off`` (a state before version 3): no 'anchors' key."""
    from .block_ridge import stored as block_ridge_stored, stored_top

    experts = c.experts
    settings = {
        "baseline": core.baseline if core.external is None else core.external.describe(),
        "core_range": jsonable_range(core.core_range),
        "repulsion_restraints": c.w_rest if core.baseline == "zbl" else None,
        "shared_one_body": bool(s.shared_one_body),
        "elements": elements, "cutoff": float(s.cutoff), "body_order": int(s.body_order),
        "max_degree": float(s.max_degree), "inner_cutoff": float(s.inner_cutoff), "w_L": float(s.w_L),
        "max_degree_blocks": basis_blocks, "chemical_channels": chemical_channels,
        "experts": experts if experts == "auto" else int(experts), "committee": s.committee,
        "regularise": s.regularise, "agreement": float(s.agreement), "ridge": s.ridge, "energy_weight": c.wE,
        "force_weight": c.wF, "stress_weight": c.wS, "seed": int(s.seed), "cv_folds": c.k_folds,
        "max_experts": c.max_M, "weights": None if s.weights is None else config_weights(s.weights),
        "weight_key": s.weight_key, "e0": None if s.e0 is None else {k: float(v) for k, v in dict(s.e0).items()},
        "temperatures": list(c.temps), "pca": bool(s.pca), "energy_key": s.energy_key,
        "forces_key": s.forces_key, "stress_key": s.stress_key, "virial_key": s.virial_key,
    }
    if block_ridge is not None:   # (absent when off: the settings, files and states of fits before it)
        settings["block_ridge"] = block_ridge_stored(block_ridge)
    if degree_ridge is not None:
        settings["degree_ridge"] = list(degree_ridge) if isinstance(degree_ridge, tuple) else degree_ridge
    if top_degree_ridge is not None:
        settings["top_degree_ridge"] = stored_top(top_degree_ridge)
    if s.cv_groups is not None:   # (absent at the default: the files and states of fits before it keep their bytes)
        settings["cv_groups"] = s.cv_groups
    if not s.crystal_constraints:   # (absent at the default: the files of fits before it keep their bytes)
        settings["crystal_constraints"] = False
    if not s.kink_check:   # (absent at the default, as crystal_constraints)
        settings["kink_check"] = False
    if anchor_off is None:   # (else the settings keep no 'anchors' key, as that state's)
        settings["anchors"] = w_anchor
    M_local = "auto" if c.local_auto else c.M_atom   # (auto: the chosen M is the selection's n_experts)
    if c.gate_kind in LOCAL_GATES:
        settings.update(gate=c.gate_kind, experts=M_local)
    elif c.gate_kind == "auto":
        settings.update(gate=c.gate_kind, atom_experts=M_local)
    if "neighbourhood" in c.local_kinds:
        settings.update(gate_range=c.gate_range, gate_body_order=int(c.gate_body_order or 0))
    if chemical_channels is not None and not (isinstance(embedding_kind, str) and embedding_kind == "cosine"):
        settings["chemical_embedding"] = (embedding_kind if isinstance(embedding_kind, str)
                                          else np.asarray(embedding_kind).tolist())   # (cosine: as before)
    if fixed is not None and "chemical_embedding_weights" in fixed.settings:   # the state's W is kept
        settings["chemical_embedding_weights"] = fixed.settings["chemical_embedding_weights"]
    return settings


def config_weights(weights):
    """{config_type: weight} from the accepted spellings ({"config_type": {...}} or flat)."""
    if not isinstance(weights, dict):
        raise ValueError(f"weights must be a dict {{config_type: weight}}, got {weights!r}")
    spec = weights.get("config_type", weights) if set(weights) <= {"config_type"} else weights
    out = {}
    for k, v in spec.items():
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"weights: {k!r}: {v!r} is not a number") from None
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"weights: {k!r}: {v!r} must be a finite number >= 0")
        out[str(k)] = w
    return out


def jsonable_range(core_range):
    if core_range is None or isinstance(core_range, dict):
        return None if core_range is None else {k: [float(x) for x in v] for k, v in core_range.items()}
    return [float(x) for x in core_range]
