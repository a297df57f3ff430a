"""Default fits of all six Zuo et al. elements and of TiAl are safe off their data (issue 10's bar).

Every dimer rises monotonically from the data's shortest distance of its pair down to 0.1 Å and is
above the separated atoms below its core window; the ground-state crystal and bcc and fcc of every
element, compressed from each phase's own a0 to 0.4 a0, rise in energy with positive pressure below
0.95 a0 (test_short_range.off_data_problems); along the ground-state crystal from 0.85 to 1.10 a0 the
pressure has no kink over 0.5 GPa + 1 % of |P| (uniform_kinks). Its own module because its seven
default fits are the suite's longest module on one core (about 6 min): `pytest -n auto --dist loadfile`
can then run them beside the rest of test_short_range.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from ase.io import read

import dcace
from dcace.crystal_probe import own_a0
from dcace.probes import compression_curve
from dcace.baseline import HI_MIN_GAP, core_window, shortest_distances
from test_short_range import DEFAULT_SETS, _tial, _zuo, off_data_problems


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEFAULT_SETS))
def test_default_fit_is_safe_off_the_data(name):
    """A default fit (`dcace fit` with no options: body order 4, degree 12, `--experts auto`, which
    picks a committee for the six Zuo elements) probed below its data (off_data_problems: dimers, the
    ground-state crystal, and bcc and fcc of every element). Where the fit raised a window top towards
    the data (baseline.core_shifts), the training structures' energies are those of the potential with
    the window it was fitted with."""
    elements, rc, crystal = DEFAULT_SETS[name]
    train, keys = _tial() if name == "TiAl" else _zuo(name)
    pot = dcace.fit(train, elements=elements, cutoff=rc, progress=False, compare=False, **keys)
    assert pot.baseline == "zbl"
    frames = read(train, ":")
    rmin = shortest_distances(frames, elements, rc)
    lo_w, hi_w = pot.basis.core_window
    _, hi_fit, _ = core_window(elements, rmin, rc, pot.basis.inner_cutoff)
    assert (hi_w >= hi_fit).all() and (hi_w <= rmin - HI_MIN_GAP + 1e-9).all()
    if (hi_w > hi_fit).any():
        fitted = dcace.Potential.from_parts(pot.basis.with_core_window((lo_w, hi_fit)), pot.coefficients,
                                            pot.one_body, pot.gate, {}, short_range=pot.short_range)
        for fr in frames[::4]:
            assert pot.compute(fr)["energy"] == pytest.approx(fitted.compute(fr)["energy"], rel=1e-12, abs=1e-9)
    problems = off_data_problems(pot, elements, rmin, crystal)
    kink = uniform_kinks(pot, crystal())
    if kink["ratio"] > 1:
        problems["pressure kink"] = (f"{kink['kink_gpa']:.3g} GPa at {kink['a_over_a0']:.5f} a0 (P = {kink['p_gpa']:.4g} GPa), "
                                     f"{kink['ratio']:.3g}x 0.5 GPa + 1 % of |P|")
    assert not problems, f"{name} (M = {pot.n_experts}): " + "; ".join(f"{k}: {v}" for k, v in problems.items())
    if pot.n_experts > 1:   # the fit's own check (dcace.gate_kinks) judged the committee it kept
        checked = pot.report.selection["gate_kinks"]["checked"]
        assert checked[-1]["M"] == pot.n_experts and checked[-1]["ratio"] <= 1


def uniform_kinks(pot, crystal):
    """The ground-state crystal scaled from 0.85 to 1.10 of its own a0 in uniform steps of 0.00015 a0 (every
    point, as benchmarks/gate_grid.py; not the fit's coarse-then-fine scan): the largest pressure kink
    |P_k - (P_k-1 + P_k+1) / 2| over 0.5 GPa + 1 % of |P|, where, and P there. A committee whose gate switches
    within a step has a spike there (the Cu committee CV chose before the kink check: 81.9 GPa at 0.945 a0,
    48x the bound; docs/short-range.md, "Pressure kinks")."""
    s0 = own_a0(pot, crystal)
    x = np.arange(0.85, 1.10, 0.00015)
    _, P = compression_curve(pot, crystal, s0 * x)
    kink = np.abs(P[1:-1] - (P[:-2] + P[2:]) / 2)
    ratio = kink / (0.5 + 0.01 * np.abs(P[1:-1]))
    k = int(np.argmax(ratio))
    return {"ratio": float(ratio[k]), "kink_gpa": float(kink[k]), "a_over_a0": float(x[k + 1]), "p_gpa": float(P[k + 1])}
