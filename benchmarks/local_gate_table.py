"""The local gates' accuracy columns of issue 11 ("Accuracy" must-show); writes docs/accuracy-local.md/.json.

Why this exists: `benchmarks/zuo_table.py` measures the linear model and the paper's structure gate on
every Zuo element, and `benchmarks/local_gate.py` measures the local gates on Zuo Mo only.  Issue 11 asks
for the local gates on all six Zuo elements and TiAl at body orders 2, 3 and 4, beside linear, the
structure gate and the equal-size linear model, test and CV, per config_type, with its bar evaluated.
This script fits the local gates (the linear and structure-gate numbers come from the committed
`docs/accuracy.json`, the same settings) and renders the page with the bar counted line by line.

Per data set (Zuo Ni, Cu, Li, Mo, Si, Ge at zuo_table's cutoffs, degree 12; TiAl as zuo_table's TiAl row:
body order 3, degree 10, cutoff 5.5 A, every 10th frame held out) and body order, with `dcace.fit`:
  * atom   -- gate="atom" (each atom's own B_i), experts=4 (what `--experts auto` means for local gates);
  * nbh    -- gate="neighbourhood" (all of p_i, r_g = r_cut), experts=4;
  * nbh3   -- gate="neighbourhood", gate_body_order=3 (the 2+3-body part of p_i); at body order <= 3 every
              feature is of body order <= 3, so it is the same gate as nbh (`neighbourhood_gate.gate_columns`
              returns None): fitted once and shown as nbh;
  * linear -- the equal-size linear model: experts=1 at the degree whose K is closest to 4 x K.
tau and the committee ridge by 5-fold CV as the fit does.  Recorded per fit: test and CV errors, the CV loss
(`report.selection["gate_cv"][kind]`, the loss `gate="auto"` compares), tau, wall time, and the test MAE per
config_type of the written potential (saved, loaded, `Potential.compute` on every test frame) beside the
same run's linear model (the fit's `keep_arrays` test predictions).  The best local gate of a setting is the
variant with the lowest CV loss.

    PYTHONPATH=fitting python benchmarks/local_gate_table.py                 # everything (order: bo 4, TiAl, bo 3, bo 2)
    PYTHONPATH=fitting python benchmarks/local_gate_table.py --datasets Mo --body-orders 4
    python benchmarks/local_gate_table.py --render-only                      # the page from the cache

Finished fits are cached in docs/accuracy-local.json as soon as each ends (a rerun skips them; --fresh refits).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zuo_table import CUTOFF, DATA, ELEMENTS, ROOT, _e, _f  # noqa: E402

TIAL = dict(cutoff=5.5, degree=10, body_order=3)
VARIANTS = {"atom": dict(gate="atom"), "nbh": dict(gate="neighbourhood"),
            "nbh3": dict(gate="neighbourhood", gate_body_order=3)}
LABEL = {"atom": "atom gate", "nbh": "neighbourhood, all of p_i", "nbh3": "neighbourhood, 2+3-body part"}
KIND = {"atom": "atom", "nbh": "neighbourhood", "nbh3": "neighbourhood"}
EXPERTS = 4
DEG = 12
BAR_F, BAR_E = 1.05, 1.10   # the bar: force within 5 %, energy within 10 % of the structure gate's


def setting(ds, bo):
    """(degree, cutoff, species) of data set ds at body order bo."""
    if ds == "TiAl":
        return TIAL["degree"], TIAL["cutoff"], ["Ti", "Al"]
    return DEG, CUTOFF[ds], [ds]


def variants_at(bo):
    """The local variants fitted at body order bo (nbh3 is nbh at body order <= 3)."""
    return ["atom", "nbh", "nbh3"] if bo > 3 else ["atom", "nbh"]


def n_features(n_species, body_order, degree):
    from dcace.basis_spec import build_basis_spec

    return build_basis_spec(n_species, 5.0, body_order, degree)["n_features"]


def equal_size_degree(n_species, body_order, target, start):
    """The degree >= start whose K (per species) is closest to target."""
    best, d = (abs(n_features(n_species, body_order, start) - target), start), start
    while d < 200:
        d += 1
        k = n_features(n_species, body_order, d)
        best = min(best, (abs(k - target), d))
        if k >= target:
            break
    return best[1]


def read_sets(ds):
    from dcace.data import read_data

    if ds == "TiAl":
        full = read_data(DATA / "tial" / "TiAl_tutorial.xyz", elements=["Ti", "Al"], forces_key="force",
                         virial_key="virial")
        return (full.subset([i for i in range(len(full)) if i % 10 != 9]),
                full.subset([i for i in range(len(full)) if i % 10 == 9]))
    return (read_data(DATA / "zuo2020" / f"{ds}_train.xyz", elements=[ds]),
            read_data(DATA / "zuo2020" / f"{ds}_test.xyz", elements=[ds]))


def per_config(test, predict):
    """{config_type: summary} (and "all") of predict(i, frame) -> (energy, forces) on the test frames."""
    from dcace.report import ErrorStats

    stats = {"all": ErrorStats()}
    for i, fr in enumerate(test.frames):
        e, f = predict(i, fr)
        for key in ("all", fr.config_type or "none"):
            stats.setdefault(key, ErrorStats()).add(fr.n_atoms, fr.energy, e, fr.forces, f)
    return {k: {"n": s.n_structures, "e": s.summary()["energy_mae_mev_per_atom"],
                "f": s.summary()["force_mae_ev_per_a"]} for k, s in stats.items()}


def from_arrays(test, arrays):
    """predict() of per_config from a fit's keep_arrays test arrays (energies per atom, forces concatenated)."""
    e_ref, e_pred, _, f_pred = arrays
    if len(e_ref) != len(test.frames):
        raise ValueError(f"{len(e_ref)} test energies in the arrays, {len(test.frames)} test frames")
    starts = [0]
    for fr in test.frames:
        starts.append(starts[-1] + 3 * fr.n_atoms)

    def predict(i, fr):   # the arrays are relative to the same offset: e_ref + (e_pred - e_ref) per atom
        return fr.energy + (e_pred[i] - e_ref[i]) * fr.n_atoms, f_pred[starts[i]:starts[i + 1]].reshape(-1, 3)
    return predict


