"""Merge a benchmark's freshly generated markdown into the committed one, keeping the rows of models not rerun.

Why this file exists: `many_elements.py table` builds docs/many-elements.md from the per-model JSON files
of a work directory, and a fit takes ~10 minutes, so a session reruns only a few models and the
earlier sessions' JSON files are not on every machine.  `table --keep docs/many-elements.md` merges:

* every table whose first column is "model": the new rows, plus the kept file's rows whose
  first cell the new table lacks, in the order of `order` (unknown names last, as they were);
* the fenced block of commands: the fit lines of both in the order of `order`, then one line per other
  sub-command (the new text's where both have it), `table` last;
* a "## " section the new text lacks (e.g. the committee-cost table when dc-cost did not run): kept
  as it was, in the kept file's order;
* everything else (the prose, the "at or below (a)" line) is the new text's.
"""
from __future__ import annotations

import re


def _tables(lines):
    """{header line: (start, end)} of every markdown table (a run of lines starting with '|')."""
    out, k = {}, 0
    while k < len(lines):
        if lines[k].startswith("|"):
            j = k
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out[lines[k]] = (k, j)
            k = j
        else:
            k += 1
    return out


def _key(row):
    return row.split("|")[1].strip()


def _rank(order, extra):
    def rank(row):
        name = _key(row)
        return (order.index(name), 0) if name in order else (len(order), extra.index(row))
    return rank


def _merge_table(new_rows, old_rows, order):
    have = {_key(r) for r in new_rows}
    rows = new_rows + [r for r in old_rows if _key(r) not in have]
    return sorted(rows, key=_rank(order, rows))


def _sections(lines):
    """[(heading or None, [lines])] split at '## ' headings."""
    out = [(None, [])]
    for ln in lines:
        if ln.startswith("## "):
            out.append((ln, []))
        out[-1][1].append(ln)
    return out


def _fit_name(line):
    m = re.search(r" fit (\S+)", line)
    return m.group(1) if m else None


def _merge_commands(new, old, order):
    """The fit lines of both in `order`, then the other commands (one per sub-command, the new text's
    first), `table` last."""
    fits = {_fit_name(ln): ln for ln in old + new if _fit_name(ln)}
    named = sorted(fits, key=lambda n: order.index(n) if n in order else len(order))
    others = {}
    for ln in new + old:
        if not _fit_name(ln) and ln.strip():
            others.setdefault(ln.split()[2] if len(ln.split()) > 2 else ln, ln)
    tail = sorted(others.values(), key=lambda ln: " table" in ln)
    return [fits[n] for n in named] + tail


def merge(new_text: str, old_text: str, order) -> str:
    order = list(order)
    new, old = new_text.split("\n"), old_text.split("\n")
    old_tables = _tables(old)
    for header, (a, b) in sorted(_tables(new).items(), key=lambda kv: -kv[1][0]):   # bottom up: indices hold
        if header in old_tables and _key(header) == "model":
            oa, ob = old_tables[header]
            new[a + 2:b] = _merge_table(new[a + 2:b], old[oa + 2:ob], order)
    fences_new = [k for k, ln in enumerate(new) if ln.startswith("```")]
    fences_old = [k for k, ln in enumerate(old) if ln.startswith("```")]
    if len(fences_new) >= 2 and len(fences_old) >= 2:
        a, b = fences_new[:2]
        new[a + 1:b] = _merge_commands(new[a + 1:b], old[fences_old[0] + 1:fences_old[1]], order)
    have = {h for h, _ in _sections(new)}
    out = [ln for _, body in _sections(new) for ln in body]
    for heading, body in _sections(old):
        if heading is not None and heading not in have:
            out += ([""] if out and out[-1] != "" else []) + [ln for ln in body]
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out)
