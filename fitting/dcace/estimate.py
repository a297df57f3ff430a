"""The pass-2 time a fit announces before pass 2: counted operations times timed unit costs.

Why this file exists: pass 2 is where a fit spends its time, and issue 15 asks for its estimate
to hold within a factor 2 for linear models and committees alike.  Pass 2 does, per structure,
the fitting rows (C++) and their products Phi^T Phi (both ~ atoms), and per batch of structures
one update of every accumulator, into one-fold partial sums that are merged into the fold's
totals once per block (``dcace.parallel.accumulate_blocks``).  The committee accumulators' update
is a sweep over their (M D')^2 partial sums whatever the batch size, so its cost per batch is
alpha + beta B, not a per-structure constant; and the first update of a batch touches
never-written pages (the first-touch cost of hundreds of MiB), which pass 2 pays once per array
but which an estimate from one cold batch charged to every batch (the committee estimates were
2.3-4.7x the measured pass 2, docs/many-elements-estimate.md).

So the estimate counts, from the fit's own blocks and batch size, how many batches of which size
and how many block merges pass 2 will do (``pass2_batches``), and times on a sample of structures:
the rows and products per atom, one cold and two warm updates of the real accumulators' one-fold
partials (batch sizes 1 and the largest, so alpha and beta), and a cold and a warm merge.  The
updates add zero batches (same arithmetic, adds exactly 0), so the accumulators stay untouched.
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["pass2_batches", "time_updates", "estimate_pass2"]


def pass2_batches(blocks, bsize: int) -> list[int]:
    """Sizes of the batches pass 2 adds to the accumulators: every block flushed each `bsize`
    structures, its remainder last (pipeline.block_batch)."""
    bsize = max(1, int(bsize))
    return [min(bsize, len(b) - k) for b in blocks for k in range(0, len(b), bsize)]


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_updates(accumulators, make_batch, pick, bsize: int) -> dict:
    """Unit costs of pass 2's updates and merges, timed on one-fold partials of `accumulators`.

    make_batch(indices) -> a Batch of zero statistics of those structures (fresh, so its padded
    copy X is built inside the update, as in pass 2).  Returns alpha, beta (s per batch, s per
    structure of a warm update of all accumulators: alpha + beta B), first_touch (the cold
    update's excess over a warm one, once per pass 2), merge (s per block: zero the partials and
    add them into a fold), merge_first_touch (the cold merge's excess, once per fold) and the
    timed sizes."""
    from .parallel import _fold_arrays, _partial

    parts = [_partial(a) for a in accumulators]
    hi = max(1, min(int(bsize), len(pick)))

    def update(B):
        bt = make_batch(pick[:B])
        return _timed(lambda: [p.add(bt) for p in parts])

    cold = update(hi)
    warm_hi = min(update(hi), update(hi))
    if hi > 1:
        warm_lo = min(update(1), update(1))
        beta = max(0.0, (warm_hi - warm_lo) / (hi - 1))
        alpha = max(0.0, warm_lo - beta)
    else:
        alpha, beta, warm_lo = warm_hi, 0.0, warm_hi
    total = accumulators[0] if accumulators else None

    def merge():   # as accumulate_blocks: zero the partials, (a block's updates,) add them into fold 0
        for p in parts:
            for x in _fold_arrays(p):
                x.fill(0.0)
        for acc, p in zip(accumulators, parts):
            for tot, x in zip(_fold_arrays(acc), _fold_arrays(p)):
                tot[0] += x[0]

    merge_cold = _timed(merge) if total is not None else 0.0
    merge_warm = _timed(merge) if total is not None else 0.0
    return {"alpha": alpha, "beta": beta, "first_touch": max(0.0, cold - warm_hi), "merge": merge_warm,
            "merge_first_touch": max(0.0, merge_cold - merge_warm), "cold_update_s": cold,
            "warm_update_s": {1: warm_lo, hi: warm_hi}}


def estimate_pass2(rows_fn, gram_fn, frames, accumulators, make_batch, *, batch_sizes=None, n_blocks=None,
                   n_folds=1, bsize=None, n_sample=8, seed=0):
    """Estimated pass-2 seconds (serial) of `frames`: rows and products from a timed sample of
    structures (per atom), updates and merges from time_updates times the counted batches
    (batch_sizes, default: one per structure) and blocks (n_blocks, default: none).

    rows_fn(frame) -> fitting rows (or an exception, left for pass 2 to report); gram_fn(frame, rows)
    -> the per-structure products of pass 2.  Returns a dict: seconds, its parts, the per-atom row
    and product times, update_s_per_structure (the modelled updates and merges over the structures),
    the unit costs and the counts."""
    n = len(frames)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(n_sample, n), replace=False))
    t_rows = t_gram = 0.0
    atoms = 0
    for i in pick:
        fr = frames[i]
        t0 = time.perf_counter()
        r = rows_fn(fr)
        t1 = time.perf_counter()
        if isinstance(r, Exception):
            continue
        gram_fn(fr, r)
        t_rows += t1 - t0
        t_gram += time.perf_counter() - t1
        atoms += fr.n_atoms
    batch_sizes = [1] * n if batch_sizes is None else list(batch_sizes)
    n_blocks = 0 if n_blocks is None else int(n_blocks)
    unit = {}
    t_update = t_merge = 0.0
    if accumulators and len(pick):
        unit = time_updates(accumulators, make_batch, pick, max(batch_sizes, default=1) if bsize is None else bsize)
        t_update = len(batch_sizes) * unit["alpha"] + sum(batch_sizes) * unit["beta"] + unit["first_touch"]
        # fold 0 of the totals was touched by the timed merges; pass 2 touches the other folds first
        t_merge = n_blocks * unit["merge"] + max(n_folds - 1, 0) * unit["merge_first_touch"]
    n_atoms = sum(fr.n_atoms for fr in frames)
    per_atom_rows = t_rows / max(atoms, 1)
    per_atom_gram = t_gram / max(atoms, 1)
    t_struct = n_atoms * (per_atom_rows + per_atom_gram)
    return {"seconds": t_struct + t_update + t_merge, "rows_and_products_s": t_struct, "updates_s": t_update,
            "merges_s": t_merge, "rows_s_per_atom": per_atom_rows, "gram_s_per_atom": per_atom_gram,
            "update_s_per_structure": (t_update + t_merge) / max(n, 1), "unit_costs": unit,
            "n_batches": len(batch_sizes), "n_blocks": n_blocks, "n_sample": int(len(pick)),
            "n_structures": n, "n_atoms": n_atoms}
