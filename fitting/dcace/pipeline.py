"""Fit linear and divide-and-conquer (DC) ACE potentials: the pipeline behind ``dcace.fit``.

The parameters are the fields of ``dcace.settings.FitSettings`` (checked in ``dcace.pipeline_checks``);
``_fit_settings`` runs the stages below as functions, each returning a small dataclass the later ones
read (their table: docs/pipeline.md; the report stages in ``dcace.pipeline_report``).

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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import cost
from .basis import ACEBasis
from .clustering import Eq8Gate, cluster, fit_standardiser, gate_dict, gate_weights, pca_projection
from .committee import Batch, GroupAccumulator, JointAccumulator, LabelMembership, joint_nbytes
from .basis_spec import check_chemical_channels, check_degree_blocks
from .block_ridge import check_block_ridge, check_degree_ridge, check_top_degree_ridge, choose_column_ridge, top_degree_start
from .embedding import check_embedding, choose_embedding
from .grade import GRADE_DEFAULTS
from .baseline import (CoreSettings, core_shifts, core_window, density_core, neighbour_extremes, residual_dataset,
                       residual_frame, user_window_free)
from .density_wall import density_wall
from .data import Dataset, DataError, Frame, count_frames, read_data
from . import pass3
from . import state as _fit_state
from . import state_anchors, state_ground
from .parallel import Ranks, accumulate_blocks, as_ranks, default_threads, fit_blocks
from .stream import EVERY, read_own
from . import restream, rowstore
from .state_pack import canonical_sums
from .potential import Potential
from .report import FitReport
from .local_gate import LOCAL_GATES, LocalGateRows
from .restraints import RestraintRows, pure_zbl, restraint_batch, restraint_dimers
from .crystal_constraints import CrystalConstraints
from . import anchors as anchors_module
from .anchors import AnchorRows, anchor_batches, anchor_sources, anchor_structures, free_atoms_and_dimers, phase_anchors
from .anchor_choice import SafetyProbes, choose_weight, probe_crystals
from .gate_kinks import KINK_GPA, KINK_REL, worst_kink
from .probes import probe_indices
from .ridge import single_threaded_blas
from .settings import FitSettings, defaults, from_keywords, signature
from .pipeline_report import cv_errors, file_metadata, plot_arrays, test_errors, training_errors
from .pipeline_checks import checked, config_weights as _config_weights, record

__all__ = ["fit", "DEFAULTS"]

#: What ``fit(name=None)`` means, and the tuning constants: derived from dcace.settings.FitSettings (their
#: values chosen by cross-validation on the Zuo et al. data, docs/fitting.md).
DEFAULTS = defaults()


@dataclass
class _Pass1:
    Bsum: object         # dcace.rowstore.Rows (n, D), in memory or a scratch file (None on ranks other than 0)
    counts: np.ndarray   # (n, S)
    N: np.ndarray        # (n,)
    E: np.ndarray        # (n,) total energies
    e_ref: np.ndarray    # (S,)
    yE: np.ndarray       # (n,) centred energy per atom

    def P(self, idx):
        """Mean descriptors (len(idx), D) of structures idx (rank 0)."""
        idx = np.asarray(idx, dtype=np.int64)
        return self.Bsum.take(idx) / self.N[idx, None]


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
                     record=None, sink=None):
    """(Bsum (n, D), counts (n, S)); with ranks/blocks each rank computes its blocks' structures and
    every rank gets all rows (``dcace.parallel``) -- with ``lean``, all rows of Bsum on rank 0 only, in
    ``sink`` (a dcace.rowstore.Rows of n rows: sent there in rounds as the pass goes, so a rank holds one
    round), None on the other ranks, and counts on every rank.  record(i, frame) is called for each
    of this rank's structures as the pass reads it (frames read again for every pass, ``dcace.restream``:
    what else the fit needs of the frame is taken then)."""
    S, K = basis.n_species, basis.n_features
    n = len(frames)
    ranks = ranks or Ranks(None)
    mine = np.arange(n) if blocks is None else \
        np.concatenate([blocks[b] for b in ranks.own_blocks(blocks)] or [np.zeros(0, int)])
    R = ROWS_PER_ROUND if lean else max(1, len(mine))   # lean: the rows go to rank 0 a round at a time
    Bsum = np.zeros((min(R, len(mine)), S * K))
    full = sink if lean and ranks.is_root else None
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


def _fold_blocks(n, fixed, seed, k_folds, bsize, offset, groups=None):
    """(folds (n,), blocks): seeded folds (a state's, then the new structures'), and the fixed blocks of
    <= batch_size structures, the units of work and of summation of passes 1 and 2 (dcace.parallel;
    the state's structures and the new ones in separate blocks, so that a refit adds exactly the
    blocks a from-scratch fit adds after the state's).  Known from n alone, before any frame is read,
    except with cv_groups: ``groups`` (n,) the structures' group labels (cv_group_labels), whole groups
    to a fold (grouped_folds).  A state's folds stay whatever the groups."""
    split = n if fixed is None else fixed.n          # the state's structures, which a reuse fit adds first
    if fixed is None and groups is not None:
        folds = grouped_folds(groups, k_folds, seed)
    elif fixed is None:
        rng = np.random.default_rng(seed)
        folds = np.empty(n, dtype=int)
        folds[rng.permutation(n)] = np.arange(n) % k_folds
    else:   # the state's folds, then deterministic folds for the structures after them
        folds = _fit_state.extended_folds(fixed, seed, n, k_folds)
    blocks = [b + split for b in fit_blocks(folds[split:], max(1, bsize))]
    if split > offset:
        blocks = fit_blocks(folds[:split], max(1, bsize)) + blocks
    return folds, blocks


#: cv_groups="trajectory": two consecutive frames of one source are of one trajectory if their cells differ by
#: at most this (Å, every component)
TRAJECTORY_CELL_TOL = 1e-6


def cv_group_labels(frames, spec, train=None) -> np.ndarray:
    """(n,) int group labels of the training frames (dcace.data.Frame, in the fit's order), numbered in order
    of first appearance.  spec "trajectory": consecutive frames of the same source with the same config_type,
    number of atoms and cell (to TRAJECTORY_CELL_TOL) form a group (an MD trajectory; strained frames, each
    a cell of its own, are groups of one).  Any other string KEY: the frames with equal atoms.info[KEY],
    read from ``train`` (the fit's training data as given: paths or ase.Atoms; the Frames keep no info).
    A frame without KEY is an error naming the file, the frame and the key."""
    if spec == "trajectory":
        labels, prev = np.empty(len(frames), dtype=np.int64), None
        for i, fr in enumerate(frames):
            cell = np.asarray(fr.atoms.cell.array, dtype=float)
            same = (prev is not None and fr.source == prev.source and fr.config_type == prev.config_type
                    and fr.n_atoms == prev.n_atoms and bool(np.all(np.abs(cell - prev_cell) <= TRAJECTORY_CELL_TOL)))
            labels[i] = labels[i - 1] if same else (labels[i - 1] + 1 if i else 0)
            prev, prev_cell = fr, cell
        return labels
    values = _info_values(train, spec, frames)
    ids: dict = {}
    out = np.empty(len(frames), dtype=np.int64)
    for i, (fr, v) in enumerate(zip(frames, values)):
        if v is _NO_KEY:
            raise DataError(f"{fr.where}: no atoms.info[{spec!r}], the key of cv_groups={spec!r} (--cv-groups): "
                            f"every training frame needs it (or use --cv-groups trajectory)")
        try:
            hash(v)
        except TypeError:
            v = repr(v)
        out[i] = ids.setdefault(v, len(ids))
    return out


_NO_KEY = object()


def _info_values(train, key, frames) -> list:
    """atoms.info[key] (or _NO_KEY) of every training frame, from the training data as the fit was given them."""
    import os

    from ase import Atoms

    if isinstance(train, Dataset):
        raise ValueError(f"cv_groups={key!r} (--cv-groups) needs the training data as files or ase.Atoms: a "
                         f"dcace.data.Dataset keeps no atoms.info (cv_groups='trajectory' needs none)")
    items = [train] if isinstance(train, (str, os.PathLike, Atoms)) else list(train)
    values = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            import ase.io

            values += [a.info.get(key, _NO_KEY) for a in ase.io.iread(str(item), index=":")]
        else:
            values.append(item.info.get(key, _NO_KEY))
    if len(values) != len(frames):   # (the data were read the same way just before)
        raise RuntimeError(f"cv_groups={key!r}: {len(values)} frames of atoms.info against {len(frames)} read")
    return values


def grouped_folds(groups, k_folds, seed) -> np.ndarray:
    """(n,) folds that keep every group whole (sklearn's GroupKFold idea): the groups in a permutation seeded
    by ``seed``, each put in the fold with the fewest structures so far (the lowest fold on a tie).  Fewer
    groups than folds is an error naming the option."""
    groups = np.asarray(groups, dtype=np.int64)
    sizes = np.bincount(groups)
    G = int(np.count_nonzero(sizes))
    if G < k_folds:
        raise ValueError(f"cv_groups (--cv-groups): the training structures form {G} group(s), fewer than the "
                         f"{k_folds} cross-validation folds (--cv-folds); give fewer folds, other groups, or no "
                         f"--cv-groups")
    fill = np.zeros(k_folds, dtype=np.int64)
    fold_of = np.full(len(sizes), -1, dtype=np.int64)
    for g in np.random.default_rng(seed).permutation(len(sizes)):
        if sizes[g]:
            f = int(np.argmin(fill))
            fold_of[g], fill[f] = f, fill[f] + sizes[g]
    return fold_of[groups].astype(int)


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


def fit(train, **kw) -> Potential:
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
    anchors : weight of the off-data anchors of committees (``dcace.anchors``; structure-gate committees,
        joint, and independent experts with ``regularise="global"``, and the local gates' committees):
        compressed and rattled copies of training frames, free atoms and dimers, on which every expert
        of a committee is fitted to follow the linear model, so that off the data the gate does not hand a
        structure to an expert that nothing constrains there (default 0.03, docs/short-range.md); 0 = off;
        ``"auto"``: the smallest weight of ``DEFAULTS["anchors_auto_grid"]`` whose committee passes the
        dimer, compression and rattle probes (``dcace.anchor_choice``; the grid, every weight's verdicts
        and CV loss in ``report.selection["anchors_auto"]``, the weight in ``settings["anchors"]``; a local
        gate chooses its own weight by the same probes).
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
        ``experts="auto"``: M from ``DEFAULTS["local_experts_grid"]`` (2, 4, 6, 8) up to ``max_experts`` by
        CV, one pass over the data per M, every M's CV loss in ``report.selection["experts_cv"]``; tau and
        the committee ridge by CV; no fit state yet) or
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
    ranks = as_ranks(kw.pop("comm", None))
    s = from_keywords(dict(kw, train=train))   # (the keywords: dcace.settings.FitSettings)
    threads = s.threads
    if threads is None:
        s.threads = default_threads(ranks.size)
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    with single_threaded_blas():
        return ranks.share(lambda: _fit_settings(s, ranks, None))


fit.__signature__ = signature()


def _fit(train, *, ranks, resume=None, **kw):
    """The fit of ``fit(train, **kw)`` (and of ``dcace.refit``, with ``resume``) on ``ranks``."""
    return _fit_settings(from_keywords(dict(kw, train=train)), ranks, resume)


def _fit_settings(s: FitSettings, ranks, resume):
    """Stages 1-7 (the options, the data, passes 1 and 2) on every rank, then 8-11 on rank 0 (the
    others evaluate their structures in pass 3 and the grade); the potential (None on the other ranks)."""
    t_start = time.perf_counter()
    timings = {"ranks": ranks.size, "threads": int(s.threads)}
    progress = s.progress and ranks.is_root
    c = checked(s, ranks, resume)   # stage 1: the options (dcace.pipeline_checks), before any data
    # (the names the orchestration below reads)
    seed, reuse, threads, keep_arrays = s.seed, s.reuse, s.threads, s.keep_arrays
    wF, wS, k_folds, budget, bsize = c.wF, c.wS, c.k_folds, c.budget, c.bsize
    w_anchor, auto_anchors, compare = c.w_anchor, c.auto_anchors, c.compare

    keys = dict(energy_key=s.energy_key, forces_key=s.forces_key, stress_key=s.stress_key, virial_key=s.virial_key)
    core = CoreSettings(s.baseline, s.core_range)
    fixed = _fit_state.fixed_parts(resume, reuse)   # state whose folds, clusters, e_ref, core stay (or None)
    if auto_anchors and fixed is not None:   # the state fixes the anchors, their weight included
        w_anchor, auto_anchors = float(fixed.settings.get("anchors", 0.0)), False
    elements, basis_blocks, chemical_channels, block_ridge, degree_ridge, top_degree_ridge, embedding_kind = \
        _basis_options(s, c, ranks)
    w_anchor, anchor_off = state_anchors.fit_weight(fixed, w_anchor)   # a state before version 3: none
    settings = record(s, c, core=core, elements=elements, basis_blocks=basis_blocks,
                      chemical_channels=chemical_channels, embedding_kind=embedding_kind, block_ridge=block_ridge,
                      degree_ridge=degree_ridge, top_degree_ridge=top_degree_ridge, w_anchor=w_anchor,
                      anchor_off=anchor_off, fixed=fixed)
    if reuse is not None:
        fixed.check_settings(settings, "fit(reuse=...)")
    rd = _read_stage(s, c, ranks, resume, fixed, elements, keys, timings)   # stage 2: the data
    data, test_data, plan, offset = rd.data, rd.test_data, rd.plan, rd.offset
    bl = _baseline_stage(s, c, ranks, resume, fixed, core, elements, chemical_channels, embedding_kind, settings,
                         data, test_data, timings)   # stage 3: the basis and what the experts learn
    basis, data, test_data, data_orig = bl.basis, bl.data, bl.test_data, bl.data_orig
    n = len(data) + (0 if resume is None else resume.n)   # a refit reads only the new structures
    Ms, notes = _data_limits(c, s, n, fixed, rd, data, test_data, bl.core_notes, anchor_off)

    # ---------------------------------------------------------------- pass 1: descriptor sums
    t0 = time.perf_counter()
    d1 = _descriptor_stage(s, c, ranks, resume, fixed, basis, data, elements, n, plan, offset, progress)   # stage 4
    blocks, bsize, own, p1 = d1.blocks, d1.bsize, d1.own, d1.p1
    counts, e_ref = p1.counts, p1.e_ref
    notes += d1.notes
    _local_candidates(c, counts, d1.folds, basis.elements)   # experts="auto" with a local gate: the M CV compares
    notes += c.local_notes
    cl = _clustering_stage(s, c, ranks, fixed, p1, d1.folds, Ms, d1.hashes, lean=ranks.size > 1 and fixed is None)
    clusterings = cl.clusterings
    anchor_src, anchor_atoms, probe_atoms, ground_atoms = _anchor_sources(
        c, s, ranks, resume, fixed, data, p1, own, d1.own_periodic, clusterings, w_anchor, auto_anchors)
    timings["pass1"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- candidates and accumulators
    acc = _accumulator_stage(c, s, n, basis, clusterings, bl.restraint_rows, Ms, fixed, notes)   # stage 6
    groups, joint, skipped, compare = acc.groups, acc.joint, acc.skipped, compare and acc.independent_ok

    rows_fn = _Rows(basis, wF, wS)
    counted = dict(batch_sizes=cost.pass2_batches([blocks[b] for b in ranks.own_blocks(blocks)], bsize),
                   n_blocks=len(blocks), n_folds=k_folds)   # what pass 2 will do, for its estimate
    cost_info = _announce_cost(basis, restream.sample_view(data.frames, own), rows_fn, groups, joint, skipped, k_folds,
                               groups.membership.shape[1], budget, bsize, lambda j: p1.P(own[j] + offset), seed,
                               threads, progress, None if resume is None else resume.update_seconds,
                               counted, _n_with_stress(data, resume, wS), counts.sum(axis=0),
                               n if d1.spill else 0,
                               cost.local_cost_lines(basis.n_species, basis.n_features, c.M_atoms, c.local_kinds,
                                                     k_folds, len(c.temps), c.local_auto) if c.M_atom else ()
                               ) if ranks.is_root else {}

    # ---------------------------------------------------------------- pass 2: fitting rows
    t0 = time.perf_counter()
    stress_store = _pass2_stage(c, ranks, resume, rows_fn, data, d1, groups, joint, n, offset, progress,
                                threads)   # stage 7
    rows_fn.kept.clear()   # sampled rows of structures another rank featurised
    if not ranks.is_root:   # rank 0 selects, solves and writes (dcace.parallel.Ranks.share); this rank
        pot, lin_pot, M_sel = pass3.receive_potentials(ranks)   # evaluates its structures in pass 3
        pass3.training_errors(ranks, data_orig.frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays,
                              threads, False)
        pass3.training_grade(ranks, basis, data.frames, own, counts, seed, _grade_cap(basis, budget))
        return None
    timings["pass2"] = time.perf_counter() - t0
    cost_info["pass2_measured_s"] = timings["pass2"]

    return _select_and_write(s, c, ranks, resume, _Passes(
        settings=settings, core=core, fixed=fixed, elements=elements, basis_blocks=basis_blocks,
        column_ridges=(block_ridge, degree_ridge, top_degree_ridge), bl=bl, d1=d1, cl=cl, acc=acc, Ms=Ms, n=n,
        notes=notes, rows_fn=rows_fn, cost_info=cost_info, stress_store=stress_store,
        anchors=(anchor_src, anchor_atoms, probe_atoms, ground_atoms), w_anchor=w_anchor, auto_anchors=auto_anchors,
        compare=compare, progress=progress, timings=timings, t_start=t_start))


@dataclass
class _Passes:
    """What stages 1-7 (the options, the data, passes 1 and 2) hand the selection and the report on rank 0."""
    settings: dict           # the file's settings record (pipeline_checks.record)
    core: CoreSettings
    fixed: object            # the fit state whose folds, clusters, e_ref and core stay (or None)
    elements: list
    basis_blocks: object
    column_ridges: tuple     # (block_ridge, degree_ridge, top_degree_ridge), checked
    bl: _Baseline
    d1: _Descriptors
    cl: _Clusters
    acc: _Accumulators
    Ms: list                 # candidate numbers of experts
    n: int                   # training structures
    notes: list
    rows_fn: _Rows
    cost_info: dict
    stress_store: object     # dcace.rowstore.StressRows (rank 0)
    anchors: tuple           # (anchor_src, anchor_atoms, probe_atoms, ground_atoms)
    w_anchor: float
    auto_anchors: bool
    compare: bool
    progress: bool
    timings: dict
    t_start: float


def _select_and_write(s: FitSettings, c, ranks, resume, p: _Passes):
    """Stages 8-11 on rank 0: the selection, the final model, the errors, the file (and the fit state)."""
    settings, core, fixed, elements, notes, timings, n, Ms = p.settings, p.core, p.fixed, p.elements, p.notes, \
        p.timings, p.n, p.Ms
    basis, window, short_range, shortest, rho_max = p.bl.basis, p.bl.window, p.bl.short_range, p.bl.shortest, \
        p.bl.rho_max
    data, test_data, data_orig, test_orig = p.bl.data, p.bl.test_data, p.bl.data_orig, p.bl.test_orig
    d1, cl, (block_ridge, degree_ridge, top_degree_ridge) = p.d1, p.cl, p.column_ridges
    folds, hashes, wts, e_fixed, p1, own, bsize = d1.folds, d1.hashes, d1.wts, d1.e_fixed, d1.p1, d1.own, d1.bsize
    counts, e_ref = p1.counts, p1.e_ref
    st, Z, V, clusterings = cl.st, cl.Z, cl.V, cl.clusterings
    groups, joint, restraint = p.acc.groups, p.acc.joint, p.acc.restraint
    train, seed, pca, committee, keep_arrays, state, threads = s.train, s.seed, s.pca, s.committee, s.keep_arrays, \
        s.state, s.threads
    anchor_src, anchor_atoms, probe_atoms, ground_atoms = p.anchors
    w_anchor, auto_anchors, compare, progress = p.w_anchor, p.auto_anchors, p.compare, p.progress
    rows_fn, cost_info, stress_store, basis_blocks, t_start = p.rows_fn, p.cost_info, p.stress_store, p.basis_blocks, \
        p.t_start
    S, K = basis.n_species, basis.n_features
    D = S * K

    # ---------------------------------------------------------------- selection
    t0 = time.perf_counter()
    anchor_rows, anchor_note = _anchor_rows_stage(c, s, resume, basis, core, elements, shortest, window, joint,
                                                  anchor_atoms, anchor_src, bsize, notes, timings)
    sl = _Selecting(s, c, basis, window, short_range, shortest, core, elements, groups, joint, d1, stress_store,
                    clusterings, (Z, cl.sample), restraint, fixed, (block_ridge, degree_ridge, top_degree_ridge), Ms, compare,
                    settings["shared_one_body"])   # stage 8
    probed = ground_atoms if fixed is None else state_ground.kept_ground(fixed)   # a state's: its own (dcace.state_ground)
    sl.crystals = _crystal_checks(s, basis, elements, probed, short_range, core, fixed, notes)
    sl.kink_crystals = _kink_crystals(s, elements, probed, clusterings, fixed, notes)
    anchor_auto, unit_rows = None, anchor_rows   # (--anchors auto: unit_rows at weight 1)
    if auto_anchors and anchor_rows is not None and joint:   # the smallest weight whose committee is safe off the data
        picked, w_anchor, anchor_rows, anchor_src, anchor_auto = _choose_anchors(
            sl, s, anchor_rows, anchor_note, anchor_src, anchor_atoms, probe_atoms, notes, settings, timings)
    else:
        if auto_anchors and anchor_rows is None:   # no committee candidate (or no anchor structure): nothing to choose
            w_anchor = settings["anchors"] = 0.0
            anchor_src = None
            notes.append("--anchors auto: weight 0 (no committee to anchor)")
        picked = sl.select(None if auto_anchors else anchor_rows)   # (auto, local gates only: theirs, below)
    local_anchors = None   # --anchors auto for the local gates: each kind chooses its own weight, as above
    if auto_anchors and unit_rows is not None and c.M_atom:
        local_anchors = _local_anchor_chooser(sl, s, unit_rows, anchor_atoms, probe_atoms, picked[8], notes, timings)
    sel, lam, lam_table, lam_dc, cv_rows, n_stage1, chosen, eq9, theta_lin, models, column_choice = picked
    kinks = chosen.pop("kinks", None)   # the kink check's record (dcace.gate_kinks), None: nothing checked
    if kinks is not None:   # (its time is the report's, never the file's: same data, same bytes)
        timings["kink_check"] = kinks.pop("seconds")
    notes += _kink_notes(kinks)
    block_choice, degree_choice = column_choice["block_ridge"], column_choice["degree_ridge"]
    top_choice = column_choice["top_degree_ridge"]
    notes += _column_notes(block_choice, degree_choice, top_choice)
    timings["selection"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- final models
    t0 = time.perf_counter()
    fm = _final_stage(s, c, basis, data, sel, d1, chosen, lam_dc, joint, models, compare, cv_rows, n, progress,
                      notes, timings, local_anchors)   # stage 9: the structure gate's choice, or a local gate's
    if fm.atom_fit is not None and "anchors_auto" in fm.atom_fit:   # a local gate won, its --anchors auto weight
        w_anchor = settings["anchors"] = fm.atom_fit["anchor_weight"]
        anchor_auto = fm.atom_fit["anchors_auto"]
        anchor_rows = unit_rows.scaled(w_anchor) if w_anchor > 0 else None
        if anchor_rows is None and anchor_note in notes:   # weight 0: the fit has no anchors
            notes.remove(anchor_note)
    M_sel, tau_sel, lam_dc, gate, theta_final, models, compare = fm.M_sel, fm.tau_sel, fm.lam_dc, fm.gate, \
        fm.theta_final, fm.models, fm.compare
    coef = theta_final[:, :D].reshape(-1, S, K)
    e0 = theta_final[:, D:] + e_ref[None, :]
    if short_range is not None:   # level-match the pair core to the fitted dimers (format version 4)
        t_shift = time.perf_counter()
        basis, window, short_range, shift_notes = sl.level_matched(basis, window, short_range, coef, e0, gate)
        notes += shift_notes
        timings["core_shift"] = time.perf_counter() - t_shift
    timings["final_solve"] = time.perf_counter() - t0
    selection = _selection_record(fm, lam, lam_table, eq9, V if pca else None, clusterings, n, K, e_ref,
                                  column_choice, anchor_auto, cl.sample)
    if kinks is not None and fm.gate_used in ("structure", "none"):   # (a local gate that won is not checked)
        selection["gate_kinks"] = _finite(kinks)
    if sl.crystal_record is not None:   # the crystal constraints acted on the linear model
        selection["crystal_constraints"] = _finite(sl.crystal_record)
        notes.append(CrystalConstraints.note(sl.crystal_record))
    errors = cv_errors(cv_rows, n_stage1, M_sel, tau_sel, committee, lam_dc, compare)

    # ---------------------------------------------------------------- pass 3: training errors
    t0 = time.perf_counter()
    meta_partial = file_metadata(settings, s, data, test_data, resume, basis, core, window, basis_blocks, elements,
                                 selection, _finite)
    pot = Potential.from_parts(basis, coef, e0, gate, meta_partial, short_range=short_range)
    lin_pot = pot if M_sel == 1 else Potential.from_parts(basis, theta_lin[None, :D].reshape(1, S, K),
                                                          (theta_lin[D:] + e_ref)[None, :], None, {},
                                                          short_range=short_range)
    train_stats, weights_train, nearest_train = training_errors(
        ranks, resume, data_orig.frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays, threads, progress,
        errors, lambda name: _fit_state.sums_errors(sel, *models[name], joint.get((M_sel, tau_sel)) if name == "dc"
                                                    else None))
    timings["pass3"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- test set
    arrays = test_errors(test_data, test_orig, rows_fn, models, e_ref, pot, "dc" if M_sel > 1 else "linear",
                         keep_arrays, threads, progress, errors, timings)
    for name in list(errors):
        for which in ("train", "test"):
            errors[name].setdefault(which, None)
    if keep_arrays:
        plot_arrays(arrays, train_stats, Z, clusterings, M_sel, n, weights_train, nearest_train, cl.sample)

    # ---------------------------------------------------------------- final file with errors
    meta, grade_G, grade_stats = _file_record(meta_partial, errors, cv_rows, notes, ranks, resume, basis, data, own,
                                              counts, seed, timings, c.budget)   # stage 11: the metadata and the grade
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
            anchor_weight=w_anchor, ground=probed)
        selection["state"] = {"path": str(state), "bytes": _fit_state.save_state(state, fs), **fs.nbytes()}
        timings["state"] = time.perf_counter() - t0
    return pot


@dataclass
class _Read:
    """Stage 2: the training and test data (an MPI rank: its own frames), the plan of an MPI fit."""
    data: Dataset
    test_data: Dataset | None
    plan: tuple | None    # MPI: (folds, blocks) from the frame count
    offset: int           # a refit: the state's structures before the new ones


def _read_stage(s: FitSettings, c, ranks, resume, fixed, elements, keys, timings) -> _Read:
    """The training and test data (dcace.data, dcace.stream); an MPI rank parses only its blocks' frames."""
    train, test, weight_key = s.train, s.test, s.weight_key
    t0 = time.perf_counter()
    offset = 0 if resume is None else resume.n      # a refit reads and adds only the new structures ...
    plan = None   # MPI: (folds, blocks) from the frame count; each rank keeps only its blocks' frames
    if ranks.size > 1 and not isinstance(train, Dataset):
        plan = _fold_blocks(count_frames(train) + offset, fixed, s.seed, c.k_folds, c.bsize, offset)
        keep = restream.OwnMask(len(plan[0]) - offset, [int(i) - offset for b in ranks.own_blocks(plan[1])
                                                        for i in plan[1][b]])
    # MPI: each rank parses only the frames it keeps of extended XYZ files (dcace.stream; None: other
    # sources, read_data parses every frame on every rank, keeping its own)
    data = train if isinstance(train, Dataset) else None
    if data is None and plan is not None:
        # streamed: a rank whose frames do not fit frames_budget holds none of them between passes, each pass
        # parses them again (dcace.restream; not for a state's fits, whose refit code reads the frames as a list)
        data = read_own(ranks, train, keep, elements=elements, weight_key=weight_key, streamed=fixed is None,
                        hold_below=c.frames_budget * 2**30, **keys)
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
    return _Read(data, test_data, plan, offset)


@dataclass
class _Baseline:
    """Stage 3: the basis, the short-range core and the data the experts learn (labels minus the baseline)."""
    basis: ACEBasis
    window: tuple | None          # (lo, hi) pair windows of the core
    short_range: dict | None      # the density core (dcace.baseline.density_core)
    restraint_rows: object        # the dimer restraints' rows (or None)
    core_notes: list
    shortest: object              # (S, S) shortest training distances (None without the core)
    rho_max: object
    data: Dataset                 # labels minus the baseline
    test_data: Dataset | None
    data_orig: Dataset            # labels minus an external baseline only (what the written potential is
    test_orig: Dataset | None     # evaluated on)


def _baseline_stage(s: FitSettings, c, ranks, resume, fixed, core, elements, chemical_channels, embedding_kind,
                    settings, data, test_data, timings) -> _Baseline:
    """The core windows from the data, the species embedding, the basis, and the residual labels."""
    cutoff, inner_cutoff, w_L, max_degree = s.cutoff, s.inner_cutoff, s.w_L, s.max_degree
    t0 = time.perf_counter()
    core_notes, window, short_range, restraint_rows, shortest, rho_max = [], None, None, None, None, None
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
                                  energy_weight=c.wE, force_weight=c.wF)
        if "chemical_embedding" in settings:   # data-driven or given: the W a refit must keep
            settings["chemical_embedding_weights"] = W_chem.tolist()
    basis = ACEBasis(elements, cutoff, s.body_order, max_degree, inner_cutoff=inner_cutoff, w_L=w_L,
                     core_window=window, max_degree_blocks=s.max_degree_blocks, chemical_channels=chemical_channels,
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
        if c.w_rest > 0:
            dimers = restraint_dimers(elements, shortest, lo, cutoff)
            restraint_rows = restraint_batch(basis, base_pot, dimers, c.wF, c.w_rest) if dimers else None
            core_notes.append(f"repulsion restraints: {len(dimers)} dimers between each pair's core window and its "
                              f"shortest training distance, forces fitted to ZBL's with weight {c.w_rest:g} x the force "
                              f"weight (--repulsion-restraints)")
    timings["baseline"] = time.perf_counter() - t0 - timings["basis"]   # windows, densities, labels - baseline
    return _Baseline(basis, window, short_range, restraint_rows, core_notes, shortest, rho_max, data, test_data,
                     data_orig, test_orig)


@dataclass
class _Descriptors:
    """Stage 4 (pass 1): folds and blocks, this rank's structures, the per-structure sums and weights."""
    folds: np.ndarray
    blocks: list
    n_kept: int            # a reuse= fit: blocks of the state's structures
    bsize: int             # pass 2's batch size
    own: np.ndarray        # this rank's structures (positions in data.frames)
    hashes: list | None
    own_periodic: list     # (i, periodic) of this rank's structures
    wts: np.ndarray        # (n,) frame weights
    e_fixed: np.ndarray    # (S,) isolated-atom energies (nan: fitted)
    p1: _Pass1
    notes: list
    spill: bool            # rank 0's per-structure rows in a scratch file (dcace.rowstore)


def _descriptor_stage(s: FitSettings, c, ranks, resume, fixed, basis, data, elements, n, plan, offset,
                      progress) -> _Descriptors:
    """Pass 1: every structure's descriptor sums and labels, the frame weights, e_ref (a refit: after the state's)."""
    reuse, D = s.reuse, basis.n_species * basis.n_features
    Dp = D + basis.n_species
    cv_groups = None   # (a state's folds stay: its structures were grouped when it was written)
    if s.cv_groups is not None and fixed is None and plan is None:
        cv_groups = cv_group_labels(data.frames, s.cv_groups, s.train)
    folds, blocks = _fold_blocks(n, fixed, s.seed, c.k_folds, c.bsize, offset, cv_groups) if plan is None else plan
    # blocks of the state's structures in a reuse= fit (a refit has their sums; dcace.state_pack)
    n_kept = len(fit_blocks(folds[:fixed.n], max(1, c.bsize))) if reuse is not None else 0
    # pass 2 accumulates in batches whose work arrays (2B x D'^2) stay below ~64 MiB
    bsize = max(1, min(c.bsize, int(64 * 2**20 // (16 * Dp * Dp))))
    # lean: the ranks other than 0 keep none of the (n, D) rows and none of what rank 0 alone uses
    # (standardiser, PCA, clusterings, hashes): their memory does not grow with n x D.  Without a state's
    # structures rank 0 takes the rows in rounds too, into Rows that spill to a scratch file over
    # rows_budget_gb (a fit that writes a state holds them: the state's file is them)
    lean = ranks.size > 1 and fixed is None
    spill, problem = False, None
    if ranks.is_root and fixed is None and s.state is None:
        nbytes = 8 * D * (n + 6 * _n_stress_labels(data, None))
        spill = rowstore.spills(nbytes, c.rows_budget)
        problem = rowstore.scratch_problem(nbytes) if spill else None
    problem = ranks.bcast(problem)   # (every rank stops, before pass 1)
    if problem:
        raise OSError(problem)
    sink = rowstore.Rows(n, (D,), spill) if ranks.is_root and fixed is None else None
    labels = []   # (i, energy, hash, periodic) of this rank's structures, taken as pass 1 reads them
    need_hash = s.state is not None or fixed is not None   # (the state's record of the frames, a reuse's check)
    # streamed frames: pass 1 reads the residual energies the residual check kept, not the baseline again
    p1_frames = data.frames.labels_only() if isinstance(data.frames, restream.StreamedFrames) and not need_hash \
        else data.frames
    Bsum, counts = _descriptor_pass(basis, p1_frames, progress, s.threads, "pass 1/3 descriptors", ranks,
                                    [b - offset for b in blocks], lean=fixed is None, sink=sink,
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
        wts = frame_weights(data.frames, s.weights)
        e_fixed, e0_notes = isolated_atom_energies(data.frames, elements, s.e0, E)
    else:   # the state's structures first, then the new ones
        Bsum, counts, E, wts, hashes, e_fixed, e0_notes = resume.extend_pass1(Bsum, counts, E, data.frames, hashes)
    if fixed is not None:   # every rank has every row (a state's fit: in memory)
        Bsum = rowstore.Rows.of(Bsum)
    N = counts.sum(axis=1)
    e_ref = _reference_energies(E, counts, wts, e_fixed) if fixed is None else fixed.arrays["e_ref"]
    e_ref = ranks.bcast(e_ref)   # rank 0's numbers on every rank
    p1 = _Pass1(Bsum, counts, N, E, e_ref, (E - counts @ e_ref) / N)
    if cv_groups is not None:   # (no note at the default: the files of fits before cv_groups keep their bytes)
        sizes = np.bincount(cv_groups)
        e0_notes = list(e0_notes) + [
            f"cross-validation folds by cv_groups={s.cv_groups!r}: {len(sizes)} groups of 1-{int(sizes.max())} "
            f"structures, each in one fold; folds of " + ", ".join(map(str, np.bincount(folds, minlength=c.k_folds)))
            + " structures"]
    return _Descriptors(folds, blocks, n_kept, bsize, own, hashes, own_periodic, wts, e_fixed, p1, e0_notes, spill)


@dataclass
class _Clusters:
    """Stage 5: the standardiser, the standardised mean descriptors Z of the clustered structures
    (``sample``: all of them, or cluster_sample of them), the projection V, the clusterings."""
    st: object
    Z: object
    V: object
    clusterings: dict      # M -> clustering of the structures (every M > 1 of the candidates)
    sample: object = None  # (m,) the structures Z holds, increasing (rank 0)


def _cluster_sample(n: int, most: int, seed: int) -> np.ndarray:
    """The structures the clustering is fitted on: all, or `most` of them drawn with the fit's seed."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng([int(seed), 0x5A4D]).choice(n, size=most, replace=False))


def _clustering_stage(s: FitSettings, c, ranks, fixed, p1, folds, Ms, hashes, lean) -> _Clusters:
    """Standardisation, PCA and seeded k-means for every candidate M on rank 0 (a state's, with the new
    structures joining them), sent to every rank.  Over cluster_sample structures they are fitted on a
    seeded sample and the others join the nearest centroid (read a chunk at a time: dcace.rowstore)."""
    n = len(p1.N)
    if lean and not ranks.is_root:   # rank 0's clusterings arrive below
        st = Z = V = clusterings = sample = None
    elif fixed is None:
        sample = _cluster_sample(n, c.cluster_sample, s.seed)
        P = p1.P(sample)
        st = fit_standardiser(P)
        Z = st(P)
        if s.pca:
            V = pca_projection(Z, variance=s.pca_variance, max_components=s.pca_max_components)
        else:
            V = np.eye(P.shape[1])
        clusterings = {M: cluster(P, M, seed=s.seed, standardiser=st, projection=V) for M in Ms if M > 1}
        del P
        if len(sample) < n:
            clusterings = _join_rest(clusterings, p1, sample)
    else:   # folds, standardiser, projection and clusters of the state; new structures join them
        if s.reuse is not None:
            fixed.check_prefix(hashes)
        sample = np.arange(n)
        P = p1.P(sample)
        folds_again, st, V, clusterings = fixed.fixed_pass1(P, s.seed, int(s.cv_folds))
        assert np.array_equal(folds_again, folds)
        Z = st(P)
    return _Clusters(st, Z, V, ranks.bcast(clusterings), sample)


def _join_rest(clusterings: dict, p1, sample) -> dict:
    """Every structure's label: the sample's from k-means, the others' the nearest cluster's."""
    n = len(p1.N)
    rest = np.setdiff1d(np.arange(n), sample)
    out = {}
    for M, cl in clusterings.items():
        labels = np.empty(n, dtype=cl.labels.dtype)
        labels[sample] = cl.labels
        for part, B in p1.Bsum.chunks(rest):
            labels[rest[part]] = cl.nearest(B / p1.N[rest[part], None])
        out[M] = cl.joined(labels)
    return out


def _anchor_sources(c, s: FitSettings, ranks, resume, fixed, data, p1, own, own_periodic, clusterings, w_anchor,
                    auto_anchors):
    """(anchor_src, anchor_atoms, probe_atoms, ground_atoms): the sources of the committees' off-data anchors
    (dcace.anchors; a state's are kept, dcace.state_anchors), their frames, --anchors auto's probe frames and the
    lowest-energy training structure (the crystal constraints' and the kink check's) on rank 0."""
    N, n = p1.N, len(p1.N)   # (every rank has every structure's atom counts)
    anchor_atoms = None   # the sources of the committees' off-data anchors (dcace.anchors), from their ranks
    anchor_src = None     # (sources, ground): a state's are kept (dcace.state_anchors)
    if w_anchor > 0 and (s.committee == "joint" or s.regularise == "global") and (len(clusterings) > 0 or c.M_atom):
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
    ground_atoms = None if anchor_atoms is None else anchor_atoms[1]
    if anchor_src is None and resume is None and (s.crystal_constraints or s.kink_check):   # the ground structure alone
        _, ground = anchor_sources(N.tolist(), p1.yE.tolist())
        if ground is not None:   # (collective)
            got = dict(ranks.gather_indexed([(i, data.frames[i].atoms) for i in own if i == ground]))
            ground_atoms = got.get(ground) if ranks.is_root else None
    return anchor_src, anchor_atoms, probe_atoms, ground_atoms


@dataclass
class _Accumulators:
    """Stage 6: the normal equations of every candidate (allocated), and what the memory budget skipped."""
    groups: GroupAccumulator     # the linear model and one group per cluster of every clustering
    joint: dict                  # (M, tau) -> JointAccumulator
    skipped: dict                # (M, tau) -> bytes it would have needed
    restraint: object            # RestraintRows or None
    independent_ok: bool         # the independent experts' groups fit half the budget (else no comparison)


def _accumulator_stage(c, s: FitSettings, n, basis, clusterings, restraint_rows, Ms, fixed, notes) -> _Accumulators:
    """The candidates (every M at the first temperature first) within the memory budget (notes say which not)."""
    k_folds, budget, wE = c.k_folds, c.budget, c.wE
    S = basis.n_species
    D = S * basis.n_features
    Dp = D + S
    n_groups = 1 + sum(clusterings)
    independent_ok = 8 * k_folds * n_groups * Dp * Dp <= 0.5 * budget
    if not independent_ok:
        if s.committee == "independent":
            raise ValueError(f"independent experts for M = {sorted(clusterings)} need "
                             f"{8 * k_folds * n_groups * Dp * Dp / 2**30:.2f} GiB of normal equations, more than "
                             f"half the memory budget ({budget / 2**30:.2f} GiB); raise memory_budget_gb")
        notes.append("independent-expert comparison (the paper's fits) skipped: its normal equations would "
                     "exceed half the memory budget")
    # the global model, then one group per cluster of every clustering (from the labels, batch by batch)
    membership = LabelMembership(n, [(cl.labels, M) for M, cl in clusterings.items()] if independent_ok else [])
    groups = GroupAccumulator(k_folds, D, S, membership, wE)
    restraint = None if restraint_rows is None else RestraintRows(restraint_rows, D, S, membership.shape[1])
    cand = []
    for t in c.temps:      # priority: every M at the first temperature, then the others
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
    return _Accumulators(groups, joint, skipped, restraint, independent_ok)


def _pass2_stage(c, ranks, resume, rows_fn, data, d1, groups, joint, n, offset, progress, threads) -> dict:
    """Pass 2: every structure's fitting rows into the normal equations of every candidate, block by block
    on the rank that owns the block, summed on rank 0 in block order (dcace.parallel.accumulate_blocks).
    Returns rank 0's stress store {i: (Psi (6, D), sigma (6,), V/N)} (a refit: the state's first)."""
    wF, wS = c.wF, c.wS
    blocks, folds, n_kept, bsize, wts, p1 = d1.blocks, d1.folds, d1.n_kept, d1.bsize, d1.wts, d1.p1
    counts, N = p1.counts, p1.N
    # rank 0 keeps every structure's stress rows (i -> (Psi (6, D), sigma (6,), V/N), in memory or a scratch
    # file: dcace.rowstore); another rank sends its blocks' with their partials
    stress_store = None
    if ranks.is_root:   # (room for every structure with a stress label: those fitting_rows gives stress rows)
        stress_store = rowstore.StressRows(groups.D, _n_stress_labels(data, resume), d1.spill)
    if resume is not None:
        resume.restore(groups, joint)
        stress_store.update(resume.stress_store())
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
                outbox[int(i)] = stress   # (rank 0: StressRows.__setitem__)
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
    return stress_store


def _anchor_rows_stage(c, s: FitSettings, resume, basis, core, elements, shortest, window, joint, anchor_atoms,
                       anchor_src, bsize, notes, timings):
    """(anchor_rows, anchor_note): the off-data anchors' rows of the committees (at weight 1 for --anchors
    auto, scaled to each weight tried), a refit's from its state; the note into notes."""
    S = basis.n_species
    D = S * basis.n_features
    anchor_rows, anchor_note, t_anchors = None, None, time.perf_counter()
    if anchor_atoms is not None and (joint or c.M_atom):   # structure-gate or local-gate committees
        few = [] if core.baseline != "zbl" else free_atoms_and_dimers(elements, shortest, window[0], s.cutoff)
        # --anchors auto: H_a at weight 1, scaled to each weight tried (dcace.anchor_choice)
        anchor_rows, anchor_note = _anchor_rows(basis, *anchor_atoms, few, c.wE, c.wF, c.wS, D, S, s.seed,
                                                1.0 if c.auto_anchors else c.w_anchor, bsize,
                                                "chosen by --anchors auto (below)" if c.auto_anchors else None)
        if s.reuse is not None:   # H_a in the form the state stores it, as the refit reads it
            state_anchors.canonical(anchor_rows)
        notes.append(anchor_note)
    elif anchor_src is not None and resume is not None and joint:
        anchor_rows, anchor_note = state_anchors.stored_rows(resume, D + S)
        notes += [anchor_note] * bool(anchor_note)
    timings["anchors"] = time.perf_counter() - t_anchors   # (part of the selection's time)
    return anchor_rows, anchor_note


class _Selecting:
    """Stage 8: the selection (ridge, column ridges, M, tau by k-fold CV; dcace.selection.Selector) and the
    final solves, for the off-data anchors given; and the pair core level-matched to a solution."""

    def __init__(self, s: FitSettings, c, basis, window, short_range, shortest, core, elements, groups, joint, d1,
                 stress_store, clusterings, Z_sample, restraint, fixed, column_ridges, Ms, compare, shared_one_body):
        """Z_sample: (Z, rows) the standardised mean descriptors of the clustered structures, and which."""
        self.s, self.c, self.basis, self.window, self.short_range = s, c, basis, window, short_range
        self.shortest, self.core, self.elements, self.groups, self.joint = shortest, core, elements, groups, joint
        self.d1, self.stress_store, self.clusterings, self.restraint = d1, stress_store, clusterings, restraint
        self.Z, self.Z_rows = Z_sample
        self.fixed, self.column_ridges, self.Ms, self.compare = fixed, column_ridges, Ms, compare
        self.shared_one_body = shared_one_body
        self.crystals = None          # dcace.crystal_constraints.CrystalConstraints, or None (off / no ground)
        self.crystal_record = None    # what the constraints did to the final linear model (None: nothing)
        self.kink_crystals = []       # the kink check's crystals [(label, Atoms)] (dcace.gate_kinks; [] = off)
        self._constrained_cache = {}  # unconstrained theta's bytes -> (theta, record): one check per solution
        self._level_cache = {}        # the last linear model's level_matched result

    def _constrained(self, sel):
        """constrain(theta, lam) for _final_models: the crystal constraints on the final linear model (the same
        unconstrained solution, as --anchors auto gives for every weight, is checked once)."""
        def constrain(theta, lam):
            key = (theta.tobytes(), float(lam))
            if key not in self._constrained_cache:
                self._constrained_cache[key] = self.crystals.apply(
                    theta, lambda G, b: sel.solve_linear_total_constrained(lam, G, b),
                    lambda th: self.candidate_potential(th[None, :], None))
            theta_c, self.crystal_record = self._constrained_cache[key]
            return theta_c
        return constrain

    def select(self, rows):
        """(sel, lam, lam_table, lam_dc, cv_rows, n_stage1, chosen, eq9, theta_lin, models, column_choice):
        the selection and the final solves with the off-data anchors `rows` (or None)."""
        from .selection import Selector

        s, c, basis, d1, joint = self.s, self.c, self.basis, self.d1, self.joint
        S = basis.n_species
        D = S * basis.n_features
        ridge, committee, (block_ridge, degree_ridge, top_degree_ridge) = s.ridge, s.committee, self.column_ridges
        sel = Selector(groups=self.groups, joint=joint, p1=d1.p1, folds=d1.folds, k=c.k_folds, D=D, S=S, wE=c.wE,
                       wF=c.wF, wS=c.wS, stress_store=self.stress_store, clusterings=self.clusterings, Z=self.Z,
                       Z_rows=self.Z_rows, regularise=s.regularise, kappa=float(s.agreement), weights=d1.wts,
                       fixed_one_body=np.isfinite(d1.e_fixed), restraint=self.restraint,
                       shared_one_body=self.shared_one_body, anchors=rows)
        if self.fixed is not None:   # the ridge's column scaling stays the state's (so does its penalty metric)
            sel.sc = self.fixed.arrays["column_scale"]
        top_grid = s.top_degree_ridge_grid
        top = top_degree_start(sel, basis, top_degree_ridge, top_grid)   # lam with the top shell (all but) off
        lam, lam_table = sel.choose_ridge(ridge, s.ridge_grid)
        column_choice = choose_column_ridge(sel, lam, basis, block_ridge, degree_ridge,   # dcace.block_ridge
                                            top=(top, top_degree_ridge, top_grid))
        lam_dc = lam if ridge is not None else max(lam, s.ridge_experts_floor)
        cv_rows = sel.cv_all(lam, committee=committee, compare=self.compare, lam_dc=lam_dc)
        n_stage1 = len(cv_rows)
        chosen, lam_dc, theta_lin, models, extra = self._smooth_choice(sel, cv_rows, lam, lam_dc)
        cv_rows += extra
        eq9 = sel.eq9(lam, self.Ms, chosen, lam_dc)
        return sel, lam, lam_table, lam_dc, cv_rows, n_stage1, chosen, eq9, theta_lin, models, column_choice

    def _smooth_choice(self, sel, cv_rows, lam, lam_dc0):
        """(chosen, lam_dc, theta_lin, models, extra CV rows): the CV choice among cv_rows and its final solves.
        With the kink check (dcace.gate_kinks), a committee whose pressure kinks along the probe crystals is
        turned down for the next candidate by CV; a fixed --experts M keeps to that M (if every temperature
        kinks: the least kinking one, with a warning). chosen["kinks"]: what was checked (None: nothing)."""
        s, c, committee = self.s, self.c, self.s.committee
        record = {"bound": f"{KINK_GPA:g} GPa + {100 * KINK_REL:g} % of |P|", "checked": [], "kept_kinking": False,
                  "seconds": 0.0}
        tried, extra = [], []
        while True:
            out = [r for r in cv_rows if (r["M"], r["tau"]) not in {(x[0]["M"], x[0]["tau"]) for x in tried}]
            chosen = sel.choose(out, committee=committee, experts=c.experts, parsimony=s.parsimony)
            if tried and c.experts != "auto" and chosen["M"] != int(c.experts):   # every temperature of M kinks
                chosen, lam_dc, theta_lin, models, _ = min(tried, key=lambda x: x[4])
                record["kept_kinking"] = True
                warnings.warn(f"the kink check: the committee kinks at every temperature of --experts {c.experts}; "
                              f"kept tau = {chosen['tau']:g}, the least kinking", stacklevel=2)
                break
            lam_dc = lam_dc0
            if chosen["M"] > 1 and s.ridge is None:
                lam_dc, more = sel.refine_committee_ridge(chosen, lam, lam_dc0, s.ridge_dc_factors, committee)
                extra += more
            theta_lin, models = _final_models(sel, chosen, lam, lam_dc, self.joint, committee, self.compare,
                                              self.clusterings, self.Z,
                                              None if self.crystals is None else self._constrained(sel))
            if chosen["M"] == 1 or not self.kink_crystals:
                break
            pot = self.candidate_potential(models["dc"][0], self.joint[(chosen["M"], chosen["tau"])].gate)
            t_kink = time.perf_counter()
            kink = worst_kink(pot, self.kink_crystals)
            record["seconds"] += time.perf_counter() - t_kink
            record["checked"].append(dict(_finite(kink), M=int(chosen["M"]), tau=float(chosen["tau"]),
                                          cv_loss=float(chosen["cv_loss"])))
            if kink["ratio"] <= 1.0:
                break
            tried.append((chosen, lam_dc, theta_lin, models, kink["ratio"]))
        chosen = dict(chosen, kinks=record if record["checked"] else None)
        return chosen, lam_dc, theta_lin, models, extra

    def level_matched(self, basis, window, short_range, coef, e0, gate):
        """(basis, window, short_range, notes): the pair core level-matched to the fitted dimers (format
        version 4; baseline.core_shifts), or as given without the built-in core. A linear model's is
        computed once (the crystal constraints' check builds the final linear potential before the file does)."""
        if short_range is None:
            return basis, window, short_range, []
        key = None if gate is not None else (id(basis), id(window), id(short_range), coef.tobytes(), e0.tobytes())
        if key is not None and key in self._level_cache:
            return self._level_cache[key]
        out = self._level_matched(basis, window, short_range, coef, e0, gate)
        if key is not None:
            self._level_cache = {key: out}   # (the last one only)
        return out

    def _level_matched(self, basis, window, short_range, coef, e0, gate):
        s, elements = self.s, self.elements

        def with_core(sh, hi_top):   # the fitted potential with pair shifts sh and window tops hi_top
            b = basis if np.array_equal(hi_top, window[1]) else basis.with_core_window((window[0], hi_top))
            return Potential.from_parts(b, coef, e0, gate, {}, short_range=dict(short_range, pair_shift=sh))

        shift, hi_top, shift_notes = core_shifts(with_core, pure_zbl(elements, s.cutoff, s.inner_cutoff, s.w_L), basis,
                                                 self.shortest, movable=user_window_free(self.core.core_range, elements))
        if not np.array_equal(hi_top, window[1]):   # a window top raised towards the data (never onto it)
            window = (window[0], hi_top)
            basis = basis.with_core_window(window)
        sr = dict(short_range, pair_shift=shift)
        if sr.get("density_cutoff") is not None:   # the density wall's level and slope (format version 8)
            sr["density_wall"], wall_notes = density_wall(
                lambda x: Potential.from_parts(basis, coef, e0, gate, {}, short_range=x), sr, elements)
            shift_notes = shift_notes + wall_notes
        return basis, window, sr, shift_notes

    def candidate_potential(self, theta, gate):
        """The potential of solution theta (M x D') with the level-matched core (no metadata)."""
        S, K = self.basis.n_species, self.basis.n_features
        D, e_ref = S * K, self.d1.p1.e_ref
        c, e = theta[:, :D].reshape(-1, S, K), theta[:, D:] + e_ref[None, :]
        b, _, sr, _ = self.level_matched(self.basis, self.window, self.short_range, c, e, gate)
        return Potential.from_parts(b, c, e, gate, {}, short_range=sr)


def _crystal_checks(s: FitSettings, basis, elements, ground, short_range, core, fixed, notes):
    """The crystal constraints of this fit (dcace.crystal_constraints), or None: off, no built-in core, or no
    periodic probe structure (a fit that continues a fit state probes the state's, dcace.state_ground; one
    before version 4 has none: its linear model is not constrained, with a note)."""
    if not s.crystal_constraints or core.baseline != "zbl":
        return None
    crystals = probe_crystals(elements, ground)
    if not crystals:
        notes.append(f"crystal constraints: not checked ({_no_probe(fixed)})")
        return None
    return CrystalConstraints(basis, crystals, short_range)


def _no_probe(fixed) -> str:
    """Why a fit has no probe structure (the crystal constraints' and the kink check's)."""
    if fixed is not None and int(fixed.meta.get("version", 0)) < 4:
        return f"the fit state {fixed.path} (format version {fixed.meta.get('version')}) holds no probe structure"
    return "no periodic lowest-energy training structure"


def _kink_crystals(s: FitSettings, elements, ground, clusterings, fixed, notes):
    """The kink check's crystals (dcace.gate_kinks): bcc and fcc of every element at the probe structure's volume
    per atom and that structure ([] when off or with no committee candidate; with a note when there is no
    periodic probe structure: a fit that continues a fit state probes the state's, dcace.state_ground)."""
    if not s.kink_check or not clusterings:
        return []
    crystals = probe_crystals(elements, ground)
    if not crystals:
        notes.append(f"kink check: not done ({_no_probe(fixed)})")
    return crystals


def _kink_notes(kinks) -> list:
    """The report's lines on the kink check (dcace.gate_kinks): every committee it turned down, and a kept one
    that kinks."""
    if kinks is None:
        return []
    out = []
    for row in kinks["checked"]:
        where = (f"{row['kink_gpa']:.3g} GPa at {row['a_over_a0']:.4f} a0 of {row['label']} (P = {row['p_gpa']:.4g} GPa), "
                 f"{row['ratio']:.3g}x the bound {kinks['bound']}" if row["label"] is not None else "no kink")
        verdict = "passes" if row["ratio"] <= 1.0 else ("kept (every temperature kinks)" if kinks["kept_kinking"]
                                                         and row is min(kinks["checked"], key=lambda r: r["ratio"])
                                                         else "turned down")
        out.append(f"kink check: M = {row['M']}, tau = {row['tau']:g} (CV loss {row['cv_loss']:.6g}): {where}: {verdict}")
    return out


def _safety_probes(sl: _Selecting, s: FitSettings, anchor_atoms, probe_atoms) -> SafetyProbes:
    """--anchors auto's probes (dcace.anchor_choice) of this fit's data."""
    return SafetyProbes(sl.elements, sl.shortest if sl.core.baseline == "zbl" else None,   # no core: no dimer probes
                        anchor_atoms[1], probe_atoms, s.anchors_auto_force_ratio)


def _local_anchor_chooser(sl: _Selecting, s: FitSettings, unit_rows, anchor_atoms, probe_atoms, theta_lin, notes,
                          timings):
    """--anchors auto for a local gate: chooser(kind, select) -> the local fit of the smallest grid weight
    whose committee passes the probes (select(anchor rows or None) -> LocalGateRows.select's dict), with its
    weight and the record (``anchor_weight``, ``anchors_auto``); the probes, notes and rule of the structure
    gate's committees (_choose_anchors, dcace.anchor_choice)."""
    probes = _safety_probes(sl, s, anchor_atoms, probe_atoms)
    lin_pot = sl.candidate_potential(theta_lin[None, :], None)

    def chooser(kind, select, notes_out=None):
        """notes_out: where the notes go (a list the caller keeps, experts="auto" over M; default the fit's)."""
        t_auto = time.perf_counter()

        def candidate(w):
            fit = select(unit_rows.scaled(w) if w > 0 else None)
            return fit, sl.candidate_potential(fit["theta"], fit["gate"]), fit["theta"].shape[0], fit["cv_loss"]

        w, fit, record, auto_notes = choose_weight(s.anchors_auto_grid, candidate, probes, lin_pot)
        (notes if notes_out is None else notes_out).extend(f"{kind} gate: {note}" for note in auto_notes)
        key = f"anchors_auto_{kind}"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t_auto
        return dict(fit, anchor_weight=w, anchors_auto=record)
    return chooser


def _choose_anchors(sl: _Selecting, s: FitSettings, anchor_rows, anchor_note, anchor_src, anchor_atoms, probe_atoms,
                    notes, settings, timings):
    """--anchors auto (dcace.anchor_choice): the smallest weight of the grid whose committee passes the probes.
    Returns (picked: sl.select's result, w_anchor, anchor_rows, anchor_src, anchor_auto)."""
    t_auto = time.perf_counter()
    probes = _safety_probes(sl, s, anchor_atoms, probe_atoms)
    unit_rows, done = anchor_rows, {0.0: sl.select(None)}   # the linear model does not depend on the anchors

    def candidate(w):
        res = done.pop(w, None) or sl.select(unit_rows.scaled(w) if w > 0 else None)
        ch = res[6]
        if ch["M"] == 1:
            return res, None, 1, ch["cv_loss"]
        theta, _ = res[9]["dc"]
        return res, sl.candidate_potential(theta, sl.joint[(ch["M"], ch["tau"])].gate), ch["M"], ch["cv_loss"]

    lin_pot = sl.candidate_potential(done[0.0][8][None, :], None)
    w_anchor, picked, anchor_auto, auto_notes = choose_weight(s.anchors_auto_grid, candidate, probes, lin_pot)
    notes += auto_notes
    anchor_rows = unit_rows.scaled(w_anchor) if w_anchor > 0 else None
    if anchor_rows is None:   # weight 0: the fit has no anchors
        notes.remove(anchor_note)
        anchor_src = None
    settings["anchors"] = w_anchor
    timings["anchors_auto"] = time.perf_counter() - t_auto
    return picked, w_anchor, anchor_rows, anchor_src, anchor_auto


def _column_notes(block_choice, degree_choice, top_choice) -> list:
    """The notes of the column ridges chosen (dcace.block_ridge)."""
    notes = []
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
    return notes


@dataclass
class _Final:
    """Stage 9: the model the file holds (M, tau, committee ridge, gate, solution) and the compared models."""
    M_sel: int
    tau_sel: object
    lam_dc: float
    gate: object              # the gate of the file (None: linear)
    theta_final: np.ndarray   # (M, D') solution
    gate_used: str            # none | structure | atom | neighbourhood
    gate_cv: dict | None      # --gate with a local gate: the CV loss of every gate kind
    atom_fit: dict | None     # a local gate's fit (dcace.local_gate.LocalGateRows.select)
    models: dict              # name -> (theta, gate function): the models the test set compares
    compare: bool
    experts_cv: dict | None = None   # experts="auto" with a local gate: per kind every M's CV loss and the chosen M


def _final_stage(s: FitSettings, c, basis, data, sel, d1, chosen, lam_dc, joint, models, compare, cv_rows, n,
                 progress, notes, timings, local_anchors=None) -> _Final:
    """The structure machinery's choice, then each local gate (their own clustering, rows and CV), the lowest CV
    loss winning with --gate auto; rows of the local gates' CV appended to cv_rows. The local gates get the
    selector's off-data anchors, or with --anchors auto their own weight (local_anchors, _local_anchor_chooser)."""
    M_sel, tau_sel = chosen["M"], chosen["tau"]
    gate = joint[(M_sel, tau_sel)].gate if M_sel > 1 else None
    theta_final, _ = models["dc" if M_sel > 1 else "linear"]
    gate_used, gate_cv, atom_fit, experts_cv = ("structure" if M_sel > 1 else "none"), None, None, {}
    if c.M_atom:   # the local gates (dcace.local_gate): their own clustering, rows and CV
        gate_cv = {"linear": cv_rows[0]["loss"], "structure": chosen["cv_loss"] if M_sel > 1 else None}
        best_loss, lam_dc0 = chosen["cv_loss"], lam_dc
        for kind in c.local_kinds:
            t_atom = time.perf_counter()
            fit_k, per_M = _local_fit_over_M(s, c, kind, basis, data, sel, d1, lam_dc0, n, progress, notes, timings,
                                             local_anchors)
            cv_rows += [r for f in per_M.values() for r in f["cv_rows"]]
            timings[f"{kind}_gate"] = time.perf_counter() - t_atom
            gate_cv[kind] = fit_k["cv_loss"]
            if c.local_auto:   # every M's CV loss, the chosen M (the report's selection["experts_cv"])
                experts_cv[kind] = {"chosen": fit_k["theta"].shape[0], "candidates": [_M_record(M, f) for M, f in
                                                                                      per_M.items()]}
            if c.gate_kind == kind or fit_k["cv_loss"] < best_loss:
                best_loss, atom_fit = fit_k["cv_loss"], fit_k
                M_sel, tau_sel, lam_dc, gate = fit_k["theta"].shape[0], fit_k["tau"], fit_k["ridge"], fit_k["gate"]
                theta_final, gate_used = fit_k["theta"], kind
                models, compare = {"linear": models["linear"]}, False   # test rows: linear (numpy) and the core's
        if c.gate_kind == "auto":
            notes.append("--gate auto: CV loss " + ", ".join(f"{k} {v:.6g}" for k, v in gate_cv.items() if v is not None)
                         + f"; chosen: {gate_used}")
    return _Final(M_sel, tau_sel, lam_dc, gate, theta_final, gate_used, gate_cv, atom_fit, models, compare,
                  experts_cv or None)


def _local_fit_over_M(s: FitSettings, c, kind, basis, data, sel, d1, lam_dc0, n, progress, notes, timings,
                      local_anchors):
    """One local gate kind: for each candidate M (c.M_atoms; one for an integer --experts) its clustering and
    rows (``LocalGateRows``, one pass over the data, dropped before the next M: one committee's normal equations
    in memory at a time), tau and the ridge by CV and the solve (--anchors auto: each M its own weight).
    Returns (the fit of the lowest CV loss -- the smaller M on a tie --, {M: fit}); experts="auto" adds a note
    with every M's loss and keeps the anchors' notes of the chosen M only.  Each M's wall time goes into
    ``timings[f"{kind}_gate_M{M}"]`` (the report; the file holds no wall time)."""
    temps, per_M, M_notes = c.temps, {}, {}
    for M in c.M_atoms:
        t_M = time.perf_counter()
        label = f"{kind} gate rows" + (f", M = {M}" if c.local_auto else "")
        bar = _progress(None, n * len(temps), label, progress) if progress else None
        rows_k = LocalGateRows(
            basis=basis, frames=data.frames, M=M, temperatures=temps, folds=d1.folds, k=c.k_folds, p1=d1.p1,
            wts=d1.wts, wE=c.wE, wF=c.wF, wS=c.wS, seed=s.seed, pca_variance=s.pca_variance,
            pca_max_components=s.pca_max_components,
            progress_fn=None if bar is None else (lambda k: bar.update(k * len(temps))),
            kind=kind, gate_range=c.gate_range, body_order=c.gate_body_order)

        def select(anchors, rows_k=rows_k):
            return rows_k.select(sel=sel, lam=lam_dc0, ridge_factors=s.ridge_dc_factors, committee=s.committee,
                                 anchors=anchors)
        if local_anchors is None:
            fit = select(sel.anchors)
        elif c.local_auto:
            fit = local_anchors(kind, select, M_notes.setdefault(M, []))
        else:
            fit = local_anchors(kind, select)
        if bar is not None:
            bar.close()
        del rows_k, select
        per_M[M] = fit
        timings[f"{kind}_gate_M{M}"] = time.perf_counter() - t_M   # the report's, never the file's
    best = min(per_M, key=lambda M: (per_M[M]["cv_loss"] if np.isfinite(per_M[M]["cv_loss"]) else np.inf, M))
    if c.local_auto:
        notes.extend(M_notes.get(best, []))
        notes.append(f"{kind} gate, --experts auto: CV loss " + ", ".join(
            f"M = {M} {f['cv_loss']:.6g} (tau {f['tau']:g})" for M, f in per_M.items()) + f"; chosen: M = {best}")
    return per_M[best], per_M


def _M_record(M, fit) -> dict:
    """One candidate M of a local gate's experts="auto": its CV loss, tau, ridge (and --anchors auto weight)."""
    rec = {"M": int(M), "cv_loss": float(fit["cv_loss"]), "tau": float(fit["tau"]), "ridge": float(fit["ridge"])}
    if "anchor_weight" in fit:
        rec["anchor_weight"] = float(fit["anchor_weight"])
    return rec


def _selection_record(fm: _Final, lam, lam_table, eq9, V, clusterings, n, K, e_ref, column_choice, anchor_auto,
                      sample=None) -> dict:
    """The report's and the file's ``selection`` (V: the gate's PCA projection, None without PCA; sample: the
    structures the clustering was fitted on)."""
    M_sel, tau_sel = fm.M_sel, fm.tau_sel
    selection = {
        "n_experts": M_sel, "temperature": tau_sel, "ridge": lam, "ridge_experts": fm.lam_dc, "ridge_cv": lam_table,
        "eq9": eq9, "pca_components": int(V.shape[0]) if V is not None else None,
        "cluster_sizes": fm.atom_fit["cluster_sizes"] if fm.gate_used in LOCAL_GATES else (
            clusterings[M_sel].sizes.tolist() if M_sel > 1 else [n]),
        "gate": fm.gate_used, "gate_cv": fm.gate_cv,
        "e_ref": e_ref.tolist(),
    }
    for key in ("block_ridge", "degree_ridge", "top_degree_ridge"):
        if column_choice[key] is not None:
            selection[key] = column_choice[key]
    if anchor_auto is not None:   # --anchors auto: the grid, each weight's probes and CV loss, the choice
        selection["anchors_auto"] = anchor_auto
    if fm.experts_cv is not None:   # experts="auto" with a local gate: every candidate M's CV loss, per kind
        selection["experts_cv"] = fm.experts_cv
    if sample is not None and len(sample) < n and clusterings:   # (absent when every structure was clustered)
        selection["cluster_sample"] = int(len(sample))
    selection["summary"] = (f"{n} structures, K={K} features/species, M={M_sel} expert(s)"
                            + (f", tau={tau_sel:g}" if M_sel > 1 else "") + f", ridge={lam:.3g}; "
                            + f"eq. 9 would pick M={eq9['paper_M']} (paper's gate), {eq9['joint_M']} (this gate)")
    return selection


def _grade_cap(basis, budget):
    """Atoms per species of the grade's MaxVol (dcace.cost.grade_atoms_cap: within the memory budget)."""
    return cost.grade_atoms_cap(basis.n_features, budget, GRADE_DEFAULTS["max_atoms"])


def _file_record(meta_partial, errors, cv_rows, notes, ranks, resume, basis, data, own, counts, seed, timings,
                 budget):
    """(meta, grade_G, grade_stats): the file's metadata with the errors, the CV table and the notes, and the
    extrapolation grade (MaxVol active set per species, dcace.grade; a refit updates its state's).  The
    notes list is the metadata's own: the grade's notes join it."""
    meta = dict(meta_partial)
    meta["errors"] = _round_errors(errors)
    meta["selection"]["cv"] = [
        {k: _round(v) for k, v in r.items() if k in ("M", "tau", "fit", "ridge", "loss", "energy_mae_mev_per_atom",
                                                      "energy_rmse_mev_per_atom", "force_rmse_ev_per_a")}
        for r in cv_rows]
    meta["notes"] = notes
    t0 = time.perf_counter()
    grade_G, grade_notes, grade_stats = (pass3.training_grade(ranks, basis, data.frames, own, counts, seed,
                                                                    _grade_cap(basis, budget)) if resume is None
                                         else resume.update_grade(basis, [fr.atoms for fr in data.frames]))
    notes += grade_notes + [f"extrapolation grade: {100 * grade_stats['fraction_above_1']:.2f} % of the training "
                            f"atoms above 1 (max {grade_stats['max_training_grade']:.9g})"]
    meta["grade"] = {"kind": "maxvol", "fraction_above_1": _round(grade_stats["fraction_above_1"]),
                     "max_training_grade": _round(grade_stats["max_training_grade"])}
    timings["grade"] = time.perf_counter() - t0
    return meta, grade_G, grade_stats


def _data_limits(c, s: FitSettings, n, fixed, rd: _Read, data, test_data, core_notes, anchor_off):
    """(Ms, notes): the candidate numbers of experts the data allow (every expert needs 2 x cv_folds
    structures; a fit state's own), the fit's first notes; the count an MPI fit planned checked."""
    k_folds, experts, M_fixed, max_M = c.k_folds, c.experts, c.M_fixed, c.max_M
    if rd.plan is not None and len(rd.plan[0]) != n:
        raise DataError(f"{', '.join(f['name'] for f in data.files)}: counted {len(rd.plan[0]) - rd.offset} frames "
                        f"before reading, but read {len(data)} (a file changed while it was read?)")
    if n < k_folds:
        raise ValueError(f"{n} training structures are too few for {k_folds}-fold cross-validation")
    M_allowed = max(1, n // (2 * k_folds))
    if experts != "auto" and M_fixed > M_allowed:
        raise ValueError(f"--experts {M_fixed} is too many for {n} training structures with {k_folds}-fold "
                         f"cross-validation: the largest allowed is M = {M_allowed} (every expert needs "
                         f"2 x cv_folds = {2 * k_folds} structures); give --experts {M_allowed} or fewer, or "
                         f"more training data")
    Ms = [M for M in c.Ms if M <= M_allowed or M == 1] if fixed is None else fixed.Ms
    notes = list(data.notes) + (list(test_data.notes) if test_data else []) + core_notes
    if anchor_off and (s.committee == "joint" or s.regularise == "global"):   # a state before version 3
        notes.append(anchor_off)
    if experts == "auto" and max_M > M_allowed:
        notes.append(f"--experts auto tried M <= {M_allowed}, not up to --max-experts {max_M}: {n} training "
                     f"structures allow at most n / (2 x {k_folds} folds) experts")
    return Ms, notes


def _local_memory(c, S, K):
    """The local gates' normal equations against the memory budget, before any work: experts="auto" drops
    the candidate M over the budget (a note), then the largest M left (one M's rows are held at a time) is
    checked -- an error naming the options if even the smallest is over."""
    if c.local_auto:
        fits = [M for M in c.M_atoms if cost.local_gate_nbytes(S, K, M, c.k_folds, len(c.temps)) <= c.budget]
        if fits and len(fits) < len(c.M_atoms):
            c.local_notes.append(f"--experts auto with a local gate: M = {', '.join(map(str, fits))} tried, not "
                                 f"{', '.join(str(M) for M in c.M_atoms if M not in fits)} (over the memory budget, "
                                 f"--memory-budget)")
        c.M_atoms = fits or c.M_atoms[:1]
        c.M_atom = max(c.M_atoms)
    for kind in c.local_kinds:
        cost.check_local_memory(S, K, c.M_atom, c.k_folds, len(c.temps), c.budget, kind)


def _local_candidates(c, counts, folds, elements):
    """experts="auto" with a local gate, after pass 1: the candidate M every CV fit can cluster -- each
    fold's training part (the structures outside it) needs at least M atoms of every species; dropped M are
    a note.  At least the smallest candidate stays (too few atoms for it: the local gate's own error)."""
    if not c.local_auto:
        return
    per_fold = np.stack([counts[folds != f].sum(axis=0) for f in range(c.k_folds)])   # (k, S) training atoms
    fewest = per_fold.min(axis=0)
    s = int(np.argmin(fewest))
    keep = [M for M in c.M_atoms if M <= fewest[s]]
    if len(keep) < len(c.M_atoms):
        c.local_notes.append(f"--experts auto with a local gate: M = {', '.join(map(str, keep)) or 'none'} tried, "
                             f"not {', '.join(str(M) for M in c.M_atoms if M not in keep)} (element {elements[s]} "
                             f"has {int(fewest[s])} training atoms in a CV fold's training part, fewer than M)")
    c.M_atoms = keep or c.M_atoms[:1]
    c.M_atom = max(c.M_atoms)


def _basis_options(s: FitSettings, c, ranks):
    """(elements, basis_blocks, chemical_channels, block_ridge, degree_ridge, top_degree_ridge, embedding_kind):
    the basis and column options checked against the elements, K counted and its linear memory checked
    before the basis is built."""
    try:   # K is counted in ~1 s, before the (much slower) basis build and any pass over the data
        from .basis_spec import count_features

        n_el = 1 if isinstance(s.elements, str) else len(s.elements)
        K_count = count_features(n_el, s.body_order, s.max_degree, w_L=s.w_L, max_degree_blocks=s.max_degree_blocks,
                                 chemical_channels=s.chemical_channels)
    except (TypeError, ValueError):
        K_count = None   # bad settings: ACEBasis below names them
    if K_count is not None:
        cost.check_linear_memory(n_el, K_count, c.k_folds, c.budget)
        if c.M_atom:   # each local gate's committee (dcace.local_gate), also before any work
            _local_memory(c, n_el, K_count)
    elements = ACEBasis(s.elements, s.cutoff, 2, 1, inner_cutoff=s.inner_cutoff, w_L=s.w_L).elements  # validates
    basis_blocks = {str(b): float(d) for b, d in sorted(
        check_degree_blocks(s.max_degree_blocks, len(elements), s.body_order, s.max_degree).items())} or None
    chemical_channels = check_chemical_channels(s.chemical_channels, len(elements))
    block_ridge = check_block_ridge(s.block_ridge, len(elements), s.body_order, chemical_channels)
    degree_ridge = check_degree_ridge(s.degree_ridge)
    top_degree_ridge = check_top_degree_ridge(s.top_degree_ridge, float(s.max_degree))
    embedding_kind = check_embedding(s.chemical_embedding, chemical_channels, len(elements))
    if isinstance(embedding_kind, str) and embedding_kind != "cosine" and ranks.size > 1:
        raise ValueError(f"chemical_embedding (--chemical-embedding) {embedding_kind!r} is computed from all "
                         "training structures in one process: not available in an MPI fit yet (use 'cosine')")
    return elements, basis_blocks, chemical_channels, block_ridge, degree_ridge, top_degree_ridge, embedding_kind


def _final_models(sel, chosen, lam, lam_dc, joint, committee, compare, clusterings, Z, constrain=None):
    """(theta_lin, {name: (theta, gate function)}): the chosen models solved on all training data; the
    linear model through constrain(theta_lin) (dcace.crystal_constraints) first, when given, so that the
    committees' anchors and priors take the constrained one."""
    M_sel, tau_sel = chosen["M"], chosen["tau"]
    theta_lin = sel.solve_linear_total(lam)
    if constrain is not None:
        theta_lin = constrain(theta_lin, lam)
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
            eq8 = Eq8Gate(clusterings[M_sel], Z, clusterings[M_sel].labels[sel.Z_rows])
            theta_ind = theta_o if other == "independent" else theta_dc
            models["paper-eq8"] = (theta_ind, lambda Pm: eq8.weights(Pm))
    return theta_lin, models


def _n_stress_labels(data, resume):
    """How many training structures have a stress label (the atom-count/FrameTable stubs of a streamed set,
    or the held frames; a refit adds its state's): those whose stress rows rank 0 keeps (dcace.rowstore)."""
    stored = 0 if resume is None else len(resume.arrays["stress_index"])
    return stored + int(sum(bool(fr.has_stress) for fr in data.frames))


def _n_with_stress(data, resume, wS):
    """How many training structures will have stress rows on rank 0 for the cost lines (0 when stresses
    are not fitted)."""
    return _n_stress_labels(data, resume) if wS else 0


def _announce_cost(basis, frames, rows_fn, groups, joint, skipped, k_folds, n_groups, budget, bsize, P_own, seed,
                   threads, progress, update_s=None, counted=None, n_with_stress=0, atoms_per_species=(),
                   spilled=0, local_lines=()):
    """Time a sample of pass 2 with the real accumulators, print the cost lines (dcace.cost).  A refit
    gives update_s, the per-structure update time its state measured on the same accumulators (the
    timed update is a pass over all of them: a sizeable part of a small refit).  counted: pass 2's
    batch sizes, blocks and folds (dcace.estimate.estimate_pass2).  n_with_stress: the training structures
    whose stress rows rank 0 will keep and atoms_per_species the training atoms of each species (the
    grade's MaxVol), for the expected peak.  P_own(j): mean descriptors of rank 0's structures own[j].
    spilled: the structures whose rows go to a scratch file (dcace.rowstore; all or none), not into the peak.
    local_lines: the local gates' cost line (dcace.cost.local_cost_lines), printed with the others."""
    S, K = basis.n_species, basis.n_features
    D, Dp = S * K, S * K + S

    def gram(fr, r):   # the per-structure work of pass 2, as the loop does it
        return _structure_terms(fr, r, rows_fn.wF, rows_fn.wS, 1.0)

    def zero_batch(idx):   # written zeros: pass 2's A are written pages, not the kernel's zero page
        idx = np.asarray(idx)[:max(1, bsize)]
        B = len(idx)
        A = np.empty((B, D, D))
        A.fill(0.0)
        return Batch(0, A, np.zeros((B, D)), np.zeros(B), np.zeros((B, Dp)), np.zeros(B), P_own(idx), idx)

    resident = cost.resident_bytes()   # before the sample touches the accumulators' pages
    est = cost.estimate_pass2(rows_fn.keep, gram, frames, [groups, *joint.values()] if update_s is None else [],
                              zero_batch, seed=seed, bsize=bsize, **(counted or {}))
    if update_s is not None:
        est = dict(est, update_s_per_structure=update_s, seconds=est["seconds"] + est["n_structures"] * update_s)
    joint_bytes = {key: acc.nbytes for key, acc in joint.items()}
    stress_bytes = cost.stress_rows_nbytes(S, K, n_with_stress)
    scratch_bytes = stress_bytes + 8 * D * int(spilled) if spilled else 0
    if spilled:
        stress_bytes = 0
    grade_bytes = cost.grade_nbytes(K, atoms_per_species, _grade_cap(basis, budget))
    lines = cost.cost_lines(S=S, K=K, k_folds=k_folds, group_bytes=groups.nbytes, n_groups=n_groups,
                            joint_bytes=joint_bytes, skipped=skipped, budget=budget, estimate=est, threads=threads,
                            resident=resident, stress_bytes=stress_bytes, grade_bytes=grade_bytes,
                            scratch_bytes=scratch_bytes) + list(local_lines)
    if progress:
        import sys

        print("\n".join(lines), file=sys.stderr, flush=True)
    used = cost.counted_nbytes(S, K, k_folds, groups.nbytes, joint_bytes)
    return dict(est, K=K, unknowns_per_expert=Dp, lines=lines, resident_bytes=resident, counted_bytes=used,
                stress_bytes=stress_bytes, grade_bytes=grade_bytes, scratch_bytes=scratch_bytes,
                expected_peak_bytes=cost.expected_peak(S, K, groups.nbytes, joint_bytes, resident, stress_bytes,
                                                       grade_bytes),
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


def _finite(obj):
    """obj with every non-finite float replaced by None (JSON metadata)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
