"""The public ACE basis: per-atom descriptors and fitting rows of ASE structures.

`ACEBasis` ties the basis definition (built in Python by `basis_spec`, coupling coefficients from
`coupling`) to the C++ evaluator (`dcace._core.BasisCore`) and to neighbour lists of ASE Atoms.

Fitting-row layout (`ACEBasis.fitting_rows`): design columns are (species s, feature v) at s*K + v;
- `energy`  (S*K,):    sum over atoms i of species s of B_{i,v}  (so E = energy @ c + counts @ e0);
- `forces`  (3N, S*K): row 3k+a is -d(energy)/d r_{k,a}            (F = forces @ c);
- `virial`  (6, S*K):  -sum_pairs r_ij,a d(energy)/d r_ij,b, Voigt xx yy zz yz xz xy (eV);
- `stress`  (6, S*K):  -virial / volume, the ASE stress (eV/Å^3), None for non-periodic cells;
- `counts`  (S,):      atoms per species (columns of the one-body term).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers

from . import _core
from .basis_spec import build_basis_spec
from .neighbours import neighbour_list


@dataclass
class FittingRows:
    energy: np.ndarray
    forces: np.ndarray
    virial: np.ndarray
    stress: np.ndarray | None
    counts: np.ndarray
    volume: float | None


def _check_elements(elements) -> list[str]:
    if isinstance(elements, str):
        elements = [elements]
    elements = list(elements)
    if not elements:
        raise ValueError("elements must list at least one element symbol")
    for el in elements:
        if el not in atomic_numbers or el == "X":
            raise ValueError(f"unknown element symbol {el!r}")
    if len(set(elements)) != len(elements):
        raise ValueError(f"elements {elements} contain a duplicate")
    return elements


class ACEBasis:
    """A linear ACE basis over `elements` with total-degree truncation.

    Degree convention (ACEpotentials'): a feature is a product of atomic-base entries
    A_{z_t n_t l_t}, t = 1..nu (nu = body_order - 1), kept when sum_t (n_t + w_L l_t) <= max_degree
    with radial index n_t >= 1 and w_L = 1.5 by default.
    """

    def __init__(self, elements, cutoff: float, body_order: int, max_degree: float, *,
                 inner_cutoff: float = 0.5, w_L: float = 1.5, core_window=None, max_degree_blocks=None,
                 chemical_channels=None, embedding=None):
        """core_window: None, or (lo, hi) arrays (S, S) of the short-range core (dcace.baseline):
        the radial functions of pair (a, b) are switched on over [lo, hi], and neighbours closer
        than lo are left to the baseline.  max_degree_blocks: {distinct species: degree}.
        chemical_channels: C, the species-embedded basis with the fixed embedding of
        ``basis_spec.fixed_embedding`` over the elements ranked by atomic number, or the C x S
        matrix `embedding` (e.g. a data-driven one of ``dcace.embedding``)."""
        self.elements = _check_elements(elements)
        self.cutoff = float(cutoff)
        self.body_order = int(body_order)
        self.max_degree = max_degree
        self.inner_cutoff = float(inner_cutoff)
        self.w_L = float(w_L)
        self.max_degree_blocks = max_degree_blocks
        self.chemical_channels = chemical_channels
        if chemical_channels is not None and embedding is None:
            from .basis_spec import check_chemical_channels, fixed_embedding

            C = check_chemical_channels(chemical_channels, len(self.elements))
            embedding = fixed_embedding(len(self.elements), C, [atomic_numbers[el] for el in self.elements])
        self.spec_ = build_basis_spec(len(self.elements), self.cutoff, self.body_order, max_degree,
                                      inner_cutoff=self.inner_cutoff, w_L=self.w_L,
                                      max_degree_blocks=max_degree_blocks, chemical_channels=chemical_channels,
                                      embedding=embedding)
        if core_window is not None:
            lo, hi = (np.ascontiguousarray(x, dtype=float) for x in core_window)
            self.spec_["core_lo"], self.spec_["core_hi"] = lo, hi
        self.core_ = _core.BasisCore(self.spec_)

    @property
    def core_window(self):
        """(lo, hi) arrays (S, S) of the short-range core, or None."""
        lo = self.spec_.get("core_lo")
        return None if lo is None else (np.asarray(lo), np.asarray(self.spec_["core_hi"]))

    def with_core_window(self, core_window) -> "ACEBasis":
        """The same basis (same features, same order) with another core window (lo, hi)."""
        other = ACEBasis.__new__(ACEBasis)
        other.__dict__.update(self.__dict__)
        other.spec_ = dict(self.spec_)
        lo, hi = (np.ascontiguousarray(x, dtype=float) for x in core_window)
        other.spec_["core_lo"], other.spec_["core_hi"] = lo, hi
        other.core_ = _core.BasisCore(other.spec_)
        return other

    @classmethod
    def from_core(cls, elements, core, settings: dict | None = None) -> "ACEBasis":
        """Wrap an existing C++ basis (e.g. read from a potential file)."""
        self = cls.__new__(cls)
        self.elements = list(elements)
        self.core_ = core
        self.spec_ = core.spec()
        self.cutoff = float(core.cutoff)
        settings = settings or {}
        self.body_order = settings.get("body_order")
        self.max_degree = settings.get("max_degree")
        self.inner_cutoff = float(self.spec_["r_inner"])
        self.w_L = settings.get("w_L", 1.5)
        blocks = settings.get("max_degree_blocks")
        self.max_degree_blocks = None if not blocks else {int(b): float(d) for b, d in blocks.items()}
        self.chemical_channels = int(self.spec_["n_chem"]) or None
        return self

    @property
    def embedding(self):
        """W (C x S) of the species-embedded basis, or None for the explicit one."""
        W = self.spec_.get("chem_weights")
        return None if W is None else np.asarray(W)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """K, the number of invariants per centre species."""
        return int(self.core_.n_features)

    @property
    def n_species(self) -> int:
        return len(self.elements)

    def __repr__(self) -> str:
        return (f"ACEBasis(elements={self.elements}, cutoff={self.cutoff}, body_order={self.body_order}, "
                f"max_degree={self.max_degree}, n_features={self.n_features})")

    # -- structures ----------------------------------------------------------------------------
    def species_of(self, atoms) -> np.ndarray:
        """Species index of every atom; ValueError naming elements the basis does not have."""
        if len(atoms) == 0:
            raise ValueError("the structure has no atoms")
        symbols = atoms.get_chemical_symbols()
        index = {el: s for s, el in enumerate(self.elements)}
        missing = sorted(set(symbols) - set(index))
        if missing:
            raise ValueError(f"element(s) {', '.join(missing)} in the structure are not in the basis "
                             f"elements {self.elements}")
        return np.fromiter((index[s] for s in symbols), dtype=np.int32, count=len(symbols))

    def neighbours(self, atoms):
        """(species, first, j, rij) arrays for the C++ core."""
        species = self.species_of(atoms)
        nl = neighbour_list(atoms, self.cutoff)
        return species, nl.first, nl.j, nl.rij

    def descriptors(self, atoms) -> np.ndarray:
        """Per-atom invariants B_i, shape (len(atoms), K)."""
        return self.core_.descriptors(*self.neighbours(atoms))

    def descriptor_sums(self, atoms):
        """Per-species sums of B_i (S, K) and atom counts per species (S,)."""
        return self.core_.descriptor_sums(*self.neighbours(atoms))

    def fitting_rows(self, atoms) -> FittingRows:
        """Energy, force and virial/stress rows of one structure (layout in the module docstring)."""
        species, first, j, rij = self.neighbours(atoms)
        e, f, v = self.core_.fitting_rows(species, first, j, rij)
        counts = np.bincount(species, minlength=self.n_species).astype(float)
        volume = None
        stress = None
        if atoms.pbc.all():
            volume = float(abs(atoms.get_volume()))
            stress = -v / volume
        return FittingRows(energy=e, forces=f, virial=v, stress=stress, counts=counts, volume=volume)
