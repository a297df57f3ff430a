"""cv_groups (--cv-groups): cross-validation folds that keep a group of training structures together
(issue 15, session 14; docs/fitting.md "Cross-validation by groups").

* "trajectory": consecutive frames of one source with the same config_type, number of atoms and cell form a
  group -- on Zuo's Mo data the Vacancy and AIMD-NVT runs are one group each, every Elastic and Surface frame
  its own; any other string is an atoms.info key (equal values, one group).
* The folds (groups in a seeded permutation, each to the fold with the fewest structures) never split a group.
* At the default (None) nothing changes: the folds are the seeded random ones of before, and the potential file
  of a fit with ``cv_groups=None`` is byte-identical to one without the keyword (no settings key, no note).
* Bad input: a value that is no non-empty string, a frame without the key (names file, frame and key), fewer
  groups than folds (names the option), a Dataset with the key form, an MPI fit.
* End to end: a grouped fit (Python and ``dcace fit --cv-groups``) records the option, its state's folds keep
  every group whole, and a refit keeps the state's folds and takes the option from the state.
Small bases (body order 2, degree 6) on 194 Mo structures: a fit takes ~1 s.
"""
from __future__ import annotations

from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

import dcace
from dcace import pipeline, settings
from dcace.cli import main
from dcace.data import DataError, read_data
from dcace.pipeline_checks import _check_cv_groups
from dcace.state import load_state, refit

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
KW = dict(elements=["Mo"], cutoff=5.2, body_order=2, max_degree=6, experts=1, progress=False, compare=False,
          threads=1)


@pytest.fixture(scope="module")
def frames():
    return read(MO_TRAIN, ":")


@pytest.fixture(scope="module")
def labels():
    return pipeline.cv_group_labels(read_data(str(MO_TRAIN), elements=["Mo"]).frames, "trajectory")


def one_fold_per_group(groups, folds):
    return all(len(set(folds[groups == g])) == 1 for g in np.unique(groups))


def test_trajectory_groups_keep_md_runs_together_and_strained_frames_apart(frames, labels):
    types = [a.info["config_type"] for a in frames]
    sizes = np.bincount(labels)
    by_type = {t: sorted({int(g) for g, u in zip(labels, types) if u == t}) for t in set(types)}
    assert len(by_type["Vacancy"]) == 1 and sizes[by_type["Vacancy"][0]] == types.count("Vacancy") == 21
    assert len(by_type["AIMD-NVT"]) == 1 and sizes[by_type["AIMD-NVT"][0]] == 108
    for t in ("Elastic", "Surface"):   # each a cell of its own
        assert all(sizes[g] == 1 for g in by_type[t]) and len(by_type[t]) == types.count(t)
    assert np.all(np.diff(labels) >= 0)   # numbered in order, a group is a run of consecutive frames


def test_folds_never_split_a_group(labels):
    rng = np.random.default_rng(7)
    cases = [labels, np.repeat(np.arange(40), rng.integers(1, 12, size=40)), rng.integers(0, 13, size=300)]
    for groups in cases:
        for seed in (0, 1, 2):
            for k in (2, 5, 10):
                folds = pipeline.grouped_folds(groups, k, seed)
                assert one_fold_per_group(groups, folds)
                assert set(folds) == set(range(k))   # every fold has structures
                assert np.array_equal(folds, pipeline.grouped_folds(groups, k, seed))   # seeded
    # groups of one: the greedy rule balances the folds to one structure
    assert np.ptp(np.bincount(pipeline.grouped_folds(np.arange(23), 5, 0))) <= 1


def old_folds(n, seed, k):
    """The folds of every fit before cv_groups existed (pipeline._fold_blocks as it was)."""
    folds = np.empty(n, dtype=int)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return folds


def test_default_is_unchanged_bit_for_bit(tmp_path, frames, labels):
    a = dcace.fit(str(MO_TRAIN), state=tmp_path / "a.npz", **KW)
    b = dcace.fit(str(MO_TRAIN), cv_groups=None, state=tmp_path / "b.npz", **KW)
    a.save(tmp_path / "a.dcace")
    b.save(tmp_path / "b.dcace")
    assert (tmp_path / "a.dcace").read_bytes() == (tmp_path / "b.dcace").read_bytes()
    fa, fb = (load_state(tmp_path / f"{x}.npz").arrays["folds"] for x in "ab")
    assert np.array_equal(fa, fb) and np.array_equal(fa, old_folds(len(frames), 0, 5))
    assert "cv_groups" not in a.metadata["fit"] and not any("cv_groups" in x for x in a.metadata["notes"])
    assert not one_fold_per_group(labels, fa)   # (random folds split the MD runs: what the option is for)


