"""Run under `mpiexec -n N python mpi_fit_script.py OUTDIR` by tests/test_mpi_fit.py (not a test itself).

Every rank fits through the Python API with comm=MPI.COMM_WORLD and writes what it got back:
  OUTDIR/api.rank<r>.dcace    Zuo Mo (every 2nd), many blocks per fold (batch_size=8), experts auto
  OUTDIR/idle.rank<r>.dcace   6 structures, 2 folds: 2 blocks, so ranks 2.. have nothing to do
  OUTDIR/bad.rank<r>.txt      the error every rank raised for a bad frame (owned by one rank)
"""
import sys
from pathlib import Path

from ase.io import read
from mpi4py import MPI

import dcace
from test_mpi_fit import API_KW, BAD_KW, IDLE_KW, MO_TRAIN

out = Path(sys.argv[1])
comm = MPI.COMM_WORLD
r = comm.Get_rank()
frames = read(MO_TRAIN, "::2")
pot = dcace.fit(frames, comm=comm, **API_KW)
(out / f"api.rank{r}.dcace").write_text(pot.to_string())
pot = dcace.fit(frames[:6], comm=comm, **IDLE_KW)
(out / f"idle.rank{r}.dcace").write_text(pot.to_string())
try:
    dcace.fit(sys.argv[2], comm=comm, **BAD_KW)
    msg = "no error"
except dcace.DataError as exc:
    msg = f"{type(exc).__name__}: {exc}"
(out / f"bad.rank{r}.txt").write_text(msg)
