#!/bin/sh
# ab_timing.sh REPEAT VENV_A VENV_B WORKDIR POT...: interleaved LAMMPS timings (one_run.py) of every
# potential with the plugin of VENV_A and of VENV_B (e.g. main's build and a branch's)
H=$(cd "$(dirname "$0")" && pwd); R=$1; A=$2; B=$3; W=$4; shift 4
for k in $(seq 1 $R); do
  for p in "$@"; do
    $A/bin/python $H/one_run.py $(readlink -f $p) A_$(basename $p .dcace)_$k $W
    $B/bin/python $H/one_run.py $(readlink -f $p) B_$(basename $p .dcace)_$k $W
  done
done
