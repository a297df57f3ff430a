// Potential: validation, the global DC combination (effective coefficients) and whole-structure
// evaluation.  File reading and writing live in potential_io.cpp.
#include "dcace/potential.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace dcace {

Potential::Potential(std::vector<std::string> elements, BasisSpec spec, std::vector<double> coef,
                     std::vector<double> e0, int n_experts, Gate gate, std::string metadata,
                     Baseline baseline, GateKind kind, std::vector<Gate> local_gates)
    : elements_(std::move(elements)),
      basis_(std::make_shared<ACEBasis>(std::move(spec))),
      coef_(std::move(coef)),
      e0_(std::move(e0)),
      n_experts_(n_experts),
      gate_(std::move(gate)),
      kind_(kind),
      local_gates_(std::move(local_gates)),
      metadata_(std::move(metadata)),
      baseline_(std::move(baseline)) {
  check();
  if (kind_ == GateKind::Atom) build_local_tables();
}

const char* gate_kind_name(GateKind k) {
  switch (k) {
    case GateKind::None: return "none";
    case GateKind::Structure: return "structure";
    case GateKind::Atom: return "atom";
    case GateKind::Neighbourhood: return "neighbourhood";
  }
  return "?";
}

void check_gate(const Gate& g, size_t D, int M, const std::string& what, const char* dim_name) {
  if (g.n_experts != M) throw InputError(what + " has " + std::to_string(g.n_experts) + " experts, potential " + std::to_string(M));
  if (g.dim_in != static_cast<int>(D)) throw InputError(what + " input dimension must be " + dim_name + " = " + std::to_string(D));
  if (g.dim_out < 1) throw InputError(what + " projection must have at least one row");
  if (g.mean.size() != D || g.scale.size() != D) throw InputError(what + " mean/scale must have " + dim_name + " values");
  if (g.projection.size() != static_cast<size_t>(g.dim_out) * D) throw InputError(what + " projection has the wrong size");
  if (g.centroids.size() != static_cast<size_t>(M) * g.dim_out) throw InputError(what + " centroids have the wrong size");
  if (g.spread.size() != static_cast<size_t>(M) || g.bias.size() != static_cast<size_t>(M))
    throw InputError(what + " spread/bias must have one value per expert");
  if (!(g.temperature > 0.0) || !std::isfinite(g.temperature)) throw InputError(what + " temperature must be > 0");
  for (double s : g.scale)
    if (!(s > 0.0) || !std::isfinite(s)) throw InputError(what + " scale values must be > 0");
  for (double s : g.spread)
    if (!(s > 0.0) || !std::isfinite(s)) throw InputError(what + " spreads must be > 0");
  for (const auto* v : {&g.mean, &g.projection, &g.centroids, &g.bias})
    for (double x : *v)
      if (!std::isfinite(x)) throw InputError("non-finite " + what + " parameter");
}

void Potential::check() const {
  const int S = basis_->n_species(), K = basis_->n_features(), M = n_experts_;
  if (static_cast<int>(elements_.size()) != S)
    throw InputError("the potential lists " + std::to_string(elements_.size()) + " elements but its basis has " +
                     std::to_string(S) + " species");
  for (size_t a = 0; a < elements_.size(); ++a)
    for (size_t b = a + 1; b < elements_.size(); ++b)
      if (elements_[a] == elements_[b]) throw InputError("element " + elements_[a] + " is listed twice");
  for (const auto& e : elements_)
    if (e.empty() || e.find_first_of(" \t\r\n") != std::string::npos)
      throw InputError("element name '" + e + "' is empty or contains white space");
  if (metadata_.find_first_of("\r\n") != std::string::npos) throw InputError("metadata must be a single line");
  {  // the file reader accepts only a JSON object: what is written must read back
    const size_t a = metadata_.find_first_not_of(" \t"), b = metadata_.find_last_not_of(" \t");
    if (a == std::string::npos || metadata_[a] != '{' || metadata_[b] != '}')
      throw InputError("metadata must be one JSON object {...}");
  }
  if (M < 1) throw InputError("number of experts must be >= 1, got " + std::to_string(M));
  if (coef_.size() != static_cast<size_t>(M) * S * K)
    throw InputError("expected " + std::to_string(static_cast<size_t>(M) * S * K) + " coefficients, got " +
                     std::to_string(coef_.size()));
  if (e0_.size() != static_cast<size_t>(M) * S) throw InputError("one-body terms: expected M x n_species values");
  for (double c : coef_)
    if (!std::isfinite(c)) throw InputError("non-finite expert coefficient");
  for (double c : e0_)
    if (!std::isfinite(c)) throw InputError("non-finite one-body term");
  baseline_.check(*basis_);
  if (M == 1) const_cast<Potential*>(this)->kind_ = GateKind::None;
  if (local_gate()) {
    check_local_gates();
  } else {
    if (kind_ == GateKind::None && M > 1) throw InputError("a potential with several experts needs a gate");
    if (gate_.n_experts != M)
      throw InputError("gate has " + std::to_string(gate_.n_experts) + " experts, potential " + std::to_string(M));
    if (M > 1) check_gate(gate_, static_cast<size_t>(S) * K, M, "gate", "n_species * n_features");
  }
  const_cast<Potential*>(this)->w_single_.assign(static_cast<size_t>(S) * basis_->n_monomials(), 0.0);
  for (int s = 0; s < S; ++s)
    basis_->monomial_weights(coef_.data() + static_cast<size_t>(s) * K,
                             const_cast<Potential*>(this)->w_single_.data() + static_cast<size_t>(s) * basis_->n_monomials());
}

