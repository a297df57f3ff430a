"""The pure parts of benchmarks/local_gate_table.py (issue 11's accuracy columns): the bar's counting, the
choice of the best local gate by CV loss, the run order and the equal-size degree. No fits."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import local_gate_table as lgt  # noqa: E402


def test_bar_counts_each_condition_at_its_threshold():
    lin, st = (3.0, 0.120), (2.0, 0.100)
    rows = [
        ("A", (1.9, 0.090), lin, st),    # below linear, better than the structure gate on both
        ("B", (2.2, 0.105), lin, st),    # E +10 % and F +5 % of the structure gate: both within (<=)
        ("C", (2.21, 0.1051), lin, st),  # just outside both
        ("D", (3.1, 0.095), lin, st),    # E above linear: not "below linear", far above the structure gate's E
        ("E", (2.5, 0.120), lin, st),    # F equal to linear's: not below
        ("F", (1.0, 0.050), lin, st, "nbh3"),
    ]
    b = lgt.bar(rows)
    assert b["n"] == 6
    assert b["below"] == 4                      # A, B, C, F
    assert b["f5"] == 4                         # A, B, D, F
    assert b["e10"] == 3                        # A, B, F
    assert not b["met"]                         # below 4 of 6 (< 6) and energy 3 of 6 (< 4)
    byel = {r["el"]: r for r in b["rows"]}
    assert byel["D"]["below_F"] and not byel["D"]["below_E"]
    assert byel["E"]["below_E"] and not byel["E"]["below_F"]
    assert byel["F"]["which"] == "nbh3" and byel["A"]["which"] is None
    assert abs(byel["B"]["E_vs_structure"] - 0.10) < 1e-12


def test_bar_met_and_missing_numbers_skipped():
    lin, st = (3.0, 0.1), (2.0, 0.1)
    rows = [(el, (1.5, 0.09), lin, st) for el in "ABCDEF"] + [("G", (None, None), lin, st)]
    b = lgt.bar(rows)
    assert (b["n"], b["below"], b["f5"], b["e10"], b["met"]) == (6, 6, 6, 6, True)
    assert not lgt.bar(rows[:5])["met"]       # 5 elements measured: not the bar's 6 of 6


def test_best_local_by_cv_loss_and_nbh3_alias():
    nbh = {"cv_loss": 5.0, "K": 79, "test": {}}
    cache = {"Mo/bo3/deg12/atom": {"cv_loss": 7.0}, "Mo/bo3/deg12/nbh": nbh,
             "Mo/bo4/deg12/atom": {"cv_loss": 3.0}, "Mo/bo4/deg12/nbh": {"cv_loss": 2.0},
             "Mo/bo4/deg12/nbh3": {"cv_loss": 2.5}, "Si/bo4/deg12/atom": {"error": "boom"}}
    f3 = lgt.fits_of(cache, "Mo", 3)
    assert f3["nbh3"] is f3["nbh"] is nbh      # at body order 3 the 2+3-body gate is all of p_i
    assert lgt.best_local(f3)[0] == "nbh"
    assert lgt.best_local(lgt.fits_of(cache, "Mo", 4))[0] == "nbh"
    assert lgt.fits_of(cache, "Si", 4) == {} and lgt.best_local({}) == (None, None)
    assert lgt.variants_at(4) == ["atom", "nbh", "nbh3"] and lgt.variants_at(3) == ["atom", "nbh"]


def test_plan_runs_body_order_4_and_tial_first():
    p = lgt.plan(["Ni", "Mo", "TiAl"], [4, 3, 2], [3, 4])
    assert p == [("Ni", 4), ("Mo", 4), ("TiAl", 3), ("Ni", 3), ("Mo", 3), ("Ni", 2), ("Mo", 2), ("TiAl", 4)]


def test_equal_size_degree():
    # body order 2 has one feature per degree step here; body order 4 at degree 12 has K = 211 and the
    # issue's equal-size model is degree 17 (K = 868 against 4 x 211 = 844)
    assert lgt.n_features(1, 4, 12) == 211
    assert lgt.equal_size_degree(1, 4, 4 * 211, 12) == 17
    assert lgt.n_features(1, 2, lgt.equal_size_degree(1, 2, 48, 12)) == 48
