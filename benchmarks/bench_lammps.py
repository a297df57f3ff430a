"""Speed of pair_style dcace in LAMMPS (issue 5), in one run:

1. bcc Mo, 2000 atoms, NVE from 300 K, 100 steps, 1 rank: microseconds per atom per step for
   dcace linear (M = 1, body order 4, degree 12, cutoff 5.2 A), dcace DC (M from dcace.fit
   experts="auto" on Zuo Mo; a hand-made M = 7 potential if the fit is unavailable) and the
   in-binary peer pair_style snap, linear, 2J = 8 (random coefficients, same cutoff);
   ratios DC/linear (target <= 1.3) and linear/SNAP (target <= 0.25); and the local gates (issue 11:
   `gate="atom"` and `gate="neighbourhood"`, M = --atom-experts, or --atom / --neighbourhood FILE):
   atom gate / linear (target <= 1.15) and neighbourhood gate / linear (target <= 1.3) beside the
   structure gate's DC / linear, same run;
2. 16,000 atoms, 50 steps: 2 ranks vs 1 rank speed-up of dcace DC (target >= 1.7), and of the linear
   potential and each local gate, same run (issue 11: each local gate's within 5 % of the linear one's);
3. memory: LAMMPS' "Per MPI rank memory allocation" and the max RSS from /usr/bin/time -v.

Every case is run --repeat times (separate lmp processes); min and median are printed.  "wall" is
LAMMPS' loop time; "cpu" multiplies it by LAMMPS' "% CPU use" (what the process got of its core:
on a shared machine wall time includes waiting for the CPU).

With --grade-every N ...: dcace linear again with `compute dcace/atom` pulled every N steps by
`fix halt` (the grade's cost; target every 100 steps <= +2 %).

Usage: python benchmarks/bench_lammps.py [--repeat 3] [--workdir DIR] [--skip-snap] [--grade-every 1 100]
       [--atom FILE | --skip-atom] [--neighbourhood FILE | --skip-neighbourhood]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lammps_common as lc


LOCAL_TARGET = {"atom": 1.15, "neighbourhood": 1.3}   # issue 11: per atom-step / linear


def grade_share(grade_runs, linear_runs):
    """The grade's cost relative to the force field, from LAMMPS' timing breakdown of each run: the
    grade is evaluated outside Pair (in Modify, by fix halt), so (non-Pair / Pair time) grows by its
    cost; the linear runs' own non-Pair share (integration, neighbour lists) is subtracted.  A ratio of
    times inside one process, so another job slowing the process slows both parts alike."""
    def nonpair_over_pair(rs):
        return float(np.median([(100.0 - r["pair_pct"]) / r["pair_pct"] for r in rs]))
    return nonpair_over_pair(grade_runs) - nonpair_over_pair(linear_runs)


def summary(runs, key="us_atom_step"):
    v = np.array([r[key] for r in runs])
    return v.min(), float(np.median(v))


def cpu_us(r):
    return r["us_atom_step"] * r["cpu_pct"] / 100.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--big-steps", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None, help="keeps potentials and decks (default: temp)")
    ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--max-degree", type=float, default=12)
    ap.add_argument("--cutoff", type=float, default=5.2)
    ap.add_argument("--experts", default="auto", help="M for the DC fit, or 'auto'")
    ap.add_argument("--dc", type=Path, help="use this DC potential file instead of fitting")
    ap.add_argument("--linear", type=Path, help="use this linear potential file instead of fitting")
    ap.add_argument("--atom", type=Path, help="use this atom-gate potential file instead of fitting")
    ap.add_argument("--neighbourhood", type=Path, help="use this neighbourhood-gate potential file instead of fitting")
    ap.add_argument("--atom-experts", type=int, default=4, help="M of the local-gate fits")
    ap.add_argument("--skip-atom", action="store_true", help="no atom-gate case")
    ap.add_argument("--skip-neighbourhood", action="store_true", help="no neighbourhood-gate case")
    ap.add_argument("--skip-snap", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--grade-every", type=int, nargs="*", default=[],
                    help="also time dcace linear with compute dcace/atom pulled every N steps by fix halt "
                         "(e.g. --grade-every 1 100)")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="also write the tables as Markdown here (e.g. docs/speed.md)")
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_lammps_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    import dcace

    print(f"dcace {dcace.__version__}; lmp = {lc.LMP}; work dir {work}")
    print(lc.machine())

    basis = dict(body_order=a.body_order, max_degree=a.max_degree, cutoff=a.cutoff)
    print("potentials:")
    if a.linear:
        lin_path, lin_src = a.linear, "file"
        lin = dcace.load(lin_path)
    else:
        lin_path, lin, lin_src = lc.mo_potential(work, 1, 1, **basis)
    if a.dc:
        dc_path, dc_src = a.dc, "file"
        dc = dcace.load(dc_path)
    else:
        experts = a.experts if a.experts == "auto" else int(a.experts)
        dc_path, dc, dc_src = lc.mo_potential(work, experts, 7, **basis)
    M = dc.n_experts
    assert lin.n_experts == 1 and M > 1, (lin.n_experts, M)
    local = {}   # case name -> (kind, path, source)
    for kind, given, skip in (("atom", a.atom, a.skip_atom), ("neighbourhood", a.neighbourhood, a.skip_neighbourhood)):
        if skip:
            continue
        if given:
            path, pot = given, dcace.load(given)
        else:
            path, pot = lc.fitted_mo(work, a.atom_experts, gate=kind, **basis)
        assert pot.gate_kind == kind, (pot.gate_kind, kind)
        local[f"dcace {kind} gate (M={pot.n_experts})"] = (kind, path, "file" if given else "dcace.fit")
    snap_coeff, snap_param, ncoeff = lc.snap_files(work, 8, a.cutoff)
    print(f"  SNAP 2J = 8: {ncoeff} bispectrum coefficients, cutoff {a.cutoff} A")

    gate = f"compute w all pair dcace\nthermo_style custom step temp pe etotal press " + \
        " ".join(f"c_w[{k}]" for k in range(1, M + 2))
    nocore_path = without_core(lin, work / "linear_no_core.dcace")
    cases = {
        "dcace linear": (["pair_style dcace", f"pair_coeff * * {lin_path} Mo"], ""),
        "linear, no core": (["pair_style dcace", f"pair_coeff * * {nocore_path} Mo"], ""),
        f"dcace DC (M={M})": (["pair_style dcace", f"pair_coeff * * {dc_path} Mo"], gate),
    }
    for name, (_, path, _) in local.items():
        cases[name] = (["pair_style dcace", f"pair_coeff * * {path} Mo"], "")
    for n in a.grade_every:   # the grade is evaluated only on the steps fix halt checks it
        grade = ("compute g all dcace/atom\ncompute gmax all reduce max c_g[1]\nvariable gmax equal c_gmax\n"
                 f"fix stop all halt {n} v_gmax > 1e300 error soft")
        cases[f"linear, grade/{n}"] = (["pair_style dcace", f"pair_coeff * * {lin_path} Mo"], grade)
    if not a.skip_snap:
        cases["snap 2J=8"] = (["pair_style snap", f"pair_coeff * * {snap_coeff} {snap_param} Mo"], "")

    results = {"settings": vars(a), "M": M, "dc_source": dc_src, "linear_source": lin_src,
               "machine": lc.machine(), "cases": {}}
    results["local_cases"] = {name: {"kind": kind, "source": src} for name, (kind, _, src) in local.items()}
    print(f"\n1. bcc Mo 2000 atoms, 300 K NVE, {a.steps} steps, 1 rank, {a.repeat} repeats "
          "(cases interleaved)")
    runs = {name: [] for name in cases}
    for rep in range(a.repeat):
        for name, (pair, extra) in cases.items():
            deck = lc.bcc_deck(10, pair, a.steps, extra=extra)
            r = lc.run_lmp(deck, work / "small", 1, name=f"in.{name.split()[0]}{len(runs[name])}")
            runs[name].append(r)
            print(f"   {name:18s} run {rep + 1}: {r['us_atom_step']:8.2f} us/atom/step wall, "
                  f"CPU use {r['cpu_pct']:.0f}%, pair {r['pair_pct']:.1f}%", flush=True)
    print(f"\n   {'case':18s} {'wall min':>9s} {'wall med':>9s} {'cpu min':>9s} {'cpu med':>9s}"
          f"   {'LAMMPS MB/rank':>14s} {'max RSS MB':>10s}")
    table = {}
    for name, rs in runs.items():
        wmin, wmed = summary(rs)
        c = np.array([cpu_us(r) for r in rs])
        table[name] = dict(wall_min=wmin, wall_med=wmed, cpu_min=c.min(), cpu_med=float(np.median(c)),
                           mem_mb=rs[0]["mem_mb"], maxrss_mb=max(r["maxrss_mb"] for r in rs),
                           runs=[r["us_atom_step"] for r in rs], cpu_pct=[r["cpu_pct"] for r in rs])
        t = table[name]
        mem = "/".join(f"{x:.1f}" for x in t["mem_mb"]) if t["mem_mb"] else "?"
        print(f"   {name:18s} {wmin:9.2f} {wmed:9.2f} {c.min():9.2f} {np.median(c):9.2f}   "
              f"{mem:>14s} {t['maxrss_mb']:10.1f}")
    results["cases"] = table
    lin_t, dc_t = table["dcace linear"], table[f"dcace DC (M={M})"]
    ratio = {k: dc_t[k] / lin_t[k] for k in ("wall_min", "wall_med", "cpu_min", "cpu_med")}
    print(f"\n   DC/linear       = {ratio['wall_min']:.3f} (wall min), {ratio['wall_med']:.3f} (wall med), "
          f"{ratio['cpu_min']:.3f} (cpu min)   target <= 1.3: "
          f"{'MET' if ratio['wall_min'] <= 1.3 else 'MISSED'}")
    results["dc_over_linear"] = ratio
    for name, (kind, _, _) in local.items():
        lt = table[name]
        r_lt = {k: lt[k] / lin_t[k] for k in ("wall_min", "wall_med", "cpu_min", "cpu_med")}
        target = LOCAL_TARGET[kind]
        print(f"   {kind} gate/linear = {r_lt['wall_min']:.3f} (wall min), {r_lt['wall_med']:.3f} (wall med), "
              f"{r_lt['cpu_min']:.3f} (cpu min)   target <= {target}: "
              f"{'MET' if r_lt['wall_min'] <= target else 'MISSED'}")
        results.setdefault("local_over_linear", {})[name] = r_lt
    if lin.baseline is not None:
        nc = table["linear, no core"]
        over = {k: lin_t[k] / nc[k] - 1.0 for k in ("wall_min", "wall_med", "cpu_min")}
        print(f"   short-range core on vs off: {100 * over['wall_min']:+.1f} % (wall min), "
              f"{100 * over['wall_med']:+.1f} % (wall med), {100 * over['cpu_min']:+.1f} % (cpu min)   "
              f"target <= +5 %: {'MET' if over['wall_min'] <= 0.05 else 'MISSED'}")
        results["core_overhead"] = over
    for n in a.grade_every:
        g = table[f"linear, grade/{n}"]
        over = {k: g[k] / lin_t[k] - 1.0 for k in ("wall_min", "wall_med", "cpu_min")}
        print(f"   grade every {n:4d} steps: {100 * over['wall_min']:+.1f} % (wall min), "
              f"{100 * over['wall_med']:+.1f} % (wall med), {100 * over['cpu_min']:+.1f} % (cpu min) vs linear"
              + ("   target <= +2 %: " + ("MET" if over["wall_min"] <= 0.02 else "MISSED") if n >= 100 else ""))
        results.setdefault("grade_overhead", {})[n] = over
    if 1 in a.grade_every:   # the grade costs the same on every step it is evaluated: every N steps, 1/N of it
        per_eval = table["linear, grade/1"]["wall_min"] / lin_t["wall_min"] - 1.0
        implied = {n: per_eval / n for n in a.grade_every if n > 1}
        for n, o in implied.items():
            print(f"   grade every {n:4d} steps from grade/1's cost per evaluation (/{n}): {100 * o:+.2f} %"
                  + ("   target <= +2 %: " + ("MET" if o <= 0.02 else "MISSED") if n >= 100 else ""))
        results["grade_overhead_implied"] = implied
    for n in a.grade_every:   # within each process: LAMMPS' own task breakdown, immune to the other jobs
        share = grade_share(runs[f"linear, grade/{n}"], runs["dcace linear"])
        print(f"   grade every {n:4d} steps from LAMMPS' task breakdown (non-Pair / Pair time, grade run minus "
              f"linear run, median of runs): {100 * share:+.2f} %"
              + ("   target <= +2 %: " + ("MET" if share <= 0.02 else "MISSED") if n >= 100 else ""))
        results.setdefault("grade_overhead_breakdown", {})[n] = share
    if not a.skip_snap:
        sn = table["snap 2J=8"]
        r2 = {k: lin_t[k] / sn[k] for k in ("wall_min", "wall_med", "cpu_min", "cpu_med")}
        print(f"   linear/SNAP 2J8 = {r2['wall_min']:.3f} (wall min), {r2['wall_med']:.3f} (wall med), "
              f"{r2['cpu_min']:.3f} (cpu min)   target <= 0.25: "
              f"{'MET' if r2['wall_min'] <= 0.25 else 'MISSED'}")
        r3 = dc_t["wall_min"] / sn["wall_min"]
        print(f"   DC/SNAP 2J8     = {r3:.3f} (wall min)")
        results["linear_over_snap"] = r2
        results["dc_over_snap"] = r3

    if not a.skip_big:
        big_models = {"linear": cases["dcace linear"][0], f"DC (M={M})": cases[f"dcace DC (M={M})"][0]}
        for name in local:
            big_models[name.replace("dcace ", "")] = cases[name][0]
        print(f"\n2. bcc Mo 16,000 atoms, {a.big_steps} steps: 1 vs 2 ranks, {a.repeat} repeats "
              "(cases interleaved)")
        big = {name: {1: [], 2: []} for name in big_models}
        for rep in range(a.repeat):
            for name, pair in big_models.items():
                for n in (1, 2):
                    r = lc.run_lmp(lc.bcc_deck(20, pair, a.big_steps), work / "big", n,
                                   name=f"in.big_{name.split()[0]}{n}_{rep}")
                    big[name][n].append(r)
                    print(f"   {name:18s} {n} rank(s) run {rep + 1}: loop {r['loop']:7.2f} s, "
                          f"{r['us_atom_step']:6.2f} us/atom/step wall, CPU use {r['cpu_pct']:.0f}%, "
                          f"LAMMPS {r['mem_mb'][2]:.1f} MB/rank, max RSS {r['maxrss_mb']:.0f} MB", flush=True)
        results["big_models"] = {}
        for name, runs_n in big.items():
            results["big_models"][name] = speedup(runs_n)
            b = results["big_models"][name]
            print(f"   {name:18s} speed-up 2 vs 1 rank = {b['speedup_min']:.2f} (wall min/min), "
                  f"{b['speedup_med']:.2f} (wall median), {b['speedup_cpu']:.2f} (loop CPU time per rank, min/min)")
        results["big"] = results["big_models"][f"DC (M={M})"]
        print(f"   DC target >= 1.7: {'MET' if results['big']['speedup_min'] >= 1.7 else 'MISSED'} (wall)")
        for name in local:
            sa = results["big_models"][name.replace("dcace ", "")]
            sl = results["big_models"]["linear"]
            rel = {k: sa[k] / sl[k] for k in ("speedup_min", "speedup_med", "speedup_cpu")}
            results.setdefault("local_speedup_over_linear", {})[name] = rel
            print(f"   {name.replace('dcace ', '')} speed-up / linear speed-up = {rel['speedup_min']:.3f} (wall min), "
                  f"{rel['speedup_med']:.3f} (median), {rel['speedup_cpu']:.3f} (CPU)   target within 5 %: "
                  f"{'MET' if rel['speedup_min'] >= 0.95 else 'MISSED'} (wall min)")

    print(f"\n{lc.machine()}")
    print(f"total {time.perf_counter() - t_start:.0f} s; results in {work / 'bench_lammps.json'}")
    lc.save_json(work / "bench_lammps.json", results)
    if a.markdown:
        write_markdown(a.markdown, results, a)
        print(f"tables written to {a.markdown}")


def speedup(runs_n):
    """2- vs 1-rank speed-up of one model's 16,000-atom runs: min/min and median of the wall loop
    time and, from LAMMPS' "% CPU use", the loop CPU time per rank (what the speed-up would be if
    each rank had a core to itself; MPICH busy-waits, so waiting counts as CPU and this estimate is
    conservative)."""
    l1 = np.array([r["loop"] for r in runs_n[1]])
    l2 = np.array([r["loop"] for r in runs_n[2]])
    c1 = np.array([r["loop"] * r["cpu_pct"] / 100 for r in runs_n[1]])
    c2 = np.array([r["loop"] * r["cpu_pct"] / 100 for r in runs_n[2]])
    return dict(loop_1=l1.tolist(), loop_2=l2.tolist(), speedup_min=l1.min() / l2.min(),
                speedup_med=float(np.median(l1) / np.median(l2)), speedup_cpu=c1.min() / c2.min(),
                mem_1=runs_n[1][0]["mem_mb"], mem_2=runs_n[2][0]["mem_mb"],
                maxrss_1=max(r["maxrss_mb"] for r in runs_n[1]), maxrss_2=max(r["maxrss_mb"] for r in runs_n[2]),
                cpu_pct_1=[r["cpu_pct"] for r in runs_n[1]], cpu_pct_2=[r["cpu_pct"] for r in runs_n[2]])


def without_core(pot, path):
    """The same linear potential without the short-range core (the speed peer of the core)."""
    from dcace import _core

    spec = dict(pot.core.spec())
    spec["core_lo"] = spec["core_hi"] = None
    core = _core.PotentialCore(pot.elements, spec, pot.coefficients, pot.one_body, 1, None, pot.core.metadata)
    Path(path).write_text(core.write())
    return path


def write_markdown(path, res, a):
    """The benchmark tables as Markdown (docs/speed.md), generated, never typed."""
    L = ["# Speed of pair_style dcace vs pair_style snap", "",
         f"Generated by `{lc.reader_command('benchmarks/bench_lammps.py', sys.argv[1:])}` "
         "(do not edit by hand).", f"Machine: {res['machine']}.", "",
         f"bcc Mo, 2000 atoms, 300 K NVE, {a.steps} steps, 1 MPI rank; dcace body order {a.body_order}, "
         f"degree {a.max_degree:g}, cutoff {a.cutoff} A; DC potential: M = {res['M']} ({res['dc_source']}). "
         "Minimum and median over repeats (the machine is shared); cpu = wall x LAMMPS' % CPU use.", "",
         "| case | µs/atom/step (min) | median | cpu min | LAMMPS MB/rank | max RSS MB |",
         "|---|---:|---:|---:|---:|---:|"]
    for name, t in res["cases"].items():
        mem = t["mem_mb"][2] if t["mem_mb"] else float("nan")
        L.append(f"| {name} | {t['wall_min']:.2f} | {t['wall_med']:.2f} | {t['cpu_min']:.2f} | {mem:.1f} | "
                 f"{t['maxrss_mb']:.0f} |")
    def ratio(label, r, target):
        return (f"- {label} / linear: {r['wall_min']:.3f} (wall min), {r['wall_med']:.3f} (wall median), "
                f"{r['cpu_min']:.3f} (cpu min); target <= {target}.")

    L += ["", ratio("DC", res["dc_over_linear"], 1.3)]
    for name, r in res.get("local_over_linear", {}).items():
        L.append(ratio(name, r, LOCAL_TARGET[res["local_cases"][name]["kind"]]))
    if "core_overhead" in res:
        o = res["core_overhead"]
        L.append(f"- short-range core (ZBL pair and density core) on vs off, same linear coefficients: "
                 f"{100 * o['wall_min']:+.1f} % (wall min), {100 * o['wall_med']:+.1f} % (wall median); target <= +5 %.")
    for n, over in res.get("grade_overhead", {}).items():
        L.append(f"- linear with the extrapolation grade (compute dcace/atom via fix halt) every {n} steps: "
                 f"{100 * over['wall_min']:+.1f} % (wall min), {100 * over['wall_med']:+.1f} % (wall median) "
                 "vs linear without" + ("; target <= +2 %." if int(n) >= 100 else "."))
    every_step = {int(n): o for n, o in res.get("grade_overhead", {}).items()}.get(1)
    for n, o in res.get("grade_overhead_implied", {}).items():
        L.append(f"- the same from the grade's cost per evaluation (every step: {100 * every_step['wall_min']:+.1f} %, "
                 f"wall min) divided by {n}: {100 * o:+.2f} % (the direct figure above is within the run-to-run "
                 "noise of a 100-step run)" + ("; target <= +2 %." if int(n) >= 100 else "."))
    for n, o in res.get("grade_overhead_breakdown", {}).items():
        L.append(f"- the grade every {n} steps from LAMMPS' task breakdown of each run (non-Pair / Pair time, grade run "
                 f"minus linear run, median; inside one process, so other jobs slow both parts alike): {100 * o:+.2f} %"
                 + ("; target <= +2 %." if int(n) >= 100 else "."))
    if "linear_over_snap" in res:
        r2 = res["linear_over_snap"]
        L.append(f"- linear / SNAP 2J=8: {r2['wall_min']:.3f} (wall min); target <= 0.25. "
                 f"DC / SNAP 2J=8: {res['dc_over_snap']:.3f}.")
    if "big" in res:
        b = res["big"]
        L.append(f"- 16,000 atoms, {a.big_steps} steps, DC: 2 ranks vs 1 rank speed-up {b['speedup_min']:.2f} "
                 f"(wall min/min), {b['speedup_med']:.2f} (median), {b['speedup_cpu']:.2f} (loop CPU time); "
                 f"target >= 1.7. LAMMPS memory {b['mem_1'][2]:.1f} MB (1 rank), {b['mem_2'][2]:.1f} MB/rank "
                 f"(2 ranks); max RSS {b['maxrss_1']:.0f} / {b['maxrss_2']:.0f} MB.")
    for name, b in res.get("big_models", {}).items():
        if name.startswith("DC"):
            continue   # the line above
        L.append(f"- 16,000 atoms, {a.big_steps} steps, {name}: 2 vs 1 rank speed-up {b['speedup_min']:.2f} "
                 f"(wall min/min), {b['speedup_med']:.2f} (median), {b['speedup_cpu']:.2f} (loop CPU time).")
    for name, r in res.get("local_speedup_over_linear", {}).items():
        L.append(f"- {name}'s 2-rank speed-up / the linear potential's: {r['speedup_min']:.3f} (wall min), "
                 f"{r['speedup_med']:.3f} (median), {r['speedup_cpu']:.3f} (loop CPU time); target within 5 %.")
    Path(path).write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
