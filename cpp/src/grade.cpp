// The per-atom extrapolation grade: validation, gamma from a descriptor, and the Potential methods
// that evaluate it for a whole structure (Python) or one atom (LAMMPS, compute dcace/atom).
#include "dcace/grade.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "dcace/potential.hpp"
#include "dcace/structure.hpp"

namespace dcace {

void Grade::check(int n_species, int n_features) const {
  if (kind != "maxvol") throw InputError("unknown extrapolation grade type '" + kind + "'");
  if (static_cast<int>(rank.size()) != n_species || static_cast<int>(G.size()) != n_species)
    throw InputError("the extrapolation grade needs one matrix per species (" + std::to_string(n_species) +
                     "), got " + std::to_string(G.size()));
  for (int s = 0; s < n_species; ++s) {
    if (rank[s] < 0 || rank[s] > n_features)
      throw InputError("grade matrix of species " + std::to_string(s) + " has " + std::to_string(rank[s]) +
                       " columns, must be 0.." + std::to_string(n_features));
    if (G[s].size() != static_cast<size_t>(n_features) * rank[s])
      throw InputError("grade matrix of species " + std::to_string(s) + " must be " + std::to_string(n_features) +
                       " x " + std::to_string(rank[s]) + ", has " + std::to_string(G[s].size()) + " values");
    for (double x : G[s])
      if (!std::isfinite(x)) throw InputError("non-finite value in the grade matrix of species " + std::to_string(s));
  }
}

namespace {

// The K x r multiply-adds per atom dominate the grade's cost: on x86-64 an AVX2/FMA clone is chosen
// at load time where the CPU has it (same clone for ASE and LAMMPS on one machine).  The kernel does
// not throw (exceptions do not unwind through the clones): a non-finite row gives NaN.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DCACE_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define DCACE_CLONES
#endif
DCACE_CLONES
void gamma_kernel(const Grade& g, int n, const int* species, const double* B, int K, double* out,
                  double* y) noexcept {
  const size_t stride = static_cast<size_t>(K);   // r_s <= K
  for (int a0 = 0; a0 < n; a0 += Grade::kBlock) {
    const int nb = std::min(Grade::kBlock, n - a0);
    const double* Gs[Grade::kBlock];
    int rs[Grade::kBlock];
    for (int a = 0; a < nb; ++a) {
      const int s = species[a0 + a];
      Gs[a] = g.G[s].data();
      rs[a] = g.rank[s];
      std::fill(y + a * stride, y + a * stride + rs[a], 0.0);
    }
    for (int v = 0; v < K; ++v) {
      for (int a = 0; a < nb; ++a) {
        const int r = rs[a];
        const double b = B[static_cast<size_t>(a0 + a) * K + v];
        const double* __restrict row = Gs[a] + static_cast<size_t>(v) * r;
        double* __restrict ya = y + a * stride;
        for (int k = 0; k < r; ++k) ya[k] += b * row[k];
      }
    }
    for (int a = 0; a < nb; ++a) {
      const int r = g.rank[species[a0 + a]];
      if (r == 0) {
        out[a0 + a] = std::numeric_limits<double>::infinity();
        continue;
      }
      const double* ya = y + a * stride;
      double m = 0.0, nan_if_bad = 0.0;   // 0 * (inf or NaN) is NaN
      for (int k = 0; k < r; ++k) {
        m = std::fmax(m, std::fabs(ya[k]));
        nan_if_bad += 0.0 * ya[k];
      }
      out[a0 + a] = std::isnan(nan_if_bad) ? std::numeric_limits<double>::quiet_NaN() : m;
    }
  }
}

}  // namespace

void Grade::gamma(int n, const int* species, const double* B, int K, double* out,
                  std::vector<double>& y) const {
  if (y.size() < kBlock * static_cast<size_t>(K)) y.resize(kBlock * static_cast<size_t>(K));
  gamma_kernel(*this, n, species, B, K, out, y.data());
  for (int a = 0; a < n; ++a)
    if (std::isnan(out[a]))
      throw InputError("non-finite extrapolation grade (descriptor row " + std::to_string(a) +
                       "): overflow in B G or non-finite descriptors");
}

void Potential::set_grade(Grade g) {
  g.check(n_species(), n_features());
  grade_ = std::make_shared<const Grade>(std::move(g));
}

void Potential::extrapolation(const Neighbours& nl, double* gamma) const {
  if (!grade_) throw InputError("this potential has no extrapolation grade (file format version < 3)");
  const int K = n_features();
  std::vector<double> B(static_cast<size_t>(nl.n_atoms) * K), y;
  structure_descriptors(*basis_, nl, B.data());
  grade_->gamma(nl.n_atoms, nl.species, B.data(), K, gamma, y);
  if (!baseline_.enabled()) return;
  for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {
    gamma[i] = std::max(gamma[i], core_grade(s, n, rij, zj));
  });
}

void Potential::atom_descriptors(int s, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                                 double* B) const {
  basis_->descriptors(s, n_neigh, rij, zj, B, ws);
}

void Potential::grade_values(int n, const int* species, const double* B, double* gamma,
                             std::vector<double>& scratch) const {
  if (!grade_) throw InputError("this potential has no extrapolation grade (file format version < 3)");
  grade_->gamma(n, species, B, n_features(), gamma, scratch);
}

}  // namespace dcace