def record(pot, seconds, test, kind, path):
    """The cached numbers of one fit (pot: a fitted potential; kind: its gate kind, "structure" for the
    paper's gate, None for a linear fit)."""
    import dcace

    rep = pot.report
    model = "dc" if pot.n_experts > 1 else "linear"
    local_kind = kind in ("atom", "neighbourhood")
    cv_loss = (rep.selection["gate_cv"][kind] if local_kind else
               min(r["loss"] for r in rep.cv_table if r.get("M", 1) == pot.n_experts))
    out = {"K": pot.core.n_features, "n_experts": pot.n_experts, "seconds": seconds,
           "temperature": rep.selection.get("temperature") if pot.n_experts > 1 else None,
           "ridge": rep.selection.get("ridge"), "ridge_experts": rep.selection.get("ridge_experts"),
           "cluster_sizes": rep.selection.get("cluster_sizes") if kind else None,
           "gate": rep.selection.get("gate"), "gate_cv": rep.selection.get("gate_cv"), "cv_loss": cv_loss,
           "test": rep.errors[model]["test"], "cv": rep.errors[model]["cv"],
           "linear_same_run": {w: rep.errors["linear"][w] for w in ("test", "cv")},
           "timings": {k: v for k, v in rep.timings.items() if isinstance(v, (int, float))},
           "notes": rep.notes}
    if "experts_cv" in rep.selection:   # experts="auto" (--experts auto): every candidate M's CV loss, the chosen M
        out["experts_cv"] = rep.selection["experts_cv"]
    pot.save(path)
    loaded = dcace.Potential.load(path)
    out["per_config"] = per_config(test, lambda i, fr: (lambda r: (r["energy"], r["forces"]))(
        loaded.compute(fr.atoms, extrapolation=False)))
    if kind:   # the same run's linear model on the same basis
        out["per_config_linear_same_run"] = per_config(test, from_arrays(test, rep.arrays["test"]["linear"]))
    return out


FIT_OPTIONS = {}   # options of this invocation that differ from the defaults (recorded with each fit made)


def fit_one(cache, key, fn, save, fresh):
    if key in cache and not fresh and "error" not in cache[key]:
        print(f"[{time.strftime('%H:%M:%S')}] {key}: cached", flush=True)
        return cache[key]
    print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
    t0 = time.perf_counter()
    try:
        res = fn(t0)
    except Exception as exc:   # keep going; the page shows the failure
        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    res["load_average"] = os.getloadavg()
    if FIT_OPTIONS:
        res["options"] = dict(FIT_OPTIONS)
    cache[key] = res
    save()
    t = res.get("test", {})
    print(f"[{time.strftime('%H:%M:%S')}] {key}: " + (res["error"] if "error" in res else
          f"{time.perf_counter() - t0:.0f} s, test {t['energy_mae_mev_per_atom']:.2f} / {t['force_mae_ev_per_a']:.4f}, "
          f"cv loss {res['cv_loss']:.6g}, tau {res['temperature']}"), flush=True)
    return res


def plan(datasets, body_orders, tial_body_orders):
    """The (data set, body order) settings in run order: body order 4 of the Zuo elements and TiAl's
    own row first (the bar), then the other body orders, then TiAl's other body orders."""
    zuo = [d for d in datasets if d != "TiAl"]
    out = [(d, 4) for d in zuo if 4 in body_orders]
    if "TiAl" in datasets and TIAL["body_order"] in tial_body_orders:
        out.append(("TiAl", TIAL["body_order"]))
    out += [(d, bo) for bo in body_orders if bo != 4 for d in zuo]
    if "TiAl" in datasets:
        out += [("TiAl", bo) for bo in tial_body_orders if bo != TIAL["body_order"]]
    return out


