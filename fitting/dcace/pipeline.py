"""Fit linear and divide-and-conquer (DC) ACE potentials: the pipeline behind ``dcace.fit``.

Pipeline (memory O(candidates x folds x (M K)^2), independent of the number of structures):

1. read + validate data (``dcace.data``); build the ACE basis.
2. pass 1 over the training structures: per-species descriptor sums -> mean descriptors p_S,
   per-species reference energies e_ref (least squares of E on atom counts; energies are fitted
   relative to them), cross-validation folds (seeded), standardisation, optional PCA and seeded
   k-means clusterings for every candidate number of experts M.
3. pass 2: fitting rows of one structure at a time (C++ core, threads); normal equations of
   every candidate model are accumulated per fold at once: the global linear model, independent
   per-cluster experts for each M (the paper's method) and the jointly fitted committee for each
   (M, gate temperature tau) (``dcace.committee``).
4. selection (``dcace.selection``): ridge lambda by k-fold CV on the linear model; (M, tau) by
   k-fold CV of the combined model's weighted loss; eq. 9 of the paper is evaluated and reported.
5. final solves on all training data; the potential file (``dcace.Potential``) with provenance.
   Passes 1-3 and the grade run over fixed blocks of structures, on one or many MPI ranks with the
   same arithmetic (``dcace.parallel``, ``dcace.pass3``): serial and MPI fits write the same bytes.
6. pass 3: the final potential (C++ core) and the linear baseline evaluated on the training set;
   the test set (if any) evaluated with all compared models.

Loss (weights are row multipliers, squared in the loss), per structure S with N atoms:
    energy_weight^2 ((E_pred - E)/N)^2                     per-atom energy, eV/atom
  + force_weight^2  sum_components (F_pred - F)^2          eV/Å
  + stress_weight^2 sum_6 ((V/N)(sigma_pred - sigma))^2    stress as virial per atom, eV/atom
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import _core, cost
from .basis import ACEBasis
from .clustering import Eq8Gate, cluster, fit_standardiser, gate_dict, gate_weights, pca_projection
from .committee import Batch, GroupAccumulator, JointAccumulator, LabelMembership, committee_predict, joint_nbytes
from .basis_spec import check_chemical_channels, check_degree_blocks
from .block_ridge import check_block_ridge, check_degree_ridge, choose_column_ridge, stored as block_ridge_stored
from .block_ridge import check_top_degree_ridge, stored_top, top_degree_start
from .embedding import check_embedding, choose_embedding
from .baseline import (CoreSettings, core_shifts, core_window, density_core, neighbour_extremes, residual_dataset,
                       residual_frame, user_window_free)
from .density_wall import density_wall
from .data import Dataset, DataError, Frame, count_frames, read_data
from . import pass3
from . import state as _fit_state
from . import state_anchors
from .parallel import Ranks, accumulate_blocks, as_ranks, default_threads, fit_blocks
from .stream import EVERY, read_own
from . import restream
from .state_pack import canonical_sums
from .potential import Potential
from .report import ErrorStats, FitReport
from .local_gate import LOCAL_GATES, check_gate_option, fit_atom_gate
from .neighbourhood_gate import check_range, gate_columns_check
from .restraints import RestraintRows, pure_zbl, restraint_batch, restraint_dimers
from . import anchors as anchors_module
from .anchors import AnchorRows, anchor_batches, anchor_sources, anchor_structures, free_atoms_and_dimers, phase_anchors
from .anchor_choice import SafetyProbes, anchor_weight, choose_weight
from .probes import probe_indices
from .ridge import single_threaded_blas

__all__ = ["fit", "DEFAULTS"]

#: Defaults, chosen by cross-validation on the Zuo et al. data (docs/fitting.md).
DEFAULTS = {
    "energy_weight": 300.0,      # per-atom energy row vs one force component (1.0)
    "force_weight": 1.0,
    "stress_weight": 1.0,        # virial-per-atom rows (sigma V / N, eV/atom)
    "cv_folds": 5,
    "max_experts": 8,
    "temperatures": (0.35, 0.7),  # gate temperature grid tau
    "ridge_grid": tuple(10.0 ** np.arange(-14, -2)),
    "ridge_experts_floor": 1e-10,  # committees start from max(linear ridge, this) ...
    "ridge_dc_factors": (1e-2, 1.0, 1e2, 1e4),   # ... and the chosen one is refined x these, by CV
    "parsimony": 0.01,           # fewer experts win if their CV loss is within 1 % of the best
    "pca_variance": 0.99,
    "pca_max_components": 10,
    "batch_size": 64,
    "memory_budget_gb": 1.2,
    # an MPI rank holds its own parsed frames between passes while they take at most this (dcace.restream.held_bytes,
    # ~0.1 kB/atom: 2.4 million atoms); above it, it parses them again in every pass (memory independent of them)
    "frames_budget_gb": 0.25,
    "repulsion_restraints": 0.01,  # weight of the dimer restraints (dcace.restraints) x force weight; 0 = off
    "shared_one_body": False,      # committees share the linear model's one-body terms (selection.Selector)
    "anchors": 0.03,               # weight of the off-data anchors of structure-gate committees (dcace.anchors)
    "anchors_auto_grid": (0.0, 0.01, 0.03, 0.1),   # anchors="auto" tries these, smallest first (dcace.anchor_choice)
    "anchors_auto_force_ratio": 2.0,   # ... its rattle probe: committee's largest force <= this x the linear model's
    "chemical_embedding": "cosine",  # W of --chemical-channels: cosine | pca | fit (dcace.embedding)
    "block_ridge": None,           # ridge factor per species block: None | grid | {b: f} (dcace.block_ridge)
    "degree_ridge": None,          # smoothness prior exponent p: None | p | grid (dcace.block_ridge)
    "top_degree_ridge": None,      # ridge factor of the columns of degree > D: None | D | (D, F) (dcace.block_ridge)
    "top_degree_ridge_grid": tuple(10.0 ** np.arange(0, 15, 2)),   # ... the factors CV tries (largest: nearly off)
}


@dataclass
class _Pass1:
    Bsum: np.ndarray     # (n, D)
    counts: np.ndarray   # (n, S)
    N: np.ndarray        # (n,)
    E: np.ndarray        # (n,) total energies
    e_ref: np.ndarray    # (S,)
    yE: np.ndarray       # (n,) centred energy per atom

    @property
    def P(self):   # (None on the ranks other than 0 of an MPI fit, which keep no descriptor rows)
        return None if self.Bsum is None else self.Bsum / self.N[:, None]


def _progress(it, total, desc, enabled):
    return cost.progress(it, total, desc, enabled)


def _frame_error(frame, exc):
    return DataError(f"{frame.where}: {exc}")


def _threaded_map(fn, frames, threads):
    """Ordered map of fn over frames with a bounded look-ahead (deterministic order)."""
    if threads <= 1:
        for f in frames:
            yield f, fn(f)
        return
    with ThreadPoolExecutor(threads) as ex:
        pending = []
        it = iter(frames)
        for f in it:
            pending.append((f, ex.submit(fn, f)))
            if len(pending) >= 2 * threads:
                break
        while pending:
            f, fut = pending.pop(0)
            res = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, ex.submit(fn, nxt)))
            yield f, res


#: structures whose descriptor rows a rank sends rank 0 at a time in pass 1 of an MPI fit (its memory: one round)
ROWS_PER_ROUND = 256


def _descriptor_pass(basis, frames, progress, threads, desc="descriptors", ranks=None, blocks=None, lean=False,
                     record=None):
    """(Bsum (n, D), counts (n, S)); with ranks/blocks each rank computes its blocks' structures and
    every rank gets all rows (``dcace.parallel``) -- with ``lean``, all rows of Bsum on rank 0 only (sent
    there in rounds as the pass goes), None on the other ranks, and counts on every rank.  record(i, frame) is called for each
    of this rank's structures as the pass reads it (frames read again for every pass, ``dcace.restream``:
    what else the fit needs of the frame is taken then)."""
    S, K = basis.n_species, basis.n_features
    n = len(frames)
    ranks = ranks or Ranks(None)
    mine = np.arange(n) if blocks is None else \
        np.concatenate([blocks[b] for b in ranks.own_blocks(blocks)] or [np.zeros(0, int)])
    R = ROWS_PER_ROUND if lean else max(1, len(mine))   # lean: the rows go to rank 0 a round at a time
    Bsum = np.zeros((min(R, len(mine)), S * K))
    full = np.zeros((n, S * K)) if lean and ranks.is_root else None
    rounds = ranks.rounds(len(mine), R) if lean else 0
    counts = np.zeros((len(mine), S))
    errors = []

    def work(fr):
        try:
            return basis.descriptor_sums(fr.atoms)
        except ValueError as exc:
            return exc

    it = _threaded_map(work, restream.own_frames(frames, mine), threads)
    for j, (fr, res) in enumerate(_progress(it, len(mine), desc, progress)):
        if lean and j and j % R == 0:   # a round's rows to rank 0 (they are pickled now: the buffer is free)
            ranks.rows_round(mine[j - R:j], Bsum, full)
            Bsum.fill(0.0)
            rounds -= 1
        if record is not None:
            record(int(mine[j]), fr)
        if isinstance(res, Exception):
            errors.append((int(mine[j]), str(_frame_error(fr, res))))
            continue
        Bsum[j % R] = res[0].ravel()
        counts[j] = res[1]
    if lean:   # the last round, then empty ones as long as another rank has rounds to send
        last = len(mine) - (len(mine) - 1) // R * R if len(mine) else 0
        for k in range(rounds):
            ranks.rows_round(mine[len(mine) - last:] if k == 0 else mine[:0], Bsum[:last] if k == 0 else Bsum[:0], full)
    ranks.check(errors)
    if lean:   # rank 0: every row; the others keep none (pass 2 takes a structure's row from its fitting rows)
        return full, ranks.allgather_rows(mine.tolist(), [counts], n)[0]
    return tuple(ranks.allgather_rows(mine.tolist(), [Bsum, counts], n))


def _fold_blocks(n, fixed, seed, k_folds, bsize, offset):
    """(folds (n,), blocks): seeded folds (a state's, then the new structures'), and the fixed blocks of
    <= batch_size structures, the units of work and of summation of passes 1 and 2 (dcace.parallel;
    the state's structures and the new ones in separate blocks, so that a refit adds exactly the
    blocks a from-scratch fit adds after the state's).  Known from n alone, before any frame is read."""
    split = n if fixed is None else fixed.n          # the state's structures, which a reuse fit adds first
    if fixed is None:
        rng = np.random.default_rng(seed)
        folds = np.empty(n, dtype=int)
        folds[rng.permutation(n)] = np.arange(n) % k_folds
    else:   # the state's folds, then deterministic folds for the structures after them
        folds = _fit_state.extended_folds(fixed, seed, n, k_folds)
    blocks = [b + split for b in fit_blocks(folds[split:], max(1, bsize))]
    if split > offset:
        blocks = fit_blocks(folds[:split], max(1, bsize)) + blocks
    return folds, blocks


def _residual(ranks, dataset, baseline, elements=None):
    """residual_dataset, collectively: a frame that fails on the rank holding it fails every rank."""
    if dataset is None:
        return None
    errors = []
    if isinstance(dataset.frames, restream.StreamedFrames):   # subtracted again as each pass parses a frame
        out = restream.residual(dataset, lambda fr: residual_frame(fr, baseline, elements), errors)
    else:
        out = residual_dataset(dataset, baseline, elements, errors=errors)
    ranks.check(errors)
    return out


def _reference_energies(E, counts, weights=None, fixed=None):
    """Per-species e_ref minimising sum_S w_S^2 ((E - e_ref.n)/N)^2 (species absent get 0); species
    with a finite value in `fixed` (S,) keep it."""
    N = counts.sum(axis=1)
    w = np.ones(len(E)) if weights is None else np.asarray(weights, dtype=float)
    fx = np.full(counts.shape[1], np.nan) if fixed is None else np.asarray(fixed, dtype=float)
    known = np.isfinite(fx)
    X = counts / N[:, None]
    present = ((X * (w[:, None] > 0)).max(axis=0) > 0) & ~known
    e = np.where(known, fx, 0.0)
    if present.any():
        sol, *_ = np.linalg.lstsq(w[:, None] * X[:, present], w * (E - counts @ e) / N, rcond=None)
        e[present] = sol
    return e


def isolated_atom_energies(frames, elements, e0, energies=None):
    """(S,) isolated-atom energies (nan where unknown) from e0= or from isolated_atom frames (their
    `energies`, default the frames' own)."""
    fixed = np.full(len(elements), np.nan)
    notes = []
    for j, fr in enumerate(frames):
        if fr.config_type == "isolated_atom" and fr.n_atoms == 1:
            fixed[elements.index(fr.first_symbol)] = fr.energy if energies is None else energies[j]
    if np.isfinite(fixed).any():
        notes.append("isolated-atom energies from the isolated_atom frames: " + ", ".join(
            f"{el} {v:.6f} eV" for el, v in zip(elements, fixed) if np.isfinite(v)))
    for el, v in dict(e0 or {}).items():
        if el not in elements:
            raise ValueError(f"e0 names {el!r}, which is not one of the elements {elements}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"e0: {el}={v!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"e0: {el}={v!r} must be finite")
        fixed[elements.index(el)] = v
    return fixed, notes


def _structure_terms(fr, r, wF, wS, weight):
    """One structure's force and stress terms of the normal equations (A, v, yy) times its weight^2,
    and (Psi, sigma, V/N) for the selection's stress errors (None without stress)."""
    Phi = r.forces
    f = fr.forces.ravel()
    A = (wF * wF) * (Phi.T @ Phi)
    v = (wF * wF) * (Phi.T @ f)
    yy = (wF * wF) * float(f @ f)
    stress = None
    if fr.stress is not None and r.stress is not None:
        scale = r.volume / fr.n_atoms
        Psi = r.stress * scale
        sig = fr.stress * scale
        A += (wS * wS) * (Psi.T @ Psi)
        v += (wS * wS) * (Psi.T @ sig)
        yy += (wS * wS) * float(sig @ sig)
        stress = (r.stress.copy(), fr.stress, scale)
    w2 = weight * weight   # the frame's weight multiplies all its rows
    return w2 * A, w2 * v, w2 * yy, stress


class _Rows:
    """Per-structure fitting statistics (pass 2 and test evaluation)."""

    def __init__(self, basis, wF, wS):
        self.basis = basis
        self.wF, self.wS = wF, wS
        self.wF2 = wF * wF
        self.wS2 = wS * wS
        self.kept = {}   # (file, frame) -> rows computed by the cost estimate, handed to pass 2 once
        # (not id(frame): frames parsed again for every pass, dcace.restream, are new objects)

    def __call__(self, fr):
        kept = self.kept.pop((fr.source, fr.index), None)
        if kept is not None:
            return kept
        try:
            r = self.basis.fitting_rows(fr.atoms)
        except ValueError as exc:
            return exc
        return r

    def keep(self, fr):
        """Rows of fr, kept for pass 2 (the cost estimate's sample is not computed twice)."""
        r = self(fr)
        self.kept[(fr.source, fr.index)] = r
        return r


def fit(train, *, elements, cutoff: float, body_order: int = 4, max_degree: float = 12,
        experts="auto", test=None, ridge: float | None = None, energy_weight: float | None = None,
        force_weight: float | None = None, stress_weight: float | None = None,
        energy_key: str = "energy", forces_key: str = "forces", stress_key: str | None = "stress",
        virial_key: str | None = None, seed: int = 0, cv_folds: int | None = None,
        max_experts: int | None = None, temperatures=None, pca: bool = True,
        committee: str = "joint", regularise: str = "global", agreement: float = 0.0, compare: bool = True,
        progress: bool = True, threads: int | None = None, memory_budget_gb: float | None = None,
        inner_cutoff: float = 0.5, w_L: float = 1.5, keep_arrays: bool = False,
        batch_size: int | None = None, verbose: bool = False, baseline: str | None = "zbl",
        core_range=None, weights=None, weight_key: str = "weight", e0=None,
        repulsion_restraints: float | None = None, anchors: float | str | None = None, comm=None, state=None, reuse=None, max_degree_blocks=None,
        chemical_channels: int | None = None, gate: str = "structure",
        shared_one_body: bool | None = None, chemical_embedding=None, block_ridge=None,
        degree_ridge=None, gate_range: float | None = None, gate_body_order: int | None = None,
        frames_budget_gb: float | None = None, top_degree_ridge=None) -> Potential:
    """Fit a linear (``experts=1``) or divide-and-conquer ACE potential.

    Parameters (defaults in ``dcace.pipeline.DEFAULTS``)
    ----------
    train, test : path, list of paths, ``ase.Atoms`` list or :class:`dcace.data.Dataset`.
    elements, cutoff, body_order, max_degree : the ACE basis (see ``dcace.ACEBasis``).
    experts : ``"auto"`` (M = 1..max_experts and tau by k-fold CV) or an integer M (tau by CV).
    ridge : ridge parameter (dimensionless, on scaled columns); None = chosen by CV.
    energy_weight, force_weight, stress_weight : row weights (see the module docstring).
    committee : ``"joint"`` (default; all experts fitted together on the combined model's energies,
        conservative forces and stresses) or ``"independent"`` (the paper: each expert on its
        cluster only).
    regularise : ``"global"`` (default; experts ridge toward the global linear solution, so a
        committee with a strong ridge is the linear model) or ``"zero"`` (ridge toward 0).
    agreement : weight kappa of an optional penalty kappa wE^2 sum_S (1 - w_m(S)) ((E_m - E_lin)/N)^2
        that keeps each expert's energy near the global model's on training structures the gate
        does not give it (bounds gate-gradient forces of large committees; costs accuracy, so 0 by
        default -- CV rejects committees whose held-out forces blow up).
    compare : also fit and report the paper's variant (independent experts, eq. 8 gate).
    keep_arrays : keep per-structure predictions for plots in ``pot.report.arrays``.
    baseline : ``"zbl"`` (default: the ZBL screened-nuclear repulsion below the data's shortest
        distances, the experts fitted on the residual; ``dcace.baseline``) or None.
    weights : per-``config_type`` weights, ``{"AIMD-NVT": 0.5, "Surface": 2}`` (or
        ``{"config_type": {...}}``), multiplying all rows (energy, forces, stress) of those frames,
        times each frame's own ``atoms.info[weight_key]`` (default 1). Reported errors stay
        unweighted; the CV loss that selects the model is weighted.
    e0 : isolated-atom energies ``{"Ti": -1.23, "Al": -0.45}`` (eV): the one-body terms are fixed to
        them instead of fitted. Without it, single-atom frames with ``config_type = isolated_atom``
        give them; species with neither get least-squares reference energies on atom counts.
    core_range : where ZBL hands over to ACE: None (from the data's shortest distance per pair),
        ``(lo, hi)`` in Å for every pair, or ``{"Ti-Al": (lo, hi), ...}``.
    shared_one_body : every expert of a committee takes the linear model's one-body terms (one
        free-atom energy per element whatever the gate) instead of its own (default False:
        measured in docs/short-range.md, it repairs the Si committee's dimer but costs the body
        order 2 and 3 committees up to 2x in test error).
    repulsion_restraints : weight (x force_weight) of the dimer restraints that make every pair's
        dimer repel between the bottom of its core window and its shortest training distance
        (``dcace.restraints``); 0 = off. Only with the built-in baseline.
    anchors : weight of the off-data anchors of structure-gate committees (``dcace.anchors``; joint, and
        independent experts with ``regularise="global"``):
        compressed and rattled copies of training frames, free atoms and dimers, on which every expert
        of a committee is fitted to follow the linear model, so that off the data the gate does not hand a
        structure to an expert that nothing constrains there (default 0.03, docs/short-range.md); 0 = off;
        ``"auto"``: the smallest weight of ``DEFAULTS["anchors_auto_grid"]`` whose committee passes the
        dimer, compression and rattle probes (``dcace.anchor_choice``; the grid, every weight's verdicts
        and CV loss in ``report.selection["anchors_auto"]``, the weight in ``settings["anchors"]``).
        A fit state keeps them: a refit and a ``reuse=`` fit use the state's (``dcace.state_anchors``).
    max_degree_blocks : ``{2: 10, 3: 8}``: a smaller max_degree for functions coupling that many
        distinct species (``dcace.basis_spec.check_degree_blocks``).
    chemical_channels : C, the species-embedded basis (K as for C species; ``dcace.ACEBasis``).
    chemical_embedding : its W: ``"cosine"`` (fixed), ``"pca"`` or ``"fit"`` (from the training data,
        ``dcace.embedding``), or a C x S matrix; stored in the file.
    block_ridge : a ridge per species block (``dcace.block_ridge``): None (one ridge), a grid of factors
        (CV sets each block's factor on the ridge) or ``{b: factor}``; explicit bases only.
    degree_ridge : the smoothness prior (``dcace.block_ridge``): the ridge of a feature of degree d is
        lam (d / smallest d)^p; p a number, or a grid of exponents to choose from by CV; None = off.
    top_degree_ridge : the ridge of the top degree shell (``dcace.block_ridge``): D (the columns of
        degree > D get lam x f, f by CV from ``DEFAULTS["top_degree_ridge_grid"]`` after lam is chosen
        with the largest f, so the degree-D model is nested) or (D, f) (fixed); None = off.
    gate : ``"structure"`` (default; the paper's gate on the structure's mean descriptor), ``"atom"``
        (a local gate on each atom's own descriptor, ``dcace.local_gate``: M experts per species,
        ``experts="auto"`` means M = 4; tau and the committee ridge by CV; no fit state yet) or
        ``"neighbourhood"`` (a local gate on the smooth average p_i of B over the atom and its
        same-species neighbours within ``gate_range``, ``dcace.neighbourhood_gate``; fitted as the atom
        gate) or ``"auto"`` (all; the lowest CV loss among linear, structure, atom and neighbourhood
        gate wins, all in ``report.selection["gate_cv"]``).
    gate_range : the neighbourhood gate's r_g in A, 0 < r_g <= cutoff (default: the cutoff).
    gate_body_order : the neighbourhood gate's PCA on the columns of body order <= this only (e.g. 3:
        its 2+3-body part, issue 11's best); 0 or None: all columns.

    threads : threads per process (default: the cores this process may use, shared among the ranks).
    comm : an mpi4py communicator (``MPI.COMM_WORLD``): every rank streams through the data keeping only
        its own blocks of structures, which it featurises and evaluates (passes 1-3, the grade); rank 0
        selects and solves, every rank returns the same potential, and the file is byte-identical to
        the serial fit's (``dcace.parallel``, ``dcace.pass3``; ``pip install "dcace[mpi]"``).
    frames_budget_gb : with ``comm``, reading extended XYZ files: a rank holds its own parsed frames between
        passes if they take at most this many GB (``dcace.restream.held_bytes``), else it holds none and
        parses them again for every pass (``dcace.restream``; 0 = always).  Either way the same file.
    state : path: also write the fit state (``dcace.state``, docs/fit-state.md) that
        ``dcace.refit(new, resume=state)`` continues from; its size is in ``pot.report.selection["state"]``.
    reuse : a fit state (path or ``FitState``): a from-scratch fit whose first structures are the
        state's, with the state's folds, clusters, e_ref and short-range core (the structures after
        them get folds and clusters as in a refit) -- the fit an incremental refit equals to round-off.

    Before pass 2 the fit prints (with ``progress``) K, the unknowns, the memory of every
    candidate and an estimated pass-2 time (``dcace.cost``; also in ``report.cost``).

    Returns the fitted :class:`dcace.Potential`; its ``report`` attribute is a
    :class:`dcace.report.FitReport` (errors, selection, timings; ``timings["ranks"]``, ``["threads"]``).
    """
    kw = {k: v for k, v in locals().items() if k != "comm"}
    ranks = as_ranks(comm)
    if threads is None:
        kw["threads"] = default_threads(ranks.size)
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    with single_threaded_blas():
        return ranks.share(lambda: _fit(**kw, ranks=ranks))


def _fit(train, *, elements, cutoff, body_order, max_degree, experts, test, ridge, energy_weight,
         force_weight, stress_weight, energy_key, forces_key, stress_key, virial_key, seed, cv_folds,
         max_experts, temperatures, pca, committee, regularise, agreement, compare, progress, threads,
         memory_budget_gb, inner_cutoff, w_L, keep_arrays, batch_size, verbose, baseline, core_range, weights,
         weight_key, e0, repulsion_restraints, ranks, anchors=None, state=None, reuse=None, resume=None,
         max_degree_blocks=None, chemical_channels=None, gate="structure", shared_one_body=None,
         chemical_embedding=None, block_ridge=None, degree_ridge=None, gate_range=None, gate_body_order=None,
         frames_budget_gb=None, top_degree_ridge=None):
    t_start = time.perf_counter()
    timings = {"ranks": ranks.size, "threads": int(threads)}
    progress = progress and ranks.is_root
    e0_given = e0   # the user's isolated-atom energies (the name e0 is the fitted one-body array below)
    wE = float(DEFAULTS["energy_weight"] if energy_weight is None else energy_weight)
    wF = float(DEFAULTS["force_weight"] if force_weight is None else force_weight)
    wS = float(DEFAULTS["stress_weight"] if stress_weight is None else stress_weight)
    for name, v in (("energy_weight", wE), ("force_weight", wF), ("stress_weight", wS)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if wE == 0 and wF == 0:
        raise ValueError("energy_weight and force_weight cannot both be 0")
    w_rest = float(DEFAULTS["repulsion_restraints"] if repulsion_restraints is None else repulsion_restraints)
    if not (math.isfinite(w_rest) and w_rest >= 0):
        raise ValueError(f"repulsion_restraints must be a finite number >= 0, got {repulsion_restraints}")
    w_anchor, auto_anchors = anchor_weight(DEFAULTS["anchors"] if anchors is None else anchors,
                                           DEFAULTS["anchors_auto_grid"])
    k_folds = int(DEFAULTS["cv_folds"] if cv_folds is None else cv_folds)
    max_M = int(DEFAULTS["max_experts"] if max_experts is None else max_experts)
    temps = tuple(float(t) for t in (DEFAULTS["temperatures"] if temperatures is None else temperatures))
    budget = float(DEFAULTS["memory_budget_gb"] if memory_budget_gb is None else memory_budget_gb) * 2**30
    frames_budget = float(DEFAULTS["frames_budget_gb"] if frames_budget_gb is None else frames_budget_gb)
    if not (math.isfinite(frames_budget) and frames_budget >= 0):
        raise ValueError(f"frames_budget_gb (--frames-budget) must be a finite number >= 0, got {frames_budget_gb!r}")
    bsize = int(DEFAULTS["batch_size"] if batch_size is None else batch_size)
    if committee not in ("joint", "independent"):
        raise ValueError(f"committee must be 'joint' or 'independent', got {committee!r}")
    if regularise not in ("zero", "global"):
        raise ValueError(f"regularise must be 'zero' or 'global', got {regularise!r}")
    if any(not (t > 0 and math.isfinite(t)) for t in temps) or not temps:
        raise ValueError(f"temperatures must be positive numbers, got {temps}")
    gate_kind = check_gate_option(gate)
    if gate_kind != "structure" and ranks.size > 1:   # fit_atom_gate reads every structure in one process
        raise ValueError(f"gate={gate_kind!r} (--gate) is not available in an MPI fit yet: the atom gate's "
                         f"clustering and rows read every training structure in one process; fit it without "
                         f"mpiexec (threads), or use gate='structure'")
    M_atom, atom_fit = None, None
    local_kinds = {"atom": ["atom"], "neighbourhood": ["neighbourhood"], "auto": ["atom", "neighbourhood"]}.get(gate_kind, [])
    if "neighbourhood" in local_kinds:
        gate_range = check_range(gate_range, cutoff)
        gate_body_order = gate_columns_check(gate_body_order)
    if gate_kind in LOCAL_GATES:   # the structure machinery fits the linear model only; local_gate the rest
        M_atom = _atom_experts(experts, state, reuse, resume, gate_kind)
        experts, compare = 1, False
    elif gate_kind == "auto":   # the structure machinery as asked, then the local gates; CV picks
        M_atom = _atom_experts(experts, state, reuse, resume, gate_kind)
    if experts == "auto":
        Ms = list(range(1, max_M + 1))
    else:
        try:
            M_fixed = int(experts)
        except (TypeError, ValueError):
            raise ValueError(f"experts must be 'auto' or a positive integer, got {experts!r}") from None
        if M_fixed < 1 or M_fixed != experts and str(M_fixed) != str(experts):
            raise ValueError(f"experts must be 'auto' or a positive integer, got {experts!r}")
        Ms = [1, M_fixed] if M_fixed > 1 else [1]
    if k_folds < 2:
        raise ValueError(f"cv_folds must be >= 2, got {k_folds}")
    if ridge is not None and not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")

    keys = dict(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key, virial_key=virial_key)
    core = CoreSettings(baseline, core_range)
    fixed = _fit_state.fixed_parts(resume, reuse)   # state whose folds, clusters, e_ref, core stay (or None)
    if auto_anchors and fixed is not None:   # the state fixes the anchors, their weight included
        w_anchor, auto_anchors = float(fixed.settings.get("anchors", 0.0)), False
    try:   # K is counted in ~1 s, before the (much slower) basis build and any pass over the data
        from .basis_spec import count_features

        n_el = 1 if isinstance(elements, str) else len(elements)
        K_count = count_features(n_el, body_order, max_degree, w_L=w_L, max_degree_blocks=max_degree_blocks,
                                 chemical_channels=chemical_channels)
    except (TypeError, ValueError):
        K_count = None   # bad settings: ACEBasis below names them
    if K_count is not None:
        cost.check_linear_memory(n_el, K_count, k_folds, budget)
    elements = ACEBasis(elements, cutoff, 2, 1, inner_cutoff=inner_cutoff, w_L=w_L).elements  # validates
    basis_blocks = {str(b): float(d) for b, d in sorted(
        check_degree_blocks(max_degree_blocks, len(elements), body_order, max_degree).items())} or None
    chemical_channels = check_chemical_channels(chemical_channels, len(elements))
    block_ridge = check_block_ridge(DEFAULTS["block_ridge"] if block_ridge is None else block_ridge,
                                    len(elements), body_order, chemical_channels)
    degree_ridge = check_degree_ridge(DEFAULTS["degree_ridge"] if degree_ridge is None else degree_ridge)
    top_degree_ridge = check_top_degree_ridge(DEFAULTS["top_degree_ridge"] if top_degree_ridge is None
                                              else top_degree_ridge, float(max_degree))
    embedding_kind = check_embedding(DEFAULTS["chemical_embedding"] if chemical_embedding is None
                                     else chemical_embedding, chemical_channels, len(elements))
    if isinstance(embedding_kind, str) and embedding_kind != "cosine" and ranks.size > 1:
        raise ValueError(f"chemical_embedding (--chemical-embedding) {embedding_kind!r} is computed from all "
                         "training structures in one process: not available in an MPI fit yet (use 'cosine')")
    settings = {
        "baseline": core.baseline if core.external is None else core.external.describe(),
        "core_range": _jsonable_range(core.core_range),
        "repulsion_restraints": w_rest if core.baseline == "zbl" else None,
        "shared_one_body": bool(DEFAULTS["shared_one_body"] if shared_one_body is None else shared_one_body),
        "elements": elements, "cutoff": float(cutoff), "body_order": int(body_order),
        "max_degree": float(max_degree), "inner_cutoff": float(inner_cutoff), "w_L": float(w_L),
        "max_degree_blocks": basis_blocks, "chemical_channels": chemical_channels,
        "experts": experts if experts == "auto" else int(experts), "committee": committee,
        "regularise": regularise, "agreement": float(agreement), "ridge": ridge, "energy_weight": wE, "force_weight": wF,
        "stress_weight": wS, "seed": int(seed), "cv_folds": k_folds, "max_experts": max_M,
        "weights": None if weights is None else _config_weights(weights), "weight_key": weight_key,
        "e0": None if e0_given is None else {k: float(v) for k, v in dict(e0_given).items()},
        "temperatures": list(temps), "pca": bool(pca), **keys,
    }
    if block_ridge is not None:   # (absent when off: the settings, files and states of fits before it)
        settings["block_ridge"] = block_ridge_stored(block_ridge)
    if degree_ridge is not None:
        settings["degree_ridge"] = list(degree_ridge) if isinstance(degree_ridge, tuple) else degree_ridge
    if top_degree_ridge is not None:
        settings["top_degree_ridge"] = stored_top(top_degree_ridge)
    w_anchor, anchor_off = state_anchors.fit_weight(fixed, w_anchor)   # a state before version 3: none
    if anchor_off is None:   # (else the settings keep no 'anchors' key, as that state's)
        settings["anchors"] = w_anchor
    if gate_kind in LOCAL_GATES:
        settings.update(gate=gate_kind, experts=M_atom)
    elif gate_kind == "auto":
        settings.update(gate=gate_kind, atom_experts=M_atom)
    if "neighbourhood" in local_kinds:
        settings.update(gate_range=gate_range, gate_body_order=int(gate_body_order or 0))
    if chemical_channels is not None and not (isinstance(embedding_kind, str) and embedding_kind == "cosine"):
        settings["chemical_embedding"] = (embedding_kind if isinstance(embedding_kind, str)
                                          else np.asarray(embedding_kind).tolist())   # (cosine: as before)
    if fixed is not None and "chemical_embedding_weights" in fixed.settings:   # the state's W is kept
        settings["chemical_embedding_weights"] = fixed.settings["chemical_embedding_weights"]
    if reuse is not None:
        fixed.check_settings(settings, "fit(reuse=...)")
    t0 = time.perf_counter()
    offset = 0 if resume is None else resume.n      # a refit reads and adds only the new structures ...
    plan = None   # MPI: (folds, blocks) from the frame count; each rank keeps only its blocks' frames
    if ranks.size > 1 and not isinstance(train, Dataset):
        plan = _fold_blocks(count_frames(train) + offset, fixed, seed, k_folds, bsize, offset)
        keep = restream.OwnMask(len(plan[0]) - offset, [int(i) - offset for b in ranks.own_blocks(plan[1])
                                                        for i in plan[1][b]])
    # MPI: each rank parses only the frames it keeps of extended XYZ files (dcace.stream; None: other
    # sources, read_data parses every frame on every rank, keeping its own)
    data = train if isinstance(train, Dataset) else None
    if data is None and plan is not None:
        # streamed: a rank whose frames do not fit frames_budget holds none of them between passes, each pass
        # parses them again (dcace.restream; not for a state's fits, whose refit code reads the frames as a list)
        data = read_own(ranks, train, keep, elements=elements, weight_key=weight_key, streamed=fixed is None,
                        hold_below=frames_budget * 2**30, **keys)
    if data is None:
        data = read_data(train, elements=elements, weight_key=weight_key, keep=None if plan is None else keep, **keys)
    test_data = None
    if test is not None:   # the test set is evaluated on rank 0
        test_keep = EVERY if ranks.is_root else set()
        test_data = test if isinstance(test, Dataset) else None
        if test_data is None and ranks.size > 1:
            test_data = read_own(ranks, test, test_keep, elements=elements, weight_key=weight_key, **keys)
        if test_data is None:
            test_data = read_data(test, elements=elements, weight_key=weight_key,
                                  keep=None if ranks.is_root else set(), **keys)
    timings["read"] = time.perf_counter() - t0
    timings["streamed"] = int(isinstance(data.frames, restream.StreamedFrames))   # (this rank's frames)
    t0 = time.perf_counter()
    core_notes, window, short_range, restraint_rows = [], None, None, None
    if core.baseline == "zbl":
        shortest, rho_max = ranks.extremes(*neighbour_extremes(restream.kept_atoms(data), elements, cutoff)) \
            if fixed is None else fixed.core()
        lo, hi, core_notes = core_window(elements, shortest, cutoff, inner_cutoff, core.core_range)
        if resume is not None:   # the core stays the state's: say where new data reaches into it
            core_notes += resume.core_check(data.frames, elements, cutoff, (lo, hi))
        window = (lo, hi)
    t_basis = time.perf_counter()
    W_chem = None
    if chemical_channels is not None:   # a refit / reuse keeps the state's W (its normal equations use it)
        kind = settings.get("chemical_embedding_weights", embedding_kind)
        W_chem = choose_embedding(kind, (f for _, f in data.kept), elements, cutoff, chemical_channels,
                                  max_degree=max_degree, inner_cutoff=inner_cutoff, w_L=w_L, core_window=window,
                                  energy_weight=wE, force_weight=wF)
        if "chemical_embedding" in settings:   # data-driven or given: the W a refit must keep
            settings["chemical_embedding_weights"] = W_chem.tolist()
    basis = ACEBasis(elements, cutoff, body_order, max_degree, inner_cutoff=inner_cutoff, w_L=w_L,
                     core_window=window, max_degree_blocks=max_degree_blocks, chemical_channels=chemical_channels,
                     embedding=W_chem)
    timings["basis"] = time.perf_counter() - t_basis
    data_orig, test_orig = data, test_data
    if core.external is not None:   # Delta-learning on the user's baseline: the file holds the experts
        data = data_orig = _residual(ranks, data, core.external, elements)
        test_data = test_orig = _residual(ranks, test_data, core.external, elements)
        core_notes.append("fitted on DFT minus the external baseline " + json.dumps(core.external.describe())
                          + "; the errors reported are those of baseline + this potential")
    if core.baseline == "zbl":   # the experts learn DFT minus the baseline (paper eq. 10)
        S0, K0 = basis.n_species, basis.n_features
        short_range = density_core(rho_max, cutoff)
        core_notes.append("short-range core: ZBL below the pair windows " + ", ".join(
            f"{elements[a]}-{elements[b]} {lo[a, b]:.3f}-{hi[a, b]:.3f} A (shortest in the data {shortest[a, b]:.3f})"
            for a in range(len(elements)) for b in range(a, len(elements)))
            + "; ACE handed to ZBL above core densities " + ", ".join(
            f"{el} {r:.4g}" for el, r in zip(elements, short_range["rho_lo"])) + " (the densest training atoms)")
        base_pot = Potential.from_parts(basis, np.zeros((1, S0, K0)), np.zeros((1, S0)), None, {},
                                        short_range=short_range)
        data = _residual(ranks, data, base_pot)
        test_data = _residual(ranks, test_data, base_pot)
        if w_rest > 0:
            dimers = restraint_dimers(elements, shortest, lo, cutoff)
            restraint_rows = restraint_batch(basis, base_pot, dimers, wF, w_rest) if dimers else None
            core_notes.append(f"repulsion restraints: {len(dimers)} dimers between each pair's core window and its "
                              f"shortest training distance, forces fitted to ZBL's with weight {w_rest:g} x the force "
                              f"weight (--repulsion-restraints)")
    timings["baseline"] = time.perf_counter() - t0 - timings["basis"]   # windows, densities, labels - baseline
    n = len(data) + (0 if resume is None else resume.n)   # a refit reads only the new structures
    if plan is not None and len(plan[0]) != n:
        raise DataError(f"{', '.join(f['name'] for f in data.files)}: counted {len(plan[0]) - offset} frames before reading, but read "
                        f"{len(data)} (a file changed while it was read?)")
    S, K = basis.n_species, basis.n_features
    D, Dp = S * K, S * K + S
    if n < k_folds:
        raise ValueError(f"{n} training structures are too few for {k_folds}-fold cross-validation")
    M_allowed = max(1, n // (2 * k_folds))
    if experts != "auto" and M_fixed > M_allowed:
        raise ValueError(f"--experts {M_fixed} is too many for {n} training structures with {k_folds}-fold "
                         f"cross-validation: the largest allowed is M = {M_allowed} (every expert needs "
                         f"2 x cv_folds = {2 * k_folds} structures); give --experts {M_allowed} or fewer, or "
                         f"more training data")
    Ms = [M for M in Ms if M <= M_allowed or M == 1] if fixed is None else fixed.Ms
    notes = list(data.notes) + (list(test_data.notes) if test_data else []) + core_notes
    if anchor_off and (committee == "joint" or regularise == "global"):   # a state before version 3
        notes.append(anchor_off)
    if experts == "auto" and max_M > M_allowed:
        notes.append(f"--experts auto tried M <= {M_allowed}, not up to --max-experts {max_M}: {n} training "
                     f"structures allow at most n / (2 x {k_folds} folds) experts")

    # ---------------------------------------------------------------- pass 1: descriptor sums
    t0 = time.perf_counter()
    folds, blocks = _fold_blocks(n, fixed, seed, k_folds, bsize, offset) if plan is None else plan
    # blocks of the state's structures in a reuse= fit (a refit has their sums; dcace.state_pack)
    n_kept = len(fit_blocks(folds[:fixed.n], max(1, bsize))) if reuse is not None else 0
    # pass 2 accumulates in batches whose work arrays (2B x D'^2) stay below ~64 MiB
    bsize = max(1, min(bsize, int(64 * 2**20 // (16 * Dp * Dp))))
    # lean: the ranks other than 0 keep none of the (n, D) rows and none of what rank 0 alone uses
    # (standardiser, PCA, clusterings, hashes): their memory does not grow with n x D
    lean = ranks.size > 1 and fixed is None
    labels = []   # (i, energy, hash, periodic) of this rank's structures, taken as pass 1 reads them
    need_hash = state is not None or fixed is not None   # (the state's record of the frames, a reuse's check)
    # streamed frames: pass 1 reads the residual energies the residual check kept, not the baseline again
    p1_frames = data.frames.labels_only() if isinstance(data.frames, restream.StreamedFrames) and not need_hash \
        else data.frames
    Bsum, counts = _descriptor_pass(basis, p1_frames, progress, threads, "pass 1/3 descriptors", ranks,
                                    [b - offset for b in blocks], lean=lean,
                                    record=lambda i, fr: labels.append((i, fr.energy, _fit_state.frame_hash(fr)
                                                                        if need_hash else None,
                                                                        bool(np.all(fr.atoms.pbc)))))
    # this rank's structures (positions in data.frames: its blocks'); the labels and hashes of every
    # structure from the rank that owns it (the residual energies: FrameStubs have the raw ones)
    own = np.array(sorted(int(i) - offset for b in ranks.own_blocks(blocks) for i in blocks[b]), dtype=np.int64)
    E = np.array([e for _, e, *_ in ranks.allgather_indexed([(i, e) for i, e, *_ in labels])])
    hashes = [h for _, h in (ranks.gather_indexed if lean else ranks.allgather_indexed)(
        [(i, h) for i, _, h, _ in labels])] if need_hash else None
    own_periodic = [(i, p) for i, *_, p in labels]   # (--anchors auto's probe; not parsed again for it)
    del labels
    if resume is None:
        wts = frame_weights(data.frames, weights)
        e_fixed, e0_notes = isolated_atom_energies(data.frames, elements, e0_given, E)
    else:   # the state's structures first, then the new ones
        Bsum, counts, E, wts, hashes, e_fixed, e0_notes = resume.extend_pass1(Bsum, counts, E, data.frames, hashes)
    notes += e0_notes
    N = counts.sum(axis=1)
    e_ref = _reference_energies(E, counts, wts, e_fixed) if fixed is None else fixed.arrays["e_ref"]
    e_ref = ranks.bcast(e_ref)   # rank 0's numbers on every rank
    p1 = _Pass1(Bsum, counts, N, E, e_ref, (E - counts @ e_ref) / N)
    P = p1.P
    if lean and not ranks.is_root:   # rank 0's clusterings arrive below
        st = Z = V = clusterings = None
    elif fixed is None:
        st = fit_standardiser(P)
        Z = st(P)
        if pca:
            V = pca_projection(Z, variance=DEFAULTS["pca_variance"], max_components=DEFAULTS["pca_max_components"])
        else:
            V = np.eye(D)
        clusterings = {M: cluster(P, M, seed=seed, standardiser=st, projection=V) for M in Ms if M > 1}
    else:   # folds, standardiser, projection and clusters of the state; new structures join them
        if reuse is not None:
            fixed.check_prefix(hashes)
        folds_again, st, V, clusterings = fixed.fixed_pass1(P, seed, k_folds)
        assert np.array_equal(folds_again, folds)
        Z = st(P)
    clusterings = ranks.bcast(clusterings)
    anchor_atoms = None   # the sources of the committees' off-data anchors (dcace.anchors), from their ranks
    anchor_src = None     # (sources, ground): a state's are kept (dcace.state_anchors)
    if w_anchor > 0 and (committee == "joint" or regularise == "global") and len(clusterings) > 0:
        anchor_src = anchor_sources(N.tolist(), p1.yE.tolist()) if fixed is None else state_anchors.kept_sources(fixed)
    if anchor_src is not None and resume is None:   # a refit has H_a in the state
        spread, ground = anchor_src
        src = set(spread) | ({ground} - {None})
        got = dict(ranks.gather_indexed([(i, data.frames[i].atoms) for i in own if i in src]))   # rank 0 uses them
        anchor_atoms = ([got[i] for i in spread], got.get(ground)) if ranks.is_root else None
    probe_atoms = None   # --anchors auto: the rattle probe's frames (dcace.anchor_choice), to rank 0 (it selects)
    if auto_anchors and anchor_src is not None and resume is None:   # collective: every rank takes part
        periodic = dict(ranks.gather_indexed(own_periodic))
        pick = set(probe_indices([int(N[i]) * periodic[i] for i in range(n)], anchor_src)) if ranks.is_root else set()
        pick = ranks.bcast(pick)
        got = dict(ranks.gather_indexed([(i, data.frames[i].atoms) for i in own if i in pick]))
        probe_atoms = [got[i] for i in sorted(got)] if ranks.is_root else None
    timings["pass1"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- candidates and accumulators
    n_groups = 1 + sum(clusterings)
    independent_ok = 8 * k_folds * n_groups * Dp * Dp <= 0.5 * budget
    if not independent_ok:
        if committee == "independent":
            raise ValueError(f"independent experts for M = {sorted(clusterings)} need "
                             f"{8 * k_folds * n_groups * Dp * Dp / 2**30:.2f} GiB of normal equations, more than "
                             f"half the memory budget ({budget / 2**30:.2f} GiB); raise memory_budget_gb")
        notes.append("independent-expert comparison (the paper's fits) skipped: its normal equations would "
                     "exceed half the memory budget")
        compare = False
    # the global model, then one group per cluster of every clustering (from the labels, batch by batch)
    membership = LabelMembership(n, [(cl.labels, M) for M, cl in clusterings.items()] if independent_ok else [])
    groups = GroupAccumulator(k_folds, D, S, membership, wE)
    restraint = None if restraint_rows is None else RestraintRows(restraint_rows, D, S, membership.shape[1])
    cand = []
    for t in temps:      # priority: every M at the first temperature, then the others
        for M in Ms:
            if M > 1:
                cand.append((M, t))
    joint, skipped = {}, {}
    used = groups.nbytes
    for M, t in cand:
        if fixed is not None and (M, t) not in fixed.joint_keys:
            continue
        need = joint_nbytes(k_folds, M, Dp)
        if used + need > budget:
            skipped[(M, t)] = need
            notes.append(f"candidate M={M}, tau={t:g} skipped: its normal equations ({need / 2**20:.3g} MiB "
                         f"for {k_folds} folds) on top of the {used / 2**20:.3g} MiB already allocated "
                         f"({(used + need) / 2**20:.3g} MiB in total) exceed the memory budget "
                         f"({budget / 2**20:.3g} MiB, --memory-budget)")
            continue
        g = gate_dict(clusterings[M], t)
        joint[(M, t)] = JointAccumulator(k_folds, D, S, g, wE, lambda Pm, g=g: gate_weights(g, Pm)[:2])
        used += need

    rows_fn = _Rows(basis, wF, wS)
    counted = dict(batch_sizes=cost.pass2_batches([blocks[b] for b in ranks.own_blocks(blocks)], bsize),
                   n_blocks=len(blocks), n_folds=k_folds)   # what pass 2 will do, for its estimate
    cost_info = _announce_cost(basis, restream.sample_view(data.frames, own), rows_fn, groups, joint, skipped, k_folds,
                               groups.membership.shape[1], budget, bsize, P[[i + offset for i in own]], seed,
                               threads, progress, None if resume is None else resume.update_seconds,
                               counted) if ranks.is_root else {}

    # ---------------------------------------------------------------- pass 2: fitting rows
    t0 = time.perf_counter()
    stress_store = {}   # i -> (Psi (6, D), sigma (6,), V/N)
    if resume is not None:
        resume.restore(groups, joint)
        stress_store = resume.stress_store()
    # rank 0 keeps every structure's stress rows; another rank sends its blocks' with their partials
    outbox = stress_store if ranks.is_root else {}
    side = outbox if ranks.size > 1 else None

    def rows_and_terms(item):
        """One structure's fitting rows and their normal-equation terms (_structure_terms), times its
        weight squared: the per-structure work of pass 2, on the worker threads (numpy releases the GIL)."""
        i, fr = item
        r = rows_fn(fr)
        return r if isinstance(r, Exception) else (*_structure_terms(fr, r, wF, wS, wts[i]), r.energy)

    def block_batch(b, accs):
        """Block b's normal equations into the one-fold accumulators accs, batch by batch; its errors."""
        idx, errors, stats = blocks[b], [], []

        def flush():
            ix = np.array([x[0] for x in stats])
            B = np.stack([x[4] for x in stats])   # the descriptor sums of pass 1, from the fitting rows (same bits)
            bt = Batch(0, np.stack([x[1] for x in stats]), np.stack([x[2] for x in stats]),
                       np.array([x[3] for x in stats]),
                       np.concatenate([B, counts[ix]], axis=1) * (wts[ix] / N[ix])[:, None],
                       p1.yE[ix] * wts[ix], B / N[ix][:, None], ix, wts[ix])
            for acc in accs:
                acc.add(bt)
            stats.clear()

        items = zip(idx.tolist(), restream.own_frames(data.frames, idx - offset))   # parsed as the pass goes
        for (i, fr), res in _threaded_map(rows_and_terms, items, threads):
            if isinstance(res, Exception):
                errors.append((int(i), str(_frame_error(fr, res))))
                continue
            A, v, yy, stress, b = res
            if stress is not None:
                outbox[int(i)] = stress
            stats.append((int(i), A, v, yy, b))
            if len(stats) >= bsize:
                flush()
        if stats:
            flush()
        return errors

    bar = _progress(None, n, "pass 2/3 fitting rows", progress) if progress else None
    accs, tick = [groups, *joint.values()], None if bar is None else bar.update
    if n_kept:   # a reuse= fit: the state's blocks, then its sums in the stored form (as a refit reads them)
        accumulate_blocks(ranks, blocks[:n_kept], folds, accs, block_batch, tick, side)
        if ranks.is_root:
            canonical_sums(groups, joint)
    accumulate_blocks(ranks, blocks[n_kept:], folds, accs, lambda b, a: block_batch(b + n_kept, a), tick, side,
                      first=n_kept)
    if bar is not None:
        bar.close()
    rows_fn.kept.clear()   # sampled rows of structures another rank featurised
    if not ranks.is_root:   # rank 0 selects, solves and writes (dcace.parallel.Ranks.share); this rank
        pot, lin_pot, M_sel = pass3.receive_potentials(ranks)   # evaluates its structures in pass 3
        pass3.training_errors(ranks, data_orig.frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays,
                              threads, False)
        pass3.training_grade(ranks, basis, data.frames, own, counts, seed)
        return None
    timings["pass2"] = time.perf_counter() - t0
    cost_info["pass2_measured_s"] = timings["pass2"]

    # ---------------------------------------------------------------- selection
    t0 = time.perf_counter()
    from .selection import Selector

    anchor_rows, t_anchors = None, time.perf_counter()
    if anchor_atoms is not None and joint:
        few = [] if core.baseline != "zbl" else free_atoms_and_dimers(elements, shortest, window[0], cutoff)
        # --anchors auto: H_a at weight 1, scaled to each weight tried (dcace.anchor_choice)
        anchor_rows, anchor_note = _anchor_rows(basis, *anchor_atoms, few, wE, wF, wS, D, S, seed,
                                                1.0 if auto_anchors else w_anchor, bsize,
                                                "chosen by --anchors auto (below)" if auto_anchors else None)
        if reuse is not None:   # H_a in the form the state stores it, as the refit reads it
            state_anchors.canonical(anchor_rows)
        notes.append(anchor_note)
    elif anchor_src is not None and resume is not None and joint:
        anchor_rows, anchor_note = state_anchors.stored_rows(resume, Dp)
        notes += [anchor_note] * bool(anchor_note)
    timings["anchors"] = time.perf_counter() - t_anchors   # (part of the selection's time)

    def select(rows):
        """Selection (ridge, M, tau by CV) and the final solves with the off-data anchors `rows` (or None)."""
        sel = Selector(groups=groups, joint=joint, p1=p1, folds=folds, k=k_folds, D=D, S=S, wE=wE, wF=wF, wS=wS,
                       stress_store=stress_store, clusterings=clusterings, Z=Z, regularise=regularise,
                       kappa=float(agreement), weights=wts, fixed_one_body=np.isfinite(e_fixed), restraint=restraint,
                       shared_one_body=settings["shared_one_body"], anchors=rows)
        if fixed is not None:   # the ridge's column scaling stays the state's (so does its penalty metric)
            sel.sc = fixed.arrays["column_scale"]
        top_grid = DEFAULTS["top_degree_ridge_grid"]
        top = top_degree_start(sel, basis, top_degree_ridge, top_grid)   # lam with the top shell (all but) off
        lam, lam_table = sel.choose_ridge(ridge, DEFAULTS["ridge_grid"])
        column_choice = choose_column_ridge(sel, lam, basis, block_ridge, degree_ridge,   # dcace.block_ridge
                                            top=(top, top_degree_ridge, top_grid))
        lam_dc = lam if ridge is not None else max(lam, DEFAULTS["ridge_experts_floor"])
        cv_rows = sel.cv_all(lam, committee=committee, compare=compare, lam_dc=lam_dc)
        n_stage1 = len(cv_rows)
        chosen = sel.choose(cv_rows, committee=committee, experts=experts, parsimony=DEFAULTS["parsimony"])
        if chosen["M"] > 1 and ridge is None:
            lam_dc, extra = sel.refine_committee_ridge(chosen, lam, lam_dc, DEFAULTS["ridge_dc_factors"], committee)
            cv_rows += extra
        eq9 = sel.eq9(lam, Ms, chosen, lam_dc)
        theta_lin, models = _final_models(sel, chosen, lam, lam_dc, joint, committee, compare, clusterings, Z)
        return sel, lam, lam_table, lam_dc, cv_rows, n_stage1, chosen, eq9, theta_lin, models, column_choice

    def level_matched(basis, window, short_range, coef, e0, gate):
        """(basis, window, short_range, notes): the pair core level-matched to the fitted dimers (format
        version 4; baseline.core_shifts), or as given without the built-in core."""
        if short_range is None:
            return basis, window, short_range, []

        def with_core(sh, hi_top):   # the fitted potential with pair shifts sh and window tops hi_top
            b = basis if np.array_equal(hi_top, window[1]) else basis.with_core_window((window[0], hi_top))
            return Potential.from_parts(b, coef, e0, gate, {}, short_range=dict(short_range, pair_shift=sh))

        shift, hi_top, shift_notes = core_shifts(with_core, pure_zbl(elements, cutoff, inner_cutoff, w_L), basis,
                                                 shortest, movable=user_window_free(core.core_range, elements))
        if not np.array_equal(hi_top, window[1]):   # a window top raised towards the data (never onto it)
            window = (window[0], hi_top)
            basis = basis.with_core_window(window)
        sr = dict(short_range, pair_shift=shift)
        if sr.get("density_cutoff") is not None:   # the density wall's level and slope (format version 8)
            sr["density_wall"], wall_notes = density_wall(
                lambda x: Potential.from_parts(basis, coef, e0, gate, {}, short_range=x), sr, elements)
            shift_notes = shift_notes + wall_notes
        return basis, window, sr, shift_notes

    def candidate_potential(theta, gate):
        """The potential of solution theta (M x D') with the level-matched core (no metadata)."""
        c, e = theta[:, :D].reshape(-1, S, K), theta[:, D:] + e_ref[None, :]
        b, _, sr, _ = level_matched(basis, window, short_range, c, e, gate)
        return Potential.from_parts(b, c, e, gate, {}, short_range=sr)

    anchor_auto = None
    if auto_anchors and anchor_rows is not None:   # the smallest weight whose committee is safe off the data
        t_auto = time.perf_counter()
        probes = SafetyProbes(elements, shortest if core.baseline == "zbl" else None,   # no core: no dimer probes
                              anchor_atoms[1], probe_atoms, DEFAULTS["anchors_auto_force_ratio"])
        unit_rows, done = anchor_rows, {0.0: select(None)}   # the linear model does not depend on the anchors

        def candidate(w):
            res = done.pop(w, None) or select(unit_rows.scaled(w) if w > 0 else None)
            ch = res[6]
            if ch["M"] == 1:
                return res, None, 1, ch["cv_loss"]
            theta, _ = res[9]["dc"]
            return res, candidate_potential(theta, joint[(ch["M"], ch["tau"])].gate), ch["M"], ch["cv_loss"]

        lin_pot = candidate_potential(done[0.0][8][None, :], None)
        w_anchor, picked, anchor_auto, auto_notes = choose_weight(DEFAULTS["anchors_auto_grid"], candidate, probes,
                                                                  lin_pot)
        notes += auto_notes
        anchor_rows = unit_rows.scaled(w_anchor) if w_anchor > 0 else None
        if anchor_rows is None:   # weight 0: the fit has no anchors
            notes.remove(anchor_note)
            anchor_src = None
        settings["anchors"] = w_anchor
        timings["anchors_auto"] = time.perf_counter() - t_auto
    else:
        if auto_anchors:   # no committee candidate (or no anchor structure): nothing to choose
            w_anchor = settings["anchors"] = 0.0
            anchor_rows = anchor_src = None
            notes.append("--anchors auto: weight 0 (no structure-gate committee to anchor)")
        picked = select(anchor_rows)
    sel, lam, lam_table, lam_dc, cv_rows, n_stage1, chosen, eq9, theta_lin, models, column_choice = picked
    block_choice, degree_choice = column_choice["block_ridge"], column_choice["degree_ridge"]
    top_choice = column_choice["top_degree_ridge"]
    if top_choice is not None:
        notes.append(f"ridge of the top degree shell (--top-degree-ridge): lambda x {top_choice['factor']:g} on the "
                     f"{top_choice['n_columns']} columns of degree > {top_choice['degree']:g}"
                     + (" (chosen by CV)" if top_choice["searched"] else " (given)"))
    if degree_choice is not None:
        notes.append("smoothness prior (--degree-ridge): ridge x (degree / smallest degree)^p, p = "
                     f"{degree_choice['exponent']:g}" + (" (chosen by CV)" if degree_choice["searched"] else " (given)"))
    if block_choice is not None:
        notes.append("ridge per species block (--block-ridge): lambda x " + ", ".join(
            f"{f:g} on block {b}" for b, f in block_choice["factors"].items())
            + (" (chosen by CV)" if block_choice["searched"] else " (given)"))
    timings["selection"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- final models
    t0 = time.perf_counter()
    M_sel, tau_sel = chosen["M"], chosen["tau"]
    gate = joint[(M_sel, tau_sel)].gate if M_sel > 1 else None
    theta_final, _ = models["dc" if M_sel > 1 else "linear"]
    gate_used, gate_cv = ("structure" if M_sel > 1 else "none"), None
    if M_atom:   # the local gates (dcace.local_gate): their own clustering, rows and CV
        gate_cv = {"linear": cv_rows[0]["loss"], "structure": chosen["cv_loss"] if M_sel > 1 else None}
        best_loss, lam_dc0 = chosen["cv_loss"], lam_dc
        for kind in local_kinds:
            t_atom = time.perf_counter()
            bar = _progress(None, n * len(temps), f"{kind} gate rows", progress) if progress else None
            fit_k = fit_atom_gate(
                basis=basis, frames=data.frames, M=M_atom, temperatures=temps, ridge_factors=DEFAULTS["ridge_dc_factors"],
                lam=lam_dc0, sel=sel, folds=folds, k=k_folds, p1=p1, wts=wts, wE=wE, wF=wF, wS=wS,
                seed=seed, pca_variance=DEFAULTS["pca_variance"],
                pca_max_components=DEFAULTS["pca_max_components"], committee=committee,
                progress_fn=None if bar is None else (lambda k: bar.update(k * len(temps))),
                kind=kind, gate_range=gate_range, body_order=gate_body_order)
            if bar is not None:
                bar.close()
            cv_rows += fit_k["cv_rows"]
            timings[f"{kind}_gate"] = time.perf_counter() - t_atom
            gate_cv[kind] = fit_k["cv_loss"]
            if gate_kind == kind or fit_k["cv_loss"] < best_loss:
                best_loss, atom_fit = fit_k["cv_loss"], fit_k
                M_sel, tau_sel, lam_dc, gate = M_atom, fit_k["tau"], fit_k["ridge"], fit_k["gate"]
                theta_final, gate_used = fit_k["theta"], kind
                models, compare = {"linear": models["linear"]}, False   # test rows: linear (numpy) and the core's
        if gate_kind == "auto":
            notes.append("--gate auto: CV loss " + ", ".join(f"{k} {v:.6g}" for k, v in gate_cv.items() if v is not None)
                         + f"; chosen: {gate_used}")
    coef = theta_final[:, :D].reshape(-1, S, K)
    e0 = theta_final[:, D:] + e_ref[None, :]
    if short_range is not None:   # level-match the pair core to the fitted dimers (format version 4)
        t_shift = time.perf_counter()
        basis, window, short_range, shift_notes = level_matched(basis, window, short_range, coef, e0, gate)
        notes += shift_notes
        timings["core_shift"] = time.perf_counter() - t_shift
    timings["final_solve"] = time.perf_counter() - t0
    selection = {
        "n_experts": M_sel, "temperature": tau_sel, "ridge": lam, "ridge_experts": lam_dc, "ridge_cv": lam_table,
        "eq9": eq9, "pca_components": int(V.shape[0]) if pca else None,
        "cluster_sizes": atom_fit["cluster_sizes"] if gate_used in LOCAL_GATES else (
            clusterings[M_sel].sizes.tolist() if M_sel > 1 else [n]),
        "gate": gate_used, "gate_cv": gate_cv,
        "e_ref": e_ref.tolist(),
    }
    if block_choice is not None:
        selection["block_ridge"] = block_choice
    if degree_choice is not None:
        selection["degree_ridge"] = degree_choice
    if top_choice is not None:
        selection["top_degree_ridge"] = top_choice
    if anchor_auto is not None:   # --anchors auto: the grid, each weight's probes and CV loss, the choice
        selection["anchors_auto"] = anchor_auto
    selection["summary"] = (f"{n} structures, K={K} features/species, M={M_sel} expert(s)"
                            + (f", tau={tau_sel:g}" if M_sel > 1 else "") + f", ridge={lam:.3g}; "
                            + f"eq. 9 would pick M={eq9['paper_M']} (paper's gate), {eq9['joint_M']} (this gate)")
    errors = {}
    cv_map = {(r["M"], r.get("tau"), r["fit"]): r for r in cv_rows[:n_stage1]}   # first row of each key
    for r in cv_rows:
        if (r["M"], r.get("tau"), r["fit"]) == (M_sel, tau_sel, committee) and r.get("ridge") == lam_dc:
            cv_map[(M_sel, tau_sel, committee)] = r
    lin_cv = cv_map.get((1, None, "linear"))
    errors["linear"] = {"cv": _cv_summary(lin_cv)}
    if M_sel > 1:
        errors["dc"] = {"cv": _cv_summary(cv_map.get((M_sel, tau_sel, committee)))}
        if compare:
            other = "independent" if committee == "joint" else "joint"
            errors[f"dc-{other}"] = {"cv": _cv_summary(cv_map.get((M_sel, tau_sel, other)))}
            errors["paper-eq8"] = {"cv": None}

    # ---------------------------------------------------------------- pass 3: training errors
    t0 = time.perf_counter()
    meta_partial = {
        "dcace_version": _core.__version__, "fit": settings,
        "data": {"train": data.files if resume is None else resume.meta["files"] + data.files,
                 "test": test_data.files if test_data else None},
        "basis": {"body_order": int(body_order), "max_degree": float(max_degree), "w_L": float(w_L),
                  "cutoff": float(cutoff), "inner_cutoff": float(inner_cutoff), "n_features": K,
                  "max_degree_blocks": basis_blocks, "chemical_channels": basis.chemical_channels,
                  "baseline": None if core.baseline is None else ("zbl" if core.external is None else "external"),
                  "delta_baseline": None if core.external is None else core.external.describe(),
                  "core_window": None if window is None else {
                      f"{elements[a]}-{elements[b]}": [round(float(window[0][a, b]), 6), round(float(window[1][a, b]), 6)]
                      for a in range(S) for b in range(a, S)}},
        "selection": _finite({k: v for k, v in selection.items() if k != "ridge_cv"}),
    }
    pot = Potential.from_parts(basis, coef, e0, gate, meta_partial, short_range=short_range)
    lin_pot = pot if M_sel == 1 else Potential.from_parts(basis, theta_lin[None, :D].reshape(1, S, K),
                                                          (theta_lin[D:] + e_ref)[None, :], None, {},
                                                          short_range=short_range)
    if resume is None:   # per structure, on the rank that holds it (dcace.pass3)
        pass3.send_potentials(ranks, pot, lin_pot, M_sel)
        train_stats, weights_train, nearest_train = pass3.training_errors(
            ranks, data_orig.frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays, threads, progress)
    else:   # a refit has the sums, not the old structures
        train_stats = {name: ErrorStats(keep_arrays) for name in (("linear", "dc") if M_sel > 1 else ("linear",))}
        weights_train, nearest_train = np.zeros((n, M_sel)), np.zeros(n)
    for name, stt in train_stats.items():
        errors[name]["train"] = stt.summary() if resume is None else _fit_state.sums_errors(
            sel, *models[name], joint.get((M_sel, tau_sel)) if name == "dc" else None)
    timings["pass3"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- test set
    arrays = {}
    if test_data is not None:
        t0 = time.perf_counter()
        test_stats = {name: ErrorStats(keep_arrays) for name in models}
        tstats_cpp = ErrorStats(keep_arrays)
        originals = iter(test_orig.frames)
        for fr, r in _progress(_threaded_map(rows_fn, test_data.frames, threads), len(test_data),
                               "test set", progress):
            if isinstance(r, Exception):
                raise _frame_error(fr, r)
            fr_orig = next(originals)   # labels with the baseline in, for the written potential
            b = r.energy
            ncount = r.counts
            for name, (theta, wfn) in models.items():
                Ec, w, c_eff = committee_predict(theta, wfn, b[None], ncount[None])
                Etot = float(Ec[0] + ncount @ e_ref)
                F = (r.forces @ c_eff[0]).reshape(-1, 3)
                sp = r.stress @ c_eff[0] if (r.stress is not None and fr.stress is not None) else None
                test_stats[name].add(fr.n_atoms, fr.energy, Etot, fr.forces, F, fr.stress if sp is not None else None, sp,
                                     e_offset=float(ncount @ e_ref))
            out = pot.compute(fr_orig.atoms)
            tstats_cpp.add(fr.n_atoms, fr_orig.energy, out["energy"], fr_orig.forces, out["forces"],
                           fr_orig.stress, out["stress"] if fr_orig.stress is not None else None,
                           e_offset=float(ncount @ e_ref))
        for name, stt in test_stats.items():
            errors.setdefault(name, {})["test"] = stt.summary()
        # the official numbers of the written potential come from the C++ core
        final_name = "dc" if M_sel > 1 else "linear"
        errors[final_name]["test"] = tstats_cpp.summary()
        if keep_arrays:
            arrays["test"] = {name: stt.arrays() for name, stt in test_stats.items()}
            arrays["test"][final_name] = tstats_cpp.arrays()
        timings["test"] = time.perf_counter() - t0
    for name in list(errors):
        for which in ("train", "test"):
            errors[name].setdefault(which, None)
    if keep_arrays:
        arrays["train"] = {name: stt.arrays() for name, stt in train_stats.items()}
        arrays["clusters"] = {"Z": Z, "labels": clusterings[M_sel].labels if M_sel in clusterings else np.zeros(n, int),
                              "weights": weights_train, "nearest": nearest_train}

    # ---------------------------------------------------------------- final file with errors
    meta = dict(meta_partial)
    meta["errors"] = _round_errors(errors)
    meta["selection"]["cv"] = [
        {k: _round(v) for k, v in r.items() if k in ("M", "tau", "fit", "ridge", "loss", "energy_mae_mev_per_atom",
                                                      "energy_rmse_mev_per_atom", "force_rmse_ev_per_a")}
        for r in cv_rows]
    meta["notes"] = notes
    t0 = time.perf_counter()   # extrapolation grade: MaxVol active set per species (dcace.grade)
    grade_G, grade_notes, grade_stats = (pass3.training_grade(ranks, basis, data.frames, own, counts, seed) if resume is None
                                         else resume.update_grade(basis, [fr.atoms for fr in data.frames]))
    notes += grade_notes + [f"extrapolation grade: {100 * grade_stats['fraction_above_1']:.2f} % of the training "
                            f"atoms above 1 (max {grade_stats['max_training_grade']:.9g})"]
    meta["grade"] = {"kind": "maxvol", "fraction_above_1": _round(grade_stats["fraction_above_1"]),
                     "max_training_grade": _round(grade_stats["max_training_grade"])}
    timings["grade"] = time.perf_counter() - t0
    pot = Potential.from_parts(basis, coef, e0, gate, meta, grade=grade_G,
                               short_range=short_range)
    timings["total"] = time.perf_counter() - t_start
    report = FitReport(settings=settings, selection=selection, errors=errors, timings=timings, notes=notes,
                       cv_table=cv_rows, arrays=arrays)
    report.cost = cost_info
    pot.report = report
    if resume is not None:
        selection["refit"] = _fit_state.refit_summary(resume, n, coef, clusterings.get(M_sel), committee)
    if state is not None:
        t0 = time.perf_counter()
        fs = _fit_state.build_state(
            settings=settings, basis=basis, coef=coef, one_body=e0, p1=p1, wts=wts, folds=folds, hashes=hashes,
            e_fixed=e_fixed, core_extremes=None if core.baseline != "zbl" else (shortest, rho_max), st=st, V=V,
            clusterings=clusterings, groups=groups, joint=joint, stress_store=stress_store, grade_stats=grade_stats,
            pot_text=pot.to_string(), files=meta_partial["data"]["train"], grade_meta=meta["grade"],
            paths=_fit_state.source_paths(train, resume), column_scale=sel.sc,
            update_seconds=cost_info.get("update_s_per_structure"), anchors=anchor_rows, anchor_sources=anchor_src,
            anchor_weight=w_anchor)
        selection["state"] = {"path": str(state), "bytes": _fit_state.save_state(state, fs), **fs.nbytes()}
        timings["state"] = time.perf_counter() - t0
    return pot


def _final_models(sel, chosen, lam, lam_dc, joint, committee, compare, clusterings, Z):
    """(theta_lin, {name: (theta, gate function)}): the chosen models solved on all training data."""
    M_sel, tau_sel = chosen["M"], chosen["tau"]
    theta_lin = sel.solve_linear_total(lam)
    models = {"linear": (theta_lin[None, :], None)}
    if M_sel > 1:
        g = joint[(M_sel, tau_sel)].gate
        wfn = lambda Pm, g=g: gate_weights(g, Pm)[:2]  # noqa: E731
        if committee == "joint":
            theta_dc = sel.solve_joint_total(M_sel, tau_sel, lam_dc, theta_lin)
        else:
            theta_dc = sel.solve_independent_total(M_sel, lam_dc, theta_lin)
        models["dc"] = (theta_dc, wfn)
        if compare:
            other = "independent" if committee == "joint" else "joint"
            theta_o = (sel.solve_independent_total(M_sel, lam_dc, theta_lin) if other == "independent"
                       else sel.solve_joint_total(M_sel, tau_sel, lam_dc, theta_lin))
            models[f"dc-{other}"] = (theta_o, wfn)
            eq8 = Eq8Gate(clusterings[M_sel], Z)
            theta_ind = theta_o if other == "independent" else theta_dc
            models["paper-eq8"] = (theta_ind, lambda Pm: eq8.weights(Pm))
    return theta_lin, models


def _announce_cost(basis, frames, rows_fn, groups, joint, skipped, k_folds, n_groups, budget, bsize, P, seed,
                   threads, progress, update_s=None, counted=None):
    """Time a sample of pass 2 with the real accumulators, print the cost lines (dcace.cost).  A refit
    gives update_s, the per-structure update time its state measured on the same accumulators (the
    timed update is a pass over all of them: a sizeable part of a small refit).  counted: pass 2's
    batch sizes, blocks and folds (dcace.estimate.estimate_pass2)."""
    S, K = basis.n_species, basis.n_features
    D, Dp = S * K, S * K + S

    def gram(fr, r):   # the per-structure work of pass 2, as the loop does it
        return _structure_terms(fr, r, rows_fn.wF, rows_fn.wS, 1.0)

    def zero_batch(idx):   # written zeros: pass 2's A are written pages, not the kernel's zero page
        idx = np.asarray(idx)[:max(1, bsize)]
        B = len(idx)
        A = np.empty((B, D, D))
        A.fill(0.0)
        return Batch(0, A, np.zeros((B, D)), np.zeros(B), np.zeros((B, Dp)), np.zeros(B), P[idx], idx)

    resident = cost.resident_bytes()   # before the sample touches the accumulators' pages
    est = cost.estimate_pass2(rows_fn.keep, gram, frames, [groups, *joint.values()] if update_s is None else [],
                              zero_batch, seed=seed, bsize=bsize, **(counted or {}))
    if update_s is not None:
        est = dict(est, update_s_per_structure=update_s, seconds=est["seconds"] + est["n_structures"] * update_s)
    joint_bytes = {key: acc.nbytes for key, acc in joint.items()}
    lines = cost.cost_lines(S=S, K=K, k_folds=k_folds, group_bytes=groups.nbytes, n_groups=n_groups,
                            joint_bytes=joint_bytes, skipped=skipped, budget=budget, estimate=est, threads=threads,
                            resident=resident)
    if progress:
        import sys

        print("\n".join(lines), file=sys.stderr, flush=True)
    used = cost.counted_nbytes(S, K, k_folds, groups.nbytes, joint_bytes)
    return dict(est, K=K, unknowns_per_expert=Dp, lines=lines, resident_bytes=resident, counted_bytes=used,
                expected_peak_bytes=cost.expected_peak(S, K, groups.nbytes, joint_bytes, resident),
                memory_bytes={"linear+independent": groups.nbytes,
                              **{f"M={M},tau={t:g}": nb for (M, t), nb in joint_bytes.items()}},
                skipped_bytes={f"M={M},tau={t:g}": nb for (M, t), nb in skipped.items()})


def _anchor_rows(basis, sources, ground, few, wE, wF, wS, D, S, seed, weight, batch_size, label=None):
    """The off-data anchors of the joint committees (dcace.anchors) at `weight`, and the report's note
    (which names the weight as `label`, default the number)."""
    structures = anchor_structures(sources, seed, ground) + few
    phases = phase_anchors(basis.elements, ground)   # bcc/fcc of every element (dcace.anchors.PHASE_WEIGHT)
    if not structures:
        return None, "off-data anchors: none (no periodic training structure with 2 or more atoms)"

    def terms(at, rows):
        zero = Frame(at, 0.0, np.zeros((len(at), 3)), np.zeros(6) if rows.stress is not None else None, "<anchor>", 0)
        return _structure_terms(zero, rows, wF, wS, 1.0)[0]

    rows = AnchorRows(anchor_batches(basis, structures, terms, weight, batch_size), D, S, wE, len(structures))
    if phases:
        pw = weight * anchors_module.PHASE_WEIGHT
        rows = AnchorRows.from_matrix(rows.H + AnchorRows(anchor_batches(basis, phases, terms, pw, batch_size), D, S, wE,
                                                          len(phases)).H, len(structures) + len(phases))
    return rows, (
        f"off-data anchors: {len(structures) - len(few)} compressed and rattled copies of {len(sources)} training "
        f"structures and of the lowest-energy one, {len(phases)} bcc/fcc crystals, {len(few)} free atoms and dimers, where every expert follows the linear model with weight {label or format(weight, 'g')} (dcace.anchors)")


def _atom_experts(experts, state, reuse, resume, gate):
    """M of the atom gate (experts="auto": 4), with its limits."""
    if state is not None or reuse is not None or resume is not None:
        raise ValueError(f"gate={gate!r} fits cannot write or reuse a fit state yet (state=, reuse=, refit)")
    M = 4 if experts == "auto" else experts
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 2:
        raise ValueError(f"gate={gate!r} needs experts = 'auto' or an integer >= 2, got {experts!r}")
    return int(M)


def _config_weights(weights):
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


def frame_weights(frames, weights):
    """(n,) weight of every frame: its own weight times its config_type's (unnamed types: 1)."""
    w = np.array([f.weight for f in frames], dtype=float)
    if weights is not None:
        spec = _config_weights(weights)
        present = sorted({f.config_type for f in frames if f.config_type is not None})
        unknown = sorted(set(spec) - set(present))
        if unknown:
            raise ValueError(f"weights name config_type(s) {unknown} that no training frame has "
                             f"(present: {present or 'none: the frames have no config_type'})")
        w *= np.array([spec.get(f.config_type, 1.0) for f in frames])
    if not (w > 0).any():
        raise ValueError("every training frame has weight 0")
    return w


def _jsonable_range(core_range):
    if core_range is None or isinstance(core_range, dict):
        return None if core_range is None else {k: [float(x) for x in v] for k, v in core_range.items()}
    return [float(x) for x in core_range]


def _finite(obj):
    """obj with every non-finite float replaced by None (JSON metadata)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _cv_summary(row):
    if row is None:
        return None
    return {k: row.get(k) for k in ("n_structures", "n_atoms", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom",
                                    "force_mae_ev_per_a", "force_rmse_ev_per_a", "stress_mae_gpa", "stress_rmse_gpa")}


def _round(v, digits=6):
    if isinstance(v, float):
        return float(f"{v:.{digits}g}") if math.isfinite(v) else None
    return v


def _round_errors(errors):
    out = {}
    for model, sets in errors.items():
        out[model] = {}
        for which, s in sets.items():
            out[model][which] = None if s is None else {k: _round(v) for k, v in s.items()}
    return out
