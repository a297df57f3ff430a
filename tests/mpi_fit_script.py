"""Run under `mpiexec -n N python mpi_fit_script.py OUTDIR` by tests/test_mpi_fit.py (not a test itself).

Every rank fits through the Python API with comm=MPI.COMM_WORLD and writes what it got back:
  OUTDIR/api.rank<r>.dcace    Zuo Mo (every 2nd), many blocks per fold (batch_size=8), experts auto
  OUTDIR/idle.rank<r>.dcace   6 structures (a Dataset), 2 folds: 2 blocks, so ranks 2.. have nothing to do
  OUTDIR/bad.rank<r>.txt      the error every rank raised for a bad frame (owned by one rank)
  OUTDIR/label.rank<r>.txt    ... for a frame with NaN forces in a file (found by the one rank that parses it)
  OUTDIR/file.rank<r>.dcace   Zuo Mo train + test files: each rank parses only its frames (dcace.stream), again
                              in every pass (frames_budget_gb=0: dcace.restream)
  OUTDIR/parsed.rank<r>.txt   how many distinct frames this rank parsed in that fit
  OUTDIR/held.rank<r>.txt     how many frames this rank kept in the API fit (the others: FrameStubs), and
                              how many rows of the (n, D) descriptor sums it held after pass 1 (rank 0: all;
                              others: none)
  OUTDIR/stress_bytes.txt    rank 0: the stress rows its cost lines said it would keep in the API fit
  OUTDIR/few.rank<r>.dcace    3 structures read from a list (streamed): more ranks than structures
  OUTDIR/grade.npz            rank 0: fit_grade over the ranks' own structures, subsampled species
  OUTDIR/reuse.rank<r>.dcace  a reuse= fit (STATE = argv[4]) whose state's blocks are not a multiple of the ranks
"""
import sys
from pathlib import Path

from ase.io import read
from mpi4py import MPI

import numpy as np

import dcace
import dcace.pipeline
import dcace.stream
from dcace.grade import fit_grade
from dcace.parallel import Ranks
from test_mpi_fit import API_KW, BAD_KW, GRADE_ATOMS, IDLE_KW, MO_TEST, MO_TRAIN, REUSE_KW, grade_basis

out = Path(sys.argv[1])
comm = MPI.COMM_WORLD
r = comm.Get_rank()
frames = read(MO_TRAIN, "::2")
held, rows_held = [], []
read_data = dcace.pipeline.read_data
descriptor_pass = dcace.pipeline._descriptor_pass


def counting_read(*args, **kw):   # the real reader; records what this rank kept of the training set
    ds = read_data(*args, **kw)
    held.append(len(ds.kept))
    return ds


def counting_pass(*args, **kw):   # the real pass 1; records how many descriptor rows this rank keeps
    Bsum, counts = descriptor_pass(*args, **kw)
    rows_held.append(0 if Bsum is None else len(Bsum))
    return Bsum, counts


dcace.pipeline.read_data, dcace.pipeline._descriptor_pass = counting_read, counting_pass
pot = dcace.fit(frames, comm=comm, test=read(MO_TEST, "::4"), **API_KW)
dcace.pipeline.read_data, dcace.pipeline._descriptor_pass = read_data, descriptor_pass
(out / f"api.rank{r}.dcace").write_text(pot.to_string())
(out / f"held.rank{r}.txt").write_text(f"{held[0]} {rows_held[0]}")
if r == 0:   # rank 0 counts every rank's stress rows (it keeps them all) in its expected peak
    (out / "stress_bytes.txt").write_text(str(pot.report.cost["stress_bytes"]))
pot = dcace.fit(frames[:3], comm=comm, **IDLE_KW)   # 3 structures, 4 ranks: rank 3 holds none
(out / f"few.rank{r}.dcace").write_text(pot.to_string())
pot = dcace.fit(dcace.read_data(frames[:6]), comm=comm, **IDLE_KW)   # a Dataset: every rank holds it all
(out / f"idle.rank{r}.dcace").write_text(pot.to_string())
pot = dcace.fit(frames, reuse=sys.argv[4], comm=comm, **REUSE_KW)
(out / f"reuse.rank{r}.dcace").write_text(pot.to_string())


def error_of(path):
    """The DataError every rank raises fitting `path` (or "no error")."""
    try:
        dcace.fit(path, comm=comm, **BAD_KW)
    except dcace.DataError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


(out / f"bad.rank{r}.txt").write_text(error_of(sys.argv[2]))
(out / f"label.rank{r}.txt").write_text(error_of(sys.argv[3]))

parsed = []
parse_frame = dcace.stream._parse_frame


def counting_parse(*args):   # the real parser of one frame; records which frames this rank parsed
    parsed.append((args[1], args[2]))   # (file, frame): each pass parses a rank's frames again (dcace.restream)
    return parse_frame(*args)


dcace.stream._parse_frame = counting_parse
pot = dcace.fit(str(MO_TRAIN), test=str(MO_TEST), comm=comm, frames_budget_gb=0, **IDLE_KW)   # streamed
dcace.stream._parse_frame = parse_frame
(out / f"file.rank{r}.dcace").write_text(pot.to_string())
(out / f"parsed.rank{r}.txt").write_text(str(len(set(parsed))))

basis = grade_basis()
mine = [i for i in range(len(frames)) if i % comm.Get_size() == r]   # any split: the sums are in structure order
counts = np.array([np.bincount(basis.species_of(a), minlength=1) for a in frames])
G, notes, stats = fit_grade(basis, [frames[i] for i in mine], seed=3, max_atoms=GRADE_ATOMS, ranks=Ranks(comm),
                            positions=mine, counts=counts)
if r == 0:
    np.savez(out / "grade.npz", G=G[0], above=stats["species"][0]["above_1"], gmax=stats["max_training_grade"],
             fraction=stats["fraction_above_1"], notes="\n".join(notes))