void Potential::check_finite(const double* v, size_t n, const char* what) const {
  for (size_t k = 0; k < n; ++k)
    if (!std::isfinite(v[k]))
      throw InputError(source_ + ": non-finite " + what + " (entry " + std::to_string(k) +
                       "): the potential's coefficients or gate overflow for this structure");
}

int Potential::species_index(const std::string& element) const {
  for (size_t s = 0; s < elements_.size(); ++s)
    if (elements_[s] == element) return static_cast<int>(s);
  return -1;
}

void Potential::combine(const double* Bsum, const double* counts, Combination& out,
                        const double* core_correction) const {
  const int S = n_species(), K = n_features(), M = n_experts_;
  const size_t SK = static_cast<size_t>(S) * K, nm = basis_->n_monomials();
  out.weights.assign(M, 0.0);
  out.expert_energy.assign(M, 0.0);
  out.nearest = 0.0;
  if (local_gate()) {  // local gate: nothing structure-wide (weights are per atom)
    out.weights.assign(M, 0.0);
    out.energy = 0.0;
    return;
  }
  if (M == 1) {
    out.weights[0] = 1.0;
    out.c_eff.assign(coef_.begin(), coef_.end());
    out.c_energy = out.c_eff;
    out.e0_energy.assign(e0_.begin(), e0_.end());
    out.w_force = w_single_;
    out.w_energy = w_single_;
    double E = 0.0;
    if (Bsum && counts) {
      for (size_t k = 0; k < SK; ++k) E += coef_[k] * Bsum[k];
      for (int s = 0; s < S; ++s) E += e0_[s] * counts[s];
    }
    out.expert_energy[0] = out.energy = E;
    return;
  }
  if (!Bsum || !counts) throw InputError("the gate of a potential with several experts needs descriptor sums");
  double N = 0.0;
  for (int s = 0; s < S; ++s) N += counts[s];
  std::vector<double> p(SK, 0.0), dw(static_cast<size_t>(M) * SK);
  if (N > 0.0)
    for (size_t k = 0; k < SK; ++k) p[k] = Bsum[k] / N;
  gate_.evaluate(p.data(), out.weights.data(), dw.data(), &out.nearest);
  check_finite(out.weights.data(), M, "gate weights");
  check_finite(dw.data(), dw.size(), "gate gradient");
  for (int m = 0; m < M; ++m) {
    const double* c = coef_.data() + m * SK;
    double E = 0.0;
    for (size_t k = 0; k < SK; ++k) E += c[k] * Bsum[k];
    if (core_correction)
      for (size_t k = 0; k < SK; ++k) E += c[k] * core_correction[k];
    for (int s = 0; s < S; ++s) E += e0_[m * S + s] * counts[s];
    out.expert_energy[m] = E;
  }
  out.c_eff.assign(SK, 0.0);
  out.energy = combine_committee(M, SK, coef_.data(), SK, out.weights.data(), dw.data(), out.expert_energy.data(), N,
                                 out.c_eff.data());
  out.c_energy.assign(SK, 0.0);
  out.e0_energy.assign(S, 0.0);
  for (int m = 0; m < M; ++m) {
    const double wm = out.weights[m];
    const double* c = coef_.data() + m * SK;
    for (size_t k = 0; k < SK; ++k) out.c_energy[k] += wm * c[k];
    for (int s = 0; s < S; ++s) out.e0_energy[s] += wm * e0_[m * S + s];
  }
  out.w_force.assign(S * nm, 0.0);
  out.w_energy.assign(S * nm, 0.0);
  for (int s = 0; s < S; ++s) {
    basis_->monomial_weights(out.c_eff.data() + s * K, out.w_force.data() + s * nm);
    basis_->monomial_weights(out.c_energy.data() + s * K, out.w_energy.data() + s * nm);
  }
}