def test_grouped_fit_end_to_end_and_refit(tmp_path, frames, labels):
    pot = dcace.fit(str(MO_TRAIN), cv_groups="trajectory", state=tmp_path / "g.npz", **KW)
    assert pot.metadata["fit"]["cv_groups"] == "trajectory"
    note = [x for x in pot.metadata["notes"] if "cv_groups" in x]
    assert note and "67 groups of 1-108 structures" in note[0], note
    folds = load_state(tmp_path / "g.npz").arrays["folds"]
    assert one_fold_per_group(labels, folds) and np.array_equal(folds, pipeline.grouped_folds(labels, 5, 0))
    pot.save(tmp_path / "g.dcace")
    assert dcace.load(tmp_path / "g.dcace").metadata["fit"]["cv_groups"] == "trajectory"
    # a refit: the state's folds and option stay (new structures get the state's per-structure folds)
    p0 = dcace.fit(frames[:150], cv_groups="trajectory", state=tmp_path / "g150.npz", **KW)
    f0 = load_state(tmp_path / "g150.npz").arrays["folds"]
    r = refit(frames[150:], tmp_path / "g150.npz", state=tmp_path / "g194.npz", progress=False, threads=1,
              compare=False)
    f1 = load_state(tmp_path / "g194.npz").arrays["folds"]
    assert np.array_equal(f1[:150], f0) and len(f1) == 194
    assert r.metadata["fit"]["cv_groups"] == p0.metadata["fit"]["cv_groups"] == "trajectory"
    assert "cv_groups" in settings.refit_settings() and "cv_groups" in settings.resume_refused_options()


def test_cli_option(tmp_path, labels):
    out = tmp_path / "cli.dcace"
    assert main(["fit", "--train", str(MO_TRAIN), "--elements", "Mo", "--cutoff", "5.2", "--body-order", "2",
                 "--max-degree", "6", "--experts", "1", "--cv-groups", "trajectory", "--quiet", "--threads", "1",
                 "-o", str(out)]) == 0
    assert dcace.load(out).metadata["fit"]["cv_groups"] == "trajectory"


def test_key_form_files_and_atoms(tmp_path, frames):
    sub = read(MO_TRAIN, "::4")   # 49 frames (with their labels, which Atoms.copy drops), runs of 5
    for i, a in enumerate(sub):
        a.info["run"] = f"r{i // 5}"
    groups = np.array([i // 5 for i in range(len(sub))])
    path = tmp_path / "runs.xyz"
    write(path, sub, format="extxyz")
    for train in (sub, str(path)):
        ds = read_data(train, elements=["Mo"])
        lab = pipeline.cv_group_labels(ds.frames, "run", train)
        assert np.array_equal(lab, groups)
    pot = dcace.fit(sub, cv_groups="run", state=tmp_path / "run.npz", **KW)
    assert pot.metadata["fit"]["cv_groups"] == "run"
    assert one_fold_per_group(groups, load_state(tmp_path / "run.npz").arrays["folds"])
    # equal values anywhere in the data are one group (not only consecutive frames)
    for i, a in enumerate(sub):
        a.info["run"] = i % 7
    lab = pipeline.cv_group_labels(read_data(sub, elements=["Mo"]).frames, "run", sub)
    assert np.array_equal(lab, np.arange(len(sub)) % 7)


def test_bad_input(tmp_path, frames):
    for bad in (3, "", "  ", ["trajectory"]):
        with pytest.raises(ValueError, match=r"cv_groups \(--cv-groups\) must be 'trajectory' or the name of an "
                                             r"atoms.info key"):
            dcace.fit("no-such-file.xyz", cv_groups=bad, **KW)   # checked before any data is read
    with pytest.raises(ValueError, match=r"cv_groups='trajectory' \(--cv-groups\) is not available in an MPI fit"):
        _check_cv_groups("trajectory", SimpleNamespace(size=2))
    # a frame without the key: the file, the frame and the key
    sub = read(MO_TRAIN, ":12")
    for i, a in enumerate(sub):
        if i != 7:
            a.info["run"] = i // 3
    path = tmp_path / "missing.xyz"
    write(path, sub, format="extxyz")
    with pytest.raises(DataError, match=rf"{path}, frame 7: no atoms.info\['run'\], the key of cv_groups='run'"):
        dcace.fit(str(path), cv_groups="run", **KW)
    # fewer groups than folds: names the option
    for a in sub:
        a.info["run"] = "same" if a.info.get("run", 0) < 2 else "other"
    with pytest.raises(ValueError, match=r"cv_groups \(--cv-groups\): the training structures form 2 group\(s\), "
                                         r"fewer than the 5 cross-validation folds \(--cv-folds\)"):
        dcace.fit(sub, cv_groups="run", **KW)
    with pytest.raises(ValueError, match=r"cv_groups \(--cv-groups\): the training structures form 1 group"):
        pipeline.grouped_folds(np.zeros(10, dtype=int), 2, 0)
    # a Dataset keeps no atoms.info: the key form needs files or Atoms
    with pytest.raises(ValueError, match=r"cv_groups='run' \(--cv-groups\) needs the training data as files or "
                                         r"ase.Atoms"):
        dcace.fit(read_data(sub, elements=["Mo"]), cv_groups="run", **KW)
    # typed with --resume: refused (the state's folds stay)
    assert "cv_groups" in settings.resume_refused_options()
