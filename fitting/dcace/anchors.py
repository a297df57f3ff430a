"""Off-data anchors: a committee agrees with the linear model on structures the data do not cover.

A structure-gate committee (paper eqs. 1, 7) hands every structure to the experts its mean
descriptor is near. Each expert is fitted only where the gate gives it weight, so off the data --
a crystal compressed by a few per cent, a damaged cell after a knock-on -- the experts disagree
with each other by eV, the gate moves between them, and the gate-gradient force
(1/N) sum_m (E_m - E) Phi dw_m/dp pulls the structure towards whichever expert is lowest: the Zuo Si
committee falls 1 eV/atom below its crystal at 0.94 a0, and the Mo committee releases tens of eV
after a 100 eV knock-on (docs/short-range.md). The linear model, fitted on all data, has no gate and
passes both probes.

The anchors are deterministic off-data structures: uniformly compressed and randomly rattled
copies of training frames (and expanded ones), a free atom of every element and the repulsion restraints' dimers. They get no DFT labels; instead every joint committee's training
system gets the penalty

    omega^2 sum_anchors | rows_committee(Theta) - rows_linear(theta_lin) |^2

over their energy, force and virial rows, with the gate and its gradient exactly as for a training
structure (committee.JointAccumulator). Because the gate weights sum to one, the committee whose
experts all equal the linear model reproduces it exactly, so the penalty is the quadratic form
(Theta - 1 (x) theta_lin)^T H_a (Theta - 1 (x) theta_lin), H_a the anchors' normal matrix: it adds H_a to
the committee's normal matrix and H_a (1 (x) theta_lin) to its right-hand side, with theta_lin the linear
solution of the same cross-validation fold. Anchors never enter a held-out error.
"""
from __future__ import annotations

import numpy as np

from .committee import Batch, JointAccumulator

__all__ = ["ANCHOR_SCALES", "ANCHOR_RATTLES", "anchor_sources", "anchor_structures", "free_atoms_and_dimers",
           "anchor_batch", "AnchorRows"]

ANCHOR_FRAMES = 16                      # training frames the anchors are made from (evenly spread)
ANCHOR_SCALES = (1.06, 0.96, 0.92, 0.88)   # uniform expansion and compressions of each frame
ANCHOR_RATTLES = (0.1, 0.2, 0.3)        # Gaussian displacements (A, per component) of each frame
GROUND_SCALES = (1.10, 1.06, 1.03, 0.98, 0.96, 0.94, 0.92, 0.90, 0.88, 0.85)   # ... of the lowest-energy structure


def anchor_sources(n_atoms, energy_per_atom) -> tuple[list[int], int | None]:
    """(sources, ground): up to ANCHOR_FRAMES training structures with at least 2 atoms, evenly spread
    over the training set, and the one lowest in energy per atom (relative to the reference
    energies: the nearest to the ground-state crystal), which is also expanded and compressed
    finely (GROUND_SCALES: the Zuo Ni committee without them had a spurious minimum at 1.06 a0,
    38 meV/atom below its crystal). Deterministic, from numbers every MPI rank has."""
    ok = [i for i, n in enumerate(n_atoms) if n >= 2]
    if not ok:
        return [], None
    ground = min(ok, key=lambda i: (energy_per_atom[i], i))
    if len(ok) > ANCHOR_FRAMES:
        ok = [ok[j] for j in np.linspace(0, len(ok) - 1, ANCHOR_FRAMES).round().astype(int)]
    return ok, ground


def anchor_structures(atoms_list, seed: int = 0, ground=None):
    """[(label, Atoms)]: every periodic source scaled by ANCHOR_SCALES and rattled by ANCHOR_RATTLES,
    and the periodic `ground` structure (or None) scaled by GROUND_SCALES."""
    rng = np.random.default_rng(20240 + int(seed))
    out = []
    periodic = lambda at: np.all(at.pbc) and abs(np.linalg.det(at.cell.array)) > 0  # noqa: E731
    if ground is not None and periodic(ground):
        for s in GROUND_SCALES:
            c = ground.copy()
            c.calc = None
            c.set_cell(ground.cell * s, scale_atoms=True)
            out.append((f"lowest-energy structure x{s:g}", c))
    for k, at in enumerate(atoms_list):
        if not periodic(at):
            continue
        for s in ANCHOR_SCALES:
            c = at.copy()
            c.calc = None
            c.set_cell(at.cell * s, scale_atoms=True)
            out.append((f"source {k} x{s:g}", c))
        for sd in ANCHOR_RATTLES:
            c = at.copy()
            c.calc = None
            c.positions = at.positions + rng.normal(0.0, sd, size=at.positions.shape)
            out.append((f"source {k} rattled {sd:g} A", c))
    return out


def free_atoms_and_dimers(elements, shortest, lo, cutoff: float):
    """[(label, Atoms)]: a free atom of every element and the repulsion restraints' dimers
    (dcace.restraints: every pair from the bottom of its core window to its shortest training
    distance). With them the experts share the linear model's free-atom energies and dimer curves
    where it matters, while keeping their own one-body terms (the `shared_one_body` option pins them)."""
    from ase import Atoms

    from .restraints import restraint_dimers

    box = 3.0 * cutoff
    free = [(f"free {el}", Atoms(el, positions=[[0.0, 0.0, 0.0]], cell=[box] * 3, pbc=False)) for el in elements]
    return free + restraint_dimers(elements, shortest, lo, cutoff)


def anchor_batch(basis, structures, terms_fn, weight: float) -> Batch:
    """The anchors' rows as one Batch of weight omega = `weight` and zero targets (the targets enter
    as H_a (1 (x) theta_lin), see the module docstring). terms_fn(atoms, rows) -> the unweighted (A, v, yy)
    of a structure's force and virial rows (pipeline._structure_terms with zero labels)."""
    A, u, p = [], [], []
    for _, at in structures:
        rows = basis.fitting_rows(at)
        A.append(weight ** 2 * terms_fn(at, rows))
        n = len(at)
        u.append(weight * np.concatenate([rows.energy, rows.counts]) / n)
        p.append(rows.energy / n)
    R = len(structures)
    D = A[0].shape[0]
    return Batch(0, np.stack(A), np.zeros((R, D)), np.zeros(R), np.stack(u), np.zeros(R), np.stack(p),
                 np.arange(R), np.full(R, float(weight)))


class AnchorRows:
    """The anchors' normal matrix for each joint committee candidate (its gate), formed once."""

    def __init__(self, batch: Batch, D: int, S: int, wE: float, n_structures: int):
        self.batch, self.D, self.S, self.wE = batch, D, S, wE
        self.n_structures = n_structures
        self._H = {}

    def matrix(self, key, acc: JointAccumulator) -> np.ndarray:
        """H_a of candidate `key` = (M, tau) whose training accumulator is `acc` (its gate)."""
        if key not in self._H:
            a = JointAccumulator(1, self.D, self.S, acc.gate, self.wE, acc.gate_fn)
            a.add(self.batch)
            self._H[key] = a.matrix(0)
        return self._H[key]

    def add_to(self, key, acc, H, h, theta_lin):
        """H += H_a, h += H_a (1 (x) theta_lin) in place (the committee's fold or final system)."""
        Ha = self.matrix(key, acc)
        H += Ha
        h += Ha @ np.tile(theta_lin, acc.M)