def run(args):
    import dcace

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def save():
        cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True, default=float))

    budget = {} if args.memory_budget is None else {"memory_budget_gb": args.memory_budget}
    FIT_OPTIONS.update(budget)
    if args.experts != EXPERTS:
        FIT_OPTIONS["experts"] = args.experts
    work = Path(args.save_potentials or tempfile.mkdtemp(prefix="dcace_local_table_"))
    work.mkdir(parents=True, exist_ok=True)
    for ds, bo in plan(args.datasets, args.body_orders, args.tial_body_orders):
        deg, cut, species = setting(ds, bo)
        train, test = read_sets(ds)
        common = dict(elements=species, cutoff=cut, body_order=bo, test=test, progress=False, threads=args.threads,
                      keep_arrays=True, **budget, **({} if args.anchors is None else {"anchors": args.anchors}))
        K = n_features(len(species), bo, deg)
        for v in variants_at(bo):
            key = f"{ds}/bo{bo}/deg{deg}/{v}"

            def fn(t0, v=v, key=key):
                pot = dcace.fit(train, max_degree=deg, experts=args.experts, **VARIANTS[v], **common)
                return record(pot, time.perf_counter() - t0, test, KIND[v], work / (key.replace("/", "_") + ".dcace"))
            fit_one(cache, key, fn, save, args.fresh)
        big = equal_size_degree(len(species), bo, EXPERTS * K, deg)
        key = f"{ds}/bo{bo}/deg{big}/linear"

        def fn_lin(t0, key=key, big=big):
            pot = dcace.fit(train, max_degree=big, experts=1, **common)
            return record(pot, time.perf_counter() - t0, test, None, work / (key.replace("/", "_") + ".dcace"))
        fit_one(cache, key, fn_lin, save, args.fresh)
        cache.setdefault("_equal_size", {})[f"{ds}/bo{bo}"] = {"key": key, "degree": big, "target_K": EXPERTS * K}
        save()
    for ds in args.structure_per_config:   # the structure gate refitted (accuracy.json has no per-config_type numbers)
        bo = TIAL["body_order"] if ds == "TiAl" else 4
        deg, cut, species = setting(ds, bo)
        train, test = read_sets(ds)
        key = f"{ds}/bo{bo}/deg{deg}/structure"

        def fn_st(t0, key=key, deg=deg, cut=cut, species=species, train=train, test=test, bo=bo):
            pot = dcace.fit(train, elements=species, cutoff=cut, body_order=bo, max_degree=deg, test=test,
                            progress=False, threads=args.threads, keep_arrays=True)
            return record(pot, time.perf_counter() - t0, test, "structure", work / (key.replace("/", "_") + ".dcace"))
        fit_one(cache, key, fn_st, save, args.fresh)
    runs = cache.setdefault("_runs", [cache.pop("_run")] if "_run" in cache else [])
    runs.append({"command": " ".join(["python", "benchmarks/local_gate_table.py"] + sys.argv[1:]),
                 "started_utc": started, "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                 "commit": git("rev-parse", "--short", "HEAD"), "code_commit": code_commit(),
                 "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
                 "threads": args.threads})
    save()
    return cache


def code_commit():
    """The last commit of the fitting code (fitting/, cpp/ and the build files): what the numbers depend on."""
    return git("log", "-1", "--format=%h", "--", "fitting", "cpp", "pyproject.toml", "CMakeLists.txt")


def git(*a):
    try:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


# ---------------------------------------------------------------- the page (pure: from the two caches)

def baseline(acc, ds, bo):
    """(linear, structure) records from docs/accuracy.json for data set ds at body order bo:
    {"test": (E, F), "cv": (E, F RMSE), "M", "tau"}; the structure gate is the linear model when CV chose M = 1."""
    deg = TIAL["degree"] if ds == "TiAl" else DEG
    r = acc.get(f"{ds}/bo{bo}/deg{deg}/dc")
    if not r or "error" in r:
        return None, None
    model = "dc" if r["n_experts"] > 1 else "linear"
    lin = {"test": _e(r, "linear"), "cv": _e(r, "linear", "cv"), "K": r["K"]}
    dc = {"test": _e(r, model), "cv": _e(r, model, "cv"), "M": r["n_experts"], "tau": r.get("temperature")}
    return lin, dc


def local(res, which="test"):
    """(E MAE, F MAE) test or (E MAE, F RMSE) CV of a cached fit, or (None, None)."""
    if not res or "error" in res:
        return None, None
    s = res[which]
    return s["energy_mae_mev_per_atom"], s["force_mae_ev_per_a"] if which == "test" else s["force_rmse_ev_per_a"]


