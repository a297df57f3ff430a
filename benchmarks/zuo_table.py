"""The paper's experiment on the Zuo et al. (2020) data, with honest baselines; writes docs/accuracy.md.

For every element (Cu, Ge, Li, Mo, Ni, Si; the paper's cutoffs) and body order 2, 3, 4 at total
degree 12, with default settings (`dcace fit ... --experts auto`):
  * linear  -- the global linear model on the same basis (fitted and cross-validated in the same
               run, same weights and ridge selection);
  * DC      -- the divide-and-conquer potential chosen by 5-fold CV (M, gate temperature);
  * large   -- a global linear model with about as many coefficients as the whole committee
               (same body order, larger degree; `--experts 1`);
test-set MAEs (energy meV/atom, force eV/Å) beside the training-set CV errors.  Then the best
setting per element (body order <= 5; extra bases `--extra`) against MTP (Zuo et al.), and a
multi-element fit on TiAl (ACEData tutorial set, keys `force`/`virial`, every 10th frame held out).

    PYTHONPATH=fitting python benchmarks/zuo_table.py            # everything, ~1 h on 2 cores
    PYTHONPATH=fitting python benchmarks/zuo_table.py --elements Mo --body-orders 2

Results of finished fits are cached in docs/accuracy.json (delete it, or use --fresh, to refit).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
CUTOFF = {"Cu": 3.9, "Ge": 5.1, "Li": 5.1, "Mo": 5.2, "Ni": 4.0, "Si": 4.7}
ELEMENTS = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]
MTP = {"Ni": (0.48, 0.01), "Cu": (0.41, 0.01), "Li": (0.49, 0.01), "Mo": (2.83, 0.09), "Si": (2.21, 0.06),
       "Ge": (1.79, 0.05)}
GAP = {"Ni": (0.42, 0.02), "Cu": (0.46, 0.01), "Li": (0.49, 0.01), "Mo": (2.24, 0.09), "Si": (2.91, 0.07),
       "Ge": (2.06, 0.05)}
# extra settings tried for the best-per-element table
# (body_order:degree[:energy_weight[:cutoff[:angular_weight[:experts]]]], empty = default)
EXTRA_PER_ELEMENT = {"Ni": ["4:16:100", "4:18", "4:16::4.5", "4:16::5", "4:14:::1.0", "4:12:::0.5:3",
                           "4:12:::0.5:4", "4:12::4.5:0.5:3", "4:12::5:0.5:3", "4:12::4.5:0.5:4",
                           "4:12:100:4.5:0.5:3", "4:12::4.25:0.5:3", "4:13::4.5:0.5:3"]}
ACEJAX = {"Cu": (0.28, 0.009), "Ni": (0.52, 0.022), "Li": (0.49, 0.011), "Mo": (3.74, 0.135), "Si": (3.52, 0.090),
          "Ge": (3.46, 0.071)}


def n_features(body_order, degree):
    from dcace.basis_spec import build_basis_spec

    return build_basis_spec(1, 5.0, body_order, degree)["n_features"]


def degree_for(body_order, target, start=12):
    """Smallest degree >= start whose K is closest to target (K grows with the degree)."""
    best = (abs(n_features(body_order, start) - target), start)
    d = start
    while d < 200:
        d += 1
        k = n_features(body_order, d)
        best = min(best, (abs(k - target), d))
        if k >= target:
            break
    return best[1]


def summarise(pot, seconds):
    rep = pot.report
    out = {"n_experts": pot.n_experts, "temperature": rep.selection.get("temperature"),
           "ridge": rep.selection.get("ridge"), "ridge_experts": rep.selection.get("ridge_experts"),
           "K": pot.core.n_features, "eq9": {k: rep.selection["eq9"][k] for k in ("paper_M", "joint_M")},
           "seconds": seconds, "errors": rep.errors, "notes": rep.notes,
           "cluster_sizes": rep.selection.get("cluster_sizes"), "anchors": rep.settings.get("anchors"),
           "anchors_auto": rep.selection.get("anchors_auto")}
    return out


SAVE_DIR = None   # --save-potentials: every fit made (not a cached one) is also written there


def run(cache, key, fn, fresh=False):
    if key in cache and not fresh and "error" not in cache[key]:
        return cache[key]
    t0 = time.perf_counter()
    try:
        res = fn()
        seconds = time.perf_counter() - t0
        if SAVE_DIR is not None:   # e.g. Cu/bo2/deg12/dc -> Cu_bo2_deg12_dc.dcace (benchmarks/phase_probe.py)
            res.save(Path(SAVE_DIR) / (key.replace("/", "_") + ".dcace"))
        res = summarise(res, seconds)
    except Exception as exc:  # keep going; the table shows the failure
        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"}
    cache[key] = res
    return res


def _e(res, model="dc", which="test"):
    try:
        s = res["errors"][model][which]
        return s["energy_mae_mev_per_atom"], s["force_mae_ev_per_a"] if which == "test" else s["force_rmse_ev_per_a"]
    except (KeyError, TypeError):
        return None, None


def _f(x, spec):
    return "—" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", nargs="+", default=ELEMENTS)
    ap.add_argument("--body-orders", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--degree", type=float, default=12)
    ap.add_argument("--extra", nargs="*", default=["4:16", "5:14"],
                    help="extra body_order:degree[:energy_weight[:cutoff[:angular_weight[:experts]]]] fits (DC) "
                         "for the best-per-element table")
    ap.add_argument("--no-extra-per-element", action="store_true",
                    help=f"skip the per-element extra fits {EXTRA_PER_ELEMENT}")
    ap.add_argument("--no-large", action="store_true", help="skip the larger-degree linear baselines")
    ap.add_argument("--no-tial", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="ignore cached results")
    ap.add_argument("--anchors", default=None,
                    help="anchors= of the DC fits (a weight or 'auto'; default: dcace.fit's default)")
    ap.add_argument("--cache", default=str(ROOT / "docs" / "accuracy.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "accuracy.md"))
    ap.add_argument("--save-potentials", metavar="DIR",
                    help="also write every potential fitted in this run to DIR (for benchmarks/phase_probe.py)")
    args = ap.parse_args()
    global SAVE_DIR
    if args.save_potentials:
        Path(args.save_potentials).mkdir(parents=True, exist_ok=True)
        SAVE_DIR = args.save_potentials

    import dcace
    from dcace.data import read_data

    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def save():
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))

    deg = int(args.degree) if float(args.degree).is_integer() else args.degree
    anchors = None if args.anchors is None else (args.anchors if args.anchors == "auto" else float(args.anchors))
    for el in args.elements:
        train = read_data(DATA / "zuo2020" / f"{el}_train.xyz", elements=[el])
        test = read_data(DATA / "zuo2020" / f"{el}_test.xyz", elements=[el])
        common = dict(elements=[el], cutoff=CUTOFF[el], test=test, progress=False, anchors=anchors)
        for bo in args.body_orders:
            key = f"{el}/bo{bo}/deg{deg}/dc"
            print(f"[{time.strftime('%H:%M:%S')}] {key}", flush=True)
            res = run(cache, key, lambda: dcace.fit(train, body_order=bo, max_degree=deg, **common), args.fresh)
            save()
            if args.no_large or "error" in res:
                continue
            M = res["n_experts"]
            target = max(M, 2) * res["K"]
            big = degree_for(bo, target, start=int(deg))
            key2 = f"{el}/bo{bo}/deg{big}/linear"
            print(f"[{time.strftime('%H:%M:%S')}] {key2} (K target {target})", flush=True)
            run(cache, key2, lambda: dcace.fit(train, body_order=bo, max_degree=big, experts=1, **common), args.fresh)
            cache[key]["large_key"] = key2
            save()
        extras = list(args.extra) + ([] if args.no_extra_per_element else EXTRA_PER_ELEMENT.get(el, []))
        for spec in extras:
            parts = spec.split(":") + ["", "", "", ""]
            bo, d = int(parts[0]), float(parts[1])
            d = int(d) if d.is_integer() else d
            wE = float(parts[2]) if parts[2] else None
            rc = float(parts[3]) if parts[3] else CUTOFF[el]
            wL = float(parts[4]) if parts[4] else 1.5
            M = int(parts[5]) if parts[5] else "auto"
            key = (f"{el}/bo{bo}/deg{d}" + (f"/wE{wE:g}" if wE is not None else "")
                   + (f"/rc{rc:g}" if rc != CUTOFF[el] else "") + (f"/wL{wL:g}" if wL != 1.5 else "")
                   + (f"/M{M}" if M != "auto" else "") + "/dc")
            print(f"[{time.strftime('%H:%M:%S')}] {key}", flush=True)
            kw = {**common, "cutoff": rc}
            run(cache, key, lambda: dcace.fit(train, body_order=bo, max_degree=d, energy_weight=wE, w_L=wL,
                                              experts=M, **kw), args.fresh)
            save()
    if not args.no_tial:
        key = "TiAl/bo3/deg10/dc"
        print(f"[{time.strftime('%H:%M:%S')}] {key}", flush=True)

        def tial():
            ds = read_data(DATA / "tial" / "TiAl_tutorial.xyz", elements=["Ti", "Al"], forces_key="force",
                           virial_key="virial")
            test_idx = [i for i in range(len(ds)) if i % 10 == 9]
            train_idx = [i for i in range(len(ds)) if i % 10 != 9]
            return dcace.fit(ds.subset(train_idx), test=ds.subset(test_idx), elements=["Ti", "Al"], cutoff=5.5,
                             body_order=3, max_degree=10, progress=False, anchors=anchors)

        run(cache, key, tial, args.fresh)
        save()
    Path(args.out).write_text(render(cache, args, deg))
    print(f"wrote {args.out}")


def render(cache, args, deg):
    L = ["# Accuracy on the Zuo et al. (2020) data: linear vs divide-and-conquer ACE", "",
         f"Generated by `python benchmarks/zuo_table.py` (raw numbers: `docs/{Path(args.cache).name}`; do not edit by hand), "
         "with the short-range core on (ZBL pair windows, repulsion restraints on every expert, the level-matched "
         "pair core) and the committees' off-data anchors (weight "
         + ("0.03" if args.anchors is None else f"`--anchors {args.anchors}`")
         + ", per expert; `docs/short-range.md`; the weight of every fit is in the JSON), with bcc/fcc of every "
         "element among the anchors at 3x that weight since session 9, and the crystal constraints on the linear "
         "model since session 16, and the kink check on the committees since session 20 (`dcace/gate_kinks.py`): "
         "each row's code is that of the run that fitted it (the JSON's `seconds` and "
         "`notes`; session 20 reran the degree-12 DC rows of the six elements and the large linear models their "
         "new sizes need; session 17 reran the degree-12 and TiAl rows, their large linear models and the Ni degree-16 "
         "(energy weight 100, rc 4.5, rc 5) and degree-18 rows; the bo4 degree-16 and bo5 degree-14 rows and the other Ni extra rows are from before "
         "session 9). "
         "`docs/accuracy-v1.md/.json` is the same experiment before the core (3812c2c), `docs/accuracy-v2.md/.json` "
         "with the core but before the anchors (97368ea); `python benchmarks/accuracy_compare.py "
         "docs/accuracy-v1.json docs/accuracy.json` compares two of them key by key. Data: `examples/data/zuo2020/` (train/test splits of Zuo et al., paper cutoffs). "
         "All fits use the defaults of `dcace fit` (energy weight 300, force weight 1, stress weight 1, ridge by "
         "5-fold CV, `--experts auto`: M = 1..8 and gate temperature 0.35/0.7 by 5-fold CV, joint committee, "
         "experts regularised toward the global model).",
         f"Machine: {platform.machine()}, Python {platform.python_version()}.", "",
         "Test-set MAE, energy meV/atom / force eV/Å. *linear*: global linear model on the same basis (same run); "
         "*DC*: the cross-validated divide-and-conquer potential (M experts, gate temperature τ); *large linear*: one "
         "linear model with about as many coefficients as the whole committee (same body order, larger degree). "
         "CV: 5-fold cross-validation on the training set (energy MAE / force RMSE), less noisy than the 23–31 test "
         "structures (differences below ~1 meV/atom on the test set are noise).", ""]
    for bo in args.body_orders:
        L += [f"## Body order {bo}, degree {deg}", "",
              "| El | K | linear test | DC test | M (τ) | large linear test (degree, K) | linear CV | DC CV | DC wins E (test / CV) |",
              "|---|---:|---|---|---|---|---|---|---|"]
        wins_t = wins_cv = n = 0
        big_e = big_cv = big_f = n_big = 0
        for el in args.elements:
            r = cache.get(f"{el}/bo{bo}/deg{deg}/dc")
            if r is None:
                continue
            if "error" in r:
                L.append(f"| {el} | — | fit failed: {r['error']} |||||||")
                continue
            le, lf = _e(r, "linear")
            dc_model = "dc" if r["n_experts"] > 1 else "linear"
            de, df = _e(r, dc_model)
            lce, lcf = _e(r, "linear", "cv")
            dce, dcf = _e(r, dc_model, "cv")
            big = cache.get(r.get("large_key", ""), {})
            be, bf = _e(big, "linear") if big and "error" not in big else (None, None)
            bdeg = r.get("large_key", "//deg?/").split("/")[2][3:] if r.get("large_key") else "—"
            n += 1
            wt = de is not None and le is not None and de < le
            wc = dce is not None and lce is not None and dce < lce
            wins_t += wt
            wins_cv += wc
            if be is not None and de is not None:
                bce, _ = _e(big, "linear", "cv")
                n_big += 1
                big_e += de < be
                big_cv += bce is not None and dce is not None and dce < bce
                big_f += df < bf
            tau = r.get("temperature")
            L.append(f"| {el} | {r['K']} | {_f(le, '.2f')} / {_f(lf, '.4f')} | {_f(de, '.2f')} / {_f(df, '.4f')} | "
                     f"{r['n_experts']}" + (f" ({tau:g})" if tau else "") + f" | {_f(be, '.2f')} / {_f(bf, '.4f')} "
                     f"({bdeg}, {big.get('K', '—')}) | {_f(lce, '.2f')} / {_f(lcf, '.3f')} | {_f(dce, '.2f')} / "
                     f"{_f(dcf, '.3f')} | {'yes' if wt else 'no'} / {'yes' if wc else 'no'} |")
        L += ["", f"DC beats linear on test energy MAE for {wins_t} of {n} elements (CV energy MAE: {wins_cv} of {n}). "
              f"Against the large linear model: DC has the lower test energy MAE for {big_e} of {n_big}, the lower CV "
              f"energy MAE for {big_cv} of {n_big}, the lower test force MAE for {big_f} of {n_big}.", ""]
    # best per element
    L += ["## Best setting per element vs MTP (Zuo et al.)", "",
          "Among all fits in this file (body order ≤ 5): the lowest test energy MAE among fits whose force MAE "
          "is within 1.2 × MTP (if none is: the lowest force MAE among fits with energy MAE ≤ MTP); bar: test energy MAE ≤ MTP's "
          "and test force MAE ≤ 1.2 × MTP's (how many elements meet each: below the table). `wE100`: energy weight 100 instead of the default 300; `wL0.5`: angular weight "
          "0.5 in the degree sum instead of 1.5 (`--angular-weight`); `M3`: 3 experts fixed instead of `auto`; "
          "`rc4.5`: cutoff 4.5 Å instead of the "
          "paper's.", "",
          "| El | best fit | test E MAE | MTP E | E ≤ MTP | test F MAE | 1.2 × MTP F | F ≤ 1.2 MTP | lowest E of any fit | GAP E / F | ace-jax linear E / F |",
          "|---|---|---:|---:|---|---:|---:|---|---|---|---|"]
    n_e = n_f = 0
    for el in args.elements:
        cands = []
        for key, r in cache.items():
            if not key.startswith(f"{el}/") or "error" in r:
                continue
            for model in ("dc", "linear"):
                e, f = _e(r, model)
                if e is not None and (model == "linear" or r["n_experts"] > 1):
                    label = key.rsplit('/', 1)[0] + " " + ("linear" if model == "linear" else f"DC M={r['n_experts']}")
                    cands.append((e, f, label))
        if not cands:
            continue
        bar_f = 1.2 * MTP[el][1] + 1e-12
        good = [c for c in cands if c[1] <= bar_f]
        # the lowest energy among fits that meet the force bar; if none does, the lowest force MAE among
        # fits whose energy is at or below MTP's (the closest approach to the bar), else the lowest energy
        near = [c for c in cands if c[0] <= MTP[el][0]]
        e, f, what = (min(good) if good else
                      min(near, key=lambda c: (c[1], c[0])) if near else min(cands))
        lo = min(cands)
        ok_e = e <= MTP[el][0]
        ok_f = f <= bar_f
        n_e += ok_e
        n_f += ok_f
        L.append(f"| {el} | {what} | {e:.2f} | {MTP[el][0]} | {'yes' if ok_e else 'no'} | {f:.4f} | "
                 f"{1.2 * MTP[el][1]:.3f} | {'yes' if ok_f else 'no'} | {lo[0]:.2f} / {lo[1]:.4f} ({lo[2]}) | "
                 f"{GAP[el][0]} / {GAP[el][1]} | {ACEJAX[el][0]} / {ACEJAX[el][1]} |")
    L += ["", f"Energy at or below MTP: {n_e} of {len(args.elements)}; force within 1.2 × MTP: {n_f} of "
          f"{len(args.elements)}.", ""]
    t = cache.get("TiAl/bo3/deg10/dc")
    if t and "error" not in t:
        L += ["## Multi-element: TiAl (ACEData tutorial set)", "",
              "`examples/data/tial/TiAl_tutorial.xyz` (keys `force`, `virial`), body order 3, degree 10, cutoff 5.5 Å; "
              "frames 9, 19, 29, ... held out as the test set.", "",
              "| model | set | E MAE meV/atom | F MAE eV/Å | S MAE GPa |", "|---|---|---:|---:|---:|"]
        for model, sets in t["errors"].items():
            for which in ("train", "cv", "test"):
                s = sets.get(which)
                if s:
                    L.append(f"| {model} | {which} | {_f(s.get('energy_mae_mev_per_atom'), '.2f')} | "
                             f"{_f(s.get('force_mae_ev_per_a'), '.4f')} | {_f(s.get('stress_mae_gpa'), '.3f')} |")
        L += ["", f"Selected: M = {t['n_experts']}, K = {t['K']} per species.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
