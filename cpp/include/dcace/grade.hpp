// The per-atom extrapolation grade (docs/extrapolation.md).  For centre species s a K x r_s matrix
// G_s, built at fit time from the training atoms' descriptors (MaxVol active set: G_s = A_s^{-1},
// r_s = K), gives
//     gamma_i = max_k | sum_v B_{i,v} G_s[v,k] |
// dimensionless: 1 on the active set, <= 1 (+ the MaxVol tolerance) on the training atoms, > 1
// means extrapolation (ML-PACE's convention).  A species with r_s = 0 (no training atoms) has
// gamma = +inf for every atom.  Stored in the potential file (records `grade`, `grade_matrix`).
#pragma once

#include <string>
#include <vector>

#include "dcace/ace_basis.hpp"

namespace dcace {

struct Grade {
  std::string kind = "maxvol";
  std::vector<int> rank;                  // r_s per species
  std::vector<std::vector<double>> G;     // per species: K x r_s, row-major

  // Sizes (S species, K features, r_s <= K) and finiteness; throws InputError.
  void check(int n_species, int n_features) const;
  // gamma of n atoms of species species[a] from their descriptors B (n x K, row-major).  Atoms are
  // taken in blocks that share each row of G while it is in cache (G is K x K doubles, ~350 kB at
  // K = 211: one atom at a time is limited by memory traffic).  scratch is grown as needed.
  void gamma(int n, const int* species, const double* B, int n_features, double* out,
             std::vector<double>& scratch) const;
  static constexpr int kBlock = 16;
};

}  // namespace dcace
