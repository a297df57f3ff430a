"""Default fits of all six Zuo et al. elements and of TiAl are safe off their data (issue 10's bar).

Every dimer rises monotonically from the data's shortest distance of its pair down to 0.1 Å and is
above the separated atoms below its core window; the ground-state crystal and bcc and fcc of every
element, compressed from each phase's own a0 to 0.4 a0, rise in energy with positive pressure below
0.95 a0 (test_short_range.off_data_problems). Its own module because its seven default fits are the
suite's longest module on one core (about 6 min): `pytest -n auto --dist loadfile` can then run them
beside the rest of test_short_range.py.
"""
from __future__ import annotations

import pytest
from ase.io import read

import dcace
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
    assert not problems, f"{name} (M = {pot.n_experts}): " + "; ".join(f"{k}: {v}" for k, v in problems.items())
