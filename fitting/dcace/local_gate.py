"""The local gates in fitting (atom and neighbourhood gate): cluster per-atom descriptors, accumulate
the committee's rows under each candidate gate, choose the temperature and ridge by k-fold CV.
The neighbourhood gate clusters the neighbourhood averages p_i instead of B_i
(``dcace.neighbourhood_gate``); everything else below is shared.

Gate (the C++ ``Potential`` evaluates it, cpp/src/local_gate.cpp): per species s, the atom's own
descriptor B_i is standardised, projected on its leading d principal axes and gated by a softmax over
the M k-means clusters of that species' training atoms (``dcace.clustering``: the structure gate's
helpers, applied to atoms instead of structures).  With the gate fixed, the energy
    E = sum_i sum_m w_im (c_{m,s_i} . B_i + e0_{m,s_i})
is linear in every expert's coefficients theta_m = [c_m, e0_m], and so are forces and stress; their
rows (the gate gradient dw_im/dr B_i included) come from the core (``local_fitting_rows``).  Each
candidate temperature tau has one ``LocalAccumulator``: normal equations per fold, as the structure
gate's ``committee.JointAccumulator``, solved with the same ridge (``dcace.ridge``) toward the global
linear model, and scored by the same held-out weighted loss as ``dcace.selection``.

Atoms are subsampled deterministically (seeded) to at most ``MAX_CLUSTER_ATOMS`` per species for the
clustering.  A species with fewer training atoms than experts is an error naming it.
"""
from __future__ import annotations

import numpy as np

from .clustering import cluster, fit_standardiser, gate_dict, pca_projection
from .ridge import penalty_vector, quadratic_sse, ridge_solve

__all__ = ["GATES", "LOCAL_GATES", "check_gate_option", "cluster_atoms", "atom_gate", "LocalAccumulator",
           "LocalGateRows"]

GATES = ("structure", "atom", "neighbourhood", "auto")   # fit(gate=...), dcace fit --gate (auto: CV picks)
LOCAL_GATES = ("atom", "neighbourhood")
PLANNED = ()                                             # named by issue 11, not implemented yet
MAX_CLUSTER_ATOMS = 20000


def check_gate_option(gate) -> str:
    """The gate kind, or a ValueError naming the known ones."""
    if gate in GATES:
        return gate
    if gate in PLANNED:
        raise ValueError(f"gate={gate!r} is not implemented yet; known gates: {', '.join(GATES)}")
    raise ValueError(f"unknown gate {gate!r}; known gates: {', '.join(GATES)}")


def per_species_descriptors(basis, frames):
    """B_i of every training atom, grouped by species: a list of S arrays (n_s, K)."""
    out = [[] for _ in range(basis.n_species)]
    for fr in frames:
        B = basis.descriptors(fr.atoms)
        sp = basis.species_of(fr.atoms)
        for s in range(basis.n_species):
            out[s].append(B[sp == s])
    return [np.concatenate(b) if b else np.zeros((0, basis.n_features)) for b in out]


def cluster_atoms(B_species, M, elements, *, seed=0, variance=0.99, max_components=10, kind="atom", columns=None):
    """Per species: standardiser, PCA and seeded k-means of (a deterministic subsample of) its atoms.
    columns: a boolean mask of the K columns the PCA sees (the others get zeros in the projection),
    or None for all."""
    rng = np.random.default_rng(seed)
    out = []
    for el, B in zip(elements, B_species):
        if len(B) < M:
            raise ValueError(f"gate={kind!r} with {M} experts: element {el} has only {len(B)} training atoms, "
                             f"fewer than the number of experts (give fewer experts or more data)")
        if len(B) > MAX_CLUSTER_ATOMS:
            B = B[np.sort(rng.choice(len(B), MAX_CLUSTER_ATOMS, replace=False))]
        st = fit_standardiser(B)
        if columns is None:
            V = pca_projection(st(B), variance=variance, max_components=max_components)
        else:
            Vc = pca_projection(st(B)[:, columns], variance=variance, max_components=max_components)
            V = np.zeros((Vc.shape[0], B.shape[1]))
            V[:, columns] = Vc
        out.append(cluster(B, M, seed=seed, standardiser=st, projection=V))
    return out


def atom_gate(clusterings, tau, kind="atom", gate_range=None, body_order=0):
    """The gate dict of the C++ core for per-species clusterings at temperature tau (the neighbourhood
    gate also takes its range r_g and the body order of its PCA's columns, 0 = all)."""
    g = {"kind": kind, "temperature": float(tau), "species": [gate_dict(cl, tau) for cl in clusterings]}
    if kind == "neighbourhood":
        g.update(range=float(gate_range), body_order=int(body_order or 0))
    return g


