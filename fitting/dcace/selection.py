"""Model selection from accumulated normal equations: ridge lambda, number of experts M, gate
temperature tau by k-fold cross-validation, and the paper's eq. 9.

Cross-validation: the training system of fold f is (total - fold f); the held-out weighted loss is
the quadratic form theta_f^T H_f theta_f - 2 theta_f^T h_f + yy_f of the fold's own statistics.
Energy and stress errors of held-out structures are also computed directly (from the stored descriptor
sums and the few stress rows, dcace.rowstore, read a chunk at a time), so the CV table reports energy MAE/RMSE, stress MAE and the
force RMSE (= the rest of the loss).  The criterion is the total held-out weighted loss.

Eq. 9 (paper): g(M) = max_S |err_global(S)| / max_S |err_DC,M(S)| over training structures
(per-atom energy errors of models fitted on all training data); M maximising g.  Evaluated for the
paper's method (independent experts, eq. 8 gate) and for this package's gate and committee.
"""
from __future__ import annotations

import math

import numpy as np

from .clustering import Eq8Gate, gate_weights
from .committee import committee_predict
from .report import EV_A3_TO_GPA
from .ridge import column_scale, penalty_vector, quadratic_sse, ridge_solve, ridge_solve_constrained

__all__ = ["Selector"]



