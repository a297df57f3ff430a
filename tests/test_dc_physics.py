"""Physics of fitted divide-and-conquer potentials (jointly fitted committee, M = 3):

- forces and stress equal -dE/dr and (1/V) dE/d(strain) by central finite differences (1e-6
  relative) near a cluster centroid, in the switching layer between two clusters, and far from all
  clusters;
- along a volume path of bulk Mo (-8 % .. +8 %) that the gate hands from one expert to another,
  the energy is smooth, forces and stress match finite differences at every point, and the
  gate-gradient part of the forces stays below the model's own force error.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

import dcace

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"
RTOL = 1e-6


@lru_cache(maxsize=None)
def dc_potential():
    frames = read(DATA / "Mo_train.xyz", "::2")
    pot = dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=3, max_degree=8, experts=3,
                    temperatures=(0.5,), cv_folds=3, progress=False)
    assert pot.n_experts == 3
    return pot


def rattled_bulk(a=3.16, seed=0, amp=0.05, rep=3):
    at = bulk("Mo", "bcc", a=a, cubic=True).repeat((rep, rep, rep))
    at.positions += amp * np.random.default_rng(seed).normal(size=at.positions.shape)
    return at


def energy(pot, atoms):
    return pot.compute(atoms)["energy"]


# fourth-order central differences: f'(0) = [8 (f(h) - f(-h)) - (f(2h) - f(-2h))] / (12 h)
_STENCIL = ((1, 8.0), (-1, -8.0), (2, -1.0), (-2, 1.0))


def fd_forces(pot, atoms, h=1e-4, components=None):
    comps = range(3 * len(atoms)) if components is None else components
    out = {}
    for c in comps:
        k, a = divmod(int(c), 3)
        d = 0.0
        for step, weight in _STENCIL:
            at = atoms.copy()
            at.positions[k, a] += step * h
            d += weight * energy(pot, at)
        out[c] = -d / (12 * h)
    return out


def fd_stress(pot, atoms, h=1e-5):
    V = atoms.get_volume()
    s = np.zeros(6)
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for q, (i, j) in enumerate(pairs):
        d = 0.0
        for step, weight in _STENCIL:
            eps = np.zeros((3, 3))
            eps[i, j] += step * h
            if i != j:
                eps[j, i] += step * h
            at = atoms.copy()
            at.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            d += weight * energy(pot, at)
        s[q] = d / (12 * h) / V / (1 if i == j else 2)
    return s


def gate_force_part(pot, atoms):
    """Forces from the gate's gradient alone: Phi (c_eff - sum_m w_m c_m)."""
    r = pot.basis.fitting_rows(atoms)
    comb = pot.core.combine(r.energy.reshape(pot.core.n_species, -1), r.counts)
    c_gate = (comb["c_eff"] - comb["c_energy"]).ravel()
    return (r.forces @ c_gate).reshape(-1, 3), comb["weights"]


def check_derivatives(pot, atoms, n_components=None, seed=0):
    out = pot.compute(atoms)
    F = out["forces"]
    comps = None
    if n_components is not None:
        comps = np.random.default_rng(seed).choice(3 * len(atoms), n_components, replace=False)
    fd = fd_forces(pot, atoms, components=comps)
    scale = np.abs(F).max()
    err_f = max(abs(F.ravel()[c] - v) for c, v in fd.items()) / scale
    err_s = None
    if atoms.pbc.all():
        S = out["stress"]
        err_s = np.abs(fd_stress(pot, atoms) - S).max() / np.abs(S).max()
    return err_f, err_s, out


def test_fd_near_a_centroid():
    pot = dc_potential()
    frames = read(DATA / "Mo_train.xyz", "20:60:4")
    best = min(frames, key=lambda a: pot.compute(a)["nearest"])
    err_f, err_s, out = check_derivatives(pot, best, n_components=60)
    assert out["nearest"] < 1.0 and out["weights"].max() > 0.9
    assert err_f < RTOL and err_s < RTOL