def fits_of(cache, ds, bo):
    """{variant: record} of the local fits of (ds, bo) in the cache (nbh3 = nbh at body order <= 3)."""
    deg = setting(ds, bo)[0]
    out = {v: cache.get(f"{ds}/bo{bo}/deg{deg}/{v}") for v in VARIANTS}
    if bo <= 3:
        out["nbh3"] = out["nbh"]
    return {v: r for v, r in out.items() if r and "error" not in r}


def best_local(fits):
    """(variant, record) with the lowest CV loss among the local variants (nbh3 counted as nbh when they
    are one fit), or (None, None)."""
    cands = [(r["cv_loss"], v) for v, r in fits.items() if not (v == "nbh3" and r is fits.get("nbh"))]
    if not cands:
        return None, None
    v = min(cands)[1]
    return v, fits[v]


def bar(rows):
    """The bar of issue 11 on rows [(el, local (E, F), linear (E, F), structure (E, F)[, which])] (test MAEs): counts
    and the per-row verdicts.  below: E and F both below linear; f5: F <= 1.05 x the structure gate's;
    e10: E <= 1.10 x the structure gate's."""
    out = {"n": 0, "below": 0, "f5": 0, "e10": 0, "rows": []}
    for row in rows:
        el, (e, f), (le, lf), (se, sf) = row[:4]
        if None in (e, f, le, lf, se, sf):
            continue
        v = {"el": el, "which": row[4] if len(row) > 4 else None, "below_E": e < le, "below_F": f < lf, "f5": f <= BAR_F * sf, "e10": e <= BAR_E * se,
             "F_vs_structure": f / sf - 1, "E_vs_structure": e / se - 1, "E_vs_linear": e / le - 1,
             "F_vs_linear": f / lf - 1}
        v["below"] = v["below_E"] and v["below_F"]
        out["n"] += 1
        out["below"] += v["below"]
        out["f5"] += v["f5"]
        out["e10"] += v["e10"]
        out["rows"].append(v)
    out["met"] = out["n"] == 6 and out["below"] == 6 and out["f5"] >= 4 and out["e10"] >= 4
    return out


def _pair(t, e=".2f", f=".4f"):
    return f"{_f(t[0], e)} / {_f(t[1], f)}"


def _pct(x):
    return f"{100 * x:+.1f} %"


