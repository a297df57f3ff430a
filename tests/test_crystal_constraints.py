"""The crystal constraints (dcace.crystal_constraints): the linear model re-solved with P > 0 on the
compressed crystals it fails, by an exact constrained ridge solve (ridge.ridge_solve_constrained).

Physics: the QUICK TiAl linear model (body order 3, degree 8; no Al-rich cell in the data) has fcc Al
falling under compression below the density core's window; constrained, it rises with P > 0 from its
own a0 to 0.4 a0 and its training errors barely move. The solver: the KKT minimum of a random ridge
problem under inequality constraints, checked against scipy's SLSQP, and the unconstrained solution
to the bit where no constraint binds."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

import dcace
from dcace.crystal_probe import crystal_verdict
from dcace.ridge import ridge_solve, ridge_solve_constrained

from test_short_range import DATA, DEFAULT_SETS


def _problem(seed, n=12, m=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    H, h = X.T @ X, X.T @ rng.normal(size=m)
    sc = 1.0 / np.sqrt(np.diag(H))
    pen = np.full(n, 1e-3)
    return rng, H, h, sc, pen


def _objective(theta, H, h, sc, pen):
    x = theta / sc
    return theta @ H @ theta - 2 * h @ theta + np.sum(pen * x * x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_ridge_is_the_kkt_minimum(seed):
    rng, H, h, sc, pen = _problem(seed)
    free = ridge_solve(H.copy(), h, sc, pen)
    G = rng.normal(size=(6, len(h)))
    g = G @ free + np.array([0.5, 0.2, -0.3, 0.1, -1.0, 0.05])   # four of six violated by the free solution
    theta, n_active = ridge_solve_constrained(H, h, sc, pen, G, g)
    assert (G @ theta >= g - 1e-9).all()
    ref = minimize(lambda t: _objective(t, H, h, sc, pen), free, jac=lambda t: 2 * (H @ t - h) + 2 * pen * t / sc ** 2,
                   constraints=[{"type": "ineq", "fun": lambda t: G @ t - g, "jac": lambda t: G}], method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    assert ref.success
    assert _objective(theta, H, h, sc, pen) <= ref.fun + 1e-9 * abs(ref.fun)
    assert np.abs(theta - ref.x).max() < 1e-5 * np.abs(ref.x).max()
    assert 1 <= n_active <= 4 and n_active == int(np.sum(np.abs(G @ theta - g) < 1e-8))


def test_constrained_ridge_without_binding_constraints_is_the_ridge_solution():
    rng, H, h, sc, pen = _problem(3)
    free = ridge_solve(H.copy(), h, sc, pen)
    G = rng.normal(size=(5, len(h)))
    theta, n_active = ridge_solve_constrained(H, h, sc, pen, G, G @ free - 1.0, )
    assert n_active == 0 and np.array_equal(theta, free)
    # a repeated constraint (as two rounds of dcace.crystal_constraints can place) is no trouble
    G2 = np.vstack([G[:1], G[:1], G[1:]])
    g2 = G2 @ free + np.r_[0.3, 0.3, np.full(4, -1.0)]
    theta2, _ = ridge_solve_constrained(H, h, sc, pen, G2, g2)
    assert np.isfinite(theta2).all() and (G2 @ theta2 >= g2 - 1e-9).all()
    assert G2[0] @ theta2 == pytest.approx(g2[0], abs=1e-9)


TIAL = dict(elements=["Ti", "Al"], cutoff=5.5, body_order=3, max_degree=8, experts=1, forces_key="force",
            virial_key="virial", compare=False, progress=False)


@pytest.fixture(scope="module")
def tial_pair():
    path = str(DATA / "tial" / "TiAl_tutorial.xyz")
    return dcace.fit(path, **TIAL, crystal_constraints=False), dcace.fit(path, **TIAL)


def _fcc_al():
    """fcc Al at the volume per atom of L1_0 TiAl, as issue 10's probe (test_short_range.off_data_problems)."""
    from dcace.crystal_probe import phase_crystals

    ground = DEFAULT_SETS["TiAl"][2]()
    return dict(phase_crystals(["Ti", "Al"], ground.get_volume() / len(ground)))["fcc Al"]


def test_tial_linear_fcc_al_is_held_up(tial_pair):
    free, held = tial_pair
    fcc = _fcc_al()
    before = crystal_verdict(free, fcc)
    assert before["failure"] and before["p_min_gpa"] < -5   # the defect: fcc Al falls (measured -18.5 GPa)
    after = crystal_verdict(held, fcc)
    assert after["failure"] is None and after["p_min_gpa"] > 0
    rec = held.report.selection["crystal_constraints"]
    assert "fcc Al" in rec["failing"] and rec["after"] == {} and rec["active"] >= 1
    assert any(n.startswith("crystal constraints: fcc Al failed") and n.endswith("all pass") for n in held.report.notes)
    assert "crystal_constraints" not in free.report.selection
    assert free.metadata["fit"]["crystal_constraints"] is False and free.report.settings["crystal_constraints"] is False
    assert "crystal_constraints" not in held.metadata["fit"]   # the default: the key absent (older files keep their bytes)


def test_tial_constraints_cost_little_on_the_data(tial_pair):
    """Training errors of the constrained linear model within 5 % of the free one's (measured: energy
    1.3129 vs 1.3103 meV/atom, forces 0.28163 vs 0.28141 eV/A)."""
    free, held = tial_pair
    e_free, e_held = (p.report.errors["linear"]["train"] for p in (free, held))
    assert e_held["energy_mae_mev_per_atom"] < 1.05 * e_free["energy_mae_mev_per_atom"]
    assert e_held["force_mae_ev_per_a"] < 1.05 * e_free["force_mae_ev_per_a"]
    assert e_held["energy_mae_mev_per_atom"] != e_free["energy_mae_mev_per_atom"]   # it did act


def test_constrained_fit_writes_the_same_bytes_twice(tial_pair):
    """The constraints' record goes into the file: a second fit of the same data and settings writes the same
    bytes (stop 29's CI failed on a wall time in that record)."""
    _, held = tial_pair
    again = dcace.fit(str(DATA / "tial" / "TiAl_tutorial.xyz"), **TIAL)
    assert "crystal_constraints" in again.report.selection
    assert again.to_string() == held.to_string()
