"""Active learning: pick the structures worth a DFT calculation (``dcace select``, issue 14).

Rank: every pool structure's largest per-atom extrapolation grade gamma (``dcace.grade``, evaluated
by the C++ core); atoms with gamma > threshold are *extrapolative*.

Diversity (greedy D-optimality, ML-PACE's ``pace_select`` idea on dcace's MaxVol grade): in the
coordinates c_i = B_i G_s of species s (G_s the potential's grade matrix, so the training set's
active set is the identity and gamma_i = max_k |c_ik|), keep a current active set A_s (r x r,
initially I).  Repeat K times: score every remaining candidate by the largest grade of its atoms
against the current set, max_i max_k |(c_i A_s^-1)_k|; pick the best; then update A_s by MaxVol on
[A_s; c of the picked structure's extrapolative atoms].  Atoms a pick has just taught the set drop
to grade <= 1, so a near-duplicate frame of the same trajectory scores low next, and the picks
spread over different extrapolative environments.

Pool files are extxyz (or anything ASE reads) or LAMMPS text dumps; a dump without an ``element``
column needs the type -> element map (``--type-map``; for a one-element potential the potential's
element is used).  Picks from a labelled pool keep their labels (energy, forces) in the output.
``--cut-radius r`` writes, instead of each picked frame, the non-periodic cluster
of atoms within r of its most extrapolative atom (what a molecular DFT code can afford).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .grade import maxvol

__all__ = ["PoolFrame", "read_pool", "select", "cut_cluster", "select_cli", "SelectionError"]

_DUMP_SUFFIXES = (".lammpstrj", ".dump", ".lammpsdump")


class SelectionError(ValueError):
    pass


@dataclass
class PoolFrame:
    atoms: object            # ase.Atoms (with the file's labels, if any, as its calculator)
    source: str
    index: int
    gamma: np.ndarray | None = None      # (N,) per-atom grade
    c: list = field(default_factory=list)   # per species: (n_ext, r_s) coordinates of extrapolative atoms

    @property
    def where(self):
        return f"{self.source} frame {self.index}"

    @property
    def max_grade(self) -> float:
        return float(self.gamma.max()) if self.gamma is not None and len(self.gamma) else 0.0


def _is_dump(path, fmt):
    return fmt == "lammps-dump-text" or (fmt is None and Path(path).suffix.lower() in _DUMP_SUFFIXES)


def _dump_has_elements(path) -> bool:
    if Path(path).stat().st_size == 0:
        raise SelectionError(f"{path}: empty dump, no frames (did no frame exceed the dump threshold?)")
    with open(path) as fh:
        for line in fh:
            if line.startswith("ITEM: ATOMS"):
                return "element" in line.split()[2:]
    raise SelectionError(f"{path}: not a LAMMPS text dump (no 'ITEM: ATOMS' line)")


def read_pool(files, elements, type_map=None, fmt=None):
    """PoolFrames of all files; dump types mapped to elements (type_map or the one element)."""
    import ase.io

    frames = []
    for path in files:
        if not Path(path).is_file():
            raise SelectionError(f"{path}: no such pool file")
        dump = _is_dump(path, fmt)
        mapping = None
        if dump and not _dump_has_elements(path):
            if type_map is None and len(elements) > 1:
                raise SelectionError(f"{path}: LAMMPS dump without an element column and no --type-map: give the "
                                     f"element of each atom type, e.g. --type-map {' '.join(elements)} "
                                     f"(the pair_coeff * * order)")
            mapping = list(type_map or elements)
        try:
            images = ase.io.read(path, index=":", format="lammps-dump-text" if dump else fmt)
        except Exception as exc:   # ASE raises many types; name the file
            raise SelectionError(f"{path}: cannot read the pool file: {exc}") from None
        for k, at in enumerate(images):
            if mapping is not None:
                types = at.numbers   # ASE keeps the LAMMPS type as the atomic number
                bad = sorted(set(int(t) for t in types if t < 1 or t > len(mapping)))
                if bad:
                    raise SelectionError(f"{path} frame {k}: atom type(s) {bad} but the type map has {len(mapping)} "
                                         f"element(s) {mapping}: give --type-map with one element per type")
                at.set_chemical_symbols([mapping[t - 1] for t in types])
            unknown = sorted(set(at.get_chemical_symbols()) - set(elements))
            if unknown:
                raise SelectionError(f"{path} frame {k}: element(s) {unknown} that the potential ({elements}) lacks")
            frames.append(PoolFrame(at, str(path), k))
    return frames


def grade_pool(pot, frames, threshold):
    """Per-atom grades and the grade-space coordinates of the extrapolative atoms of every frame."""
    if not pot.has_grade:
        raise SelectionError("the potential has no extrapolation grade (file format < 3): refit it with this dcace")
    G = pot.grade_matrices
    basis = pot.basis
    S = basis.n_species
    for fr in frames:
        B = basis.descriptors(fr.atoms)
        sp = basis.species_of(fr.atoms)
        fr.gamma = np.asarray(pot.compute(fr.atoms)["extrapolation"], dtype=float)
        ext = fr.gamma > threshold
        fr.c = [B[(sp == s) & ext] @ G[s] for s in range(S)]
    return G


def _score(fr, Ainv):
    best = 0.0
    for s, c in enumerate(fr.c):
        if len(c) and Ainv[s] is not None:
            best = max(best, float(np.abs(c @ Ainv[s]).max()))
    return best


def select(pot, frames, n, threshold=1.0):
    """Indices of n picks (greedy MaxVol, see the module docstring) and per-pick info."""
    if n < 1:
        raise SelectionError(f"-n {n}: pick at least one structure")
    if n > len(frames):
        raise SelectionError(f"-n {n} is larger than the pool ({len(frames)} structures)")
    G = grade_pool(pot, frames, threshold)
    A = [np.eye(g.shape[1]) if g.shape[1] else None for g in G]
    Ainv = [a.copy() if a is not None else None for a in A]
    left = set(range(len(frames)))
    picks, info = [], []
    for _ in range(n):
        ext = [i for i in left if any(len(c) for c in frames[i].c)]
        if ext:
            scores = {i: _score(frames[i], Ainv) for i in ext}
            i = max(ext, key=lambda j: (scores[j], -j))
            why = "diverse"
        else:   # no extrapolative structure left: the highest grade
            i = max(left, key=lambda j: (frames[j].max_grade, -j))
            scores, why = {i: frames[i].max_grade}, "highest grade (nothing extrapolative left)"
        picks.append(i)
        left.discard(i)
        info.append({"source": frames[i].source, "frame": frames[i].index, "max_grade": frames[i].max_grade,
                     "n_extrapolative": int(sum(len(c) for c in frames[i].c)),
                     "grade_vs_picks": float(scores[i]), "why": why})
        for s, c in enumerate(frames[i].c):   # teach the active set this pick's atoms
            if len(c) and A[s] is not None:
                I, _, _, _ = maxvol(np.vstack([A[s], c]))
                A[s] = np.vstack([A[s], c])[I]
                Ainv[s] = np.linalg.inv(A[s])
    return picks, info


def pick_distances(pot, frames, picks):
    """Pairwise distances of the picks' mean descriptors, in units of the pool's per-column spread."""
    basis = pot.basis
    P = []
    for fr in frames:
        b, cnt = basis.descriptor_sums(fr.atoms)
        P.append(np.ravel(b) / max(float(np.sum(cnt)), 1.0))
    P = np.array(P)
    sd = P.std(axis=0)
    sd[sd <= 1e-12 * max(sd.max(), 1e-300)] = 1.0
    Q = P[picks] / sd
    d = np.sqrt(((Q[:, None] - Q[None]) ** 2).sum(axis=2))
    return d


def cut_cluster(atoms, centre: int, radius: float, vacuum: float = 6.0):
    """Non-periodic cluster of the atoms within radius of atom `centre` (periodic images included),
    centred in a box with `vacuum` Å of empty space on each side."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    i, j, D = neighbor_list("ijD", atoms, radius)
    sel = i == centre
    pos = np.vstack([[0.0, 0.0, 0.0], D[sel]])
    nums = np.concatenate([[atoms.numbers[centre]], atoms.numbers[j[sel]]])
    cl = Atoms(numbers=nums, positions=pos, pbc=False)
    cl.center(vacuum=vacuum)
    return cl


