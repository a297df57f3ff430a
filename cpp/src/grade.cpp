// The per-atom extrapolation grade: validation, gamma from a descriptor, and the Potential methods
// that evaluate it for a whole structure (Python) or one atom (LAMMPS, compute dcace/atom).
#include "dcace/grade.hpp"

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

double Grade::gamma(int s, const double* B, int K, double* y) const {
  const int r = rank[s];
  if (r == 0) return std::numeric_limits<double>::infinity();
  const double* g = G[s].data();
  for (int k = 0; k < r; ++k) y[k] = 0.0;
  for (int v = 0; v < K; ++v) {
    const double b = B[v];
    const double* row = g + static_cast<size_t>(v) * r;
    for (int k = 0; k < r; ++k) y[k] += b * row[k];
  }
  double m = 0.0;
  for (int k = 0; k < r; ++k) m = std::fmax(m, std::fabs(y[k]));
  return m;
}

void Potential::set_grade(Grade g) {
  g.check(n_species(), n_features());
  grade_ = std::make_shared<const Grade>(std::move(g));
}

void Potential::extrapolation(const Neighbours& nl, double* gamma) const {
  if (!grade_) throw InputError("this potential has no extrapolation grade (file format version < 3)");
  const int K = n_features();
  std::vector<double> B(static_cast<size_t>(nl.n_atoms) * K), y(K);
  structure_descriptors(*basis_, nl, B.data());
  for (int i = 0; i < nl.n_atoms; ++i)
    gamma[i] = grade_->gamma(nl.species[i], B.data() + static_cast<size_t>(i) * K, K, y.data());
}

double Potential::atom_extrapolation(int s, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                                     std::vector<double>& scratch) const {
  if (!grade_) throw InputError("this potential has no extrapolation grade (file format version < 3)");
  const int K = n_features();
  if (scratch.size() < 2 * static_cast<size_t>(K)) scratch.resize(2 * static_cast<size_t>(K));
  // the one per-atom descriptor call of the grade (merge point for a centre-species argument)
  basis_->descriptors(n_neigh, rij, zj, scratch.data(), ws);
  return grade_->gamma(s, scratch.data(), K, scratch.data() + K);
}

}  // namespace dcace
