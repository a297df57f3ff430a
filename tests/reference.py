"""Slow plain-numpy reference for the ACE descriptors, used only by the tests.

Why this file exists: the C++ core is the one implementation of the descriptors; this is an
independent second route (scipy's complex harmonics instead of the C++ recursion, dense loops
instead of the adjoint machinery) to check it and the basis construction against.  It reads the
spec dict of ``dcace.basis_spec.build_basis_spec`` and is never imported by the package.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev
from scipy.special import sph_harm_y


def radial(r, n_radial, r_cut, r_inner):
    """R_n(r), n = 0..n_radial-1, shape (len(r), n_radial); zero for r >= r_cut."""
    r = np.atleast_1d(np.asarray(r, dtype=float))
    if np.any(r < r_inner):
        raise ValueError(f"neighbour at r = {r.min()} closer than r_inner = {r_inner}")
    s = (r - r_inner) / (r_cut - r_inner)
    inside = r < r_cut
    x = np.where(inside, 1.0 - 2.0 * s, 0.0)
    R = chebyshev.chebvander(x, n_radial - 1) * ((1.0 - s) ** 3)[:, None]
    return np.where(inside[:, None], R, 0.0)


def real_sph_harm(l_max, vecs):
    """Real Y_lm of the directions of vecs (n, 3), shape (n, (l_max+1)^2), index l*l + l + m.

    From scipy's complex Y_l^m (Condon-Shortley phase): Y_l0 = Y_l^0, Y_lm = sqrt2 Re Y_l^m and
    Y_l,-m = sqrt2 Im Y_l^m for m > 0.
    """
    vecs = np.atleast_2d(np.asarray(vecs, dtype=float))
    r = np.linalg.norm(vecs, axis=1)
    theta = np.arccos(np.clip(vecs[:, 2] / r, -1.0, 1.0))
    phi = np.arctan2(vecs[:, 1], vecs[:, 0])
    Y = np.zeros((len(vecs), (l_max + 1) ** 2))
    for l in range(l_max + 1):
        Y[:, l * l + l] = sph_harm_y(l, 0, theta, phi).real
        for m in range(1, l + 1):
            c = sph_harm_y(l, m, theta, phi)
            Y[:, l * l + l + m] = np.sqrt(2.0) * c.real
            Y[:, l * l + l - m] = np.sqrt(2.0) * c.imag
    return Y


def atomic_base(rij, zj, spec):
    """A (compact index chan_offset[c] + m + l_c) of one centre from displacements and species."""
    rij = np.asarray(rij, dtype=float).reshape(-1, 3)
    zj = np.asarray(zj, dtype=int).reshape(-1)
    if np.any((zj < 0) | (zj >= spec["n_species"])):
        raise ValueError(f"neighbour species out of range 0..{spec['n_species'] - 1}: {zj}")
    chan_l = np.asarray(spec["chan_l"])
    offsets = np.concatenate([[0], np.cumsum(2 * chan_l + 1)])
    A = np.zeros(offsets[-1])
    if len(rij) == 0:
        return A
    r = np.linalg.norm(rij, axis=1)
    R = radial(r, spec["n_radial"], spec["r_cut"], spec["r_inner"])
    Y = real_sph_harm(spec["l_max"], rij)
    for c, (z, n, l) in enumerate(zip(spec["chan_z"], spec["chan_n"], chan_l)):
        sel = zj == z
        A[offsets[c]:offsets[c + 1]] = R[sel, n] @ Y[sel, l * l:(l + 1) * (l + 1)]
    return A


def product_basis(A, spec):
    """B from A: monomials prod_t A[mono_idx[:, t]] (-1 = absent), then the CSR feature rows."""
    idx = np.asarray(spec["mono_idx"])
    Ap = np.append(A, 1.0)  # index -1 -> 1.0
    mono = np.prod(Ap[idx], axis=1)
    ptr, cols, coef = spec["feat_ptr"], spec["feat_mono"], spec["feat_coef"]
    return np.array([coef[ptr[v]:ptr[v + 1]] @ mono[cols[ptr[v]:ptr[v + 1]]]
                     for v in range(spec["n_features"])])


def descriptors(rij, zj, spec):
    """B of one centre atom (length n_features)."""
    return product_basis(atomic_base(rij, zj, spec), spec)


def reference_descriptors(atoms, spec, species_of):
    """B of every atom of an ase.Atoms, shape (len(atoms), n_features).

    species_of maps an atomic number to a species index (dict or callable).
    """
    from ase.neighborlist import neighbor_list

    get = species_of if callable(species_of) else species_of.__getitem__
    z = np.array([get(int(Z)) for Z in atoms.numbers], dtype=int)
    i, j, D = neighbor_list("ijD", atoms, spec["r_cut"])
    B = np.zeros((len(atoms), spec["n_features"]))
    for a in range(len(atoms)):
        sel = i == a
        B[a] = descriptors(D[sel], z[j[sel]], spec)
    return B
