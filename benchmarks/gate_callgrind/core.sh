#!/bin/sh
# core.sh SRC POT: callgrind instructions of one Potential::compute (2000-atom bcc Mo) through the C++
# core of source tree SRC: (I(3 evaluations) - I(1)) / 2, gate kernels at the baseline ISA.
set -e
H=$(cd "$(dirname "$0")" && pwd); T=$(mktemp -d)
g++ -std=c++17 -O3 -DNDEBUG -DDCACE_NO_AVX2_KERNELS -DDCACE_VERSION='"callgrind"' -I"$1/cpp/include" \
  "$1"/cpp/src/*.cpp "$H/core_harness.cpp" -o $T/harness
I() { valgrind --tool=callgrind --callgrind-out-file=/dev/null $T/harness "$2" $1 2>&1 | grep "refs" | awk '{gsub(",","",$4); print $4}'; }
a=$(I 1 "$2"); b=$(I 3 "$2")
echo "$(basename "$2") $(( (b - a) / 2 ))"
rm -r $T
