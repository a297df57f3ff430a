#!/usr/bin/env bash
# A picture of what a local gate does: fit a neighbourhood-gate Mo potential, run a solid-liquid
# coexistence cell in LAMMPS (>= 4,000 atoms), and colour every atom by its dominant expert.
#   bash examples/coexistence/run.sh [OUTDIR]      QUICK=1 for a reduced-size run (2,000 atoms, short)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-coexistence-out}
source "$here/../common.sh" "$out"   # $py, $bin (its lmp, mpiexec), $data_dir
data="$data_dir/zuo2020"
if [[ -n "${QUICK:-}" ]]; then
  basis=(--body-order 3 --max-degree 8); md=(-var cells 8 -var melt_steps 400 -var steps 100)
else
  basis=(--body-order 4 --max-degree 12); md=(-var cells 10 -var melt_steps 3000 -var steps 1000)
fi
"$py" -m dcace.cli fit --train "$data/Mo_train.xyz" --test "$data/Mo_test.xyz" --elements Mo --cutoff 5.2 \
  "${basis[@]}" --gate neighbourhood --gate-body-order 3 --experts 4 --anchors auto -o "$out/Mo_nbh.dcace" --quiet
(cd "$out" && "$bin/lmp" -in "$here/in.coexist" -var potential Mo_nbh.dcace "${md[@]}" -log log.coexist.lammps)
"$py" "$here/plot_experts.py" "$out/coexistence.dump" -o "$out/coexistence.png"
