"""Neighbour lists for ASE ``Atoms``.

``neighbour_list(atoms, cutoff)`` returns every pair (i, j, shift) with
``0 < |r_j + shift @ cell - r_i| < cutoff`` as a CSR :class:`NeighbourList`
sorted by centre atom i and, within a centre, by (j, shift).  It handles full,
mixed and no periodicity, triclinic cells, cells smaller than the cutoff (an
atom then sees its own images, possibly several shells of them), single atoms,
unwrapped positions and non-periodic directions whose cell vectors are zero or
coplanar with the others.

Choice of back end
------------------
Measured with ``benchmarks/bench_neighbours.py`` (vesin 0.6.2, matscipy 1.3.1,
ase 3.29.0, numpy 2.4.6; 2-core Xeon VM shared with other jobs, load average
4-5, so the ranges are over 4 runs).  Every candidate returns i, j, S and D::

                           bcc Mo 2000 atoms      Mo_train.xyz, 194 structures
                           rc = 5.2 A, ms/call    rc = 5.2 A, s for one pass
    ase neighbor_list          310 - 580               5.2 - 7.8
    matscipy                   8.1 - 12.8             0.20 - 0.30
    vesin, 2 threads           4.0 - 6.9  (2.6 idle)  0.08 - 0.12
    vesin, 1 thread            3.9 - 6.2  (4.6 idle)  0.08 - 0.12
    this function              6.3 - 10.1             0.13 - 0.24

"this function" is vesin plus validation, the overlap check, the (i, j,
shift) sort and the CSR build (about 1.5 ms at 2000 atoms / 52000 pairs and
0.2 ms per 54-atom training structure).  vesin runs with its default thread
count (``OMP_NUM_THREADS`` if set, else all cores).

Correctness against ``ase.neighborlist.neighbor_list`` (same (i, j, shift) set,
vectors to 1e-12): raw vesin and matscipy agree with ase on all 194
training structures, on 390 random triclinic cells with random pbc and
cutoffs, on a 1-atom bcc cell at rc = 5.2 (26 pairs), a 1-atom 1.5 A cube
(178 pairs, shifts up to +-3), strongly skewed cells, slabs, wires,
molecules and unwrapped positions.  This function (both its vesin path and
its ase fallback) was further checked on ~1750 random cells with random pbc,
global offsets up to ~1e3 A and zero/coplanar non-periodic cell vectors.
matscipy raises ``LinAlgError: Singular matrix`` for any non-periodic system
whose cell is zero or degenerate (a molecule with no cell, a single atom, a
slab with a zero c vector) -- ase does too when the degenerate vector is not
the zero vector.

vesin is the fastest and is used, but two defects of vesin 0.6.2 shape the
wrapper:

* its cell list caps the number of bins at 1e5 while keeping their aspect
  ratio; for strongly elongated bounding boxes (measured: three atoms
  spanning 1e6 A along x with pbc False; a 2000 x 2000 A monolayer with pbc
  (T, T, F); a 6e5 x 4 x 4 A periodic box) the cap rounds one dimension to
  0 bins and the process dies with SIGFPE (integer division by zero -- not
  catchable from Python);
* its handling of non-periodic directions has changed (and been fixed)
  several times between releases (bounding box from atom extents, margins,
  rotated mixed-pbc boxes), and it becomes very slow (~1 s for 3 atoms) when
  a non-periodic extent is large.

So vesin is only ever given a *fully periodic*, well-conditioned box: each
non-periodic direction is replaced by an orthonormal complement of the
periodic vectors, scaled to (extent of the atoms along it + 2 * cutoff + 1),
and declared periodic.  No image along such a direction can be within the
cutoff, so its shift is always 0 and the result is identical to the
non-periodic list (checked by the tests).  Before calling vesin the bin
count it will use is recomputed here (same formula as vesin's cell list); if
the 1e5-bin cap would collapse a dimension, or if fractional coordinates are
so large that vesin's int32 bin indices could overflow, the list is computed
by ``ase.neighborlist.primitive_neighbor_list`` instead (same convention;
slow -- about 2 s for two atoms in a 1.2e6 A long box -- but such systems are
pathological).  Cutoffs below 1e-5 A, which vesin refuses, also go to ase.

Runtime dependency: ``vesin`` (ase is needed anyway); matscipy is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NeighbourList", "neighbour_list"]

#: two atoms closer than this (in Angstrom) are reported as overlapping
SAME_POSITION_TOLERANCE = 1e-8
#: relative tolerance on the periodic sub-lattice volume to call it degenerate
_DEGENERATE_RTOL = 1e-10
#: refuse inputs expected to produce more pairs than this (tiny cell / huge cutoff)
_MAX_PAIRS = 2**31
#: vesin's cell list bin cap (``MAX_NUMBER_OF_CELLS`` in its cpu_cell_list.cpp)
_VESIN_MAX_CELLS = 1e5
#: vesin 0.6.2 refuses cutoffs below ~1e-6 ("cutoff is too small")
_VESIN_MIN_CUTOFF = 1e-5
#: beyond this |fractional coordinate| * bins, vesin's int32 bin index may overflow
_VESIN_MAX_BIN_INDEX = 1e8


@dataclass(frozen=True, eq=False)
class NeighbourList:
    """Full neighbour list in CSR form.

    Pairs of centre atom ``i`` are ``first[i]:first[i+1]``; for each pair,
    ``j`` is the neighbour, ``shift`` the integer cell shift and
    ``rij = positions[j] + shift @ cell - positions[i]``.
    """

    first: np.ndarray  # int64[N + 1]
    j: np.ndarray  # int32[P]
    rij: np.ndarray  # float64[P, 3]
    shift: np.ndarray  # int32[P, 3]

    @property
    def n_atoms(self) -> int:
        return len(self.first) - 1

    @property
    def n_pairs(self) -> int:
        return len(self.j)

    def centres(self) -> np.ndarray:
        """Centre atom index of every pair (int32[P])."""
        return np.repeat(np.arange(self.n_atoms, dtype=np.int32), np.diff(self.first))


def neighbour_list(atoms, cutoff) -> NeighbourList:
    """All pairs of ``atoms`` closer than ``cutoff`` (full list, CSR by centre).

    Raises ``ValueError`` for an empty ``Atoms``, non-finite positions or cell,
    a non-positive cutoff, a degenerate cell along the periodic directions, a
    cell so small for the cutoff that the list could not be stored, and two
    atoms (or an atom and an image) closer than ``SAME_POSITION_TOLERANCE``.
    """
    positions, box, pbc, cutoff = _validate(atoms, cutoff)
    # search a little further than the cutoff if the cutoff is tiny, so that
    # overlapping atoms are always seen
    search = max(cutoff, 2.0 * SAME_POSITION_TOLERANCE)
    if search >= _VESIN_MIN_CUTOFF and _vesin_is_safe(positions, box, search):
        i, j, shift, rij = _pairs_vesin(positions, box, search)
    else:
        i, j, shift, rij = _pairs_ase(positions, box, pbc, search)

    d2 = np.einsum("ij,ij->i", rij, rij)
    _check_overlaps(i, j, shift, d2)
    if search > cutoff:
        keep = d2 < cutoff * cutoff
        i, j, shift, rij = i[keep], j[keep], shift[keep], rij[keep]
    return _to_csr(len(positions), i, j, shift, rij)


# --------------------------------------------------------------------------- #
# validation


def _validate(atoms, cutoff):
    n = len(atoms)
    if n == 0:
        raise ValueError("cannot build a neighbour list for an empty Atoms (no atoms)")
    try:
        cutoff = float(cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"cutoff must be a positive number, got {cutoff!r}") from None
    if not np.isfinite(cutoff) or cutoff <= 0.0:
        raise ValueError(f"cutoff must be a finite positive number, got {cutoff!r}")

    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"positions contain NaN or inf ({int(bad.sum())} atom(s), first is atom {k}: "
            f"{positions[k].tolist()})"
        )
    cell = np.array(atoms.cell.array, dtype=np.float64)
    if not np.isfinite(cell).all():
        raise ValueError(f"cell contains NaN or inf: {cell.tolist()}")
    pbc = np.array(atoms.pbc, dtype=bool).reshape(3)

    box = _periodic_box(positions, cell, pbc, cutoff)
    return positions, box, pbc, cutoff


def _periodic_box(positions, cell, pbc, cutoff):
    """Fully periodic box equivalent to (cell, pbc) for pairs within ``cutoff``.

    Periodic rows are the cell vectors; each non-periodic row is a unit vector
    of the orthogonal complement of the periodic ones, scaled so that no image
    along it can be within the cutoff.  Also checks the periodic lattice.
    """
    periodic = cell[pbc]
    p = len(periodic)
    n = len(positions)
    if p:
        lengths = np.linalg.norm(periodic, axis=1)
        gram_det = np.linalg.det(periodic @ periodic.T) if p > 1 else lengths[0] ** 2
        volume = np.sqrt(max(gram_det, 0.0))
        if lengths.min() == 0.0 or volume <= _DEGENERATE_RTOL * np.prod(lengths):
            raise ValueError(
                "cell is degenerate (zero volume) along the periodic directions "
                f"pbc={pbc.tolist()}: cell={cell.tolist()}"
            )
        ball = {1: 2.0 * cutoff, 2: np.pi * cutoff**2, 3: 4.0 / 3.0 * np.pi * cutoff**3}[p]
        expected = float(n) * n * ball / volume
        if expected > _MAX_PAIRS:
            raise ValueError(
                f"cell too small for cutoff {cutoff}: about {expected:.3g} pairs expected "
                f"(periodic cell volume {volume:.3g}, {n} atoms)"
            )
        q = np.linalg.qr(periodic.T, mode="complete")[0]
        complement = q[:, p:].T
    else:
        complement = np.eye(3)

    box = cell.copy()
    if p < 3:
        proj = positions @ complement.T  # (n, 3 - p)
        extent = proj.max(axis=0) - proj.min(axis=0)
        box[~pbc] = complement * (extent + 2.0 * cutoff + 1.0)[:, None]
    return box


def _check_overlaps(i, j, shift, d2):
    close = np.flatnonzero(d2 < SAME_POSITION_TOLERANCE**2)
    if len(close) == 0:
        return
    ci, cj = i[close], j[close]
    k = close[np.lexsort((cj, ci))[0]]
    a, b, s = int(i[k]), int(j[k]), shift[k].tolist()
    image = "" if s == [0, 0, 0] else f" (periodic image with shift {s})"
    what = f"atom {a} and its own periodic image" if a == b else f"atoms {a} and {b}"
    raise ValueError(
        f"{what} are at the same position{image}: distance {np.sqrt(d2[k]):.3g} "
        f"< {SAME_POSITION_TOLERANCE:g}"
    )


# --------------------------------------------------------------------------- #
# back ends (both return i int64, j int64, shift int32 (P,3), rij float64 (P,3))


def _vesin_cells(box, inverse, cutoff):
    """Bins per direction vesin's cell list will use for this box (None = crash)."""
    # distance between the faces of the box = 1 / |column of the inverse|
    widths = 1.0 / np.sqrt(np.einsum("ij,ij->j", inverse, inverse))
    n_cells = np.maximum(np.trunc(widths / cutoff), 1.0)
    total = float(np.prod(n_cells))
    if total > _VESIN_MAX_CELLS:
        # vesin's cap, evaluated pessimistically (0.999) to stay clear of rounding
        rxy, ryz = n_cells[0] / n_cells[1], n_cells[1] / n_cells[2]
        n2 = np.trunc(0.999 * np.cbrt(_VESIN_MAX_CELLS / (rxy * ryz * ryz)))
        n1 = np.trunc(0.999 * ryz * n2)
        n0 = np.trunc(0.999 * rxy * n1)
        n_cells = np.array([n0, n1, n2])
        if n_cells.min() < 1.0:
            return None
    return n_cells