class LocalAccumulator:
    """Normal equations (per fold) of the atom-gate committee under one fixed gate.

    H_f = sum_S w_S^2 (wF^2 Phi^T Phi + wS^2 Psi^T Psi + wE^2 u u^T) over the structures S of fold f,
    with u = energy row / N; h_f, yy_f alike.  Energy rows u and scaled stress rows are kept per
    structure for the CV table's energy and stress errors.
    """

    def __init__(self, n_folds, n_structures, n_cols, gate, M):
        self.gate, self.M = gate, M
        self.H = np.zeros((n_folds, n_cols, n_cols))
        self.h = np.zeros((n_folds, n_cols))
        self.yy = np.zeros(n_folds)
        self.U = np.zeros((n_structures, n_cols))
        self.stress = {}   # i -> (Psi (6, n_cols) and sigma (6,), both times V/N, and V/N)

    def add(self, i, fold, u, yE, Phi, f, Psi, sig, scale, w2, wE, wF, wS):
        H, h = self.H[fold], self.h[fold]
        H += (w2 * wF * wF) * (Phi.T @ Phi) + (w2 * wE * wE) * np.outer(u, u)
        h += (w2 * wF * wF) * (Phi.T @ f) + (w2 * wE * wE) * yE * u
        self.yy[fold] += w2 * (wF * wF * float(f @ f) + wE * wE * yE * yE)
        if Psi is not None:
            H += (w2 * wS * wS) * (Psi.T @ Psi)
            h += (w2 * wS * wS) * (Psi.T @ sig)
            self.yy[fold] += w2 * wS * wS * float(sig @ sig)
            self.stress[i] = (Psi, sig, scale)
        self.U[i] = u

    def solve(self, fold, lam, sc, D, S, fixed_one_body, frac, prior, restraint=None, col_factor=None,
              anchors=None, theta_lin=None):
        """restraint: the repulsion restraints' (H, h) for this committee (every expert), or None;
        col_factor: the ridge factor per coefficient column (dcace.block_ridge) or None; anchors: the
        off-data anchors (dcace.anchors.AnchorRows) pulling every expert towards theta_lin, the linear
        solution of the same fold, as for the structure gate's committees, or None."""
        H = self.H.sum(axis=0)
        h = self.h.sum(axis=0)
        if fold is not None:
            H = H - self.H[fold]
            h = h - self.h[fold]
        if restraint is not None:
            H, h = H + restraint[0], h + restraint[1]
        if anchors is not None:
            anchors.add_to(self.M, H, h, theta_lin)
        pen = penalty_vector(D, S, self.M, lam * frac, fixed_one_body=fixed_one_body, col_factor=col_factor)
        return ridge_solve(H, h, np.tile(sc, self.M), pen, prior)


def accumulate(core, basis, frames, accs, folds, yE, N, wts, wE, wF, wS, progress_fn=None):
    """Rows of every structure under the gate at every candidate temperature (one core call: B_i and
    dB_i/dr once) into that temperature's accumulator."""
    temps = list(accs)
    for i, fr in enumerate(frames):
        sp, first, j, rij = basis.neighbours(fr.atoms)
        f = fr.forces.ravel()
        E_rows, F_rows, V_rows = core.local_fitting_rows(sp, first, j, rij, temps)
        for t, (key, acc) in enumerate(accs.items()):
            e, Phi, vir = E_rows[t], F_rows[t], V_rows[t]
            Psi = sig = scale = None
            if fr.stress is not None and fr.atoms.pbc.all():
                vol = float(abs(fr.atoms.get_volume()))
                scale = vol / fr.n_atoms
                Psi = (-vir / vol) * scale
                sig = fr.stress * scale
            acc.add(i, int(folds[i]), e / N[i], yE[i], Phi, f, Psi, sig, scale, float(wts[i]) ** 2, wE, wF, wS)
        if progress_fn is not None:
            progress_fn(1)