def render(cache, acc, acc_commit, body_orders=(4, 3, 2), datasets=None):
    datasets = datasets or ELEMENTS + ["TiAl"]
    runs = cache.get("_runs") or ([cache["_run"]] if "_run" in cache else [{}])
    run = runs[-1]
    commands = "; then ".join(f"`{r.get('command', '?')}` (" + (f"{r['started_utc']}–" if "started_utc" in r else "finished ")
                              + f"{r.get('finished_utc', '?')} UTC)"
                              for r in runs)
    loads = [r["load_average"][0] for k, r in cache.items() if not k.startswith("_") and "load_average" in r]
    local_anchors = next((r["command"].split("--anchors ")[1].split()[0] for r in runs
                          if "--anchors " in r.get("command", "")), None)   # (the runs' --anchors, if given)
    local_experts = next((r["command"].split("--experts ")[1].split()[0] for r in runs
                          if "--experts " in r.get("command", "")), None)   # (the runs' --experts, if given)
    L = ["# Accuracy of the local gates on the Zuo et al. (2020) data and TiAl (issue 11)", "",
         "Generated by `python benchmarks/local_gate_table.py` from its cache (do not edit by hand). "
         f"Runs (`OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`, each reusing the cache): {commands}. Fitting code (`fitting/`, "
         f"`cpp/`) at commit `{run.get('code_commit') or code_commit()}`, {run.get('machine', '?')}, "
         f"Python {run.get('python', '?')}, one thread per fit (`threads=1`); the machine was shared with two other workers (1-minute load average "
         + (f"{min(loads):.1f}–{max(loads):.1f} at the ends of the fits" if loads else "?") + "), so the fit times are "
         "indicative only.", "",
         "**Columns.** *linear* and *structure DC* are the committed `docs/accuracy.json` (written by commit "
         f"`{acc_commit}`, `benchmarks/zuo_table.py`: the same data, cutoffs, basis, weights and 5-fold CV; "
         "structure DC = the paper's gate with `--experts auto`, M and τ by CV; where CV chose M = 1 it is the "
         "linear model). The local gates are fitted here with "
         + ("`dcace.fit(..., gate=..., experts=\"auto\")` (M by 5-fold CV over 2, 4, 6, 8; the chosen M and every "
            "M's CV loss in each fit's `experts_cv` in the JSON)" if local_experts == "auto" else
            "`dcace.fit(..., gate=..., experts=4)` (4 = what `--experts auto` meant for a local gate before CV over M)")
         + ", τ and the committee ridge by 5-fold CV: *atom* (`gate=\"atom\"`, "
         "each atom's own B_i), *nbh* (`gate=\"neighbourhood\"`, all of p_i, r_g = r_cut), *nbh3* "
         "(`gate_body_order=3`, the 2+3-body part of p_i; at body order ≤ 3 every feature has body order ≤ 3, so "
         "it is the same gate as *nbh*: fitted once, shown once). *best local*: the variant with the lowest CV "
         "loss (`report.selection[\"gate_cv\"]`, the loss `gate=\"auto\"` compares). *equal-size linear*: one "
         "linear model (`experts=1`) at the degree whose K is closest to 4 × K (same body order), fitted in the "
         "same run (accuracy.json has no linear model of that size at degree 12). TiAl's accuracy.json row is body order 3, "
         "degree 10 only: at body orders 4 and 2 (degree 10, fitted last) its linear and structure columns are empty and "
         "the same run's linear model is the CV table's last column. Each model at `dcace.fit`'s defaults: the structure "
         "gate's committees carry the off-data anchors (weight 0.03, the fit's notes), "
         + (f"the local gates' committees `--anchors {local_anchors}` (since session 14 the anchors act on them too; "
            "each fit's weight in its notes in the JSON)" if local_anchors else
            "the local gates none (at the fitting-code commit above the fit applied the anchors to structure-gate "
            "committees only; see each fit's notes in the JSON)")
         + "; all have the short-range core and the repulsion restraints.", "",
         "Test: MAE on the held-out test set, energy meV/atom / force eV/Å. CV: 5-fold CV on the training set as "
         "the fit reports it, energy MAE meV/atom / force **RMSE** eV/Å (the fit's CV has no force MAE). The test "
         "sets hold 23–31 structures (TiAl: 32): differences below ~1 meV/atom are noise there.", ""]
    bars = {}
    for bo in body_orders:
        rows_t, rows_cv, rows_time, bar_rows = [], [], [], {v: [] for v in ["best", *VARIANTS]}
        for ds in datasets:
            if ds == "TiAl" and bo not in (2, 3, 4):
                continue
            fits = fits_of(cache, ds, bo)
            deg = setting(ds, bo)[0]
            errs = {v: cache[k]["error"] for v in VARIANTS if "error" in cache.get(k := f"{ds}/bo{bo}/deg{deg}/{v}", {})}
            if not fits and not errs:
                continue
            lin, dc = baseline(acc, ds, bo)
            eq = cache.get("_equal_size", {}).get(f"{ds}/bo{bo}", {})
            big = cache.get(eq.get("key", ""), {})
            bv, br = best_local(fits)
            K = next(iter(fits.values()))["K"] if fits else "—"
            name = ds + (f" (deg {deg})" if ds == "TiAl" else "")
            cols = [v for v in VARIANTS if bo > 3 or v != "nbh3"]
            lin_t = lin["test"] if lin else (None, None)
            dc_t = dc["test"] if dc else (None, None)
            mtau = f" (M {dc['M']}" + (f", τ {dc['tau']:g})" if dc["M"] > 1 else ")") if dc else ""
            fail = "".join(f" {v} failed: {e}." for v, e in errs.items())
            rows_t.append(f"| {name} | {K} | {_pair(lin_t)} | {_pair(dc_t)}{mtau} | "
                          + " | ".join(_pair(local(fits.get(v))) for v in cols)
                          + f" | {_pair(local(br))} ({bv}) | {_pair(local(big))} ({eq.get('degree', '—')}, "
                          f"{big.get('K', '—')}) |" + (f" {fail}" if fail else ""))
            rows_cv.append(f"| {name} | {_pair(lin['cv'] if lin else (None, None), '.2f', '.3f')} | "
                           f"{_pair(dc['cv'] if dc else (None, None), '.2f', '.3f')} | "
                           + " | ".join(f"{_pair(local(fits.get(v), 'cv'), '.2f', '.3f')} ({_f(fits[v]['cv_loss'], '.5g') if v in fits else '—'}, "
                                        f"τ {fits[v]['temperature'] if v in fits else '—'})" for v in cols)
                           + f" | {_pair(local(big, 'cv'), '.2f', '.3f')} | "
                           f"{_pair(local(fits[cols[0]]['linear_same_run'] if fits.get(cols[0]) else None, 'test'))}; CV "
                           f"{_pair(local(fits[cols[0]]['linear_same_run'] if fits.get(cols[0]) else None, 'cv'), '.2f', '.3f')} |")
            rows_time.append(f"| {name} | " + " | ".join(_f(fits[v]['seconds'] if v in fits else None, '.0f') for v in cols)
                             + f" | {_f(big.get('seconds'), '.0f')} |")
            if ds != "TiAl" and lin and dc:
                if br:
                    bar_rows["best"].append((ds, local(br), lin_t, dc_t, bv))
                for v in VARIANTS:
                    if v in fits:
                        bar_rows[v].append((ds, local(fits[v]), lin_t, dc_t))
        if not rows_t:
            continue
        cols = [v for v in VARIANTS if bo > 3 or v != "nbh3"]
        L += [f"## Body order {bo}, degree {DEG} (TiAl: degree {TIAL['degree']})", "", "Test MAE, energy meV/atom / force eV/Å:", "",
              "| data | K | linear | structure DC (M, τ) | " + " | ".join(cols) + " | best local (by CV) | equal-size linear (degree, K) |",
              "|---|---:|---|---|" + "---|" * len(cols) + "---|---|", *rows_t, "",
              "CV (5-fold, training set), energy MAE meV/atom / force RMSE eV/Å; local gates with (CV loss, τ); the last "
              "column is the linear model fitted in the same run as the local gates, test MAE and CV (today's code; a check "
              "on accuracy.json's linear column, and TiAl's linear model at body orders 4 and 2):", "",
              "| data | linear | structure DC | " + " | ".join(cols) + " | equal-size linear | linear, same run: test; CV |",
              "|---|---|---|" + "---|" * len(cols) + "---|---|", *rows_cv, "",
              "Fit wall time (s, one thread, loaded machine):", "",
              "| data | " + " | ".join(cols) + " | equal-size linear |", "|---|" + "---|" * len(cols) + "---|", *rows_time, ""]
        bars[bo] = {v: bar(r) for v, r in bar_rows.items()}
    if 4 in bars:
        L += bar_section(bars[4])
        L += cv_loss_section(cache, datasets)
    for bo in (3, 2):
        if bo in bars:
            b = bars[bo]["best"]
            L += [f"The same counts at body order {bo} (not the bar; best local by CV): below linear on E and F "
                  f"{b['below']} of {b['n']}, F within 5 % of the structure gate {b['f5']} of {b['n']}, E within 10 % "
                  f"{b['e10']} of {b['n']}.", ""]
    L += per_config_section(cache, list(datasets), acc)
    return "\n".join(L) + "\n"


