// The atom gate's dense kernels (gate_kernels.hpp): per atom, R = d + M dot products over the K
// features (the gate's projections and the experts' energies) and one combination of the same R
// rows (the atom's effective coefficients).  Written once with four-wide vectors and four rows per
// sweep (each x[v] / out[v] loaded once per four rows); compiled for the baseline ISA and, on
// x86-64, for AVX2 + FMA, picked by what the CPU supports.
#include "gate_kernels.hpp"


namespace dcace {
namespace {

// four doubles (GCC/Clang vector extension: two SSE2 registers in the baseline build, one AVX
// register in the other); v4u is the unaligned, aliasing view of memory, as __m256d_u in immintrin.h.
// No vector crosses a call boundary.
typedef double v4 __attribute__((vector_size(32)));
typedef double v4u __attribute__((vector_size(32), aligned(8), may_alias));

#define DCACE_AT4(p) (*reinterpret_cast<const v4u*>(p))

constexpr int kBlock = 8;   // rows per sweep: eight independent sums hide the add latency

// rows r0..r0+nr-1 (nr <= kBlock) dotted with x; missing rows of a block repeat row r0
__attribute__((always_inline)) inline void dots(const double* rows, int r0, int nr, int n, const double* x,
                                                double* out) {
  const double* a[kBlock];
  for (int k = 0; k < kBlock; ++k) a[k] = rows + static_cast<long>(r0 + (k < nr ? k : 0)) * n;
  v4 s[kBlock];
  for (int k = 0; k < kBlock; ++k) s[k] = v4{0.0, 0.0, 0.0, 0.0};
  int v = 0;
  for (; v + 4 <= n; v += 4) {
    const v4 xv = DCACE_AT4(x + v);
    for (int k = 0; k < kBlock; ++k) s[k] += DCACE_AT4(a[k] + v) * xv;
  }
  for (int k = 0; k < nr; ++k) {
    double t = (s[k][0] + s[k][1]) + (s[k][2] + s[k][3]);
    for (int u = v; u < n; ++u) t += a[k][u] * x[u];
    out[r0 + k] = t;
  }
}

__attribute__((always_inline)) inline void project_impl(const double* rows, int R, int n, const double* x,
                                                        double* out) {
  for (int r = 0; r < R; r += kBlock) dots(rows, r, R - r < kBlock ? R - r : kBlock, n, x, out);
}

__attribute__((always_inline)) inline void combine_impl(const double* rows, const double* k, int R, int n,
                                                        double* out) {
  for (int v = 0; v < n; ++v) out[v] = 0.0;
  for (int r = 0; r < R; r += kBlock) {
    const int nr = R - r < kBlock ? R - r : kBlock;
    const double* a[kBlock];
    v4 kv[kBlock];
    for (int q = 0; q < kBlock; ++q) {   // missing rows: row r with weight 0
      a[q] = rows + static_cast<long>(r + (q < nr ? q : 0)) * n;
      const double kq = q < nr ? k[r + q] : 0.0;
      kv[q] = v4{kq, kq, kq, kq};
    }
    int v = 0;
    for (; v + 4 <= n; v += 4) {
      v4 acc = DCACE_AT4(out + v);
      for (int q = 0; q < kBlock; ++q) acc += kv[q] * DCACE_AT4(a[q] + v);
      *reinterpret_cast<v4u*>(out + v) = acc;
    }
    for (; v < n; ++v)
      for (int q = 0; q < nr; ++q) out[v] += k[r + q] * a[q][v];
  }
}

void project_base(const double* rows, int R, int n, const double* x, double* out) {
  project_impl(rows, R, n, x, out);
}
void combine_base(const double* rows, const double* k, int R, int n, double* out) {
  combine_impl(rows, k, R, n, out);
}

// -DDCACE_NO_AVX2_KERNELS builds the baseline ISA only (valgrind 3.19 does not decode one of the AVX2
// build's instructions: callgrind counts of the gates need this)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DCACE_NO_AVX2_KERNELS)
#define DCACE_HAVE_AVX2_KERNELS 1
__attribute__((target("avx2,fma"))) void project_avx2(const double* rows, int R, int n, const double* x,
                                                      double* out) {
  project_impl(rows, R, n, x, out);
}
__attribute__((target("avx2,fma"))) void combine_avx2(const double* rows, const double* k, int R, int n,
                                                      double* out) {
  combine_impl(rows, k, R, n, out);
}
#endif

GateKernels choose() {
#ifdef DCACE_HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {project_avx2, combine_avx2};
#endif
  return {project_base, combine_base};
}

}  // namespace

const GateKernels& gate_kernels() {
  static const GateKernels k = choose();
  return k;
}

}  // namespace dcace
