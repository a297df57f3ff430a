#!/usr/bin/env bash
# Mo: fit a DC potential, run NVE and NPT in LAMMPS, and compare the equation of state with DFT.
#   bash examples/Mo/run.sh [OUTDIR]        QUICK=1 for a reduced-size run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-Mo-out}
source "$here/../common.sh" "$out"   # $py, $bin (its lmp, mpiexec), $data_dir
data="$data_dir/zuo2020"
if [[ -n "${QUICK:-}" ]]; then
  basis=(--body-order 3 --max-degree 8 --experts 2); nve=(-var cells 4 -var steps 200); npt=(-var cells 4 -var steps 1000)
else
  basis=(--body-order 4 --max-degree 12 --experts auto); nve=(-var cells 10 -var steps 10000); npt=(-var cells 6 -var steps 5000)
fi
"$py" -m dcace.cli fit --train "$data/Mo_train.xyz" --test "$data/Mo_test.xyz" --elements Mo --cutoff 5.2 \
  "${basis[@]}" --plots "$out/plots" -o "$out/Mo.dcace"
"$bin/lmp" -in "$here/in.nve" -var potential "$out/Mo.dcace" "${nve[@]}" -log "$out/log.nve.lammps"
"$bin/lmp" -in "$here/in.npt" -var potential "$out/Mo.dcace" "${npt[@]}" -log "$out/log.npt.lammps"
"$py" "$here/eos.py" "$out/Mo.dcace" --plot "$out/eos.png"
