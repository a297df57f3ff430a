"""Before -> after table of two Zuo accuracy runs (benchmarks/zuo_table.py caches), key by key.

Issue 10's accuracy criterion: with the short-range core on, each element's test energy and force
MAE within +-5 % of the run before it, or better. This script reads two caches and prints (or
writes) one row per setting present in both: M, linear and DC test MAE, DC CV errors, each with its
relative change, and a last column saying whether the row meets the criterion.

    python benchmarks/accuracy_compare.py docs/accuracy-v1.json docs/accuracy.json --markdown out.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TOLERANCE = 0.05


def _err(res, model, which):
    try:
        s = res["errors"][model][which]
    except (KeyError, TypeError):
        return None, None
    if s is None:
        return None, None
    return s["energy_mae_mev_per_atom"], s["force_mae_ev_per_a"] if which == "test" else s["force_rmse_ev_per_a"]


def _cell(a, b, spec):
    if a is None or b is None:
        return "—"
    return f"{a:{spec}} → {b:{spec}} ({100 * (b / a - 1):+.0f} %)"


def _ok(a, b):
    return a is None or b is None or b <= (1 + TOLERANCE) * a


def rows(before: dict, after: dict):
    """[(key, markdown cells, meets)] for every '<el>/bo<n>/deg<d>/dc' key in both caches."""
    out = []
    for key in sorted(k for k in after if k in before and k.endswith("/dc") and k.count("/") == 3):
        b, a = before[key], after[key]
        if "error" in a or "error" in b:
            out.append((key, [key, "error"], False))
            continue
        (lbe, lbf), (lae, laf) = _err(b, "linear", "test"), _err(a, "linear", "test")
        dc_b = "dc" if b["n_experts"] > 1 else "linear"
        dc_a = "dc" if a["n_experts"] > 1 else "linear"
        (dbe, dbf), (dae, daf) = _err(b, dc_b, "test"), _err(a, dc_a, "test")
        (cbe, cbf), (cae, caf) = _err(b, dc_b, "cv"), _err(a, dc_a, "cv")
        meets = all(_ok(x, y) for x, y in ((lbe, lae), (lbf, laf), (dbe, dae), (dbf, daf)))
        cells = [" ".join(key.split("/")[:3]), f"{b['n_experts']} → {a['n_experts']}", _cell(lbe, lae, ".3f"), _cell(lbf, laf, ".4f"),
                 _cell(dbe, dae, ".3f"), _cell(dbf, daf, ".4f"), _cell(cbe, cae, ".3f"), _cell(cbf, caf, ".4f"),
                 "yes" if meets else "**no**"]
        out.append((key, cells, meets))
    return out


def markdown(table) -> str:
    head = ["setting", "M before → now", "linear test E", "linear test F", "DC test E", "DC test F", "DC CV E",
            "DC CV F(rmse)", f"within {100 * TOLERANCE:.0f} % or better"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for _, cells, _ in table]
    n_ok = sum(m for _, _, m in table)
    lines.append("")
    lines.append(f"{n_ok} of {len(table)} settings meet the criterion (test E and F of linear and DC within "
                 f"+{100 * TOLERANCE:.0f} % of before, or better).")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--markdown", help="write the table here (default: print it)")
    args = ap.parse_args()
    text = markdown(rows(json.loads(Path(args.before).read_text()), json.loads(Path(args.after).read_text())))
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
