// The two dense kernels of the atom gate (local_gate.cpp), chosen once at run time: on x86-64 CPUs
// with AVX2 and FMA a build of them for those instructions, elsewhere the baseline one (same
// source; the two agree to round-off).  Internal to the core: not installed.
#pragma once

namespace dcace {

struct GateKernels {
  // out[r] = rows_r . x for the R rows (n values each, row-major)
  void (*project)(const double* rows, int R, int n, const double* x, double* out);
  // out (n) = sum_r k[r] rows_r
  void (*combine)(const double* rows, const double* k, int R, int n, double* out);
};

const GateKernels& gate_kernels();

}  // namespace dcace
