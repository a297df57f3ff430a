"""Cost before work: what a fit will need (memory, pass-2 time) said before it is spent, and progress.

Why this file exists: the normal equations grow as (S K)^2 per candidate and pass 2 as atoms x
(S K)^2, so a many-element basis can ask for gigabytes and hours.  Every fit goes through here
twice: ``check_linear_memory`` before the data are read (K is counted, not built) refuses a basis
whose linear model alone exceeds the budget, naming the figure and the options that reduce it;
``estimate_pass2`` (dcace.estimate: counted batches and merges times unit costs timed on a
sample with the real accumulators) runs just before pass 2, and ``cost_lines`` prints K, the
unknowns, the memory of every candidate and the estimated time.
``progress`` gives progress on stderr: a tqdm bar on a terminal, plain lines (elapsed, ETA)
otherwise, so logs of batch jobs show where a fit is.
"""
from __future__ import annotations

import math
import os
import sys
import time

from .estimate import estimate_pass2, pass2_batches

__all__ = ["linear_nbytes", "check_linear_memory", "local_gate_nbytes", "check_local_memory", "local_cost_lines", "resident_bytes", "counted_nbytes", "expected_peak",
           "stress_rows_nbytes", "grade_atoms_cap", "grade_nbytes", "estimate_pass2", "pass2_batches", "cost_lines", "progress",
           "default_many_element_basis", "REDUCE_OPTIONS"]

#: the options that make the normal equations smaller, in the order to try them
REDUCE_OPTIONS = ("lower --max-degree or --body-order, give smaller --max-degree-blocks for functions coupling "
                  "several species (e.g. --max-degree-blocks 2:10,3:8), use --chemical-channels C "
                  "(K independent of the number of elements) or raise --angular-weight")


def linear_nbytes(S, K, k_folds):
    """Bytes of the linear model's normal equations: one (D' x D') matrix per fold, the pass-2 work
    arrays of one structure (A and its padded copy, u u^T) and the selection's solves (total,
    training and scaled copies)."""
    Dp = S * K + S
    return 8 * Dp * Dp * (k_folds + 5)


def _gib(nbytes):
    return nbytes / 2**30


def _size(nbytes):
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"


def check_linear_memory(S, K, k_folds, budget):
    """ValueError if the linear model's normal equations alone exceed `budget` bytes."""
    need = linear_nbytes(S, K, k_folds)
    if need > budget:
        raise ValueError(f"the basis has K = {K} features per species ({S * K + S} columns); the normal equations "
                         f"of even the linear model need {_gib(need):.1f} GiB ({k_folds} folds), more than the "
                         f"memory budget of {_gib(budget):.2f} GiB: {REDUCE_OPTIONS}, or raise --memory-budget "
                         f"to at least {math.ceil(_gib(need) * 10) / 10:g} if the machine has the memory")


def local_gate_nbytes(S, K, M, k_folds, n_temperatures):
    """Bytes of a local gate's normal equations (dcace.local_gate.LocalAccumulator): one (M D' x M D')
    matrix per fold and candidate temperature, and the solves' copies (the total, the training sum and
    ridge_solve's scaled copy)."""
    n = M * (S * K + S)
    return 8 * n * n * (k_folds * n_temperatures + 3)


def check_local_memory(S, K, M, k_folds, n_temperatures, budget, gate):
    """ValueError if a local gate's normal equations exceed `budget` bytes: refused before any pass over the
    data, with the figure and what makes it smaller (the local gates are fitted after the linear model and
    are not skipped as a structure-gate candidate over the budget is)."""
    need = local_gate_nbytes(S, K, M, k_folds, n_temperatures)
    if need > budget:
        n = M * (S * K + S)
        raise ValueError(f"the {gate} gate's committee has M = {M} experts x {S * K + S} columns = {n} unknowns; its "
                         f"normal equations need {_gib(need):.1f} GiB ({k_folds} folds x {n_temperatures} "
                         f"temperatures), more than the memory budget of {_gib(budget):.2f} GiB: give fewer "
                         f"--experts or --temperatures, {REDUCE_OPTIONS}, or raise --memory-budget to at least "
                         f"{math.ceil(_gib(need) * 10) / 10:g} if the machine has the memory")


def local_cost_lines(S, K, Ms, kinds, k_folds, n_temperatures, auto):
    """The cost line of the local gates (printed with pass 2's): how many local passes over the training
    data run after the linear model (one per gate kind and candidate M) and the largest committee's normal
    equations, the memory they hold at a time."""
    Dp, M = S * K + S, max(Ms)
    how = f"M = {', '.join(map(str, Ms))} by CV (--experts auto)" if auto else f"M = {M}"
    n = len(Ms) * len(kinds)
    return [f"cost: local gates ({', '.join(kinds)}): {how} -> {n} local pass{'es' if n != 1 else ''} over the "
            f"training data after the linear model; the largest committee, M = {M}: {M * Dp} unknowns, "
            f"{_size(local_gate_nbytes(S, K, M, k_folds, n_temperatures))} ({k_folds} folds x {n_temperatures} "
            f"temperatures), one committee at a time"]


