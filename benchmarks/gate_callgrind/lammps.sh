#!/bin/sh
# lammps.sh VENV POT: callgrind instructions of LAMMPS per MD step (bcc Mo 2000 atoms, 300 K NVE,
# pair_style dcace POT, 1 rank): (I(10 steps) - I(5 steps)) / 5, the venv's lmp binary and plugin.
set -e
V=$(cd "$1" && pwd); P=$(readlink -f "$2")
SP=$(echo $V/lib/python3*/site-packages)
export LD_LIBRARY_PATH=$V/lib LAMMPS_PLUGIN_PATH=$SP/dcace/lammps_plugin OMP_NUM_THREADS=1
D=$(mktemp -d)
for n in 5 10; do
  PYTHONPATH=$(dirname "$0")/.. "$V/bin/python" -c "import sys; from lammps_common import bcc_deck; \
sys.stdout.write(bcc_deck(10, ['pair_style dcace', 'pair_coeff * * $P Mo'], $n))" > $D/in.$n   # the benchmarks' deck
  (cd $D && valgrind --tool=callgrind --callgrind-out-file=/dev/null $SP/lammps/lmp -in in.$n -log none -nocite \
     -screen none) 2>&1 | grep "refs" | awk '{gsub(",","",$4); print $4}' > $D/I.$n
done
echo "$(basename $V) $(basename $P) $(( ($(cat $D/I.10) - $(cat $D/I.5)) / 5 ))"
rm -r $D
