"""Off-data anchors: every expert of a committee agrees with the linear model off the data.

A structure-gate committee (paper eqs. 1, 7) hands every structure to the experts its mean
descriptor is near. Each expert is fitted only where the gate gives it weight, so off the data --
a crystal compressed by a few per cent, a damaged cell after a knock-on -- the experts disagree
with each other by eV, the gate moves between them, and the gate-gradient force
(1/N) sum_m (E_m - E) Phi dw_m/dp pulls the structure towards whichever expert is lowest: the Zuo Si
committee fell 1 eV/atom below its crystal at 0.94 a0 (docs/short-range.md). The linear model,
fitted on all data, has no gate and passes these probes. The local gates' committees (dcace.local_gate)
fail the same way without them: the Zuo Mo atom and neighbourhood committees (body order 4, degree 12,
M = 4) had fcc Mo falling below its own a0 by 9 to 449 meV/atom at 0.97-0.98 a0 (docs/local-gates.md),
and an expanding hot liquid fell 2 eV/atom (docs/coexistence.md); they get the same term.

The anchors are deterministic off-data structures: uniformly compressed and expanded and randomly
rattled copies of training frames, bcc and fcc of every element near their equilibrium and compressed
(phase_anchors, at PHASE_WEIGHT times the weight), a free atom of every element and the repulsion
restraints' dimers. They get no DFT labels; instead every expert m of a joint committee gets the penalty

    omega^2 sum_anchors | rows(theta_m) - rows(theta_lin) |^2

over the anchors' energy, force and virial rows, theta_lin being the linear solution of the same
cross-validation fold. Each expert on its own then follows the linear model there, whatever the
gate does, so the committee does too and the gate-gradient terms (E_m - E) vanish. In normal
equations: H_a (the anchors' linear normal matrix, D' x D') on every expert's diagonal block and
H_a theta_lin on its right-hand side. Anchors never enter a held-out error. Independent experts (the
paper's, each fitted on its cluster) get the same term when they ridge toward the linear model
(regularise="global", the default); with regularise="zero" each stays its own model, as the paper's.

A first form penalised the committee's gated output instead. It let an expert that the gate gives
almost no weight on the anchors take huge energies whose gate-gradient forces corrected the other
experts' force rows: the examples/TiAl quick committee (bo3, degree 8, M = 2) then reached
13,000 eV/A within 20 fs of MD.
"""
from __future__ import annotations

import numpy as np

from .committee import Batch, GroupAccumulator

__all__ = ["ANCHOR_SCALES", "ANCHOR_RATTLES", "PHASE_SCALES", "anchor_sources", "anchor_structures",
           "phase_anchors", "free_atoms_and_dimers", "anchor_batches", "AnchorRows"]

ANCHOR_FRAMES = 16                      # training frames the anchors are made from (evenly spread)
ANCHOR_SCALES = (1.06, 0.96, 0.92, 0.88)   # uniform expansion and compressions of each frame
ANCHOR_RATTLES = (0.1, 0.2, 0.3)        # Gaussian displacements (A, per component) of each frame
GROUND_SCALES = (1.10, 1.06, 1.03, 0.98, 0.96, 0.94, 0.92, 0.90, 0.88, 0.85)   # ... of the lowest-energy structure
PHASE_SCALES = (1.04, 1.02, 1.0, 0.98, 0.96, 0.94, 0.92, 0.90, 0.88, 0.85, 0.80)   # ... of bcc/fcc (phase_anchors)
PHASE_WEIGHT = 3.0   # the phase anchors' weight, in units of the anchor weight (Cu bo2: 1 leaves bcc Cu falling by 25 meV/atom, 3 passes)


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


def phase_anchors(elements, ground):
    """[(label, Atoms)]: the cubic bcc and fcc cell of every element at the volume per atom of the periodic
    `ground` structure (or none), scaled by PHASE_SCALES. A fit's data usually hold one crystal per
    element, and the other phase is where the experts are unconstrained: without these the default Zuo
    Cu committee (fcc data) had a bcc crystal that fell below its own a0 (+28.9 meV/atom at 0.99 a0,
    then lower at 0.98; docs/short-range.md). The scales reach from the volume-matched lattice constant
    to the own a0 of open-lattice elements (Si, Ge: about 0.9 of it) and beyond."""
    from .crystal_probe import phase_crystals

    if ground is None or not np.all(ground.pbc) or abs(np.linalg.det(ground.cell.array)) <= 0:
        return []
    out = []
    for label, at in phase_crystals(elements, ground.get_volume() / len(ground)):
        for s in PHASE_SCALES:
            c = at.copy()
            c.set_cell(at.cell * s, scale_atoms=True)
            out.append((f"{label} x{s:g}", c))
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


def anchor_batches(basis, structures, terms_fn, weight: float, batch_size: int):
    """The anchors' rows as Batches of at most batch_size structures, weight omega = `weight` and zero
    targets (the targets enter as H_a (1 (x) theta_lin), see the module docstring). terms_fn(atoms, rows)
    -> the unweighted A of a structure's force and virial rows (pipeline._structure_terms with zero
    labels). A generator: a batch's D x D matrices are dropped once it is accumulated."""
    for start in range(0, len(structures), max(1, int(batch_size))):
        A, u, p = [], [], []
        for _, at in structures[start:start + batch_size]:
            rows = basis.fitting_rows(at)
            A.append(weight ** 2 * terms_fn(at, rows))
            n = len(at)
            u.append(weight * np.concatenate([rows.energy, rows.counts]) / n)
            p.append(rows.energy / n)
        R, D = len(A), A[0].shape[0]
        yield Batch(0, np.stack(A), np.zeros((R, D)), np.zeros(R), np.stack(u), np.zeros(R), np.stack(p),
                    np.arange(start, start + R), np.full(R, float(weight)))


class AnchorRows:
    """The anchors' linear normal matrix H_a (D' x D'), accumulated in one pass over their batches."""

    def __init__(self, batches, D: int, S: int, wE: float, n_structures: int):
        self.n_structures = n_structures
        acc = GroupAccumulator(1, D, S, np.ones((n_structures, 1)), wE)
        for bt in batches:
            acc.add(bt)
        self.H = acc.H[0, 0]

    @classmethod
    def from_matrix(cls, H, n_structures: int):
        """The rows of a stored H_a (a refit's, from its fit state: dcace.state_anchors)."""
        rows = cls.__new__(cls)
        rows.H, rows.n_structures = H, int(n_structures)
        return rows

    def scaled(self, weight: float):
        """The rows of the same anchors at weight `weight`, from rows accumulated at weight 1: every anchor
        row is multiplied by the weight, so H_a by its square (``anchors="auto"``, dcace.anchor_choice)."""
        return AnchorRows.from_matrix(self.H * (float(weight) ** 2), self.n_structures)

    @property
    def nbytes(self) -> int:
        return self.H.nbytes

    def add_to(self, M: int, H, h, theta_lin):
        """H += H_a and h += H_a theta_lin on every expert's diagonal block, in place (a committee's
        fold or final system of M experts)."""
        Dp = self.H.shape[0]
        g = self.H @ theta_lin
        for m in range(M):
            H[m * Dp:(m + 1) * Dp, m * Dp:(m + 1) * Dp] += self.H
            h[m * Dp:(m + 1) * Dp] += g