def default_many_element_basis(n_elements, k_folds, budget, *, body_order=4, top_degree=12, lowest_degree=4):
    """(body_order, max_degree, max_degree_blocks) that `dcace fit` uses for 3+ elements and no basis options.

    Rule (docs/fitting.md): body order 4 and per-block degrees D for one species, D - 2 for two,
    D - 4 for three; D is the largest integer <= 12 whose linear normal equations take at most a
    quarter of the memory budget, so that committee candidates fit as well."""
    from .basis_spec import count_features

    for D in range(top_degree, lowest_degree - 1, -1):
        blocks = {b: D - 2 * (b - 1) for b in range(2, min(n_elements, body_order - 1) + 1)}
        K = count_features(n_elements, body_order, D, max_degree_blocks=blocks)
        if linear_nbytes(n_elements, K, k_folds) <= budget / 4:
            return body_order, D, blocks
    raise ValueError(f"no default basis for {n_elements} elements fits a quarter of the memory budget of "
                     f"{_gib(budget):.2f} GiB: give the basis (--max-degree, --max-degree-blocks, "
                     "--chemical-channels) or raise --memory-budget")


def _hms(seconds):
    seconds = max(0.0, float(seconds))
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def resident_bytes():
    """Resident memory of this process now (Linux /proc/self/statm; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def counted_nbytes(S, K, k_folds, group_bytes, joint_bytes):
    """The memory figure a fit prints against the budget: the accumulators of every candidate, the
    linear model's pass-2 work arrays and solve copies (as check_linear_memory counts them)."""
    Dp = S * K + S
    return group_bytes + sum(joint_bytes.values()) + linear_nbytes(S, K, k_folds) - 8 * k_folds * Dp * Dp


def stress_rows_nbytes(S, K, n_with_stress):
    """Bytes of the stress rows rank 0 keeps for the selection's stress errors (dcace.selection): 6 rows of
    S K numbers per structure with a stress, filled in pass 2 (so not in what the process holds before it)."""
    return 8 * 6 * S * K * int(n_with_stress)


#: copies of its (atoms x K) training descriptors the grade's MaxVol holds at once (dcace.grade.maxvol_grade:
#: the rows, their scaled copy, C = X X[I]^-1 and the swap's temporaries), measured with the RSS sampler of
#: benchmarks/memory_profile.py on a 4000 x 1000 full-rank X: 7.9 copies above the rows (5.1 rank-deficient);
#: on 8000 x 2345 (TiAl x10's size at degree 14) 6.0: 9 is the upper of the two, rows included
GRADE_COPIES = 9


