"""A ridge per species block: cross-validation chooses a relative ridge for the columns of every block.

Why this file exists: a many-element basis is a union of blocks -- the columns that couple 1, 2,
3 ... distinct species.  They see different data (a 2-species column is zero on every unary
structure), so one ridge for all of them trades the blocks off: raising the
1-species degree on Nb-Mo-Ta made CV pick a ridge 1e4 times larger, which the binaries' 2-species
functions paid for (docs/many-elements-summary.md).  With ``block_ridge`` the penalty of a column
of block b is lambda * f_b (``ridge.penalty_vector(col_factor=)``); that is the uniform ridge on
columns scaled by 1/sqrt(f_b) more (where the ridge enters the normal equations), so the
accumulated sums are reused and only the solves multiply.

A column (centre species s, feature k) is in block b when s and the neighbour species of feature k
are b distinct species (``column_blocks``): it is zero on every structure with fewer species, so
block 1 holds exactly the columns the unary data see.

The setting (``DEFAULTS["block_ridge"]``, ``fit(block_ridge=)``, ``--block-ridge``):

* None: one ridge for every block (the fit before this option, bit for bit);
* a grid of factors, e.g. ``(1e-4, 1e-2, 1, 1e2, 1e4)``: after lambda is chosen (all f_b = 1),
  one coordinate sweep over the blocks that carry data, highest block first, sets each f_b to the
  grid value with the lowest CV loss of the linear model (the others held); a change must lower it;
* ``{b: f_b}``: fixed factors (blocks not named keep 1), no search.

The ridge of the top degree shell (``DEFAULTS["top_degree_ridge"]``, ``fit(top_degree_ridge=)``,
``--top-degree-ridge D[:F]``): the columns whose feature degree exceeds D -- the functions a basis of
max degree D does not have -- get lambda * f.  With D alone, lambda is chosen with f at the largest
factor of ``DEFAULTS["top_degree_ridge_grid"]`` (the shell all but off: the degree-D model's lambda),
then f by CV from the grid at that lambda; so the degree-D model, nested, is a candidate, and the
shell's new functions cannot buy their own ridge with the old functions' (raising the 1-species
degree made CV pick a ridge 1e4 times larger for every column, docs/many-elements-summary.md).
``(D, F)`` fixes f = F (lambda chosen with it).  The degree prior and the block factors multiply on
top of the shell's factors.

The chosen factors and the CV rows are in ``report.selection["block_ridge"]`` and the file's
metadata; they change only coefficients (no format change).  The committees' solves (structure and
atom gate) use the same factors.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_block_ridge", "check_degree_ridge", "check_top_degree_ridge", "column_blocks", "column_degrees",
           "column_factors", "choose_block_factors", "choose_column_ridge", "top_degree_start", "OPTION",
           "DEGREE_OPTION", "TOP_OPTION"]

OPTION = "block_ridge (--block-ridge)"
DEGREE_OPTION = "degree_ridge (--degree-ridge)"
TOP_OPTION = "top_degree_ridge (--top-degree-ridge)"


def _factor(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{OPTION}: {what} must be a finite number > 0, got {value!r}")
    return float(value)


def check_block_ridge(value, n_species, body_order, chemical_channels=None):
    """None, a sorted tuple of grid factors, or {block: factor}, validated (errors name the option)."""
    if value is None:
        return None
    if chemical_channels is not None:
        raise ValueError(f"{OPTION} needs the explicit basis: with chemical_channels (--chemical-channels) "
                         "every channel mixes all species, so there are no species blocks")
    top = min(n_species, body_order)   # the centre and up to body_order - 1 neighbour species
    if isinstance(value, dict):
        out = {}
        for b, f in value.items():
            if isinstance(b, str) and b.strip().isdigit():   # JSON keys (settings stored in files and states)
                b = int(b)
            if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 1 <= int(b) <= top:
                raise ValueError(f"{OPTION}: block {b!r} (columns coupling that many distinct species, the centre's included) does "
                                 f"not exist with {n_species} element(s) at body order {body_order}; "
                                 f"the blocks are 1..{top}")
            out[int(b)] = _factor(f, f"the factor of block {b}")
        return dict(sorted(out.items()))
    if isinstance(value, str):
        raise ValueError(f"{OPTION} must be a grid of factors (e.g. [1e-4, 1e-2, 1, 1e2, 1e4]) or a "
                         f"{{block: factor}} map, got {value!r}")
    try:
        grid = [_factor(f, "a grid factor") for f in value]
    except TypeError:
        raise ValueError(f"{OPTION} must be a grid of factors (e.g. [1e-4, 1e-2, 1, 1e2, 1e4]) or a "
                         f"{{block: factor}} map, got {value!r}") from None
    if not grid:
        raise ValueError(f"{OPTION}: the grid of factors is empty")
    return tuple(sorted(set(grid)))


def check_degree_ridge(value):
    """None, a fixed exponent p (a number) or a sorted tuple of exponents to choose from by CV."""
    if value is None:
        return None
    def exponent(p):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or p < 0:
            raise ValueError(f"{DEGREE_OPTION}: an exponent must be a finite number >= 0, got {p!r}")
        return float(p)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return exponent(value)
    if isinstance(value, str):
        raise ValueError(f"{DEGREE_OPTION} must be an exponent (e.g. 4) or a grid of them (e.g. [0, 2, 4, 8]), "
                         f"got {value!r}")
    try:
        grid = tuple(sorted({exponent(p) for p in value}))
    except TypeError:
        raise ValueError(f"{DEGREE_OPTION} must be an exponent (e.g. 4) or a grid of them (e.g. [0, 2, 4, 8]), "
                         f"got {value!r}") from None
    if not grid:
        raise ValueError(f"{DEGREE_OPTION}: the grid of exponents is empty")
    return grid


def check_top_degree_ridge(value, max_degree):
    """None, or (D, F): D the degree above which a column is in the top shell (0 <= D < max_degree),
    F its fixed factor (a finite number > 0) or None (chosen by CV).  Accepts D, (D, F) and the stored
    {"degree": D, "factor": F}."""
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"degree", "factor"}:
            raise ValueError(f"{TOP_OPTION}: a map needs exactly the keys 'degree' and 'factor', got {sorted(value)}")
        d, f = value["degree"], value["factor"]
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{TOP_OPTION} must be a degree D or a pair (D, factor), got {value!r}")
        d, f = value
    else:
        d, f = value, None
    if isinstance(d, bool) or not isinstance(d, numbers.Real) or not math.isfinite(d) or d < 0:
        raise ValueError(f"{TOP_OPTION}: the degree must be a finite number >= 0, got {d!r}")
    if d >= max_degree:
        raise ValueError(f"{TOP_OPTION}: no feature has a degree above {d:g}: the basis's max_degree "
                         f"(--max-degree) is {max_degree:g}; give a degree below it")
    if f is not None:
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(f) or f <= 0:
            raise ValueError(f"{TOP_OPTION}: the factor must be a finite number > 0, got {f!r}")
        f = float(f)
    return float(d), f


def stored_top(value):
    """The JSON form kept in the fit settings."""
    return None if value is None else {"degree": value[0], "factor": value[1]}


def stored(value):
    """The JSON form kept in the fit settings (dict keys as strings, a grid as a list)."""
    if value is None:
        return None
    return {str(b): f for b, f in value.items()} if isinstance(value, dict) else list(value)


def column_blocks(basis) -> np.ndarray:
    """(D,) the block of every coefficient column (centre species s, feature k; species-major s K + k):
    the number of distinct species among s and the neighbour species feature k couples, i.e. the
    fewest species a structure needs for the column to be non-zero.  (The centre counts: the column
    of a Nb centre and a Mo-only feature is seen by Nb-Mo structures only, so it is a 2-species column,
    while max_degree_blocks counts the feature's species alone.)"""
    species = _feature_species(basis.spec_)
    return np.array([len(zs | {s}) for s in range(basis.n_species) for zs in species], dtype=int)


def _feature_species(spec):
    """The neighbour species of every feature, from the spec's arrays (a basis read from a file has
    no labels): the channels of the A entries of its monomials."""
    chan_z, chan_l = np.asarray(spec["chan_z"]), np.asarray(spec["chan_l"])
    z_of_A = np.repeat(chan_z, 2 * chan_l + 1)   # compact A index -> its channel's species
    mono = np.asarray(spec["mono_idx"])
    ptr, feat_mono = np.asarray(spec["feat_ptr"]), np.asarray(spec["feat_mono"])
    out = []
    for k in range(len(ptr) - 1):
        idx = mono[feat_mono[ptr[k]:ptr[k + 1]]].ravel()
        out.append({int(z) for z in z_of_A[idx[idx >= 0]]})
    return out


def column_degrees(basis) -> np.ndarray:
    """(D,) the degree sum_t (n_t + 1 + w_L l_t) of every column's feature (basis_spec's convention)."""
    spec = basis.spec_
    chan_l = np.asarray(spec["chan_l"])
    deg_of_chan = np.asarray(spec["chan_n"]) + 1 + float(basis.w_L) * chan_l
    deg_of_A = np.repeat(deg_of_chan, 2 * chan_l + 1)   # compact A index -> its channel's degree
    mono = np.asarray(spec["mono_idx"])
    ptr, feat_mono = np.asarray(spec["feat_ptr"]), np.asarray(spec["feat_mono"])
    first = mono[feat_mono[ptr[:-1]]]   # a feature's monomials all use its channel tuple: the first says it
    per_feature = np.where(first >= 0, deg_of_A[np.maximum(first, 0)], 0.0).sum(axis=1)
    return np.tile(per_feature, basis.n_species)


def column_factors(blocks: np.ndarray, factors: dict) -> np.ndarray:
    """(D,) the ridge factor of every column from {block: factor} (blocks not named: 1)."""
    out = np.ones(len(blocks))
    for b, f in factors.items():
        out[blocks == b] = f
    return out


def top_degree_start(sel, basis, setting, grid):
    """Before lambda is chosen: the top shell's columns (D,) bool get the fixed factor or, to be
    chosen by CV, the grid's largest (the shell all but off); returns the mask, or None (no setting)."""
    if setting is None:
        return None
    top = column_degrees(basis) > setting[0]
    if not top.any():
        raise ValueError(f"{TOP_OPTION}: no feature has a degree above {setting[0]:g} in this basis")
    sel.set_column_factors(np.where(top, max(grid) if setting[1] is None else setting[1], 1.0))
    return top


def choose_top_factor(sel, lam, top, setting, grid):
    """The top shell's factor: fixed, or the grid value with the lowest linear CV loss at lam (largest
    first, so that a tie keeps the smaller model); sets sel's column factors; returns the record."""
    d, fixed = setting
    if fixed is not None:
        fac = np.where(top, fixed, 1.0)
        sel.set_column_factors(fac)
        return {"degree": d, "factor": fixed, "searched": False, "n_columns": int(top.sum()), "cv": [],
                "column_factor": fac}
    rows = []
    for f in sorted(set(grid), reverse=True):
        sel.set_column_factors(np.where(top, f, 1.0))
        rows.append({"factor": f, "loss": sel.linear_cv_loss(lam)})
    best = min(rows, key=lambda r: r["loss"])
    fac = np.where(top, best["factor"], 1.0)
    sel.set_column_factors(fac)
    return {"degree": d, "factor": best["factor"], "searched": True, "n_columns": int(top.sum()),
            "cv_loss": best["loss"], "cv": rows, "column_factor": fac}


def choose_column_ridge(sel, lam, basis, block_setting, degree_setting, top=None):
    """The column factors of every setting (the top shell's first, then the degree prior, then the
    blocks, each multiplying the ones before), set on sel; top: (mask from top_degree_start, setting,
    grid) or None; returns {"top_degree_ridge", "block_ridge", "degree_ridge": record or None}."""
    base, degree, shell = None, None, None
    if top is not None and top[0] is not None:
        shell = choose_top_factor(sel, lam, *top)
        base = shell.pop("column_factor")
    if degree_setting is not None:
        degree = choose_degree_exponent(sel, lam, column_degrees(basis), degree_setting, base=base)
        base = degree.pop("column_factor")
    block = None
    if block_setting is not None:
        block = choose_block_factors(sel, lam, column_blocks(basis), block_setting, base=base)
    return {"block_ridge": block, "degree_ridge": degree, "top_degree_ridge": shell}


def choose_degree_exponent(sel, lam, degrees, setting, base=None):
    """The smoothness prior: column factor (degree / smallest degree)^p (ACEpotentials' algebraic prior
    d^p: the smallest degree is 1), so the lowest degree keeps lam and higher degrees get more; p fixed
    (a number) or the grid value with the lowest linear CV loss (p = 0, the uniform ridge, included).
    (Normalised at the top instead -- lower degrees get less -- CV rejected every p > 0 on Nb-Mo-Ta,
    docs/many-elements-summary.md.)  base: (D,) factors the prior multiplies, or None.  Sets sel's
    column factors."""
    rel = degrees / degrees.min()
    base = np.ones(len(rel)) if base is None else base
    if not isinstance(setting, tuple):
        fac = rel ** setting * base
        sel.set_column_factors(fac)
        return {"exponent": setting, "searched": False, "cv": [], "column_factor": fac}
    rows = []
    for p in sorted(set(setting) | {0.0}):
        sel.set_column_factors(rel ** p * base)
        rows.append({"exponent": p, "loss": sel.linear_cv_loss(lam)})
    best = min(rows, key=lambda r: r["loss"])   # (ties: the smaller exponent, listed first)
    fac = rel ** best["exponent"] * base
    sel.set_column_factors(fac)
    return {"exponent": best["exponent"], "searched": True, "cv_loss": best["loss"], "cv": rows, "column_factor": fac}


def choose_block_factors(sel, lam, blocks, setting, base=None):
    """Sets sel's column factors from the setting; returns the record of what was chosen.

    sel: a selection.Selector whose ridge lam is chosen; blocks: column_blocks; setting: as
    check_block_ridge returns it (not None); base: (D,) factors the block factors multiply (the
    degree prior) or None.  Blocks whose columns carry no data are not searched."""
    base = np.ones(len(blocks)) if base is None else base
    if isinstance(setting, dict):
        sel.set_column_factors(column_factors(blocks, setting) * base)
        return {"factors": {str(b): f for b, f in setting.items()}, "searched": False, "cv": []}
    with_data = sel.columns_with_data()
    present = sorted({int(b) for b in np.unique(blocks[with_data])}, reverse=True)
    chosen = {b: 1.0 for b in present}

    def loss_of(factors):
        sel.set_column_factors(column_factors(blocks, factors) * base)
        return sel.linear_cv_loss(lam)

    best = loss_of(chosen)
    rows = [{"factors": {str(b): f for b, f in chosen.items()}, "loss": best}]
    for b in present:
        pick = chosen[b]
        for f in setting:
            if f == chosen[b]:
                continue
            trial = {**chosen, b: f}
            loss = loss_of(trial)
            rows.append({"factors": {str(k): v for k, v in trial.items()}, "loss": loss})
            if loss < best:
                best, pick = loss, f
        chosen[b] = pick
    sel.set_column_factors(column_factors(blocks, chosen) * base)
    return {"factors": {str(b): f for b, f in sorted(chosen.items())}, "searched": True, "cv_loss": best, "cv": rows}
