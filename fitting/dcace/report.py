"""Error statistics and the closing report of a fit.

Conventions (the same everywhere in dcace, including ``dcace eval --json``):
- energy errors per atom, |E_pred - E_ref| / N, meV/atom, one value per structure;
- force errors over Cartesian components (3N per structure), eV/Å;
- stress errors over the 6 Voigt components of structures that have a stress, GPa
  (1 eV/Å^3 = 160.21766 GPa).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EV_A3_TO_GPA", "ErrorStats", "FitReport", "format_table"]

EV_A3_TO_GPA = 160.21766208


class ErrorStats:
    """Running MAE / RMSE of energies (per atom), forces (components) and stresses."""

    def __init__(self, keep: bool = False):
        self.n_structures = 0
        self.n_atoms = 0
        self.e_abs = 0.0
        self.e_sq = 0.0
        self.e_max = 0.0
        self.f_abs = 0.0
        self.f_sq = 0.0
        self.f_n = 0
        self.s_abs = 0.0
        self.s_sq = 0.0
        self.s_n = 0
        self.keep = keep
        self.e_ref, self.e_pred, self.f_ref, self.f_pred, self.n_per = [], [], [], [], []

    def add(self, n_atoms: int, e_ref: float, e_pred: float, f_ref=None, f_pred=None, s_ref=None, s_pred=None,
            e_offset: float = 0.0):
        """e_offset: the structure's per-species reference energy sum_s n_s e_s, subtracted from the
        kept energies only (plots show energies relative to it, so meV/atom errors are visible)."""
        self.add_terms(self.terms(n_atoms, e_ref, e_pred, f_ref, f_pred, s_ref, s_pred, e_offset))

    def terms(self, n_atoms: int, e_ref: float, e_pred: float, f_ref=None, f_pred=None, s_ref=None, s_pred=None,
              e_offset: float = 0.0) -> tuple:
        """One structure's contribution (small numbers; its arrays only with keep): add_terms() of the
        contributions in structure order gives the same sums, wherever each was computed (MPI ranks)."""
        de = (e_pred - e_ref) / n_atoms
        f = s = None
        if f_ref is not None and f_pred is not None:
            df = np.asarray(f_pred, float).ravel() - np.asarray(f_ref, float).ravel()
            f = (float(np.abs(df).sum()), float(df @ df), df.size)
        if s_ref is not None and s_pred is not None:
            ds = np.asarray(s_pred, float).ravel() - np.asarray(s_ref, float).ravel()
            s = (float(np.abs(ds).sum()), float(ds @ ds), ds.size)
        kept = None
        if self.keep:
            kept = ((e_ref - e_offset) / n_atoms, (e_pred - e_offset) / n_atoms, n_atoms,
                    None if f is None else (np.asarray(f_ref, float).ravel(), np.asarray(f_pred, float).ravel()))
        return int(n_atoms), de, f, s, kept

    def add_terms(self, t: tuple) -> None:
        n_atoms, de, f, s, kept = t
        self.n_structures += 1
        self.n_atoms += n_atoms
        self.e_abs += abs(de)
        self.e_sq += de * de
        self.e_max = max(self.e_max, abs(de))
        if f is not None:
            self.f_abs += f[0]
            self.f_sq += f[1]
            self.f_n += f[2]
        if s is not None:
            self.s_abs += s[0]
            self.s_sq += s[1]
            self.s_n += s[2]
        if self.keep and kept is not None:
            self.e_ref.append(kept[0])
            self.e_pred.append(kept[1])
            self.n_per.append(kept[2])
            if kept[3] is not None:
                self.f_ref.append(kept[3][0])
                self.f_pred.append(kept[3][1])

    def summary(self) -> dict:
        ns = max(self.n_structures, 1)
        d = {
            "n_structures": self.n_structures,
            "n_atoms": self.n_atoms,
            "energy_mae_mev_per_atom": 1000.0 * self.e_abs / ns,
            "energy_rmse_mev_per_atom": 1000.0 * math.sqrt(self.e_sq / ns),
            "energy_max_mev_per_atom": 1000.0 * self.e_max,
            "force_mae_ev_per_a": self.f_abs / self.f_n if self.f_n else None,
            "force_rmse_ev_per_a": math.sqrt(self.f_sq / self.f_n) if self.f_n else None,
            "stress_mae_gpa": EV_A3_TO_GPA * self.s_abs / self.s_n if self.s_n else None,
            "stress_rmse_gpa": EV_A3_TO_GPA * math.sqrt(self.s_sq / self.s_n) if self.s_n else None,
        }
        return d

    def arrays(self):
        """Per-structure energies per atom and force components (only with keep=True)."""
        cat = lambda x: np.concatenate(x) if x else np.zeros(0)  # noqa: E731
        return (np.array(self.e_ref), np.array(self.e_pred), cat(self.f_ref), cat(self.f_pred))


def _fmt(x, spec):
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def format_table(rows: list[tuple[str, str, dict]]) -> str:
    """Markdown table of error summaries: rows of (model, set, summary dict)."""
    head = ("| model | set | E MAE meV/at | E RMSE meV/at | F MAE eV/Å | F RMSE eV/Å | S MAE GPa |\n"
            "|---|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for model, which, s in rows:
        lines.append(f"| {model} | {which} | {_fmt(s.get('energy_mae_mev_per_atom'), '.3f')} | "
                     f"{_fmt(s.get('energy_rmse_mev_per_atom'), '.3f')} | {_fmt(s.get('force_mae_ev_per_a'), '.4f')} | "
                     f"{_fmt(s.get('force_rmse_ev_per_a'), '.4f')} | {_fmt(s.get('stress_mae_gpa'), '.3f')} |")
    return "\n".join(lines)


_MODEL_ORDER = ("linear", "dc", "dc-independent", "dc-joint", "paper-eq8")


@dataclass
class FitReport:
    """What a fit did and how well it did; ``str(report)`` is the closing table."""

    settings: dict
    selection: dict
    errors: dict                     # {model: {"train"|"cv"|"test": summary}}
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    cv_table: list = field(default_factory=list)   # rows {M, tau, fit, cv...}
    arrays: dict = field(default_factory=dict)     # plot data
    cost: dict = field(default_factory=dict)       # what pass 2 was estimated and measured to cost (dcace.cost)

    def table(self) -> str:
        rows = []
        for model, sets in self.errors.items():
            for which in ("train", "cv", "test"):
                if which in sets and sets[which] is not None:
                    rows.append((model, which, sets[which]))
        return format_table(rows)

    def cv_markdown(self) -> str:
        if not self.cv_table:
            return ""
        lines = ["| M | tau | experts | ridge | CV loss | CV E MAE meV/at | CV E RMSE meV/at | CV F RMSE eV/Å | CV S MAE GPa |",
                 "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in self.cv_table:
            lines.append(f"| {r['M']} | {_fmt(r.get('tau'), '.3g')} | {r['fit']} | {_fmt(r.get('ridge'), '.0e')} | {_fmt(r.get('loss'), '.6g')} | "
                         f"{_fmt(r.get('energy_mae_mev_per_atom'), '.3f')} | {_fmt(r.get('energy_rmse_mev_per_atom'), '.3f')} | "
                         f"{_fmt(r.get('force_rmse_ev_per_a'), '.4f')} | {_fmt(r.get('stress_mae_gpa'), '.3f')} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        sel = self.selection
        parts = [f"dcace fit: {sel.get('summary', '')}", "", self.table()]
        if self.notes:
            parts += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(parts)

    @classmethod
    def from_metadata(cls, meta: dict) -> "FitReport":
        """The report of a fit rebuilt from a potential file's metadata (``Potential.metadata``).

        Settings, selection (with the candidates' CV rows as ``cv_table``), errors and notes are in
        the file; timings and plot arrays are not (empty).  ``str(report)`` and ``report.table()``
        give the same table as right after the fit, up to the 6 significant digits stored.
        """
        meta = meta or {}
        selection = dict(meta.get("selection") or {})
        cv = selection.pop("cv", None) or []
        stored = meta.get("errors") or {}     # JSON keys are sorted: restore the fit's model order
        order = [m for m in _MODEL_ORDER if m in stored] + sorted(m for m in stored if m not in _MODEL_ORDER)
        errors = {m: {w: (dict(v) if v is not None else None) for w, v in (stored[m] or {}).items()}
                  for m in order}
        return cls(settings=dict(meta.get("fit") or {}), selection=selection, errors=errors, timings={},
                   notes=list(meta.get("notes") or []), cv_table=[dict(r) for r in cv], arrays={})

    def to_json(self) -> str:
        """Strict JSON: numbers that are not finite (a diverged comparison model) become null."""
        d = {"settings": self.settings, "selection": self.selection, "errors": self.errors,
             "timings": self.timings, "notes": self.notes, "cv_table": self.cv_table}
        plain = json.loads(json.dumps(d, default=_json_default))    # numpy -> Python; NaN/inf kept
        return json.dumps(_finite(plain), sort_keys=True, indent=1, allow_nan=False)


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o))
