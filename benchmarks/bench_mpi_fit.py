"""MPI ranks and threads in `dcace fit`: wall time, CPU time and peak memory per rank, parallel efficiency
of the descriptor/row pass (passes 1 + 2) and of pass 3 + the grade, memory per rank vs number of
structures (each rank keeps only its own blocks' frames; the peer: every rank given all frames as a
Dataset, as before streaming), fit time per 1e5 atoms, and a projection to 1e7 atoms on 64 ranks with
the model it rests on.  Writes docs/parallel-fitting.md; every run is kept in a JSON cache, so that the
configurations can be run one command at a time (each well under 10 minutes) and the page rebuilt:

    python benchmarks/bench_mpi_fit.py --quick --no-probe            # the row-pass efficiency, ~6 min on a quiet machine
    python benchmarks/bench_mpi_fit.py --runs Mo:50:1x1 Mo:50:2x1 --cache docs/parallel-fitting.json
    python benchmarks/bench_mpi_fit.py --doc-only --cache docs/parallel-fitting.json
    python benchmarks/bench_mpi_fit.py                               # the full plan (hours on 2 cores)

A run is SET:REPEATS:RANKSxTHREADS[:all|:parse-all|:stream] (":all": every rank holds every frame, the peer of the
memory per rank; ":parse-all": every rank parses every frame, keeping its own -- read_data(keep=), the reader
before dcace.stream -- the peer of the read time per rank; ":stream": --frames-budget 0, every rank holds none of
its frames and parses them again in every pass, dcace.restream; without it a rank holds its frames when they fit
the default frames budget).

Row-pass efficiency (issue 13's >= 85 % at 2 ranks): each rank measures the CPU time (time.process_time) of
its row pass (pass 1's descriptor sums and pass 2's blocks, parsing included); efficiency by CPU =
CPU_row(1 x 1) / (2 max over ranks CPU_row(2 x 1)), by wall = T_row(1 x 1) / (2 T_row(2 x 1)); both are printed
after the runs with the load (os.getloadavg) before and after each.

Data: the Zuo et al. Mo training set repeated R times with small random displacements (sigma
0.01 Angstrom, seeded; the DFT labels of the original frame are kept: a timing set, not a physics
set), and the TiAl tutorial set repeated likewise (two elements, body order 4).  Full mode: Mo x50
(~500,000 atoms) at body order 4 degree 12 and TiAl x10 at body order 4 degree 14; --quick: the row-pass
efficiency at the default basis (bo 4, degree 12) on Mo x4 (40,348 atoms): 1 x 1, 2 x 1, 1 x 2 and 2 x 1
streamed; with --runs, --quick sets Mo at degree 8 and TiAl at degree 10 (--max-degree overrides the degree of
every set).  Every configuration runs in fresh processes
(`mpiexec -n P python this_file --worker ...`); each rank reports its own peak RSS
(getrusage ru_maxrss) and rank 0 the fit's timings.  All ranks x threads <= the machine's cores
except where said; on a machine shared with other jobs the times are noisy -- compare within a run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MO = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
TIAL = ROOT / "examples" / "data" / "tial" / "TiAl_tutorial.xyz"
BIN = Path(sys.executable).parent
SETS = {
    "Mo": dict(source=MO, elements=["Mo"], cutoff=5.2, keys={}),
    "TiAl": dict(source=TIAL, elements=["Ti", "Al"], cutoff=5.5, keys=dict(forces_key="force", virial_key="virial")),
}


def repeated_set(name, repeat, path, sigma=0.01, seed=0):
    """The set repeated `repeat` times, copies displaced by N(0, sigma) (the first copy unchanged)."""
    from ase.io import read, write

    frames = read(SETS[name]["source"], ":")
    rng = np.random.default_rng(seed)
    out = []
    for r in range(repeat):
        for a in frames:
            b = a.copy()
            b.calc = a.calc
            if r:
                b.positions += rng.normal(0.0, sigma, b.positions.shape)
            out.append(b)
    write(path, out, format="extxyz")
    return len(out), int(sum(len(a) for a in out))


def worker(args):
    """One rank of one configuration (under mpiexec when --ranks > 1)."""
    import dcace

    comm = None
    if args.ranks > 1:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    s = SETS[args.set]
    import dcace.pipeline as pipeline

    read_s = []   # this rank's time in reading the training set (dcace.stream or read_data)

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            if not read_s:
                read_s.append(time.perf_counter() - t)
            return out
        return wrapper

    if args.parse_all:   # the peer: read_data(keep=) on every rank
        pipeline.read_own = lambda *a, **k: None
    row_cpu = [0.0]   # this rank's CPU time in the row pass (pass 1's descriptor sums, pass 2's blocks)

    def cpu_timed(fn):
        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                row_cpu[0] += time.process_time() - t
        return wrapper

    pipeline._descriptor_pass = cpu_timed(pipeline._descriptor_pass)
    pipeline.accumulate_blocks = cpu_timed(pipeline.accumulate_blocks)
    if args.cost_only:   # the cost lines of dcace.cost (printed before pass 2), then stop
        announce = pipeline._announce_cost

        def cost_then_stop(*a, **k):
            info = announce(*a, **k)
            print("COST " + json.dumps({"lines": info["lines"], "seconds": info.get("seconds"), "K": info.get("K"),
                                        "unknowns_per_expert": info.get("unknowns_per_expert"),
                                        "rows_s_per_atom": info.get("rows_s_per_atom"),
                                        "gram_s_per_atom": info.get("gram_s_per_atom"),
                                        "update_s_per_structure": info.get("update_s_per_structure"),
                                        "before_pass2_s": time.perf_counter() - t0}), flush=True)
            os._exit(0)

        pipeline._announce_cost = cost_then_stop
    pipeline.read_own, pipeline.read_data = timed(pipeline.read_own), timed(pipeline.read_data)
    t0 = time.perf_counter()   # (cost_then_stop reads it)
    data = args.data
    if args.hold_all:   # the peer: every rank reads and holds every frame (a Dataset is used as given)
        data = dcace.read_data(args.data, elements=s["elements"], **s["keys"])
    pot = dcace.fit(data, elements=s["elements"], cutoff=s["cutoff"], body_order=args.body_order,
                    max_degree=args.max_degree, experts=args.experts, threads=args.threads, comm=comm,
                    memory_budget_gb=args.memory_budget, frames_budget_gb=args.frames_budget, progress=False,
                    **({} if args.hold_all else s["keys"]))
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    mine = (ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime, read_s[0] if read_s else 0.0, row_cpu[0],
            pot.report.timings.get("streamed", 0))   # MiB (Linux: kB), CPU s
    every = [mine] if comm is None else comm.gather(mine, root=0)
    if comm is None or comm.Get_rank() == 0:
        t = pot.report.timings
        print("RESULT " + json.dumps({
            "wall": wall, "rss": [m[0] for m in every], "cpu": [m[1] for m in every], "read": [m[2] for m in every],
            "row_cpu": [m[3] for m in every], "streamed_ranks": [m[4] for m in every],
            "timings": {k: float(v) for k, v in t.items()},
            "partial_bytes": sum(pot.report.cost.get("memory_bytes", {}).values()) / 5,
            "cost": {k: pot.report.cost.get(k) for k in ("rows_s_per_atom", "gram_s_per_atom", "update_s_per_structure",
                                                         "K", "unknowns_per_expert", "expected_peak_bytes",
                                                         "stress_bytes", "resident_bytes")},
            "sha": __import__("hashlib").sha256(pot.to_string().encode()).hexdigest()}))


def run(data, set_name, ranks, threads, body_order, max_degree, experts, hold_all=False, timeout=660, parse_all=False,
        memory_budget_gb=None, cost_only=False, frames_budget_gb=None):
    cmd = [sys.executable, __file__, "--worker", "--data", str(data), "--set", set_name, "--ranks", str(ranks),
           "--threads", str(threads), "--body-order", str(body_order), "--max-degree", str(max_degree),
           "--experts", str(experts)] + (["--hold-all"] if hold_all else []) + (["--parse-all"] if parse_all else []) \
        + ([] if memory_budget_gb is None else ["--memory-budget", str(memory_budget_gb)]) \
        + (["--cost-only"] if cost_only else []) \
        + ([] if frames_budget_gb is None else ["--frames-budget", str(frames_budget_gb)])
    if ranks > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(ranks)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    tag = "COST " if cost_only else "RESULT "
    line = next(x for x in p.stdout.splitlines() if x.startswith(tag))
    return dict(json.loads(line[len(tag):]), load=[load, os.getloadavg()[0]])


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def row_pass(r):
    return r["timings"]["pass1"] + r["timings"]["pass2"]


def eval_pass(r):
    return r["timings"].get("pass3", 0) + r["timings"].get("grade", 0)


#: --quick without --runs: the row-pass efficiency at the default basis (Mo degree 12), ~6 minutes on 2 free cores
QUICK_EFFICIENCY = [("Mo", 4, 1, 1, ""), ("Mo", 4, 2, 1, ""), ("Mo", 4, 1, 2, ""), ("Mo", 4, 2, 1, "stream")]


def plan(quick, runs_given=False):
    """[(set, repeats, ranks, threads, mode)] and the basis of each set."""
    if quick:
        runs = [("Mo", 5, 1, 1, False), ("Mo", 5, 2, 1, False), ("Mo", 10, 1, 1, False), ("Mo", 10, 1, 2, False),
                ("Mo", 10, 2, 1, False), ("Mo", 10, 2, 1, True), ("TiAl", 3, 1, 1, False), ("TiAl", 3, 1, 2, False),
                ("TiAl", 3, 2, 1, False)]
    else:
        runs = [("Mo", 25, 1, 1, False), ("Mo", 25, 2, 1, False), ("Mo", 50, 1, 1, False), ("Mo", 50, 1, 2, False),
                ("Mo", 50, 2, 1, False), ("Mo", 50, 2, 1, True), ("TiAl", 10, 1, 1, False),
                ("TiAl", 10, 1, 2, False), ("TiAl", 10, 2, 1, False)]
    efficiency = quick and not runs_given
    basis = {"Mo": dict(body_order=4, max_degree=8 if quick and not efficiency else 12, experts="auto"),
             # TiAl: the linear model (at degree 14 a committee's normal equations exceed the memory budget)
             "TiAl": dict(body_order=4, max_degree=10 if quick else 14, experts=1,
                          memory_budget_gb=None if quick else 2.5)}   # degree 14: 1.6 GiB of linear normal equations
    if efficiency:
        return list(QUICK_EFFICIENCY), basis
    return [(name, R, ranks, threads, "all" if hold else "") for name, R, ranks, threads, hold in runs], basis


def parse_run(text):
    """SET:REPEATS:RANKSxTHREADS[:all|:parse-all|:stream] -> (set, repeats, ranks, threads, mode)."""
    parts = text.split(":")
    ranks, threads = (int(x) for x in parts[2].split("x"))
    mode = parts[3] if len(parts) > 3 else ""
    if mode not in ("", "all", "parse-all", "stream"):
        raise SystemExit(f"run {text!r}: the 4th field is 'all', 'parse-all' or 'stream', got {mode!r}")
    return parts[0], int(parts[1]), ranks, threads, mode


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "parallel-fitting.md"))
    ap.add_argument("--cache", default=str(ROOT / "docs" / "parallel-fitting.json"))
    ap.add_argument("--runs", nargs="*", help="SET:REPEATS:RANKSxTHREADS[:all] (default: the plan)")
    ap.add_argument("--doc-only", action="store_true", help="rebuild the page from the cache")
    ap.add_argument("--no-probe", action="store_true", help="skip the bandwidth probe")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hold-all", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--parse-all", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cost-only", action="store_true",
                    help="print each run's cost lines (dcace.cost, before pass 2) and stop there; kept under 'costs'")
    ap.add_argument("--memory-budget", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--frames-budget", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data"), ap.add_argument("--set"), ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1), ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--max-degree", type=float, default=None), ap.add_argument("--experts", default="auto")
    ap.add_argument("--timeout", type=float, default=660, help="seconds a run may take (default 660)")
    args = ap.parse_args()
    if args.worker:
        args.experts = args.experts if args.experts == "auto" else int(args.experts)
        return worker(args)

    runs, basis = plan(args.quick, args.runs is not None)
    if args.max_degree is not None:
        for b in basis.values():
            b["max_degree"] = args.max_degree
    if args.runs is not None:   # an empty list: only the probe (and the page)
        runs = [parse_run(x) for x in args.runs]
    cache = Path(args.cache)
    store = json.loads(cache.read_text()) if cache.exists() else {"rows": [], "probe": None}
    tmp = Path(tempfile.mkdtemp(prefix="bench_mpi_fit_"))
    sizes = {}
    for name, R, ranks, threads, mode in ([] if args.doc_only else runs):
        hold, parse_all, stream = mode == "all", mode == "parse-all", mode == "stream"
        spec = basis[name]
        data = tmp / f"{name}x{R}.xyz"
        if data not in sizes:
            sizes[data] = repeated_set(name, R, data)
        n_str, n_at = sizes[data]
        t0 = time.perf_counter()
        if args.cost_only:
            c = run(data, name, ranks, threads, spec["body_order"], spec["max_degree"], spec["experts"],
                    memory_budget_gb=spec.get("memory_budget_gb"), cost_only=True)
            print("\n".join(c["lines"]) + f"\n(before pass 2: {c['before_pass2_s']:.0f} s, load {c['load'][0]:.1f})",
                  flush=True)
            store.setdefault("costs", {})[f"{name} x{R} deg {spec['max_degree']:g}"] = dict(
                c, n_structures=n_str, n_atoms=n_at, command="python benchmarks/bench_mpi_fit.py " + " ".join(sys.argv[1:]))
            cache.write_text(json.dumps(store, indent=1))
            continue
        r = run(data, name, ranks, threads, spec["body_order"], spec["max_degree"], spec["experts"], hold,
                parse_all=parse_all, memory_budget_gb=spec.get("memory_budget_gb"),
                frames_budget_gb=0 if stream else None, timeout=args.timeout)
        row = dict(set=f"{name} x{R}", n_structures=n_str, n_atoms=n_at, ranks=ranks, threads=threads,
                   hold_all=hold, parse_all=parse_all, stream=stream, body_order=spec["body_order"],
                   max_degree=spec["max_degree"], experts=spec["experts"], elapsed=time.perf_counter() - t0,
                   command="python benchmarks/bench_mpi_fit.py " + " ".join(sys.argv[1:]), uptime=_uptime(), **r)
        key = (row["set"], ranks, threads, hold, parse_all, stream, row["max_degree"])
        store["rows"] = [x for x in store["rows"] if (x["set"], x["ranks"], x["threads"], x.get("hold_all", False),
                                                      x.get("parse_all", False), x.get("stream", False),
                                                      x["max_degree"]) != key] + [row]
        cache.write_text(json.dumps(store, indent=1))
        print(f"{row['set']} ({n_at} atoms) {ranks} x {threads}{' all frames' if hold else ''}{' parse all' if parse_all else ''}: wall {r['wall']:.1f} s, "
              f"row pass {row_pass(r):.1f} s, pass 3 + grade {eval_pass(r):.1f} s, RSS/rank "
              f"{', '.join(f'{m:.0f}' for m in r['rss'])} MiB, CPU/rank {', '.join(f'{c:.0f}' for c in r['cpu'])} s, "
              f"read/rank {', '.join(f'{x:.1f}' for x in r['read'])} s, row-pass CPU/rank "
              f"{', '.join(f'{x:.1f}' for x in r['row_cpu'])} s, frames streamed/rank {r['streamed_ranks']}, "
              f"load {r['load'][0]:.1f} -> {r['load'][1]:.1f}", flush=True)
    if not args.doc_only:
        from bench_mpi_doc import efficiency_lines

        print("\n".join(efficiency_lines([x for x in store["rows"] if (x["set"], x["max_degree"]) in
                                          {(f"{n} x{R}", basis[n]["max_degree"])
                                           for n, R, *_ in runs}])), flush=True)
    sys.path.insert(0, str(Path(__file__).parent))
    if not args.doc_only and not args.no_probe:
        from bandwidth_probe import probe

        store["probe"] = dict(probe(), load=os.getloadavg()[0])
        cache.write_text(json.dumps(store, indent=1))
    from bench_mpi_doc import write_doc

    write_doc(args.out, store, platform.processor() or platform.machine(), os.cpu_count(), platform.python_version())
    print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
