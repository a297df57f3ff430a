"""Markdown table of benchmarks/anchor_schemes.py caches against a zuo_table.py reference (docs/accuracy-v1.json).

    python benchmarks/anchor_schemes_table.py docs/accuracy-v1.json out/*.json --markdown table.md

One row per setting and scheme: M, CV loss, DC test E/F MAE (meV/atom, eV/A) with the change against the
reference's DC row, the probes that fail (dcace.anchor_choice; those the linear model passes), and
whether the scheme is safe and within +5 % of the reference on both test E and F.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pct(a, b):
    return f"{100 * (b / a - 1):+.0f} %"


def _order(row):
    """none, then the schemes by family and weight."""
    name = row["scheme"]
    fam = name.rsplit(" ", 1)[0] if name != "none" else ""
    return (fam != "", fam, row["weights"], name)


def table(ref, caches):
    lines = ["| setting | scheme | M | CV loss | DC test E | DC test F | probes | safe and within 5 % |",
             "|---|---|---:|---:|---|---|---|---|"]
    n_rows = n_ok = 0
    merged = {}   # one row set per setting: the schemes of every cache (a scheme measured twice: the first)
    for cache in caches:
        for key, rec in cache.items():
            m = merged.setdefault(key, {"linear": rec["linear"], "schemes": []})
            seen = {x["scheme"] for x in m["schemes"]}
            m["schemes"] += [x for x in rec["schemes"] if x["scheme"] not in seen]
    if True:
        for key, rec in merged.items():
            r = ref.get(key + "/dc", {})
            dc = "dc" if r.get("n_experts", 1) > 1 else "linear"
            t = r.get("errors", {}).get(dc, {}).get("test") or {}
            e0, f0 = t.get("energy_mae_mev_per_atom"), t.get("force_mae_ev_per_a")
            best = False
            for s in sorted(rec["schemes"], key=_order):
                e, f = s["test"]
                safe = not s["failures"]
                ok = safe and e0 is not None and e <= 1.05 * e0 and f <= 1.05 * f0
                best |= ok
                fails = ", ".join(k.replace(" compressed", "") for k in s["failures"]) or "pass"
                lines.append(f"| {key} | {s['scheme']} | {s['M']} | {s['cv_loss']:.4g} | {e:.3f} ({_pct(e0, e) if e0 else '—'}) "
                             f"| {f:.4f} ({_pct(f0, f) if f0 else '—'}) | {fails} | {'**yes**' if ok else 'no'} |")
            n_rows += 1
            n_ok += best
            ref_e, ref_f = ("—", "—") if e0 is None else (f"{e0:.3f}", f"{f0:.4f}")
            lines.append(f"| {key} | *reference* | {r.get('n_experts')} | — | {ref_e} | {ref_f} | linear model fails: "
                         f"{', '.join(rec['linear']['failures']) or 'none'} | — |")
    lines.append("")
    lines.append(f"{n_ok} of {n_rows} settings have at least one scheme that is safe and within +5 % of the reference.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("caches", nargs="+")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    text = table(json.loads(Path(a.reference).read_text()), [json.loads(Path(c).read_text()) for c in a.caches])
    if a.markdown:
        Path(a.markdown).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
