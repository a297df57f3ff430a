"""Fit state: what an incremental refit needs, saved next to a potential (``dcace fit --save-state``).

A fit's normal equations are sums over structures (``dcace.committee``), so adding structures to a
fit is adding their rows to the stored sums and solving again.  The state holds, in one versioned
``.npz`` (format: docs/fit-state.md):

* the accumulated normal equations of every candidate model and cross-validation fold (the global
  linear model and independent experts: ``GroupAccumulator``; each jointly fitted committee (M, tau):
  ``JointAccumulator``) -- O(folds x candidates x (M K)^2) numbers, independent of the data size;
* per structure (O(K) each): the pass-1 descriptor sums, atom counts, energies, weights, fold and a
  hash, and the few stress rows that the selection's direct stress errors use;
* what stays fixed on resume: the per-species reference energies e_ref, the ridge's column scaling
  (``dcace.ridge``; so an independent expert whose cluster gets no new structure keeps its
  coefficients at a fixed ridge with ``regularise="zero"``), the standardiser, the PCA
  projection and the k-means clusterings (centroids, spreads, labels) that define every gate, the
  short-range core (pair windows from the shortest distances, core densities) and hence the basis;
* the fit settings, the dcace version, the SHA-256 of the potential written with it, the MaxVol
  active set of the extrapolation grade (K x K per species);
* the committees' off-data anchors (format version 3, ``dcace.state_anchors``): H_a, one D' x D'
  matrix, and which training structures they were made from -- a refit keeps them, as it keeps the
  folds and clusters;
* the structure the crystal constraints and the kink check probe (format version 4,
  ``dcace.state_ground``): a refit probes it, as the fit did.

``refit(add, resume=S)`` featurises only the new structures, assigns them folds deterministically
(``new_folds``), lets each join the cluster whose centroid is nearest in units of its spread (the
gate's metric), adds their rows to the stored sums, then re-runs the selection (ridge, M, tau by CV)
and the solves of ``dcace.pipeline``.  ``dcace.fit(union, reuse=S)`` is the from-scratch fit with
the same fixed parts (folds, clusters, e_ref, core); it equals the refit to round-off because it
accumulates the state's structures first, in the same order and batches as the original fit.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .clustering import Clustering, Standardiser
from .settings import refit_settings

__all__ = ["STATE_FORMAT", "STATE_VERSION", "FitState", "StateError", "load_state", "save_state", "new_folds",
           "frame_hash", "refit", "REFIT_SETTINGS"]

STATE_FORMAT = "dcace-fit-state"
STATE_VERSION = 4   # 4: the probe structure; 3: the off-data anchors (H_a, their sources); 2: packed upper triangles
READABLE_VERSIONS = (1, 2, 3, 4)

#: fit() arguments a refit takes from the state (the others -- test, threads, progress, ... -- are free):
#: the FitSettings fields marked refit="state" (dcace.settings)
REFIT_SETTINGS = refit_settings()


class StateError(ValueError):
    """A state file that cannot be used (wrong format/version, other potential, other data)."""


def new_folds(seed: int, n_old: int, n_new: int, k: int) -> np.ndarray:
    """Folds of structures n_old .. n_old + n_new - 1: a permutation seeded by (seed, n_old) of the
    balanced sequence (n_old + j) mod k -- deterministic, and the same in a refit and in the
    from-scratch fit that reuses the state."""
    f = np.empty(n_new, dtype=int)
    f[np.random.default_rng([int(seed), int(n_old)]).permutation(n_new)] = (n_old + np.arange(n_new)) % k
    return f


def extended_folds(state, seed: int, n: int, k: int) -> np.ndarray:
    """Folds of all n structures of a fit that keeps a state's: the state's, then new_folds (known
    before pass 1, so that the blocks of structures can be formed; dcace.parallel)."""
    n_old = state.n
    if n < n_old:
        raise StateError(f"{state.path}: the state holds {n_old} structures, the fit only {n}")
    return np.concatenate([state.arrays["folds"], new_folds(seed, n_old, n - n_old, k)]).astype(int)


def frame_hash(fr) -> str:
    """SHA-256 (hex, 16 digits) of a frame's geometry and labels (as the fit sees them)."""
    a = fr.atoms
    h = hashlib.sha256()
    for arr in (a.numbers, a.positions, np.asarray(a.cell), a.pbc, [fr.energy], fr.forces,
                [] if fr.stress is None else fr.stress, [fr.weight]):
        h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
    return h.hexdigest()[:16]


