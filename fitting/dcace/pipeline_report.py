"""The report stages of a fit, after the final solve: the errors table (CV, pass 3 on the training set,
the test set), the potential file's metadata and the arrays of the plots.

Each function takes what it reads as arguments and returns what it makes (``dcace.pipeline`` calls them in
order); the numbers of the written potential come from the C++ core (``Potential.compute``, ``dcace.pass3``).
"""
from __future__ import annotations

import time

import numpy as np

from . import _core, pass3
from .committee import committee_predict
from .report import ErrorStats

__all__ = ["cv_errors", "file_metadata", "training_errors", "test_errors", "plot_arrays"]


def cv_errors(cv_rows, n_stage1, M_sel, tau_sel, committee, lam_dc, compare) -> dict:
    """{model: {"cv": summary}} of the chosen models, from the CV table (the refined committee ridge's row)."""
    errors = {}
    cv_map = {(r["M"], r.get("tau"), r["fit"]): r for r in cv_rows[:n_stage1]}   # first row of each key
    for r in cv_rows:
        if (r["M"], r.get("tau"), r["fit"]) == (M_sel, tau_sel, committee) and r.get("ridge") == lam_dc:
            cv_map[(M_sel, tau_sel, committee)] = r
    lin_cv = cv_map.get((1, None, "linear"))
    errors["linear"] = {"cv": cv_summary(lin_cv)}
    if M_sel > 1:
        errors["dc"] = {"cv": cv_summary(cv_map.get((M_sel, tau_sel, committee)))}
        if compare:
            other = "independent" if committee == "joint" else "joint"
            errors[f"dc-{other}"] = {"cv": cv_summary(cv_map.get((M_sel, tau_sel, other)))}
            errors["paper-eq8"] = {"cv": None}
    return errors


def file_metadata(settings, s, data, test_data, resume, basis, core, window, basis_blocks, elements, selection,
                  finite) -> dict:
    """The metadata of the potential file before the errors, the notes and the grade are known."""
    S, K = basis.n_species, basis.n_features
    return {
        "dcace_version": _core.__version__, "fit": settings,
        "data": {"train": data.files if resume is None else resume.meta["files"] + data.files,
                 "test": test_data.files if test_data else None},
        "basis": {"body_order": int(s.body_order), "max_degree": float(s.max_degree), "w_L": float(s.w_L),
                  "cutoff": float(s.cutoff), "inner_cutoff": float(s.inner_cutoff), "n_features": K,
                  "max_degree_blocks": basis_blocks, "chemical_channels": basis.chemical_channels,
                  "baseline": None if core.baseline is None else ("zbl" if core.external is None else "external"),
                  "delta_baseline": None if core.external is None else core.external.describe(),
                  "core_window": None if window is None else {
                      f"{elements[a]}-{elements[b]}": [round(float(window[0][a, b]), 6), round(float(window[1][a, b]), 6)]
                      for a in range(S) for b in range(a, S)}},
        "selection": finite({k: v for k, v in selection.items() if k != "ridge_cv"}),
    }


def training_errors(ranks, resume, frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays, threads,
                    progress, errors, sums_errors):
    """Pass 3: the training errors of the final potential and the linear one into errors[name]["train"];
    returns (train_stats, weights_train, nearest_train).  A refit has the sums, not the old structures:
    sums_errors(name) gives its numbers."""
    if resume is None:   # per structure, on the rank that holds it (dcace.pass3)
        pass3.send_potentials(ranks, pot, lin_pot, M_sel)
        train_stats, weights_train, nearest_train = pass3.training_errors(
            ranks, frames, own, n, pot, lin_pot, M_sel, counts, e_ref, keep_arrays, threads, progress)
    else:
        train_stats = {name: ErrorStats(keep_arrays) for name in (("linear", "dc") if M_sel > 1 else ("linear",))}
        weights_train, nearest_train = np.zeros((n, M_sel)), np.zeros(n)
    for name, stt in train_stats.items():
        errors[name]["train"] = stt.summary() if resume is None else sums_errors(name)
    return train_stats, weights_train, nearest_train


def test_errors(test_data, test_orig, rows_fn, models, e_ref, pot, final_name, keep_arrays, threads, progress,
                errors, timings) -> dict:
    """The test set with every compared model (numpy, from the fitting rows) and the written potential (the
    C++ core, whose numbers are the official ones) into errors[name]["test"]; returns the plots' arrays."""
    from .pipeline import _frame_error, _progress, _threaded_map

    arrays = {}
    if test_data is None:
        return arrays
    t0 = time.perf_counter()
    test_stats = {name: ErrorStats(keep_arrays) for name in models}
    tstats_cpp = ErrorStats(keep_arrays)
    originals = iter(test_orig.frames)
    for fr, r in _progress(_threaded_map(rows_fn, test_data.frames, threads), len(test_data), "test set", progress):
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
    errors[final_name]["test"] = tstats_cpp.summary()   # the official numbers: the C++ core's
    if keep_arrays:
        arrays["test"] = {name: stt.arrays() for name, stt in test_stats.items()}
        arrays["test"][final_name] = tstats_cpp.arrays()
    timings["test"] = time.perf_counter() - t0
    return arrays


def plot_arrays(arrays, train_stats, Z, clusterings, M_sel, n, weights_train, nearest_train, rows=None) -> None:
    """The training arrays of the plots (keep_arrays) into arrays; the cluster map's of the structures
    `rows` whose standardised mean descriptors Z are (the clustering's sample; default all)."""
    arrays["train"] = {name: stt.arrays() for name, stt in train_stats.items()}
    labels = clusterings[M_sel].labels if M_sel in clusterings else np.zeros(n, int)
    if rows is not None and len(rows) < n:
        labels, weights_train, nearest_train = (np.asarray(a)[rows] for a in (labels, weights_train, nearest_train))
    arrays["clusters"] = {"Z": Z, "labels": labels, "weights": weights_train, "nearest": nearest_train}


def cv_summary(row):
    if row is None:
        return None
    return {k: row.get(k) for k in ("n_structures", "n_atoms", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom",
                                    "force_mae_ev_per_a", "force_rmse_ev_per_a", "stress_mae_gpa", "stress_rmse_gpa")}
