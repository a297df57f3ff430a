#!/usr/bin/env bash
# TiAl: a two-element fit from data with non-default keys (forces in `force`, virial in `virial`),
# then NVT molecular dynamics of L1_0 TiAl with two atom types in LAMMPS.
#   bash examples/TiAl/run.sh [OUTDIR]        QUICK=1 for a reduced-size run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-TiAl-out}
source "$here/../common.sh" "$out"   # $py, $bin (its lmp, mpiexec), $data_dir
if [[ -n "${QUICK:-}" ]]; then
  basis=(--body-order 3 --max-degree 8 --experts 2); md=(-var cells 3 -var steps 200)
else
  basis=(--body-order 3 --max-degree 12 --experts auto); md=(-var cells 6 -var steps 5000)
fi
"$py" -m dcace.cli fit --train "$data_dir/tial/TiAl_tutorial.xyz" --elements Ti Al --cutoff 5.5 \
  "${basis[@]}" --energy-key energy --forces-key force --virial-key virial --plots "$out/plots" \
  -o "$out/TiAl.dcace"
# L1_0 TiAl (a = 4.00 A, c/a = 1.02) as a LAMMPS data file with types 1 = Ti, 2 = Al
"$py" - "$out/TiAl.data" <<'PY'
import sys
from ase import Atoms
from ase.io import write
a, c = 4.00, 4.08
cell = Atoms("Ti2Al2", cell=[a, a, c], pbc=True,
             scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
write(sys.argv[1], cell, format="lammps-data", specorder=["Ti", "Al"], masses=True)
PY
"$bin/lmp" -in "$here/in.md" -var potential "$out/TiAl.dcace" -var data "$out/TiAl.data" "${md[@]}" \
  -log "$out/log.md.lammps"