@dataclass
class FitState:
    """The contents of a state file (see the module docstring)."""

    meta: dict               # format, version, dcace_version, settings, n_features, files, joint keys, ...
    arrays: dict             # name -> np.ndarray
    path: str = "<memory>"
    keep_core: bool = False  # a refit whose new data reach into the core keeps it (else: StateError)

    # ----------------------------------------------------------------- accessors
    @property
    def n(self) -> int:
        return int(len(self.arrays["folds"]))

    @property
    def settings(self) -> dict:
        return self.meta["settings"]

    @property
    def joint_keys(self):
        return [(int(M), float(t)) for M, t in self.meta["joint_keys"]]

    @property
    def Ms(self):
        return [1] + sorted(int(M) for M in self.meta["clusterings"])

    def core(self):
        """(shortest (S, S), rho_max (S,)) of the data the core window was built from, or None."""
        if "core_shortest" not in self.arrays:
            return None
        return self.arrays["core_shortest"], self.arrays["core_rho_max"]

    def clusterings(self, P_all):
        """{M: Clustering} with the stored gates; structures beyond the stored ones join the cluster
        nearest in units of its spread (the gate's metric, its tau -> 0 limit)."""
        st = Standardiser(self.arrays["std_mean"], self.arrays["std_scale"])
        V = self.arrays["projection"]
        out = {}
        for M in self.meta["clusterings"]:
            C, sig = self.arrays[f"cluster{M}_centroids"], self.arrays[f"cluster{M}_spread"]
            labels = self.arrays[f"cluster{M}_labels"]
            cl = Clustering(st, V, labels, C, sig, np.bincount(labels, minlength=len(C)))
            if len(P_all) > len(labels):
                cl = cl.joined(np.concatenate([labels, cl.nearest(P_all[len(labels):])]))
            out[int(M)] = cl
        return out

    def core_check(self, frames, elements, cutoff, window):
        """The short-range core stays the state's (its windows come from the state's shortest
        distances, its density handover from its densest atom).  New structures that reach into it
        (a pair below a window top, an atom denser than the state's densest) are an error naming
        the structure, pair and distance, unless ``keep_core`` (then a note): a fit from scratch
        would move the core below them, which changes the basis, so the sums cannot give it.
        Pairs closer than the state's shortest distance but above the window get a note."""
        from .baseline import neighbour_extremes

        (lo, hi), (shortest_old, rho_old) = window, self.core()
        S = len(elements)
        inside, below = [], []
        for fr in frames:
            shortest, rho = neighbour_extremes([fr], elements, cutoff)
            for a in range(S):
                for b in range(a, S):
                    r, pair = shortest[a, b], f"{elements[a]}-{elements[b]}"
                    if r < hi[a, b]:
                        inside.append(f"{fr.where}: {pair} pair at {r:.3f} A, inside the state's core window "
                                      f"{lo[a, b]:.3f}-{hi[a, b]:.3f} A")
                    elif r < shortest_old[a, b]:
                        below.append(f"{fr.where}: {pair} {r:.3f} A")
            inside += [f"{fr.where}: {el} atom of core density {x:.4g} above the state's densest {x0:.4g}"
                       for el, x, x0 in zip(elements, rho, rho_old) if x > x0]
        notes = []
        if below:
            notes.append(f"refit: {len(below)} new structure(s) have pairs closer than the state's shortest "
                         f"distances (ACE, above the core windows, describes them; a fit from scratch would place "
                         f"the windows lower): " + "; ".join(below[:5]) + (" ..." if len(below) > 5 else ""))
        if inside:
            what = "; ".join(inside[:5]) + (f"; and {len(inside) - 5} more" if len(inside) > 5 else "")
            if not self.keep_core:
                raise StateError(
                    f"{self.path}: new structures reach into the state's short-range core ({what}). A refit keeps "
                    "the core fixed, so ZBL, not ACE, would describe these pairs/atoms; a fit from scratch moves "
                    "the core below the new data (another basis, so the stored sums cannot give it). Refit from "
                    "scratch on the state's training files plus the new ones (--recluster / recluster=True), or "
                    "keep the state's core (--keep-core / keep_core=True)")
            notes.append(f"refit: the short-range core stays that of the state (--keep-core), and new structures "
                         f"reach into it ({what}): ZBL, not ACE, describes those pairs/atoms")
        return notes

    @property
    def update_seconds(self):
        """Pass-2 accumulator update time per structure measured by the fit that wrote the state (None
        in states before it was kept): a refit's cost estimate uses it instead of timing the update."""
        return self.meta.get("pass2_update_s_per_structure")

    def stress_store(self):
        A = self.arrays
        return {int(i): (A["stress_Psi"][j], A["stress_sigma"][j], float(A["stress_scale"][j]))
                for j, i in enumerate(A["stress_index"])}

    def restore(self, groups, joint):
        """Load the stored sums into freshly built accumulators (same candidates, same shapes), in
        the canonical form of dcace.state_pack (version 1 states are converted to it)."""
        from . import state_pack

        if sorted(joint) != sorted(self.joint_keys):
            raise StateError(f"{self.path}: the state holds committees {sorted(self.joint_keys)}, this fit builds "
                             f"{sorted(joint)}")
        def take(name, like, unpack=None):   # hand the loaded array over (no second copy of full matrices)
            a = np.ascontiguousarray(self.arrays.pop(name), dtype=float)
            try:
                a = a if unpack is None else unpack(a)
            except ValueError as exc:
                raise StateError(f"{self.path}: {name} of shape {a.shape} does not fit this fit: {exc}") from None
            if a.shape != like.shape:
                raise StateError(f"{self.path}: {name} has shape {a.shape}, this fit needs {like.shape}")
            return a

        Dp = groups.Dp
        if "groups_Hp" in self.arrays:   # version 2: packed upper triangles
            groups.H = take("groups_Hp", groups.H, lambda P: state_pack.restore_groups(P, Dp))
        else:
            groups.H = take("groups_H", groups.H)
        groups.h, groups.yy = (take(f"groups_{x}", getattr(groups, x)) for x in ("h", "yy"))
        for j, key in enumerate(self.joint_keys):
            acc = joint[key]
            if f"joint{j}_Hp" in self.arrays:
                acc.Sh = take(f"joint{j}_Hp", acc.Sh, lambda P, M=acc.M: state_pack.restore_joint(P, M, Dp))
            else:
                acc.Sh = take(f"joint{j}_Sh", acc.Sh)
            acc.h, acc.yy = (take(f"joint{j}_{x}", getattr(acc, x)) for x in ("h", "yy"))
        if self.meta.get("version") == 1:   # raw half blocks: into the form a reuse= fit also uses
            state_pack.canonical_sums(groups, joint)

    def extend_pass1(self, Bsum, counts, E, frames, hashes):
        """Pass-1 arrays of the state's structures followed by the new ones' (a refit)."""
        if Bsum.shape[1:] != self.arrays["Bsum"].shape[1:]:
            raise StateError(f"{self.path}: the state has {self.arrays['Bsum'].shape[1]} descriptor columns, the "
                             f"basis built from its settings {Bsum.shape[1]}")
        spec = self.settings.get("weights") or {}
        w_new = np.array([f.weight * float(spec.get(f.config_type, 1.0)) for f in frames], dtype=float)
        notes = []
        if any(f.config_type == "isolated_atom" and f.n_atoms == 1 for f in frames):
            notes.append("refit: the one-body terms stay those of the state; new isolated_atom frames are fitted "
                         "as ordinary structures")
        old = list(self.arrays["frame_hash"])
        dup = sorted(set(old) & set(hashes))
        if dup:
            notes.append(f"refit: {len(dup)} new structure(s) are already in the state's training set "
                         "(they now count twice)")
        A = self.arrays
        return (np.concatenate([A["Bsum"], Bsum]), np.concatenate([A["counts"], counts]),
                np.concatenate([A["E"], E]), np.concatenate([A["weights"], w_new]), old + list(hashes),
                A["e_fixed"], notes)

    def fixed_pass1(self, P, seed, k):
        """(folds, standardiser, projection, clusterings) for all structures, the state's kept."""
        n_old = self.n
        if len(P) < n_old:
            raise StateError(f"{self.path}: the state holds {n_old} structures, the fit only {len(P)}")
        folds = np.concatenate([self.arrays["folds"], new_folds(seed, n_old, len(P) - n_old, k)]).astype(int)
        cl = self.clusterings(P)
        st = Standardiser(self.arrays["std_mean"], self.arrays["std_scale"])
        return folds, st, self.arrays["projection"], cl

    def check_settings(self, settings: dict, what: str):
        """Raise naming every fit setting that differs from the state's."""
        mine = json.loads(json.dumps(settings))
        diff = [k for k in sorted(set(mine) | set(self.settings)) if mine.get(k) != self.settings.get(k)]
        if diff:
            raise StateError(f"{self.path}: {what} uses other fit settings than the state: " + "; ".join(
                f"{k} = {mine.get(k)!r} here, {self.settings.get(k)!r} in the state" for k in diff))

    def check_prefix(self, hashes):
        """The first n structures of a from-scratch fit that reuses the state must be the state's."""
        old = list(self.arrays["frame_hash"])
        if len(hashes) < len(old):
            raise StateError(f"{self.path}: the state holds {len(old)} structures, the training data only "
                             f"{len(hashes)}: reuse= needs the state's structures first, then the new ones")
        for i, (a, b) in enumerate(zip(old, hashes)):
            if a != b:
                raise StateError(f"{self.path}: training structure {i} differs from the state's structure {i} "
                                 f"(reuse= needs the state's structures first, in their order, then the new ones)")

    def update_grade(self, basis, new_atoms):
        """MaxVol on the stored active set plus the new atoms (ML-PACE's active-set update; a
        from-scratch fit runs MaxVol on all training atoms and may pick another set)."""
        from .grade import maxvol_grade

        S, K = basis.n_species, basis.n_features
        rows = [self.arrays.get(f"grade_active{s}", np.zeros((0, K))) for s in range(S)]
        new = [[] for _ in range(S)]
        for atoms in new_atoms:
            B = basis.descriptors(atoms)
            sp = basis.species_of(atoms)
            for s in range(S):
                new[s].append(B[sp == s])
        G_list, notes, stats = [], [], {"species": []}
        for s in range(S):
            X = np.concatenate([rows[s]] + new[s]) if new[s] else rows[s]
            G, sn, info = maxvol_grade(X)
            notes += [f"grade {basis.elements[s]}: {m}" for m in sn]
            G_list.append(np.ascontiguousarray(G))
            stats["species"].append({"element": basis.elements[s], "active_rows": X[info["active"]] if "active" in info
                                     else X[:0]})
        notes.append("extrapolation grade: MaxVol active set updated with the new structures' atoms "
                     "(the training-atom statistics below are those of the previous fit)")
        stats["fraction_above_1"] = self.meta.get("grade", {}).get("fraction_above_1", 0.0) or 0.0
        stats["max_training_grade"] = self.meta.get("grade", {}).get("max_training_grade", 0.0) or 0.0
        return G_list, notes, stats

    def nbytes(self) -> dict:
        """Bytes of the normal equations (independent of the data) and of the per-structure arrays."""
        ne = sum(a.nbytes for k, a in self.arrays.items() if k.startswith(("groups_H", "groups_h", "groups_yy",
                                                                          "joint", "anchors_Hp")))
        per = sum(a.nbytes for k, a in self.arrays.items() if k in _PER_STRUCTURE or k.startswith(
            ("cluster", "stress_")) and k.endswith(("labels", "Psi", "sigma", "scale", "index")))
        return {"normal_equations": int(ne), "per_structure": int(per),
                "total": int(sum(a.nbytes for a in self.arrays.values()))}


