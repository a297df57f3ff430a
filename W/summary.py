"""Summary of W/accuracy-local-auto-M.json against docs/accuracy-local-anchored.json (M = 4) and accuracy.json's linear."""
import json, sys
new = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "W/accuracy-local-auto-M.json"))
old = json.load(open("docs/accuracy-local-anchored.json"))
acc = json.load(open("docs/accuracy.json"))
def lin(ds):
    for r in (acc if isinstance(acc, list) else acc.get("rows", acc.get("results", []))):
        pass
for ds in ("Ni", "Cu", "Li", "Mo", "Si", "Ge"):
    rows = []
    for v in ("atom", "nbh", "nbh3"):
        k = f"{ds}/bo4/deg12/{v}"
        if k not in new or "error" in new[k]:
            continue
        r, o = new[k], old.get(k)
        t, ot = r["test"], o["test"]
        ls = r["linear_same_run"]["test"]
        ecv = r.get("experts_cv", {})
        cand = next(iter(ecv.values()))["candidates"] if ecv else []
        rows.append((r["cv_loss"], v, r, o))
        print(f"{ds} {v:4s}: M {r['n_experts']} tau {r['temperature']} cv {r['cv_loss']:.5g} test {t['energy_mae_mev_per_atom']:.3f} / "
              f"{t['force_mae_ev_per_a']:.4f}  | M=4 run: cv {o['cv_loss']:.5g} test {ot['energy_mae_mev_per_atom']:.3f} / {ot['force_mae_ev_per_a']:.4f} "
              f"| linear same run {ls['energy_mae_mev_per_atom']:.3f} / {ls['force_mae_ev_per_a']:.4f} | {r['seconds']:.0f} s (M=4 run {o['seconds']:.0f} s) | "
              + ", ".join(f"M{c['M']}: {c['cv_loss']:.5g} tau {c['tau']} w {c.get('anchor_weight')} {c['seconds']:.0f}s" for c in cand))
    if rows:
        _, v, r, o = min(rows, key=lambda x: x[0])
        t, ls = r["test"], r["linear_same_run"]["test"]
        print(f"  best local by CV: {v} M {r['n_experts']}: E {t['energy_mae_mev_per_atom']:.3f} vs linear {ls['energy_mae_mev_per_atom']:.3f} "
              f"({100 * (t['energy_mae_mev_per_atom'] / ls['energy_mae_mev_per_atom'] - 1):+.1f} %), F {t['force_mae_ev_per_a']:.4f} vs "
              f"{ls['force_mae_ev_per_a']:.4f} ({100 * (t['force_mae_ev_per_a'] / ls['force_mae_ev_per_a'] - 1):+.1f} %)")
