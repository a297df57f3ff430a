"""Rank 0's per-structure rows (dcace.rowstore) and the structure gate's clustering sample (issue 13).

The descriptor sums and stress rows that rank 0 keeps for the selection go to a scratch file above
rows_budget_gb; every reader takes them a chunk at a time, structure by structure, so a fit with its rows
in a file writes the same bytes as one that holds them.  Over cluster_sample structures the standardiser,
PCA and k-means see a seeded sample and the others join the nearest centroid.  Fits: ~40 s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.io import read

import dcace
from dcace import pipeline, rowstore
from dcace.clustering import Standardiser, cluster
from dcace.rowstore import CHUNK, Rows, StressRows

MO_TRAIN = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
TIAL = Path(__file__).resolve().parents[1] / "examples" / "data" / "tial"
FIT_KW = dict(cutoff=5.2, body_order=3, max_degree=6, experts=2, temperatures=(0.5,), cv_folds=3, threads=1,
              anchors=0, progress=False)


@pytest.mark.parametrize("spill", [False, True])
def test_rows_give_back_what_was_put(spill):
    rng = np.random.default_rng(3)
    n, D = 2 * CHUNK + 37, 11
    want = rng.normal(size=(n, D))
    rows = Rows(n, (D,), spill)
    order = rng.permutation(n)
    rows[order[:100]] = want[order[:100]]    # several at a time, in any order ...
    for i in order[100:]:
        rows[int(i)] = want[i]               # ... and one at a time
    assert rows.spilled == spill and (rows.memory_nbytes == 0) == spill and rows.file_nbytes == (8 * n * D) * spill
    idx = rng.choice(n, size=n - 5, replace=False)
    got = np.empty((len(idx), D))
    pieces = list(rows.chunks(idx))
    assert all(len(B) <= CHUNK for _, B in pieces) and len(pieces) == -(-len(idx) // CHUNK)
    for part, B in pieces:
        got[part] = B
    assert np.array_equal(got, want[idx])
    assert np.array_equal(rows.take(idx[:3]), want[idx[:3]]) and np.array_equal(rows.array(), want)
    rows.close()


@pytest.mark.parametrize("spill", [False, True])
def test_stress_rows_keep_their_order_and_refuse_what_does_not_fit(spill):
    rng = np.random.default_rng(4)
    D = 7
    store = StressRows(D, 3, spill)
    items = {5: (rng.normal(size=(6, D)), rng.normal(size=6), 0.5), 1: (rng.normal(size=(6, D)), rng.normal(size=6), 2.0)}
    store.update(items)
    store[9] = (rng.normal(size=(6, D)), rng.normal(size=6), 3.0)
    assert store.order() == [5, 1, 9] and store.indices() == [1, 5, 9] and 1 in store and 2 not in store
    for i, (Psi, sig, scale) in store.items():
        if i in items:
            assert np.array_equal(Psi, items[i][0]) and np.array_equal(sig, items[i][1]) and scale == items[i][2]
    (part, Psi), = store.chunks([1, 5])
    assert np.array_equal(Psi[1], items[5][0]) and np.array_equal(store.sigma([5, 1])[1], items[1][1])
    assert np.array_equal(store.scale([1, 5]), [2.0, 0.5])
    with pytest.raises(ValueError, match="structure 9 given twice"):
        store[9] = items[1]
    with pytest.raises(ValueError, match="more structures with a stress than the 3 counted before pass 2"):
        store[11] = items[1]


@pytest.mark.parametrize("data", ["Mo", "TiAl"])
def test_rows_in_a_scratch_file_write_the_same_potential(data, monkeypatch):
    """rows_budget_gb=0 (every row in a scratch file, read back 16 structures at a time here, so that a
    fold spans many chunks) and the default (held in memory) give the same file bytes and the same CV
    table: a two-expert committee with its stress errors, the paper's eq. 8 comparison and eq. 9."""
    if data == "Mo":
        train, kw = read(MO_TRAIN, ":"), dict(elements=["Mo"])
    else:
        train = read(TIAL / "TiAl_tutorial.xyz", ":")
        kw = dict(elements=["Ti", "Al"], forces_key="force", virial_key="virial")
    monkeypatch.setattr(rowstore, "CHUNK", 16)
    held = dcace.fit(train, compare=True, **kw, **FIT_KW)
    filed = dcace.fit(train, compare=True, rows_budget_gb=0, **kw, **FIT_KW)
    assert held.report.cost["scratch_bytes"] == 0 and filed.report.cost["scratch_bytes"] > 0
    assert filed.report.cost["stress_bytes"] == 0 < held.report.cost["stress_bytes"]
    assert filed.to_string() == held.to_string()
    assert filed.report.cv_table == held.report.cv_table
    assert filed.report.selection["eq9"] == held.report.selection["eq9"]