def _switch_point(pot):
    """Volume scale of bulk Mo where the two largest gate weights are equal (bisection)."""
    base = rattled_bulk()
    cell = base.cell.array.copy()

    def at(s):
        a = base.copy()
        a.set_cell(cell * s, scale_atoms=True)
        return a

    def top(s):
        w = pot.compute(at(s))["weights"]
        return int(np.argmax(w)), w

    lo, hi = (1 - 0.08) ** (1 / 3), (1 + 0.08) ** (1 / 3)
    m_lo, m_hi = top(lo)[0], top(hi)[0]
    assert m_lo != m_hi, "the volume path should cross the gate's switching layer"
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if top(mid)[0] == m_lo:
            lo = mid
        else:
            hi = mid
    return at(0.5 * (lo + hi)), (m_lo, m_hi)


def test_fd_between_clusters():
    pot = dc_potential()
    atoms, (ma, mb) = _switch_point(pot)
    err_f, err_s, out = check_derivatives(pot, atoms)
    w = out["weights"]
    assert abs(w[ma] - w[mb]) < 0.05 and w[ma] + w[mb] > 0.9
    Fg, _ = gate_force_part(pot, atoms)
    assert np.abs(Fg).max() > 1e-4          # the gate-gradient term is really exercised here
    assert err_f < RTOL and err_s < RTOL


def test_fd_far_from_all_clusters():
    pot = dc_potential()
    squeezed = rattled_bulk(a=2.75, seed=3, rep=2)           # -34 % volume, outside the data
    err_f, err_s, out = check_derivatives(pot, squeezed)
    assert out["nearest"] > 3.0
    assert err_f < RTOL and err_s < RTOL
    # a non-periodic cluster: forces only
    cl = rattled_bulk(rep=2, seed=4)[:11]
    cl.pbc = False
    cl.cell = np.zeros((3, 3))
    err_f, err_s, out = check_derivatives(pot, cl)
    assert err_s is None and out["stress"] is None and err_f < RTOL


def test_smooth_switching_along_volume_path(tmp_path):
    pot = dc_potential()
    base = rattled_bulk(seed=1)
    cell = base.cell.array.copy()
    N = len(base)
    vols = np.linspace(-0.08, 0.08, 33)
    E, W, fmax, fgate_rms, fgate_max, err_p, err_f = [], [], [], [], [], [], []
    for dv in vols:
        s = (1 + dv) ** (1 / 3)
        at = base.copy()
        at.set_cell(cell * s, scale_atoms=True)
        out = pot.compute(at)
        E.append(out["energy"] / N)
        W.append(out["weights"])
        fmax.append(np.linalg.norm(out["forces"], axis=1).max())
        Fg, _ = gate_force_part(pot, at)
        fgate_rms.append(np.sqrt((Fg ** 2).mean()))
        fgate_max.append(np.linalg.norm(Fg, axis=1).max())
        # pressure = -dE/dV by central differences along the path
        h = 1e-5
        d = 0.0
        for step, weight in _STENCIL:
            a2 = base.copy()
            a2.set_cell(cell * s * (1 + step * h) ** (1 / 3), scale_atoms=True)
            d += weight * pot.compute(a2)["energy"]
        V = at.get_volume()
        p_fd = -d / (12 * h * V)
        p = -out["stress"][:3].mean()
        err_p.append(abs(p - p_fd) / max(abs(p), 1e-3))
        fd = fd_forces(pot, at, components=[0, 7, 50, 101, 161])
        err_f.append(max(abs(out["forces"].ravel()[c] - v) for c, v in fd.items()) / np.abs(out["forces"]).max())
    E, W = np.array(E), np.array(W)
    # the gate really hands the structure from one expert to another along the path
    assert np.argmax(W[0]) != np.argmax(W[-1])
    # derivatives exact at every point
    assert max(err_f) < RTOL
    assert max(err_p) < RTOL
    # smooth energy: no jump larger than the smooth trend predicts (second differences bounded)
    d2 = np.abs(np.diff(E, 2))
    d1 = np.abs(np.diff(E))
    assert d2.max() < 0.2 * d1.max()
    # gate-gradient forces below the model's own force error (CV RMSE of the fit)
    f_err = pot.report.errors["dc"]["cv"]["force_rmse_ev_per_a"]
    assert max(fgate_rms) < f_err
    from dcace.plots import plot_path

    plot_path(vols * 100, E, fmax, fgate_max, W, tmp_path / "path.png", xlabel="volume strain (%)")
    assert (tmp_path / "path.png").stat().st_size > 1000