class Selector:
    def __init__(self, *, groups, joint, p1, folds, k, D, S, wE, wF, wS, stress_store, clusterings, Z, Z_rows=None, weights=None, fixed_one_body=None,
                 regularise="global", kappa=0.0, restraint=None, shared_one_body=False, anchors=None):
        self.groups, self.joint, self.p1 = groups, joint, p1
        self.folds, self.k, self.D, self.S = folds, k, D, S
        self.Dp = D + S
        self.wE, self.wF, self.wS = wE, wF, wS
        self.stress_store = stress_store
        self.w = np.ones(len(p1.N)) if weights is None else np.asarray(weights, dtype=float)   # per structure
        self.fixed_one_body = fixed_one_body   # (S,) species whose e0 the user gave
        self.clusterings = clusterings
        self.Z = Z   # standardised mean descriptors of the structures Z_rows (the clustering's sample)
        self.Z_rows = np.arange(len(folds)) if Z_rows is None else np.asarray(Z_rows)
        self.regularise = regularise
        self.kappa = float(kappa)
        self.shared_one_body = bool(shared_one_body)   # see _shares_one_body
        self.restraint = restraint   # dcace.restraints.RestraintRows or None: added to every training system
        self.anchors = anchors       # dcace.anchors.AnchorRows or None: every expert agrees with the linear model there
        self.n = len(folds)
        self.group_index = {}
        col = 1
        if groups.H.shape[1] > 1:   # per-cluster groups present (independent experts)
            for M in sorted(clusterings):
                self.group_index[M] = list(range(col, col + M))
                col += M
        Htot = groups.H[:, 0].sum(axis=0)
        self.sc = column_scale(np.diag(Htot))
        self.frac = np.array([(folds != f).sum() / self.n for f in range(k)])
        self.fold_idx = [np.flatnonzero(folds == f) for f in range(k)]
        self._lin_cache = {}
        self._joint_sums = (None, None)   # (key, (S4 over all folds, h over all folds)) of the latest candidate
        self._totals = {}   # solves on all folds (eq. 9 and the final models ask for the same ones)
        self._group_sums = {}   # g -> (H, h) of group g over all folds
        self.col_factor, self._fkey = None, None   # ridge factor per coefficient column (dcace.block_ridge)

    def set_column_factors(self, col_factor):
        """The ridge of coefficient column j becomes lam * col_factor[j] in every solve from now on
        (None, or all ones: one ridge for all columns, the solves before block_ridge bit for bit)."""
        if col_factor is not None and np.all(np.asarray(col_factor) == 1.0):
            col_factor = None
        self.col_factor = None if col_factor is None else np.asarray(col_factor, dtype=float).copy()
        self._fkey = None if col_factor is None else self.col_factor.tobytes()

    def columns_with_data(self):
        """(D,) coefficient columns whose diagonal carries data (column_scale's test)."""
        diag = np.diag(self._group_total(0)[0])[:self.D]
        return diag > 1e-14 * max(float(diag.max()) if diag.size else 1.0, 1e-300)

    # ------------------------------------------------------------------ linear
    def _group_total(self, g):
        """(H, h) of group g summed over the folds (read-only: callers copy), kept for the latest groups
        asked for (one committee's experts and the linear model: their fold solves reuse them)."""
        if g not in self._group_sums:
            keep = 1 + max(self.clusterings, default=1)
            while len(self._group_sums) >= keep:
                self._group_sums.pop(next(k for k in self._group_sums if k != 0))
            self._group_sums[g] = (self.groups.H[:, g].sum(axis=0), self.groups.h[:, g].sum(axis=0))
        return self._group_sums[g]

    def _solve_group(self, g, lam, fold=None, prior=None, pin_one_body=None, anchor_theta=None, constraints=None):
        """Ridge solve of group g (all folds, or all but `fold`), with the restraints and, given
        anchor_theta (the linear solution of the same fold), the off-data anchors; given constraints
        (G, b): the minimum subject to G theta >= b, returned as (theta, number of active constraints)."""
        H, h = self._group_total(g)
        frac = 1.0
        if fold is not None:
            H = H - self.groups.H[fold, g]
            h = h - self.groups.h[fold, g]
            frac = self.frac[fold]
        else:
            H, h = H.copy(), h.copy()
        if self.restraint is not None:
            Hr, hr = self.restraint.group(g)
            H += Hr
            h = h + hr
        if self.anchors is not None and anchor_theta is not None:
            self.anchors.add_to(1, H, h, anchor_theta)
        pinned = self.fixed_one_body if pin_one_body is None else pin_one_body
        pen = penalty_vector(self.D, self.S, 1, lam * frac, fixed_one_body=pinned, col_factor=self.col_factor)
        if constraints is not None:
            return ridge_solve_constrained(H, h, self.sc, pen, *constraints, prior=prior)
        return ridge_solve(H, h, self.sc, pen, prior, overwrite_h=True)   # H: this call's own sum

    def linear_fold(self, lam, f):
        key = (lam, f, self._fkey)
        if key not in self._lin_cache:
            self._lin_cache[key] = self._solve_group(0, lam, fold=f)
        return self._lin_cache[key]

    def solve_linear_total(self, lam):
        return self._solve_group(0, lam)

    def solve_linear_total_constrained(self, lam, G, b):
        """(theta, n_active): the linear model on all data subject to G theta >= b (dcace.crystal_constraints)."""
        return self._solve_group(0, lam, constraints=(G, b))

    def choose_ridge(self, ridge, grid):
        """lambda by CV of the global linear model (or the given value); returns (lam, table)."""
        if ridge is not None:
            return float(ridge), [{"ridge": float(ridge), "loss": self._linear_cv_loss(float(ridge))}]
        table = [{"ridge": float(lam), "loss": self._linear_cv_loss(float(lam))} for lam in grid]
        best = min(table, key=lambda r: r["loss"])
        return best["ridge"], table

    def linear_cv_loss(self, lam):
        """Held-out weighted loss of the linear model at ridge lam (and the current column factors)."""
        return self._linear_cv_loss(lam)

    def _linear_cv_loss(self, lam):
        tot = 0.0
        for f in range(self.k):
            th = self.linear_fold(lam, f)
            tot += quadratic_sse(th, self.groups.H[f, 0], self.groups.h[f, 0], self.groups.yy[f, 0])
        return tot

    # ------------------------------------------------------------------ committees
    def _shares_one_body(self, theta_lin, independent=False):
        """shared_one_body (fit option) applies to joint committees and to experts that ridge toward the linear
        model; independent experts with regularise="zero" stay the paper's, each its own model
        (a refit then changes only the experts whose clusters receive structures)."""
        return self.shared_one_body and theta_lin is not None and not (independent and self.regularise == "zero")

    def _prior(self, M, theta_lin, independent=False):
        """Ridge target of an M-expert committee: the global linear solution ("global"), else zero;
        with a shared one-body term its one-body entries are the linear model's either way."""
        if theta_lin is None:
            return None
        if self.regularise == "global":
            return np.tile(theta_lin, M)
        if self._shares_one_body(theta_lin, independent):
            return np.tile(np.concatenate([np.zeros(self.D), theta_lin[self.D:]]), M)
        return None

    def _fold_sums(self, key):
        """(S4, h) of candidate key summed over all folds, kept for the latest candidate: every fold's
        training system is this minus the fold (the same arithmetic as JointAccumulator.training)."""
        if self._joint_sums[0] != key:
            acc = self.joint[key]
            self._joint_sums = (key, (acc.Sh.sum(axis=0), acc.h.sum(axis=0)))
        return self._joint_sums[1]

    def _joint_system(self, key, fold):
        """(H, h) of candidate key: all folds (fold None) or all but fold, freshly assembled."""
        acc = self.joint[key]
        S4, h = self._fold_sums(key)
        if fold is None:
            return acc._assemble(S4), h.copy()
        return acc._assemble(S4, minus=acc.Sh[fold]), h - acc.h[fold]

    def _joint_folds(self, M, tau, jobs):
        """solve_joint(M, tau, lam, fold, theta_lin) for every (lam, fold, theta_lin) in jobs (one
        candidate: its fold sums and restraint matrices are formed once for all of them)."""
        return [self.solve_joint(M, tau, *job) for job in jobs]

    def _committee_pins(self, theta_lin, independent=False):
        """(S,) one-body columns pinned to the prior in a committee."""
        if self._shares_one_body(theta_lin, independent):
            return np.ones(self.S, bool)
        return self.fixed_one_body

    def solve_joint(self, M, tau, lam, fold=None, theta_lin=None, kappa=None):
        acc = self.joint[(M, tau)]
        frac = 1.0
        H, h = self._joint_system((M, tau), fold)
        if fold is None:
            idx = np.arange(self.n)
        else:
            frac = self.frac[fold]
            idx = np.flatnonzero(self.folds != fold)
        if self.restraint is not None:   # the linear set on each expert's diagonal block, in place
            self.restraint.add_committee(H, h, M)
        if self.anchors is not None and theta_lin is not None:
            self.anchors.add_to(M, H, h, theta_lin)
        kappa = self.kappa if kappa is None else kappa
        if kappa > 0 and theta_lin is not None:
            self._add_agreement(H, h, acc, idx, theta_lin, kappa)
        pen = penalty_vector(self.D, self.S, M, lam * frac, fixed_one_body=self._committee_pins(theta_lin),
                             col_factor=self.col_factor)
        return ridge_solve(H, h, np.tile(self.sc, M), pen, self._prior(M, theta_lin),
                           overwrite_h=True).reshape(M, self.Dp)

    def _add_agreement(self, H, h, acc, idx, theta_lin, kappa):
        """Agreement penalty kappa wE^2 sum_S (1 - w_m(S)) ((E_m(S) - E_lin(S)) / N)^2 over the
        training structures: an expert follows the global linear model where the gate does not
        hand it the structure, so expert energies -- and with them the gate-gradient forces
        (1/N) sum_m (E_m - E) Phi dw_m/dp -- stay bounded between and outside clusters."""
        p1 = self.p1
        Dp, M = self.Dp, acc.M
        c = kappa * self.wE ** 2
        for part, B in p1.Bsum.chunks(idx, whole_in_memory=True):   # (a scratch file: chunks)
            ix = idx[part]
            U = np.concatenate([B, p1.counts[ix]], axis=1) / p1.N[ix, None]
            W, _ = acc.gate_fn(B / p1.N[ix, None])
            ulin = U @ theta_lin
            for m in range(M):
                pi = c * (1.0 - W[:, m]) * self.w[ix] ** 2
                G = (U * pi[:, None]).T @ U
                sl = slice(m * Dp, (m + 1) * Dp)
                H[sl, sl] += G
                h[sl] += (U * pi[:, None]).T @ ulin

    def _total(self, key, theta_lin, solve):
        """solve() on all folds, once per (key, prior): a copy of the cached solution."""
        key = key + (None if theta_lin is None else np.asarray(theta_lin).tobytes(), self._fkey)
        if key not in self._totals:
            self._totals[key] = solve()
        return self._totals[key].copy()

    def solve_joint_total(self, M, tau, lam, theta_lin=None):
        return self._total(("joint", M, tau, lam), theta_lin, lambda: self.solve_joint(M, tau, lam, None, theta_lin))

    def solve_independent(self, M, lam, fold=None, theta_lin=None):
        prior = self._prior(1, theta_lin, independent=True)
        pins = self._committee_pins(theta_lin, independent=True)
        # the anchors pull every expert towards the linear model: only for experts that ridge toward it
        # (regularise="global"); the paper's experts (regularise="zero") stay each its own model
        anchor = theta_lin if self.regularise == "global" else None
        return np.stack([self._solve_group(g, lam, fold=fold, prior=prior, pin_one_body=pins, anchor_theta=anchor)
                         for g in self.group_index[M]])

    def solve_independent_total(self, M, lam, theta_lin=None):
        return self._total(("independent", M, lam), theta_lin, lambda: self.solve_independent(M, lam, None, theta_lin))

    # ------------------------------------------------------------------ CV evaluation
    def _direct_errors(self, theta, wfn, idx):
        """Held-out energy and stress errors of a committee for structures idx (centred frame), from
        the descriptor sums and stress rows read dcace.rowstore.CHUNK structures at a time (dcace.rowstore: in
        memory or a scratch file; each structure's numbers do not depend on the chunks)."""
        p1, store = self.p1, self.stress_store
        idx = np.asarray(idx, dtype=np.int64)
        E = np.empty(len(idx))
        with_stress = np.array([int(i) in store for i in idx], dtype=bool)
        j = np.flatnonzero(with_stress)     # the structures of idx with a stress (positions in idx)
        ds = np.empty((len(j), 6))
        done = 0
        for part, B in p1.Bsum.chunks(idx):
            E[part], _, c_eff = committee_predict(theta, wfn, B, p1.counts[idx[part]])
            mine = j[(j >= part.start) & (j < part.start + len(B))]
            if len(mine):
                for sub, Psi in store.chunks(idx[mine]):   # (mine: at most one chunk of structures)
                    ds[done + sub.start:done + sub.start + len(Psi)] = np.einsum(
                        "bij,bj->bi", Psi, c_eff[mine[sub] - part.start])
                done += len(mine)
        if len(j):
            ds -= store.sigma(idx[j])
        de = E / p1.N[idx] - p1.yE[idx]
        de_w2 = float((self.w[idx] ** 2 * de ** 2).sum())   # as the weighted loss counts it
        s_abs = float(np.abs(ds).sum())
        scale = store.scale(idx[j])
        s_sq_w = float((self.w[idx[j]] ** 2 * ((scale[:, None] * ds) ** 2).sum(axis=1)).sum())
        return de, s_abs, s_sq_w, 6 * len(j), de_w2

    def _heldout_losses(self, thetas_sets, fold_matrix, h, yy):
        """Held-out weighted losses [set][fold] of several candidates' fold solutions that share the
        folds' normal equations: each fold's matrix is assembled once for all of them."""
        out = [[0.0] * self.k for _ in thetas_sets]
        for f in range(self.k):
            Hf = fold_matrix(f)
            for s, thetas in enumerate(thetas_sets):
                out[s][f] = quadratic_sse(thetas[f].ravel(), Hf, h[f], yy[f])
        return out

    def _cv_row(self, M, tau, fit, thetas, losses, wfn, lam=None):
        """CV row of one candidate from its fold solutions and their held-out losses (per fold)."""
        loss = 0.0
        fold_losses = []
        de_all = []
        de_w2 = 0.0
        s_abs = s_sq_w = 0.0
        s_n = 0
        for f in range(self.k):
            th = thetas[f]
            fold_losses.append(losses[f])
            loss += fold_losses[-1]
            de, a, q, c, dw = self._direct_errors(th, wfn, self.fold_idx[f])
            de_w2 += dw
            de_all.append(de)
            s_abs += a
            s_sq_w += q
            s_n += c
        de = np.concatenate(de_all)
        n_comp = 3 * float((self.w ** 2 * self.p1.N).sum())   # force components, weighted as the loss
        f_sse = (loss - self.wE ** 2 * de_w2 - self.wS ** 2 * s_sq_w)
        f_rmse = float(np.sqrt(max(f_sse, 0.0) / self.wF ** 2 / n_comp)) if self.wF > 0 else None
        return {
            "M": M, "tau": tau, "fit": fit, "ridge": lam, "loss": float(loss),
            "fold_losses": [float(x) for x in fold_losses],
            "n_structures": self.n, "n_atoms": int(self.p1.N.sum()),
            "energy_mae_mev_per_atom": 1000.0 * float(np.abs(de).mean()),
            "energy_rmse_mev_per_atom": 1000.0 * float(np.sqrt((de ** 2).mean())),
            "force_mae_ev_per_a": None,
            "force_rmse_ev_per_a": f_rmse,
            "stress_mae_gpa": EV_A3_TO_GPA * s_abs / s_n if s_n else None,
            "stress_rmse_gpa": None,
        }

    def cv_all(self, lam, committee="joint", compare=True, lam_dc=None):
        """CV rows of the linear model (ridge lam) and every committee candidate (ridge lam_dc)."""
        lam_dc = lam if lam_dc is None else lam_dc
        rows = []
        g = self.groups
        lin = [self.linear_fold(lam, f)[None, :] for f in range(self.k)]
        (lin_loss,) = self._heldout_losses([lin], lambda f: g.H[f, 0], g.h[:, 0], g.yy[:, 0])
        rows.append(self._cv_row(1, None, "linear", lin, lin_loss, None, lam))
        ind_cache = {}
        for (M, tau), acc in self.joint.items():
            todo = []
            if committee == "joint" or compare:
                todo.append(("joint", self._joint_folds(M, tau, [(lam_dc, f, lin[f][0]) for f in range(self.k)])))
            if committee == "independent" or compare:
                if M not in ind_cache:
                    ind_cache[M] = [self.solve_independent(M, lam_dc, f, lin[f][0]) for f in range(self.k)]
                todo.append(("independent", ind_cache[M]))
            losses = self._heldout_losses([th for _, th in todo], acc.matrix, acc.h, acc.yy)
            for (fit, th), ls in zip(todo, losses):
                rows.append(self._cv_row(M, tau, fit, th, ls, acc.gate_fn, lam_dc))
        return rows

    def choose(self, rows, committee="joint", experts="auto", parsimony=0.0):
        """Lowest CV loss; among candidates within (1 + parsimony) of it, the fewest experts
        (then the larger temperature, i.e. the smoother gate)."""
        ok = [r for r in rows if r["fit"] in ("linear", committee)]
        if experts != "auto":
            M = int(experts)
            ok = [r for r in ok if r["M"] == M] or ok
        best = min(r["loss"] for r in ok)
        near = [r for r in ok if r["loss"] <= best * (1.0 + parsimony)]
        pick = min(near, key=lambda r: (r["M"], -(r["tau"] or 0.0), r["loss"]))
        return {"M": pick["M"], "tau": pick["tau"], "fit": pick["fit"], "cv_loss": pick["loss"]}

    def refine_committee_ridge(self, chosen, lam, lam_dc, factors, committee="joint"):
        """CV of the chosen (M, tau) at committee ridges lam_dc * factor; returns (best, rows)."""
        M, tau = chosen["M"], chosen["tau"]
        acc = self.joint[(M, tau)]
        best_lam, best_loss, rows = lam_dc, chosen["cv_loss"], []
        lin = [self.linear_fold(lam, f) for f in range(self.k)]
        tries = [lam_dc * fac for fac in factors if fac != 1.0]
        if committee == "joint":
            flat = self._joint_folds(M, tau, [(lt, f, lin[f]) for lt in tries for f in range(self.k)])
            sols = [flat[t * self.k:(t + 1) * self.k] for t in range(len(tries))]
        else:
            sols = [[self.solve_independent(M, lam_try, f, lin[f]) for f in range(self.k)] for lam_try in tries]
        losses = self._heldout_losses(sols, acc.matrix, acc.h, acc.yy)
        for lam_try, th, ls in zip(tries, sols, losses):
            row = self._cv_row(M, tau, committee, th, ls, acc.gate_fn, lam_try)
            rows.append(row)
            if row["loss"] < best_loss:
                best_lam, best_loss = lam_try, row["loss"]
        chosen["cv_loss"] = best_loss
        return best_lam, rows

    # ------------------------------------------------------------------ eq. 9
    def eq9(self, lam, Ms, chosen, lam_dc=None):
        p1 = self.p1
        idx = np.arange(self.n)
        lin = self.solve_linear_total(lam)
        de_lin, *_ = self._direct_errors(lin[None, :], None, idx)
        sup_lin = float(np.abs(de_lin).max())
        paper, ours = {1: 1.0}, {1: 1.0}
        for M in Ms:
            if M == 1 or M not in self.clusterings:
                continue
            if M in self.group_index:
                # comparison only: a failure or a non-finite number is reported (None), never fatal
                try:
                    ind = self.solve_independent_total(M, lam if lam_dc is None else lam_dc, lin)
                    eq8 = Eq8Gate(self.clusterings[M], self.Z, self.clusterings[M].labels[self.Z_rows])
                    de, *_ = self._direct_errors(ind, lambda Pm: eq8.weights(Pm), idx)
                    g = sup_lin / max(float(np.abs(de).max()), 1e-300)
                except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                    g = float("nan")
                paper[M] = g if math.isfinite(g) else None
            taus = [t for (m, t) in self.joint if m == M]
            if taus:
                tau = chosen["tau"] if (M == chosen["M"] and chosen["tau"] in taus) else taus[0]
                acc = self.joint[(M, tau)]
                th = self.solve_joint_total(M, tau, lam if lam_dc is None else lam_dc, lin)
                de, *_ = self._direct_errors(th, acc.gate_fn, idx)
                ours[M] = sup_lin / max(float(np.abs(de).max()), 1e-300)
        finite = {m: g for m, g in paper.items() if g is not None}
        return {"paper_g": {str(k): v for k, v in paper.items()}, "paper_M": max(finite, key=lambda m: (finite[m], -m)),
                "paper_non_finite": [m for m, g in paper.items() if g is None],
                "joint_g": {str(k): v for k, v in ours.items()}, "joint_M": max(ours, key=lambda m: (ours[m], -m)),
                "sup_err_linear_mev_per_atom": 1000.0 * sup_lin}
