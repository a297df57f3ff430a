"""Fits that several test modules need with the same data and the same options, fitted once per
pytest session (lru_cache: the first test that asks fits, the others reuse the object). Every test
that used such a fit still checks it; a test must not modify the returned potential."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dcace

MO_TRAIN = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"


@lru_cache(maxsize=None)
def mo_default_linear():
    """The linear Mo fit at the default basis (body order 4, degree 12, cutoff 5.2) and the default
    repulsion restraints (0.01), all of Zuo Mo's training set, with its grade: test_grade's `mo` and
    the restrained half of test_short_range's restraint-cost study on Mo."""
    return dcace.fit(str(MO_TRAIN), elements=["Mo"], cutoff=5.2, body_order=4, max_degree=12, experts=1,
                     progress=False, compare=False)
