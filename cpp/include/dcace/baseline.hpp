// The short-range core of a dcace potential (paper eq. 10, E = E_baseline + sum_m w_m E_m): where the
// data end, a physical repulsion takes over from the fitted ACE experts.  Two parts, both optional:
//
// 1. Pair core (ZBL).  The universal ZBL screened-nuclear repulsion of Ziegler, Biersack and Littmark,
//      phi(r) = (e^2 / 4 pi eps0) Z_a Z_b / r * sum_k c_k exp(-d_k r / a),
//      a = 0.46850 / (Z_a^0.23 + Z_b^0.23) A,  c = (0.18175, 0.50986, 0.28022, 0.02817),
//      d = (3.19980, 0.94229, 0.40290, 0.20162),
//    acts on every pair as phi(r) (1 - g(r)), g = core_switch(r; lo, hi) of the pair's core window of
//    the basis (ace_basis.hpp), where the ACE radial functions are switched on by g.  Each atom carries
//    half of each of its pairs, so per-atom energies sum to E.  With a level shift Delta_ab >= 0 per
//    pair (format version 4; 0 before) the pair core is (phi(r) + Delta_ab)(1 - g(r)): the fit sets
//    Delta_ab so that the handover across the window is at least as high as the fitted dimer energy at
//    its top, so the dimer curve keeps rising through it (dcace/baseline.py, docs/short-range.md).
//    Delta acts only below hi, so it changes nothing where the data are.
//
// 2. Density core.  An atom whose neighbourhood is denser than any training atom's is handed from ACE
//    to the full ZBL repulsion of its pairs:
//      rho_i   = sum_j (1 - r_ij^2 / r_rho^2)^6            (r_ij < r_rho; no square root, C^5 at r_rho)
//      f_i     = 1 - core_switch(rho_i; rho_lo_s, rho_hi_s)   (s = species of i; 1 for every training atom)
//      kappa_i = (1/2) sum_j phi(r_ij) g(r_ij) t(r_ij),    t = 1 - core_switch(r; 3/4 r_cut, r_cut)
//      e_i     = e0 + f_i eps_i + (1 - f_i) kappa_i + (pair core)
//    with eps_i the (gated) ACE energy of atom i.  Where f_i = 1 (all of the training data, by
//    construction of rho_lo) the model is exactly the fitted one.
//
// 3. Density wall (format version 8; absent in older files, which keep the formula above exactly).
//    kappa_i alone can lie below the ACE energy it replaces (the ACE level is arbitrary: the one-body
//    terms and the constant parts of the features trade off), and the blend then goes downhill
//    through the window: a plateau, not a wall (TiAl L1_0 at 0.85 a0, docs/short-range.md).  With a
//    wall the replacement is lifted to a per-species level and keeps rising with the density:
//      R_i = kappa_i + L_s + B_s (rho_i - rho_lo_s) / (rho_hi_s - rho_lo_s),   B_s >= 0
//      e_i = e0 + f_i eps_i + (1 - f_i) R_i + (pair core)
//    L_s is at least the largest eps_i - kappa_i the fit's compressed crystals reach in the window
//    (dcace/baseline.py, density_wall), so the hand-over goes uphill; beyond the window e_i rises
//    with rho_i (B_s) and with ZBL whatever ACE does there.  R_i is C-infinity in rho_i.
#pragma once

#include <vector>

#include "dcace/ace_basis.hpp"

namespace dcace {

constexpr double kCoulomb = 14.399645;  // e^2 / (4 pi eps0), eV A (the value LAMMPS's metal units use)

// ZBL pair energy phi(r) and dphi/dr for nuclear charges za, zb (unswitched).
double zbl_energy(double za, double zb, double r, double* dphi_dr);

// rho_i of one atom from its neighbour vectors; with drho (n x 3) also d rho / d r_ij.
double core_density(double r_rho, int n_neigh, const double* rij, double* drho_drij);

struct Baseline {
  std::vector<double> atomic_numbers;  // per species (ZBL); empty = no baseline at all
  double density_cutoff = 0.0;         // r_rho; 0 = no density core
  std::vector<double> rho_lo, rho_hi;  // per species
  std::vector<double> pair_shift;      // S x S level shifts Delta_ab of the pair core (eV); empty = 0
  std::vector<double> wall_level, wall_slope;  // per species L_s, B_s (eV; version 8); empty = no wall

  double shift(int za, int zb) const {
    return pair_shift.empty() ? 0.0 : pair_shift[static_cast<size_t>(za) * atomic_numbers.size() + zb];
  }

  bool enabled() const { return !atomic_numbers.empty(); }
  bool has_density_core() const { return density_cutoff > 0.0; }
  bool has_density_wall() const { return !wall_level.empty(); }

  // Pair core: half the switched ZBL energy of atom i's pairs (centre species zi), *adding* its
  // derivative to dE_drij (n_neigh x 3).  Pairs at r >= hi cost one comparison.  Throws InputError
  // for coincident atoms.
  double pair_energy_gradient(const ACEBasis& basis, int zi, int n_neigh, const double* rij, const int* zj,
                              double* dE_drij) const;
  // f_i and df/drho for a centre of species zi (1 and 0 without a density core).
  double density_switch(int zi, double rho, double* df) const;
  // kappa_i, adding scale * d kappa_i / d r_ij to dE_drij.
  double dense_core_energy_gradient(const ACEBasis& basis, int zi, int n_neigh, const double* rij,
                                    const int* zj, double scale, double* dE_drij) const;
  // The wall's part of the replacement, L_s + B_s x (x = (rho - rho_lo) / (rho_hi - rho_lo)), and its
  // derivative in rho (0 and 0 without a wall).
  double density_wall(int zi, double rho, double* dwall_drho) const;
  // Throws InputError unless consistent with a basis of n_species species (and its core window).
  void check(const ACEBasis& basis) const;
};

}  // namespace dcace