def test_cluster_sample_fits_the_clustering_on_a_sample_and_joins_the_rest(tmp_path):
    """cluster_sample < n: k-means (and the standardiser and PCA) on the seeded sample gives the sample's
    labels, every other structure has the label of its nearest centroid (in units of the spread), and the
    cluster sizes count every structure."""
    train = read(MO_TRAIN, ":120")
    n, most, seed = len(train), 40, 7
    pot = dcace.fit(train, elements=["Mo"], cluster_sample=most, seed=seed, state=tmp_path / "fit.npz", **FIT_KW)
    A = np.load(tmp_path / "fit.npz")
    labels = A["cluster2_labels"]
    assert sum(pot.report.selection["cluster_sizes"]) == n and len(labels) == n
    assert pot.report.selection["cluster_sample"] == most
    sample = pipeline._cluster_sample(n, most, seed)
    assert len(sample) == most and np.array_equal(sample, np.unique(sample))
    P = A["Bsum"] / A["counts"].sum(axis=1)[:, None]
    st = Standardiser(A["std_mean"], A["std_scale"])
    assert np.allclose(st.mean, P[sample].mean(axis=0), rtol=0, atol=1e-14)   # fitted on the sample, not on all
    assert not np.allclose(st.mean, P.mean(axis=0), rtol=0, atol=1e-6)
    again = cluster(P[sample], 2, seed=seed, standardiser=st, projection=A["projection"])
    assert np.array_equal(labels[sample], again.labels)
    rest = np.setdiff1d(np.arange(n), sample)
    assert np.array_equal(labels[rest], again.nearest(P[rest]))
    assert len(set(labels[rest].tolist())) == 2   # (the rest is not all one cluster: the check binds)
    with pytest.raises(ValueError, match=r"cluster_sample \(--cluster-sample\) must be an integer >= 2, got 1"):
        dcace.fit(train[:6], elements=["Mo"], cluster_sample=1, **FIT_KW)
    with pytest.raises(ValueError, match=r"rows_budget_gb \(--rows-budget\) must be a finite number >= 0"):
        dcace.fit(train[:6], elements=["Mo"], rows_budget_gb=float("nan"), **FIT_KW)


def test_grade_sample_fits_the_memory_budget():
    """The grade's MaxVol takes at most max_atoms atoms per species, or fewer so that its GRADE_COPIES
    copies fit the memory budget (never fewer than 2 K): bounded whatever the number of structures.  A fit
    whose budget binds says so, subsamples to that many and counts the same bytes in its cost."""
    from dcace import cost
    from dcace.grade import GRADE_DEFAULTS

    assert cost.grade_atoms_cap(211, 1.2 * 2**30, 50_000) == 50_000           # the Zuo default basis: as before
    assert cost.grade_atoms_cap(2345, 1.2 * 2**30, 50_000) == int(1.2 * 2**30 // (8 * 9 * 2345))   # TiAl, degree 14
    assert cost.grade_atoms_cap(2345, 2**20, 50_000) == 2 * 2345
    train = read(MO_TRAIN, ":")
    budget = 2**20   # bytes: 1 MiB
    cap = cost.grade_atoms_cap(17, budget, GRADE_DEFAULTS["max_atoms"])
    n_atoms = sum(len(a) for a in train)
    assert 2 * 17 < cap < n_atoms
    pot = dcace.fit(train, elements=["Mo"], memory_budget_gb=budget / 2**30, **dict(FIT_KW, experts=1))
    assert pot.basis.n_features == 17
    assert f"grade Mo: MaxVol on a seeded subsample of {cap} of {n_atoms} atoms" in pot.report.notes
    assert pot.report.cost["grade_bytes"] == 8 * 9 * cap * 17


def test_a_scratch_file_without_room_is_refused_before_pass_1(monkeypatch):
    """No room for the scratch file: the fit stops before pass 1 naming the size, the directory and what to
    change; a write that fails later (a disk filling up meanwhile) names the same."""
    import collections
    import os
    import tempfile

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(rowstore.shutil, "disk_usage", lambda where: usage(10**6, 10**6 - 1000, 1000))
    seen = []
    monkeypatch.setattr(pipeline, "_descriptor_pass", lambda *a, **k: seen.append(1))
    with pytest.raises(OSError, match=r"scratch file of rank 0's per-structure rows needs [0-9.]+ MiB in "
                                      + f"{tempfile.gettempdir()}, which has 0.0 MiB free: set TMPDIR"):
        dcace.fit(read(MO_TRAIN, ":20"), elements=["Mo"], rows_budget_gb=0, **FIT_KW)
    assert not seen   # (before pass 1)

    def full(fd, data, offset):
        raise OSError(28, "No space left on device")

    rows, real = Rows(4, (3,), spill=True), os.pwrite
    monkeypatch.setattr(rowstore.os, "pwrite", full)
    with pytest.raises(OSError, match=r"per-structure rows \(0.0 MiB in .*\): \[Errno 28\] No space left on device; "
                                      r"set TMPDIR .* --rows-budget"):
        rows[2] = np.ones(3)
    monkeypatch.setattr(rowstore.os, "pwrite", real)
    rows[2] = np.ones(3)
    assert np.array_equal(rows.take([2, 0]), [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