def select_cli(args) -> int:
    from .atomic import atomic_path, same_file
    from .potential import Potential

    for p in args.pool + [args.potential] + ([args.state] if args.state else []):
        if same_file(args.output, p):
            raise SelectionError(f"-o/--output {args.output} is the input file {p}: refusing to overwrite it")
    pot = Potential.load(args.potential)
    if args.state:
        from .state import check_potential, load_state

        check_potential(load_state(args.state), args.potential)
    frames = read_pool(args.pool, pot.elements, args.type_map, args.format)
    if args.n > len(frames):
        raise SelectionError(f"-n {args.n} is larger than the pool: {len(frames)} structures in "
                             + ", ".join(args.pool))
    picks, info = select(pot, frames, args.n, threshold=args.threshold)
    n_ext = sum(fr.max_grade > args.threshold for fr in frames)
    out = []
    for k, i in zip(info, picks):
        fr = frames[i]
        at = fr.atoms.copy()
        at.calc = fr.atoms.calc    # labels of a labelled pool (extxyz) stay with the pick
        if args.cut_radius:
            centre = int(np.argmax(fr.gamma))
            at = cut_cluster(fr.atoms, centre, args.cut_radius)
            k["cluster"] = {"centre_atom": centre, "radius": args.cut_radius, "n_atoms": len(at)}
        at.info.update({"select_source": fr.source, "select_frame": fr.index, "select_max_grade": k["max_grade"]})
        out.append(at)
    import ase.io

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output, suffix=".xyz") as tmp:
        ase.io.write(tmp, out, format="extxyz")
    d = pick_distances(pot, frames, picks)
    iu = np.triu_indices(len(picks), 1)
    print(f"pool: {len(frames)} structures from {len(args.pool)} file(s); {n_ext} with an atom above grade "
          f"{args.threshold:g}")
    print("pick  source                          frame  max grade  extrap. atoms  grade vs earlier picks")
    for r, k in enumerate(info):
        print(f"{r:4d}  {Path(k['source']).name[:30]:30s}  {k['frame']:5d}  {k['max_grade']:9.3g}  "
              f"{k['n_extrapolative']:13d}  {k['grade_vs_picks']:.3g}" + ("" if k["why"] == "diverse" else f"  ({k['why']})"))
    if len(iu[0]):
        print(f"pairwise distances of the picks' mean descriptors (units of the pool's spread): min "
              f"{d[iu].min():.3g}, median {np.median(d[iu]):.3g}")
    if args.cut_radius:
        sizes = [len(a) for a in out]
        print(f"wrote {len(out)} clusters of radius {args.cut_radius:g} Å around each pick's most extrapolative "
              f"atom (non-periodic, {min(sizes)}-{max(sizes)} atoms) to {args.output}, not the whole frames")
    else:
        print(f"wrote {len(out)} structures to {args.output}")
    if args.json:
        print(json.dumps({"picks": info, "pairwise_distance": d.tolist(), "n_pool": len(frames),
                          "n_extrapolative": int(n_ext)}))
    return 0