def grade_atoms_cap(K, budget, max_atoms):
    """Atoms per species the grade's MaxVol takes at most (dcace.grade.fit_grade subsamples, seeded, beyond):
    max_atoms, or fewer so that its GRADE_COPIES copies of K numbers an atom fit the memory budget (bytes),
    but never fewer than 2 K (MaxVol picks K of them).  Independent of the number of structures."""
    fits = int(budget // (8 * GRADE_COPIES * max(int(K), 1)))
    return int(min(int(max_atoms), max(2 * int(K), fits)))


def grade_nbytes(K, atoms_per_species, max_atoms):
    """Bytes of the extrapolation grade's MaxVol on the largest species (dcace.grade.fit_grade: at most
    max_atoms rows of K numbers per species, GRADE_COPIES copies at once)."""
    n = min(int(max(atoms_per_species, default=0)), int(max_atoms))
    return 8 * GRADE_COPIES * n * K


def expected_peak(S, K, group_bytes, joint_bytes, resident, stress_bytes=0, grade_bytes=0):
    """The process's expected peak RSS (bytes): what it holds before pass 2 (resident: data, basis,
    pass-1 sums, restraints), every accumulator, the stress rows pass 2 keeps (stress_bytes,
    stress_rows_nbytes), 8 copies of the largest system solved (P = M D' for the largest committee,
    else D': fold sum, training difference and the eigh fallback of ridge_solve: triangle, symmetrised
    sum, eigenvectors and workspace), 3 per-structure D' x D' arrays of pass 2 and the grade's MaxVol
    (grade_bytes, grade_nbytes), counted as though it coexisted with all of them: an upper estimate.
    Measured against the peaks in docs/many-elements.md and, at scale (stress rows and the grade
    growing with the data), TiAl x1 and x10 at degree 14 in docs/parallel-fitting.md."""
    Dp = S * K + S
    P = max([Dp] + [M * Dp for M, _ in joint_bytes])
    return resident + group_bytes + sum(joint_bytes.values()) + stress_bytes + grade_bytes \
        + 8 * (8 * P * P + 3 * Dp * Dp)


def cost_lines(*, S, K, k_folds, group_bytes, n_groups, joint_bytes, skipped, budget, estimate, threads,
               resident=None, stress_bytes=0, grade_bytes=0, scratch_bytes=0):
    """Lines printed before pass 2: K, unknowns, memory per candidate, estimated time; resident: the
    bytes the process holds before pass 2 (data, basis, pass-1 sums, restraints), for the peak; stress_bytes:
    the stress rows pass 2 will keep (stress_rows_nbytes); grade_bytes: the grade's MaxVol (grade_nbytes);
    scratch_bytes: the per-structure rows kept in a scratch file instead (dcace.rowstore; then stress_bytes 0)."""
    Dp = S * K + S
    work = linear_nbytes(S, K, k_folds) - 8 * k_folds * Dp * Dp   # as check_linear_memory counts them
    used = counted_nbytes(S, K, k_folds, group_bytes, joint_bytes)
    lines = [f"cost: K = {K} features per species x {S} species -> {Dp} unknowns per expert "
             f"(one-body terms included)",
             f"cost: normal equations ({k_folds} folds): linear model"
             + (f" + {n_groups - 1} independent experts" if n_groups > 1 else "") + f" {_size(group_bytes)}, "
             f"pass-2 work arrays and solve copies {_size(work)}"]
    for (M, tau), nb in joint_bytes.items():
        lines.append(f"cost:   committee M={M}, tau={tau:g}: {M * Dp} unknowns, {_size(nb)}")
    for (M, tau), nb in skipped.items():
        lines.append(f"cost:   committee M={M}, tau={tau:g}: {M * Dp} unknowns, {_size(nb)} -- skipped "
                     f"(over the budget)")
    lines.append(f"cost: total {_size(used)} of the {_size(budget)} memory budget (--memory-budget)")
    if resident is not None:
        lines.append(f"cost: the process holds {_size(resident)} before pass 2 (data, basis, pass-1 sums, "
                     f"restraints), will keep {_size(stress_bytes)} of stress rows and the grade's MaxVol "
                     f"takes {_size(grade_bytes)}: expected peak about "
                     f"{_size(expected_peak(S, K, group_bytes, joint_bytes, resident, stress_bytes, grade_bytes))} "
                     "(measured against the peaks in docs/many-elements.md, docs/parallel-fitting.md)")
    if scratch_bytes:
        lines.append(f"cost: the descriptor sums and stress rows of every structure ({_size(scratch_bytes)}) are "
                     f"over the rows budget (--rows-budget): kept in a scratch file in the temporary directory, "
                     f"read back 256 structures at a time")
    e = estimate
    lines.append(f"cost: pass 2 estimated at {_hms(e['seconds'])} for {e['n_structures']} structures / "
                 f"{e['n_atoms']} atoms (timed on {e['n_sample']}: {1e3 * e['rows_s_per_atom']:.3g} ms/atom rows, "
                 f"{1e3 * e['gram_s_per_atom']:.3g} ms/atom products; "
                 + _update_text(e) + f"; serial, {threads} thread(s) may do better)")
    return lines


def _update_text(e):
    """The updates' part of the estimate line: counted batches x timed unit costs (dcace.estimate)."""
    u = e.get("unit_costs") or {}
    if "alpha" not in u:   # a refit: the state's measured update time per structure
        return f"{1e3 * e['update_s_per_structure']:.3g} ms/structure updates"
    touch = u["first_touch"] + u["merge_first_touch"]
    return (f"{e['n_batches']} batches x ({1e3 * u['alpha']:.3g} ms + B x {1e3 * u['beta']:.3g} ms) updates, "
            f"{e['n_blocks']} merges x {1e3 * u['merge']:.3g} ms, first touch {touch:.2g} s")


def progress(it, total, desc, enabled, stream=None):
    """`it` with progress on stderr: tqdm on a terminal, else a line at every 10 % (or 5 min) with
    elapsed time and ETA once the pass has run a second, and a last line with the pass's total time.
    With it=None, a bar object with update(k) and close() (the tqdm interface) instead."""
    if not enabled:
        return it
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(it, total=total, desc=desc, unit="str", leave=False, dynamic_ncols=True, file=stream)
    bar = LineBar(total, desc, stream)
    return bar if it is None else bar.wrap(it)


class LineBar:
    """Progress as plain lines (logs, batch jobs): `desc: 300/2974 (10 %), elapsed 01:02, ETA 09:18`."""

    def __init__(self, total, desc, stream):
        self.total, self.desc, self.stream = total, desc, stream
        self.done, self.step = 0, 0
        self.t0 = self.last = time.perf_counter()
        self.closed = False

    def update(self, k=1):
        self.done += k
        now = time.perf_counter()
        if self.done >= self.total:
            self.close()
        elif (10 * self.done // max(self.total, 1) > self.step and now - self.t0 >= 1.0) or now - self.last >= 300:
            self.step = 10 * self.done // max(self.total, 1)
            self.last = now
            el = now - self.t0
            print(f"{self.desc}: {self.done}/{self.total} ({100 * self.done / self.total:.0f} %), elapsed {_hms(el)}, "
                  f"ETA {_hms(el / self.done * (self.total - self.done))}", file=self.stream, flush=True)

    def close(self):
        if not self.closed:
            self.closed = True
            print(f"{self.desc}: {self.done}/{self.total} done, elapsed {_hms(time.perf_counter() - self.t0)}",
                  file=self.stream, flush=True)

    def wrap(self, it):
        for item in it:   # the last item is announced before it is handed out (callers may zip and stop)
            self.update()
            yield item
        self.close()