double Potential::core_grade(int zi, int n, const double* rij, const int* zj) const {
  if (!baseline_.enabled()) return 0.0;
  double g = 0.0;
  for (int j = 0; j < n; ++j) {
    const double* d = rij + 3 * j;
    const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2], hi = basis_->core_hi(zi, zj[j]);
    if (r2 < hi * hi) g = std::max(g, hi / std::sqrt(r2));
  }
  if (baseline_.has_density_core()) {   // only beyond the densest training atom (quiet inside)
    const double x = core_density(baseline_.density_cutoff, n, rij, nullptr) / baseline_.rho_lo[zi];
    if (x > 1.0) g = std::max(g, x);
  }
  return g;
}

double Potential::atom_core_switch(int zi, int n_neigh, const double* rij) const {
  if (!baseline_.has_density_core()) return 1.0;
  double df;
  return baseline_.density_switch(zi, core_density(baseline_.density_cutoff, n_neigh, rij, nullptr), &df);
}

void Potential::atom_pass1(int zi, int n_neigh, const double* rij, const int* zj, double* mono_sum,
                           double* core_sum, AtomScratch& sc) const {
  const double f = atom_core_switch(zi, n_neigh, rij);
  if (f == 1.0) {
    basis_->add_monomials(zi, n_neigh, rij, zj, sc.basis, mono_sum);
    return;
  }
  basis_->monomials(zi, n_neigh, rij, zj, sc.basis);
  const double* mono = sc.basis.mono.data();
  for (int t = 0; t < basis_->n_monomials(); ++t) {
    mono_sum[t] += mono[t];
    core_sum[t] += (f - 1.0) * mono[t];
  }
}

double Potential::ace_share(int zi, int n, const double* rij, double* df, AtomScratch& sc) const {
  *df = 0.0;
  if (!baseline_.has_density_core()) return 1.0;
  // rho first; its gradient only where the switch acts (rare)
  sc.rho = core_density(baseline_.density_cutoff, n, rij, nullptr);
  const double f = baseline_.density_switch(zi, sc.rho, df);
  if (f < 1.0) {
    sc.drho.resize(3 * static_cast<size_t>(n));
    core_density(baseline_.density_cutoff, n, rij, sc.drho.data());
  }
  return f;
}

double Potential::core_energy_gradient(int zi, int n, const double* rij, const int* zj, double f, double df,
                                       double eps, double* dE, const AtomScratch& sc) const {
  double e = 0.0;
  if (baseline_.enabled()) e += baseline_.pair_energy_gradient(*basis_, zi, n, rij, zj, dE);
  if (f < 1.0) {
    const double kappa = baseline_.dense_core_energy_gradient(*basis_, zi, n, rij, zj, 1.0 - f, dE);
    // the replacement R = kappa + L + B x rises with rho (format version 8, baseline.hpp); without a wall
    // (versions 2-7) density_wall is exactly 0 with a zero slope, so R = kappa, the old core, bit for bit
    double dwall;
    const double R = kappa + baseline_.density_wall(zi, sc.rho, &dwall);
    e += (1.0 - f) * R;
    const double c = (eps - R) * df + (1.0 - f) * dwall;
    for (size_t k = 0; k < 3 * static_cast<size_t>(n); ++k) dE[k] += c * sc.drho[k];
  }
  return e;
}