def cv_row(acc, thetas, key, lam, folds, yE, N, wts, wE, wF, wS, fit):
    """A CV table row as ``selection.Selector._cv_row`` makes it (same loss, same fields)."""
    from .report import EV_A3_TO_GPA

    loss, de_all, de_w2, s_abs, s_sq_w, s_n = 0.0, [], 0.0, 0.0, 0.0, 0
    for f, th in enumerate(thetas):
        loss += quadratic_sse(th, acc.H[f], acc.h[f], acc.yy[f])
        idx = np.flatnonzero(folds == f)
        de = acc.U[idx] @ th - yE[idx]
        de_all.append(de)
        de_w2 += float((wts[idx] ** 2 * de ** 2).sum())
        for i in idx:
            st = acc.stress.get(int(i))
            if st is None:
                continue
            Psi, sig, scale = st
            ds = Psi @ th - sig                        # virial per atom, eV/atom
            s_abs += float(np.abs(ds).sum()) / scale   # stress, eV/A^3
            s_sq_w += wts[i] ** 2 * float(ds @ ds)
            s_n += 6
    de = np.concatenate(de_all)
    n_comp = 3 * float((wts ** 2 * N).sum())
    f_sse = loss - wE ** 2 * de_w2 - wS ** 2 * s_sq_w
    return {
        "M": acc.M, "tau": key, "fit": fit, "gate": acc.gate["kind"], "ridge": lam, "loss": float(loss),
        "n_structures": len(folds), "n_atoms": int(N.sum()),
        "energy_mae_mev_per_atom": 1000.0 * float(np.abs(de).mean()),
        "energy_rmse_mev_per_atom": 1000.0 * float(np.sqrt((de ** 2).mean())),
        "force_mae_ev_per_a": None,
        "force_rmse_ev_per_a": float(np.sqrt(max(f_sse, 0.0) / wF ** 2 / n_comp)) if wF > 0 else None,
        "stress_mae_gpa": EV_A3_TO_GPA * s_abs / s_n if s_n else None, "stress_rmse_gpa": None,
    }


class LocalGateRows:
    """A local-gate committee's clustering and normal equations (one per candidate temperature), built
    once; ``select`` chooses tau and the ridge by CV and solves, for the off-data anchors given, so
    --anchors auto tries each weight without a second pass over the data."""

    def __init__(self, *, basis, frames, M, temperatures, folds, k, p1, wts, wE, wF, wS, seed, pca_variance,
                 pca_max_components, progress_fn=None, kind="atom", gate_range=None, body_order=0):
        from .neighbourhood_gate import gate_columns, per_species_neighbourhood_descriptors
        from .potential import Potential

        S, K = basis.n_species, basis.n_features
        if kind == "neighbourhood":
            X, columns = per_species_neighbourhood_descriptors(basis, frames, gate_range), gate_columns(basis, body_order)
        else:
            X, columns = per_species_descriptors(basis, frames), None
        cls = cluster_atoms(X, M, basis.elements, seed=seed, variance=pca_variance,
                            max_components=pca_max_components, kind=kind, columns=columns)
        zero = (np.zeros((M, S, K)), np.zeros((M, S)))
        self.gates = {t: atom_gate(cls, t, kind, gate_range, body_order) for t in temperatures}
        core = Potential.from_parts(basis, *zero, self.gates[temperatures[0]], {}).core
        self.accs = {t: LocalAccumulator(k, len(frames), M * (S * K + S), self.gates[t], M) for t in temperatures}
        accumulate(core, basis, frames, self.accs, folds, p1.yE, p1.N, wts, wE, wF, wS, progress_fn)
        self.M, self.S, self.K, self.k, self.cls = M, S, K, k, cls
        self.folds, self.p1, self.wts, self.weights = folds, p1, wts, (wE, wF, wS)

    def select(self, *, sel, lam, ridge_factors, committee, anchors=None) -> dict:
        """tau and the ridge (lam x each factor) by the k-fold CV loss, then the final solve; the
        repulsion restraints on every expert and the linear model's one-body pins as the structure
        gate's committees (selection.Selector), and `anchors` (AnchorRows or None)."""
        M, S, K, k = self.M, self.S, self.K, self.k
        D, Dp = S * K, S * K + S
        wE, wF, wS = self.weights
        lin = [sel.linear_fold(lam, f) for f in range(k)]
        lin_total = sel.solve_linear_total(lam)
        rest = None if sel.restraint is None else sel.restraint.committee(M)
        pins = sel._committee_pins(lin_total)
        rows, best = [], None
        for t, acc in self.accs.items():
            for fac in ridge_factors:
                lam_t = lam * fac
                th = [acc.solve(f, lam_t, sel.sc, D, S, pins, sel.frac[f], np.tile(lin[f], M), rest,
                                sel.col_factor, anchors, lin[f])
                      for f in range(k)]
                row = cv_row(acc, th, t, lam_t, self.folds, self.p1.yE, self.p1.N, self.wts, wE, wF, wS, committee)
                rows.append(row)
                if best is None or row["loss"] < best[0]:
                    best = (row["loss"], t, lam_t)
        _, tau, lam_sel = best
        theta = self.accs[tau].solve(None, lam_sel, sel.sc, D, S, pins, 1.0, np.tile(lin_total, M), rest,
                                     sel.col_factor, anchors, lin_total).reshape(M, Dp)
        return {"theta": theta, "gate": self.gates[tau], "tau": tau, "ridge": lam_sel, "cv_rows": rows,
                "cv_loss": best[0], "cluster_sizes": [cl.sizes.tolist() for cl in self.cls],
                "pca_components": [int(cl.projection.shape[0]) for cl in self.cls]}