def bar_section(b4):
    b = b4["best"]
    L = ["## The bar (issue 11), body order 4, best local gate by CV, six Zuo elements", "",
         "Test MAEs against accuracy.json's linear and structure-gate columns:", "",
         "| El | best local | E vs linear | F vs linear | below linear E and F | F vs structure | F ≤ 1.05 × structure | "
         "E vs structure | E ≤ 1.10 × structure |", "|---|---|---|---|---|---|---|---|---|"]
    for v in b["rows"]:
        L.append(f"| {v['el']} | {v['which'] or ''} | {_pct(v['E_vs_linear'])} | {_pct(v['F_vs_linear'])} | "
                 f"{'yes' if v['below'] else 'no'} | {_pct(v['F_vs_structure'])} | {'yes' if v['f5'] else 'no'} | "
                 f"{_pct(v['E_vs_structure'])} | {'yes' if v['e10'] else 'no'} |")
    L += ["", f"- test energy and force MAE below linear: **{b['below']} of {b['n']}** (bar: 6 of 6) — "
          + ("met" if b["n"] == 6 and b["below"] == 6 else "not met"),
          f"- force MAE within 5 % of the structure gate's or better: **{b['f5']} of {b['n']}** (bar: ≥ 4 of 6) — "
          + ("met" if b["f5"] >= 4 else "not met"),
          f"- energy MAE within 10 % of the structure gate's or better: **{b['e10']} of {b['n']}** (bar: ≥ 4 of 6) — "
          + ("met" if b["e10"] >= 4 else "not met"),
          f"- the bar as a whole: **{'met' if b['met'] else 'not met'}**" + ("" if b["n"] == 6 else f" ({b['n']} of 6 elements measured)"),
          "", "The same counts for each variant on its own (not the bar, which takes the best by CV):", "",
          "| variant | below linear E and F | F ≤ 1.05 × structure | E ≤ 1.10 × structure | loses to linear (E or F) | "
          "F > 1.05 × structure | E > 1.10 × structure |", "|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        s = b4[v]
        if not s["n"]:
            continue
        lose_lin = ", ".join(r["el"] + ("" if not r["below_E"] and not r["below_F"] else (" (E)" if not r["below_E"] else " (F)"))
                             for r in s["rows"] if not r["below"]) or "—"
        lose_f = ", ".join(f"{r['el']} ({_pct(r['F_vs_structure'])})" for r in s["rows"] if not r["f5"]) or "—"
        lose_e = ", ".join(f"{r['el']} ({_pct(r['E_vs_structure'])})" for r in s["rows"] if not r["e10"]) or "—"
        L.append(f"| {v} | {s['below']} of {s['n']} | {s['f5']} of {s['n']} | {s['e10']} of {s['n']} | {lose_lin} | "
                 f"{lose_f} | {lose_e} |")
    return L + [""]


def cv_loss_section(cache, datasets):
    """The CV losses of every model at body order 4 (TiAl: 3): the loss the fit's selection compares (the
    same folds, seed and row weights in every fit, so the numbers of separate fits compare)."""
    L = ["## CV loss of every model, body order 4 (TiAl: 3)", "",
         "The weighted held-out loss of the 5-fold CV (`report.selection[\"gate_cv\"]`; lower is better): *linear* "
         "from the local fits' own `gate_cv`, *structure* from the refit (`--structure-per-config`), *equal-size "
         "linear* its best ridge. Every fit uses the same folds (seed 0) and row weights, so the columns compare: "
         "*lowest* is what CV would pick among them (`gate=\"auto\"` picks among linear, structure and the local "
         "gates of one fit; the equal-size linear model is not among its candidates).", "",
         "| data | linear | structure | atom | nbh | nbh3 | equal-size linear | lowest | lowest local gate |",
         "|---|---|---|---|---|---|---|---|---|"]
    for ds in datasets:
        bo = TIAL["body_order"] if ds == "TiAl" else 4
        deg = setting(ds, bo)[0]
        fits = fits_of(cache, ds, bo)
        if not fits:
            continue
        st = cache.get(f"{ds}/bo{bo}/deg{deg}/structure")
        big = cache.get(cache.get("_equal_size", {}).get(f"{ds}/bo{bo}", {}).get("key", ""), {})
        losses = {"linear": next(iter(fits.values()))["gate_cv"]["linear"],
                  "structure": st["cv_loss"] if st and "error" not in st else None}
        for v in VARIANTS:
            if v in fits and not (v == "nbh3" and fits[v] is fits.get("nbh")):
                losses[v] = fits[v]["cv_loss"]
        losses["equal-size linear"] = big.get("cv_loss") if big and "error" not in big else None
        have = {k: x for k, x in losses.items() if x is not None}
        bv, _ = best_local(fits)
        L.append(f"| {ds} | " + " | ".join(_f(losses.get(k), ".5g") for k in
                                           ("linear", "structure", "atom", "nbh", "nbh3", "equal-size linear"))
                 + f" | {min(have, key=have.get)} | {bv} |")
    return L + [""]


def per_config_wins(ds, lin, st, best_name, best):
    """One line: the config_types where the best local gate beats (or loses to) linear and the structure gate."""
    def cmp(ref, what):
        if ref is None:
            return None
        cts = [c for c in best["per_config"] if c != "all" and c in ref]
        win = lambda i: [c for c in cts if best["per_config"][c][i] < ref[c][i]]   # noqa: E731
        return (f"vs {what}: lower E on {', '.join(win('e')) or 'none'}; lower F on {', '.join(win('f')) or 'none'}")
    parts = [p for p in (cmp(lin, "linear"), cmp(st["per_config"] if st else None, "the structure gate")) if p]
    return f"- {ds}, best local gate by CV ({best_name}) " + "; ".join(parts) + "."


def per_config_section(cache, datasets, acc=None):
    L = ["## Per config_type, body order 4 (TiAl: its body-order-3 row), test MAE energy meV/atom / force eV/Å", "",
         "Each local gate's written potential (saved, loaded, `Potential.compute`) on the test frames grouped by "
         "`atoms.info[\"config_type\"]`; *linear* is the linear model of the same run on the same basis (its test "
         "predictions from the fit, `keep_arrays`), *equal-size linear* the larger linear fit. accuracy.json has no "
         "per-config_type numbers: *structure* is the structure gate refitted for these tables "
         "(`--structure-per-config`; `dcace.fit` with zuo_table's settings, `--experts auto`; — where it was not refitted). "
         "Bold: the lowest energy and the lowest force MAE of the row; n: test structures.", ""]
    st_rows = []
    for ds in datasets:
        bo = TIAL["body_order"] if ds == "TiAl" else 4
        fits = fits_of(cache, ds, bo)
        if not fits:
            continue
        deg = setting(ds, bo)[0]
        cols = [v for v in VARIANTS if bo > 3 or v != "nbh3"]
        eq = cache.get("_equal_size", {}).get(f"{ds}/bo{bo}", {})
        big = cache.get(eq.get("key", ""), {})
        st = cache.get(f"{ds}/bo{bo}/deg{deg}/structure")
        st = st if st and "error" not in st else None
        if st and acc is not None:
            _, dc = baseline(acc, ds, bo)
            rel = (max(abs(a - b) / abs(b) for a, b in zip(local(st), dc["test"])) if dc and None not in dc["test"]
                   else None)
            rel_text = "0 (identical)" if rel == 0 else _f(rel, ".1e")
            st_rows.append(f"| {ds} | {st['n_experts']} ({st['temperature']}) | {_pair(local(st))} | "
                           f"{dc['M'] if dc else '—'} ({dc['tau'] if dc else '—'}) | {_pair(dc['test'] if dc else (None, None))} | "
                           f"{rel_text} | {_f(st['seconds'], '.0f')} |")
        first = fits[cols[0]] if cols[0] in fits else next(iter(fits.values()))
        lin = first["per_config_linear_same_run"]
        L += [f"**{ds}** (body order {bo})", "",
              "| config_type | n | linear | structure | " + " | ".join(cols) + " | equal-size linear |",
              "|---|---:|---|---|" + "---|" * len(cols) + "---|"]
        for ct in sorted(lin, key=lambda c: (c == "all", c)):
            vals = [lin[ct], st["per_config"].get(ct) if st else None] + [
                fits[v]["per_config"].get(ct) if v in fits else None for v in cols] + [
                big.get("per_config", {}).get(ct) if big and "error" not in big else None]
            es = [x["e"] for x in vals if x]
            fs = [x["f"] for x in vals if x]
            cell = lambda x: "—" if not x else (   # noqa: E731
                (f"**{x['e']:.2f}**" if x["e"] == min(es) else f"{x['e']:.2f}") + " / "
                + (f"**{x['f']:.4f}**" if x["f"] == min(fs) else f"{x['f']:.4f}"))
            L.append(f"| {ct} | {lin[ct]['n']} | " + " | ".join(cell(x) for x in vals) + " |")
        L.append("")
    lines = []
    for ds in datasets:
        bo = TIAL["body_order"] if ds == "TiAl" else 4
        fits = fits_of(cache, ds, bo)
        bv, br = best_local(fits)
        if br:
            st = cache.get(f"{ds}/bo{bo}/deg{setting(ds, bo)[0]}/structure")
            lines.append(per_config_wins(ds, br["per_config_linear_same_run"], st if st and "error" not in st else None,
                                         bv, br))
    if lines:
        L += ["Where the best local gate (by CV) wins, per config_type (test MAE; ties count as losses):", "", *lines, ""]
    if st_rows:
        L += ["The structure gate refitted for the per-config_type tables against accuracy.json's (test MAE; the "
              "refit is today's code, accuracy.json's an earlier commit's):", "",
              "| El | refit M (τ) | refit test | accuracy.json M (τ) | accuracy.json test | largest relative difference | refit time (s) |",
              "|---|---|---|---|---|---|---|", *st_rows, ""]
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=ELEMENTS + ["TiAl"])
    ap.add_argument("--body-orders", nargs="+", type=int, default=[4, 3, 2])
    ap.add_argument("--tial-body-orders", nargs="+", type=int, default=[3],
                    help="TiAl's body orders (default: 3, zuo_table's TiAl row; 4 and 2 have no accuracy.json row)")
    ap.add_argument("--structure-per-config", nargs="*", default=[], metavar="DATASET",
                    help="after the local fits, refit the structure gate (--experts auto, zuo_table's settings) at "
                         "body order 4 (TiAl: 3) on these data sets for its per-config_type test MAE")
    ap.add_argument("--memory-budget", type=float, default=None, metavar="GB",
                    help="memory_budget_gb of the fits (default: dcace.fit's); recorded with each fit made")
    ap.add_argument("--anchors", default=None, type=lambda v: v if v == "auto" else float(v),
                    help="the local fits' off-data anchor weight or 'auto' (default: the fit's default, 0.03); the "
                         "local gates' committees have had the anchors since session 14, so the committed "
                         "docs/accuracy-local.md (made before, at 4223fc0) is what --anchors 0 gives today; give "
                         "each weight its own --cache and --out (the cache keys do not hold it)")
    ap.add_argument("--experts", default=EXPERTS, type=lambda v: v if v == "auto" else int(v),
                    help=f"the local fits' experts (default: {EXPERTS}, the committed pages' setting); 'auto' chooses "
                         "M by CV over 2, 4, 6, 8 (the fit's default since issue 11's CV over M; the chosen M and "
                         "every M's CV loss in each fit's experts_cv); give it its own --cache and --out (the "
                         "cache keys do not hold it). The equal-size linear model stays at 4 x K")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="refit cached fits")
    ap.add_argument("--render-only", action="store_true", help="only write the page from the cache")
    ap.add_argument("--cache", default=str(ROOT / "docs" / "accuracy-local.json"))
    ap.add_argument("--accuracy", default=str(ROOT / "docs" / "accuracy.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "accuracy-local.md"))
    ap.add_argument("--save-potentials", metavar="DIR", help="keep the fitted potentials there (default: a temp dir)")
    args = ap.parse_args()
    if args.render_only:
        cache = json.loads(Path(args.cache).read_text())
    else:
        cache = run(args)
    acc = json.loads(Path(args.accuracy).read_text())
    commit = git("log", "-1", "--format=%h", "--", str(Path(args.accuracy).relative_to(ROOT)))
    Path(args.out).write_text(render(cache, acc, commit))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