double Potential::atom_energy_gradient(int zi, int n, const double* rij, const int* zj, const Combination& comb,
                                       const double* A, double* dE, AtomScratch& sc, double* weights) const {
  if (kind_ == GateKind::Atom) return local_energy_gradient(zi, n, rij, zj, dE, sc, weights);
  if (kind_ == GateKind::Neighbourhood)   // its gate input mixes the neighbours' y_j: two passes
    throw InputError("the neighbourhood gate is evaluated over a whole structure (Potential::compute), "
                     "not atom by atom");
  if (weights) std::copy(comb.weights.begin(), comb.weights.end(), weights);
  const size_t nm = static_cast<size_t>(basis_->n_monomials());
  const double* w_force = comb.w_force.data() + zi * nm;
  const double* w_energy = comb.w_energy.data() + zi * nm;
  double df = 0.0;
  const double f = ace_share(zi, n, rij, &df, sc);
  const double* w = w_force;
  if (f < 1.0) {  // f_i scales the experts' part sum_m w_m c_m, not the gate-gradient part of c_eff
    sc.w.resize(nm);
    for (size_t t = 0; t < nm; ++t) sc.w[t] = w_force[t] - (1.0 - f) * w_energy[t];
    w = sc.w.data();
  }
  const double eps = A ? basis_->energy_gradient_from_A(zi, n, rij, zj, A, w, dE, sc.basis, w_energy)
                       : basis_->energy_gradient(zi, n, rij, zj, w, dE, sc.basis, w_energy);
  double e = comb.e0_energy[zi] + f * eps;
  e += core_energy_gradient(zi, n, rij, zj, f, df, eps, dE, sc);
  return e;
}

double Potential::compute(const Neighbours& nl, double* energies, double* forces, double* virial,
                          Combination& comb, double* virial_atoms, double* atom_weights) const {
  const int S = n_species(), K = n_features();
  const size_t nm = static_cast<size_t>(basis_->n_monomials());
  if (kind_ == GateKind::Neighbourhood) {   // two passes over the structure (neighbourhood_gate.cpp)
    combine(nullptr, nullptr, comb);
    const double E = neighbourhood_compute(nl, energies, forces, virial, virial_atoms, atom_weights);
    check_finite(&E, 1, "energy");
    check_finite(forces, 3 * static_cast<size_t>(nl.n_atoms), "forces");
    check_finite(virial, 6, "virial (stress)");
    check_finite(energies, static_cast<size_t>(nl.n_atoms), "per-atom energies");
    return E;
  }
  AtomScratch sc;
  if (kind_ == GateKind::Atom) {  // one pass: no structure-wide gate input
    combine(nullptr, nullptr, comb);
  } else if (n_experts_ > 1) {  // pass 1: descriptor sums (and the density core's correction) for the gate
    std::vector<double> mono(S * nm, 0.0), core(S * nm, 0.0), Bsum(static_cast<size_t>(S) * K),
        Bcore(static_cast<size_t>(S) * K), counts(S, 0.0);
    for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {
      atom_pass1(s, n, rij, zj, mono.data() + s * nm, core.data() + s * nm, sc);
      counts[s] += 1.0;
      (void)i;
    });
    for (int s = 0; s < S; ++s) {
      basis_->features_from_monomials(mono.data() + s * nm, Bsum.data() + static_cast<size_t>(s) * K);
      basis_->features_from_monomials(core.data() + s * nm, Bcore.data() + static_cast<size_t>(s) * K);
    }
    combine(Bsum.data(), counts.data(), comb, baseline_.has_density_core() ? Bcore.data() : nullptr);
  } else {
    combine(nullptr, nullptr, comb);
  }
  const double E = tally_atoms(*basis_, nl, energies, forces, virial, virial_atoms,
                               [&](int i, int s, int n, const double* rij, const int* zj, double* dE) {
                                 double* w = atom_weights ? atom_weights + static_cast<size_t>(i) * n_experts_ : nullptr;
                                 return atom_energy_gradient(s, n, rij, zj, comb, nullptr, dE, sc, w);
                               });
  check_finite(&E, 1, "energy");
  check_finite(forces, 3 * static_cast<size_t>(nl.n_atoms), "forces");
  check_finite(virial, 6, "virial (stress)");
  check_finite(energies, static_cast<size_t>(nl.n_atoms), "per-atom energies");
  return E;
}

}  // namespace dcace