_PER_STRUCTURE = ("Bsum", "counts", "E", "weights", "folds", "frame_hash")


def build_state(*, settings, basis, coef, one_body, p1, wts, folds, hashes, e_fixed, core_extremes, st, V, clusterings, groups,
                joint, stress_store, grade_stats, pot_text, files, grade_meta, paths=None, column_scale=None, notes=(),
                update_seconds=None, anchors=None, anchor_sources=None, anchor_weight=0.0, ground=None) -> FitState:
    """A FitState from the pieces of a finished fit (called by ``dcace.pipeline``); ground: the structure the
    crystal constraints and the kink check probed (dcace.state_ground), or None."""
    from . import _core, state_anchors, state_ground, state_pack

    A = {"Bsum": p1.Bsum.array(), "counts": p1.counts, "E": p1.E, "e_ref": p1.e_ref, "weights": np.asarray(wts, float),
         "folds": np.asarray(folds, dtype=np.int64), "frame_hash": np.array(hashes, dtype="U16"),
         "e_fixed": np.asarray(e_fixed, float), "std_mean": st.mean, "std_scale": st.scale,
         "projection": np.asarray(V, float), "theta_coef": np.asarray(coef, float),
         "theta_one_body": np.asarray(one_body, float), "column_scale": np.asarray(column_scale, float),
         "groups_Hp": state_pack.pack_groups(groups.H), "groups_h": groups.h, "groups_yy": groups.yy}
    if core_extremes is not None:
        A["core_shortest"], A["core_rho_max"] = (np.asarray(x, float) for x in core_extremes)
    for M, cl in clusterings.items():
        A[f"cluster{M}_centroids"], A[f"cluster{M}_spread"] = cl.centroids, cl.spread
        A[f"cluster{M}_labels"] = np.asarray(cl.labels, dtype=np.int64)
    keys = sorted(joint)
    for j, key in enumerate(keys):
        acc = joint[key]
        A[f"joint{j}_Hp"], A[f"joint{j}_h"], A[f"joint{j}_yy"] = state_pack.pack_joint(acc), acc.h, acc.yy
    rows = dict(stress_store.items())   # (a fit that writes a state holds its rows in memory)
    idx = sorted(rows)
    D = A["Bsum"].shape[1]
    A["stress_index"] = np.array(idx, dtype=np.int64)
    A["stress_Psi"] = np.array([rows[i][0] for i in idx]).reshape(len(idx), 6, D)
    A["stress_sigma"] = np.array([rows[i][1] for i in idx]).reshape(len(idx), 6)
    A["stress_scale"] = np.array([rows[i][2] for i in idx], dtype=float)
    for s, sp in enumerate(grade_stats.get("species", [])):
        A[f"grade_active{s}"] = np.asarray(sp["active_rows"], float)
    A.update(state_anchors.arrays(anchors))
    A.update(state_ground.arrays(ground))
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "dcace_version": _core.__version__,
            "settings": json.loads(json.dumps(settings)), "elements": list(basis.elements),
            "n_features": int(basis.n_features), "joint_keys": [[int(M), float(t)] for M, t in keys],
            "clusterings": sorted(int(M) for M in clusterings), "files": files, "paths": paths, "grade": grade_meta,
            "potential_sha256": hashlib.sha256(pot_text.encode()).hexdigest(),
            "data_sha256": hashlib.sha256("".join(hashes).encode()).hexdigest(), "notes": list(notes),
            "pass2_update_s_per_structure": None if update_seconds is None else float(update_seconds),
            "anchors": state_anchors.record(anchor_weight, anchor_sources, anchors)}
    return FitState(meta, A)