def _vesin_is_safe(positions, box, cutoff):
    inverse = np.linalg.inv(box)
    n_cells = _vesin_cells(box, inverse, cutoff)
    if n_cells is None:
        return False
    frac = positions @ inverse
    return float(np.abs(frac).max(axis=0) @ n_cells) < _VESIN_MAX_BIN_INDEX


def _pairs_vesin(positions, box, cutoff):
    import vesin

    calculator = vesin.NeighborList(cutoff=cutoff, full_list=True, sorted=False)
    i, j, shift, rij = calculator.compute(
        points=positions, box=box, periodic=True, quantities="ijSD", copy=True
    )
    return i.view(np.int64), j.view(np.int64), shift, rij


def _pairs_ase(positions, box, pbc, cutoff):
    from ase.neighborlist import primitive_neighbor_list

    i, j, shift, rij = primitive_neighbor_list(
        "ijSD", pbc, box, positions, cutoff, self_interaction=False, use_scaled_positions=False
    )
    return i.astype(np.int64), j.astype(np.int64), shift.astype(np.int32), rij


# --------------------------------------------------------------------------- #
# sorting and CSR


def _order(n, i, j, shift):
    """Permutation sorting pairs by (i, j, shift[0], shift[1], shift[2])."""
    n_pairs = len(i)
    if n_pairs == 0:
        return np.zeros(0, dtype=np.int64)
    lo = int(shift.min())
    span = int(shift.max()) - lo + 1
    index_bits = (n_pairs - 1).bit_length()
    if (n * n * span**3 - 1).bit_length() + index_bits <= 63:
        # one int64 key holding (i, j, shift) in the high bits and the pair
        # index in the low bits: np.sort of int64 is much faster than argsort
        s = shift.astype(np.int64)
        s -= lo
        key = i.astype(np.int64)
        key *= n
        key += j
        for axis in range(3):
            key *= span
            key += s[:, axis]
        key <<= index_bits
        key |= np.arange(n_pairs, dtype=np.int64)
        key.sort()
        key &= (1 << index_bits) - 1
        return key
    return np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))


def _to_csr(n, i, j, shift, rij):
    order = _order(n, i, j, shift)
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=first[1:])
    return NeighbourList(
        first=first,
        j=np.take(j, order).astype(np.int32),
        rij=np.take(rij, order, axis=0),
        shift=np.ascontiguousarray(np.take(shift, order, axis=0), dtype=np.int32),
    )
