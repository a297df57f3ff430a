"""The kink check (dcace.gate_kinks): a committee whose structure gate switches within a step along a
crystal has a pressure spike there, the scan finds it and measures it as the pressure itself says, and
the fit turns such a committee down for the next candidate by CV (issue 10: a sharp default Cu committee
had an 81.9 GPa spike at 0.945 a0, docs/short-range.md "Pressure kinks"). Small Mo fits: ~30 s."""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

import dcace
from dcace.anchor_choice import probe_crystals
from dcace.crystal_probe import own_a0
from dcace.gate_kinks import FINE, KINK_GPA, KINK_REL, crystal_kinks, pressure_kinks, worst_kink
from dcace.probes import compression_curve

MO = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
SMALL = dict(elements=["Mo"], cutoff=5.2, body_order=2, max_degree=6, cv_folds=3, progress=False, compare=False)


@lru_cache(maxsize=None)
def frames():
    return read(MO, "::2")


def crystals():
    return probe_crystals(["Mo"], bulk("Mo", "bcc", a=3.16, cubic=True))


@lru_cache(maxsize=None)
def committee():
    """M = 3 at tau = 0.5, fitted without the check (the scans below judge it)."""
    return dcace.fit(frames(), experts=3, temperatures=(0.5,), kink_check=False, **SMALL)


def at_temperature(pot, tau):
    """The same experts and gate at another softmax temperature."""
    return dcace.Potential.from_parts(pot.basis, pot.coefficients, pot.one_body, dict(pot.gate, temperature=tau), {},
                                      short_range=pot.short_range)


def test_the_kink_of_a_step_is_half_of_it_and_of_a_smooth_curve_its_curvature():
    x = np.linspace(0.85, 1.1, 201)
    h = x[1] - x[0]
    assert pressure_kinks(3.0 * x - 1.0) == pytest.approx(np.zeros(199), abs=1e-12)
    assert pressure_kinks(50.0 * x ** 2) == pytest.approx(np.full(199, 50.0 * h ** 2), rel=1e-6)
    step = np.where(x < 0.9401, 10.0, 90.0)
    k = pressure_kinks(step)
    assert k.max() == pytest.approx(40.0) and np.count_nonzero(k) == 2


def test_a_linear_potential_does_not_kink():
    pot = dcace.fit(frames(), experts=1, **SMALL)
    for label, atoms in crystals():
        k = crystal_kinks(pot, atoms)
        assert k["ratio"] == 0.0 and k["rescanned"] == 0, label


def test_a_sharp_gate_kinks_and_the_kink_is_the_pressure_s():
    """The same experts at 1/50 of the temperature switch within a fine step: the scan reports a kink
    far over the bound, and P evaluated afresh at the reported point and one fine step either side
    (dcace.probes.compression_curve, not the scan) gives the same kink and pressure."""
    pot = committee()
    sharp = worst_kink(at_temperature(pot, pot.gate["temperature"] / 50), crystals())
    soft = worst_kink(at_temperature(pot, pot.gate["temperature"] * 10), crystals())
    assert sharp["ratio"] > 10 and soft["ratio"] < 1 and soft["ratio"] < sharp["ratio"] / 50
    atoms = dict(crystals())[sharp["label"]]
    s0 = own_a0(at_temperature(pot, pot.gate["temperature"] / 50), atoms)
    assert s0 == pytest.approx(sharp["a0_scale"], rel=1e-12)
    x = sharp["a_over_a0"] + FINE * np.array([-1.0, 0.0, 1.0])
    _, P = compression_curve(at_temperature(pot, pot.gate["temperature"] / 50), atoms, s0 * x)
    assert abs(P[1] - (P[0] + P[2]) / 2) == pytest.approx(sharp["kink_gpa"], rel=1e-9)
    assert P[1] == pytest.approx(sharp["p_gpa"], rel=1e-9)
    assert sharp["kink_gpa"] / (KINK_GPA + KINK_REL * abs(P[1])) == pytest.approx(sharp["ratio"], rel=1e-9)


def test_the_fit_turns_a_kinking_committee_down():
    """tau = 0.005 kinks (its record says by how much), so the fit keeps tau = 5, whose committee passes a
    scan of its own; with a fixed M and that temperature alone it keeps it, and warns; --no-kink-check
    keeps the CV choice and writes that into the file's settings."""
    pot = dcace.fit(frames(), experts=3, temperatures=(0.005, 5.0), **SMALL)
    rec = pot.report.selection["gate_kinks"]
    assert [r["tau"] for r in rec["checked"]] == [0.005, 5.0] and not rec["kept_kinking"]
    assert rec["checked"][0]["ratio"] > 1 >= rec["checked"][1]["ratio"]
    assert pot.report.selection["temperature"] == 5.0 and pot.n_experts == 3
    assert worst_kink(pot, crystals())["ratio"] <= 1
    assert any(n.startswith("kink check: M = 3, tau = 0.005") and n.endswith("turned down") for n in pot.report.notes)
    assert "kink_check" not in pot.metadata["fit"]   # the default: absent (older files keep their bytes)
    assert pot.report.timings["kink_check"] > 0 and "seconds" not in rec   # (the time: the report's, not the file's)

    with pytest.warns(UserWarning, match="kinks at every temperature of --experts 3; kept tau = 0.005"):
        kept = dcace.fit(frames(), experts=3, temperatures=(0.005,), **SMALL)
    assert kept.report.selection["gate_kinks"]["kept_kinking"] and kept.report.selection["temperature"] == 0.005

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        free = dcace.fit(frames(), experts=3, temperatures=(0.005,), kink_check=False, **SMALL)
    assert "gate_kinks" not in free.report.selection and free.metadata["fit"]["kink_check"] is False
    assert worst_kink(free, crystals())["ratio"] > 1   # what the check turned down above
