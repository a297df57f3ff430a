// callgrind harness (benchmarks/gate_callgrind/core.sh): Potential::compute on bcc Mo 10x10x10 (2000 atoms), rattled 0.05 A
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "dcace/potential.hpp"
#include "dcace/structure.hpp"
using namespace dcace;
int main(int argc, char** argv) {
  Potential pot = Potential::read(argv[1]);
  const int reps = argc > 2 ? atoi(argv[2]) : 1;
  const double a = 3.147; const int nc = 10; const double L = a * nc;
  std::vector<double> x;
  std::mt19937 rng(0); std::normal_distribution<double> nd(0.0, 0.05);
  for (int i = 0; i < nc; ++i) for (int j = 0; j < nc; ++j) for (int k = 0; k < nc; ++k)
    for (int b = 0; b < 2; ++b) { x.push_back((i + 0.5 * b) * a + nd(rng)); x.push_back((j + 0.5 * b) * a + nd(rng)); x.push_back((k + 0.5 * b) * a + nd(rng)); }
  const int N = x.size() / 3;
  const double rc = pot.cutoff();
  std::vector<int64_t> first(N + 1, 0); std::vector<int> jj; std::vector<double> rij; std::vector<int> sp(N, 0);
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      if (j == i) continue;
      double d[3];
      for (int q = 0; q < 3; ++q) { d[q] = x[3 * j + q] - x[3 * i + q]; d[q] -= L * std::round(d[q] / L); }
      if (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] < rc * rc) { jj.push_back(j); for (int q = 0; q < 3; ++q) rij.push_back(d[q]); }
    }
    first[i + 1] = jj.size();
  }
  Neighbours nl; nl.n_atoms = N; nl.species = sp.data(); nl.first = first.data(); nl.j = jj.data(); nl.rij = rij.data();
  std::vector<double> e(N), f(3 * N), v(6), w(N * pot.n_experts());
  Combination comb;
  double E = 0;
  for (int r = 0; r < reps; ++r) E = pot.compute(nl, e.data(), f.data(), v.data(), comb, nullptr, w.data());
  double fm = 0; for (double q : f) fm = std::max(fm, std::abs(q));
  std::printf("N %d pairs %zu E %.12f maxF %.10f\n", N, jj.size(), E, fm);
}