def save_state(path, state: FitState) -> int:
    """Write the state atomically (the old file survives a failure); returns its size in bytes."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(state.meta, sort_keys=True)), **state.arrays)
    state.path = str(path)
    return os.path.getsize(path)


def load_state(path) -> FitState:
    """Read and validate a state file; a clear StateError names the file and the problem."""
    from . import _core

    if isinstance(path, FitState):
        return path
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise StateError(f"{path}: no such state file") from None
    if magic != b"PK\x03\x04":
        raise StateError(f"{path}: not a dcace fit state (not an .npz archive; write one with dcace fit --save-state)")
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise StateError(f"{path}: no such state file") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: not a dcace fit state (.npz written by dcace fit --save-state): {exc}") from None
    with z:
        if "__meta__" not in z.files:
            raise StateError(f"{path}: not a dcace fit state (no __meta__ record)")
        try:
            meta = json.loads(str(z["__meta__"]))
        except ValueError as exc:
            raise StateError(f"{path}: corrupted __meta__ record: {exc}") from None
        if meta.get("format") != STATE_FORMAT:
            raise StateError(f"{path}: not a dcace fit state (format {meta.get('format')!r})")
        if meta.get("version") not in READABLE_VERSIONS:
            raise StateError(f"{path}: fit-state format version {meta.get('version')}, this dcace reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}: refit from scratch")
        if meta.get("dcace_version") != _core.__version__:
            raise StateError(f"{path}: written by dcace {meta.get('dcace_version')}, this is dcace "
                             f"{_core.__version__} (descriptors may differ): refit from scratch")
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    need = set(_PER_STRUCTURE) | {"e_ref", "column_scale", "groups_H" if meta["version"] == 1 else "groups_Hp",
                                  "groups_h", "groups_yy", "std_mean", "std_scale", "projection"}
    rec = meta.get("anchors") if meta["version"] >= 3 else None
    if rec and rec.get("n_structures"):   # the anchors' H_a (dcace.state_anchors)
        need.add("anchors_Hp")
    missing = sorted(need - set(arrays))
    if missing:
        raise StateError(f"{path}: incomplete fit state, missing {missing}")
    return FitState(meta, arrays, str(path))


def check_potential(state: FitState, potential_path) -> None:
    """The state must be the one written with this potential file."""
    text = Path(potential_path).read_text()
    if hashlib.sha256(text.encode()).hexdigest() != state.meta.get("potential_sha256"):
        raise StateError(f"{state.path}: this state was not written with the potential {potential_path} "
                         f"(SHA-256 differs): give the state saved by the fit that wrote it")


def refit(add, resume, *, test=None, state=None, recluster=False, keep_core=False, progress=True, threads=None,
          memory_budget_gb=None, keep_arrays=False, batch_size=None, verbose=False, compare=True):
    """Incremental refit: the state's fit plus the structures in ``add`` (paths, Atoms list or Dataset).

    Only the new structures are featurised; folds, clusters, e_ref and the short-range core stay
    those of the state (new structures join their nearest cluster); ridge, M and tau are selected
    again by CV and all experts solved again.  ``state`` (path) saves the new state.  Returns the
    Potential; ``pot.report.selection["refit"]`` says how many structures were added, which clusters
    received them and how much each expert's coefficients changed.  With ``recluster=True`` the
    state cannot help (new clusters change every gate and every committee's sums): the state's
    training files are read again and everything is refitted from scratch (said in the notes).
    New structures that reach into the state's short-range core are a StateError unless
    ``keep_core=True`` or ``recluster=True`` (``FitState.core_check``).
    """
    from .parallel import Ranks, default_threads
    from .pipeline import _fit
    from .ridge import single_threaded_blas

    st = load_state(resume)
    st.keep_core = bool(keep_core)
    kw = {k: st.settings.get(k) for k in REFIT_SETTINGS}
    threads = default_threads(1) if threads is None else threads   # as dcace.fit: the cores it may use
    kw["temperatures"] = tuple(kw["temperatures"])
    free = dict(test=test, progress=progress, threads=threads, memory_budget_gb=memory_budget_gb,
                keep_arrays=keep_arrays, batch_size=batch_size, verbose=verbose, compare=compare)
    if recluster:
        return _full_refit(st, add, kw, free, state)
    from .state_anchors import check_committee_weights

    check_committee_weights(st)   # old states with frame weights: committee sums possibly wrong (d12ced5)
    with single_threaded_blas():
        return _fit(add, **kw, **free, state=state, reuse=None, resume=st, ranks=Ranks(None))


def source_paths(train, resume=None):
    """Absolute paths of the training files (the state's first, for a refit), or None when some
    data were given as Atoms (a --recluster full refit then cannot read them again)."""
    items = [train] if isinstance(train, (str, os.PathLike)) else train
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, (str, os.PathLike)) for x in items):
        return None
    old = [] if resume is None else resume.meta.get("paths")
    return None if old is None else old + [str(Path(x).resolve()) for x in items]


def _full_refit(st, add, kw, free, state):
    from .data import read_data
    from .pipeline import fit

    files = st.meta.get("paths")
    if not files or any(not Path(f).is_file() for f in files):
        raise StateError(f"{st.path}: --recluster needs a full refit on the original training data, and the "
                         f"state's training files {files or '(the data were given as Atoms, not files)'} are not "
                         f"all readable here")
    import hashlib as _h

    for f, rec in zip(files, st.meta.get("files") or []):
        if rec.get("sha256") and _h.sha256(Path(f).read_bytes()).hexdigest() != rec["sha256"]:
            raise StateError(f"{st.path}: --recluster: the training file {f} changed since the state was written")
    add_paths = source_paths(add)
    if add_paths is not None:   # all files: the new state records their paths too
        train = files + add_paths
        n_new = "the"
    else:
        from .data import Dataset

        keys = {k: kw[k] for k in ("energy_key", "forces_key", "stress_key", "virial_key")}
        old = read_data(files, elements=kw["elements"], weight_key=kw["weight_key"], **keys)
        new = add if isinstance(add, Dataset) else read_data(add, elements=kw["elements"],
                                                             weight_key=kw["weight_key"], **keys)
        train = Dataset(old.frames + new.frames, old.files + new.files, old.notes + new.notes, old.keys)
        n_new = f"{len(new)}"
    pot = fit(train, **kw, **free, state=state)
    pot.report.notes.append(f"--recluster: clusters change every gate, so the sums in the state {st.path} could not "
                            f"be reused; refitted from scratch on its {st.n} training structures (read again from "
                            f"{len(files)} file(s)) and {n_new} new ones")
    return pot


def fixed_parts(resume, reuse):
    """The state whose fixed parts a fit uses: the refit's, or the one given as reuse=, or None."""
    if resume is not None and reuse is not None:
        raise ValueError("give resume= or reuse=, not both")
    if resume is not None:
        return resume
    return None if reuse is None else load_state(reuse)


def sums_errors(sel, theta, wfn, acc=None):
    """Training errors of a model from the stored sums (a refit has no old structures to evaluate):
    energies and stresses exactly from the pass-1 sums and the stress rows, the force RMSE from the
    normal equations (weighted by the frame weights, as the loss); no force MAE."""
    from .report import EV_A3_TO_GPA
    from .ridge import quadratic_sse

    p1, n = sel.p1, sel.n
    idx = np.arange(n)
    de, _, s_sq_w, _, de_w2 = sel._direct_errors(theta, wfn, idx)
    if acc is None:   # the linear model
        H, h = sel.groups.H[:, 0].sum(axis=0), sel.groups.h[:, 0].sum(axis=0)
        yy = float(sel.groups.yy[:, 0].sum())
    else:             # any committee under the gate of acc (joint or independent experts)
        H, h = acc.total()
        yy = float(acc.yy.sum())
    loss = quadratic_sse(theta.ravel(), H, h, yy)
    n_comp = 3 * float((sel.w ** 2 * p1.N).sum())
    f_sse = loss - sel.wE ** 2 * de_w2 - sel.wS ** 2 * s_sq_w
    s_abs = s_sq = 0.0
    s_n = 0
    for ds in _stress_errors(theta, wfn, p1, sel.stress_store):
        s_abs += float(np.abs(ds).sum())
        s_sq += float(ds @ ds)
        s_n += 6
    return {"n_structures": n, "n_atoms": int(p1.N.sum()),
            "energy_mae_mev_per_atom": 1000.0 * float(np.abs(de).mean()),
            "energy_rmse_mev_per_atom": 1000.0 * float(np.sqrt((de ** 2).mean())),
            "energy_max_mev_per_atom": 1000.0 * float(np.abs(de).max()),
            "force_mae_ev_per_a": None,
            "force_rmse_ev_per_a": float(np.sqrt(max(f_sse, 0.0) / sel.wF ** 2 / n_comp)) if sel.wF > 0 else None,
            "stress_mae_gpa": EV_A3_TO_GPA * s_abs / s_n if s_n else None,
            "stress_rmse_gpa": EV_A3_TO_GPA * float(np.sqrt(s_sq / s_n)) if s_n else None}


def _stress_errors(theta, wfn, p1, store):
    """Each stressed structure's stress error (6,) in the store's order, its effective coefficients
    computed a chunk of structures at a time (dcace.rowstore)."""
    from .committee import committee_predict

    order = store.order()
    sigma = store.sigma(order)
    for part, B in p1.Bsum.chunks(np.array(order, dtype=np.int64)):
        _, _, c_eff = committee_predict(theta, wfn, B, p1.counts[order[part]])
        for sub, Psi in store.chunks(order[part]):
            for q in range(len(Psi)):
                k = sub.start + q
                yield Psi[q] @ c_eff[k] - sigma[part.start + k]


def refit_summary(st: FitState, n: int, coef, cl, committee: str) -> dict:
    """What a refit changed: structures added, which clusters received them, per-expert change."""
    old = st.arrays.get("theta_coef")
    out = {"added": int(n - st.n), "previous": st.n, "state": st.path, "received": None,
           "relative_change": None, "changed": None}
    if cl is not None:
        out["received"] = np.bincount(cl.labels[st.n:], minlength=cl.n_clusters).tolist()
    if old is not None and old.shape == coef.shape:
        num = np.linalg.norm((coef - old).reshape(len(coef), -1), axis=1)
        den = np.maximum(np.linalg.norm(old.reshape(len(coef), -1), axis=1), 1e-300)
        rel = num / den
        out["relative_change"] = [float(f"{x:.3g}") for x in rel]
        out["changed"] = [m for m, x in enumerate(rel) if x > 1e-12]
    out["committee"] = committee
    return out
