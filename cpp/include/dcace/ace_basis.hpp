// The linear ACE basis: radial functions, real spherical harmonics, the atomic base A and the
// product (invariant) basis B of one atom, with the adjoint pass for energy/forces and the
// explicit Jacobian dB/dr_ij that only fitting needs.  No Python, MPI or LAMMPS in here: this is
// the one implementation of the descriptors that the Python package and pair_style dcace share.
//
// Conventions (see docs/potential-format.md):
//  * neighbours of a centre atom i are given as displacement vectors r_ij = r_j - r_i (Å) and
//    species indices z_j in 0..n_species-1;
//  * radial functions R_n(r), n = 0..n_radial-1 (degree convention uses n+1):
//      s = (r - r_inner) / (r_cut - r_inner),  x = 1 - 2 s,
//      R_n(r) = T_n(x) * (1 - s)^3            (Chebyshev T_n; C^2 at r_cut)
//    a neighbour closer than r_inner is an error, one at r >= r_cut contributes nothing;
//  * optional inner envelope (the ACE half of the short-range core, docs/potential-format.md): for
//    the pair (centre species zi, neighbour species zj), R_n is multiplied by the C^2 switch
//    g(r) = core_switch(r; lo, hi) (0 below lo, 1 above hi); neighbours at r <= lo contribute
//    nothing (no inner-cutoff error: the baseline's repulsion takes over there);
//  * real orthonormal spherical harmonics Y_lm, flat index l*l + l + m, m = -l..l:
//      Y_l0 = N_l0 P_l^0(z),  Y_lm = sqrt2 N_lm P_l^m(z) cos(m phi),  Y_l,-m = sqrt2 N_lm P_l^m sin(m phi)
//    with P_l^m including the Condon-Shortley phase (-1)^m and N_lm = sqrt((2l+1)/4pi (l-m)!/(l+m)!);
//  * channels c = (z_c, n_c, l_c); compact A index of (c, m) is chan_offset[c] + m + l_c;
//      A_{c m} = sum_{j: z_j = z_c} R_{n_c}(r_ij) Y_{l_c m}(r_ij / r_ij);
//    or, with chemical channels (n_chem = C > 0, the species-embedded / tensor-reduced basis),
//    z_c is a chemical channel k in 0..C-1 and every neighbour contributes with weight W_{k z_j}:
//      A_{c m} = sum_j W_{z_c z_j} R_{n_c}(r_ij) Y_{l_c m}(r_ij / r_ij),  W = chem_weights (C x S);
//  * monomials: products of 1..4 compact A entries (indices sorted ascending, padded with -1);
//  * features: B_v = sum_t coef_t * monomial_{mono_t}, stored as CSR rows over monomials.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dcace {

constexpr int kMaxOrder = 4;  // body order 5
constexpr int kMaxL = 15;     // largest angular momentum of the harmonics

// An error in the input (geometry, species, sizes). Python bindings map it to ValueError.
struct InputError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The C^2 switch of the short-range core: g = 0 for r <= lo, 1 for r >= hi, and in between the
// quintic smoothstep x^3 (10 - 15 x + 6 x^2), x = (r - lo) / (hi - lo) (g' and g'' vanish at both ends).
// The ACE radial functions are multiplied by g, the baseline's pair repulsion by 1 - g.
inline double core_switch(double r, double lo, double hi, double* dg) {
  if (r <= lo) { *dg = 0.0; return 0.0; }
  if (r >= hi) { *dg = 0.0; return 1.0; }
  const double w = hi - lo, x = (r - lo) / w;
  *dg = 30.0 * x * x * (1.0 - x) * (1.0 - x) / w;
  return x * x * x * (10.0 + x * (6.0 * x - 15.0));
}

struct BasisSpec {
  int n_species = 1;
  double r_cut = 5.0;
  double r_inner = 0.5;
  int n_radial = 1;
  int l_max = 0;
  std::vector<double> core_lo, core_hi;     // n_species^2 each (symmetric): inner envelope per pair
                                            // [lo, hi]; both empty = no envelope
  int n_chem = 0;                           // 0: chan_z are species; C > 0: chemical channels 0..C-1
  std::vector<double> chem_weights;         // n_chem x n_species (row k, column z): W_{k z}
  std::vector<int> chan_z, chan_n, chan_l;  // channels of A
  std::vector<int> mono_idx;                // kMaxOrder entries per monomial, -1 padded
  int n_features = 0;
  std::vector<int> feat_ptr;                // n_features + 1
  std::vector<int> feat_mono;               // nnz
  std::vector<double> feat_coef;            // nnz
};

// Scratch memory for one atom; reuse it across atoms (one per thread).
struct Workspace {
  std::vector<double> R, dR;      // n_neigh * n_radial
  std::vector<double> Y, dY;      // n_neigh * (l_max+1)^2, and *3 for gradients
  std::vector<double> A;          // n_A
  std::vector<double> gA;         // n_A: dE/dA (adjoint)
  std::vector<double> mono;       // n_mono values
  std::vector<double> dBdA;       // n_A * n_features (fitting only), layout [k][v]
  std::vector<int> active;        // neighbours inside the cutoff
  std::vector<double> rad_tmp;    // radial recurrence scratch (7 n_active) and distances (n_neigh)
};

class ACEBasis {
 public:
  explicit ACEBasis(BasisSpec spec);  // validates, throws InputError

  const BasisSpec& spec() const { return spec_; }
  int n_features() const { return spec_.n_features; }
  int n_species() const { return spec_.n_species; }
  int n_A() const { return n_A_; }
  int n_monomials() const { return n_mono_; }
  double cutoff() const { return spec_.r_cut; }
  bool has_core() const { return !spec_.core_lo.empty(); }
  bool embedded() const { return spec_.n_chem > 0; }
  // inner envelope window of the pair (a, b); only when has_core()
  double core_lo(int a, int b) const { return spec_.core_lo[static_cast<size_t>(a) * spec_.n_species + b]; }
  double core_hi(int a, int b) const { return spec_.core_hi[static_cast<size_t>(a) * spec_.n_species + b]; }

  // Per-feature coefficients (length n_features) -> per-monomial weights (length n_monomials),
  // w_t = sum of coef_v times the coupling coefficient over the features v that hold monomial t.
  void monomial_weights(const double* coef, double* w) const;
  // B (n_features) from A (n_A): every monomial's product added to the features that hold it,
  // without storing the monomials (the atom gate's B_i; feature_map.cpp).
  void features_from_A(const double* A, double* B) const;

  // B_i (length n_features) of one atom.
  void descriptors(int zi, int n_neigh, const double* rij, const int* zj, double* B, Workspace& ws) const;

  // Gradient dE/dr_ij (n_neigh x 3; zero rows for neighbours beyond the cutoff) of
  // E = sum over monomials of w * monomial (= coef . B_i when w = monomial_weights(coef)).
  // Returns that E, or, when w_energy is given, sum of w_energy * monomial (the DC gate uses one
  // set of weights for forces and another for per-atom energies, in the same pass).
  double energy_gradient(int zi, int n_neigh, const double* rij, const int* zj, const double* w,
                         double* dE_drij, Workspace& ws, const double* w_energy = nullptr) const;

  // Two-pass evaluation (the DC gate in LAMMPS).  Pass 1: values only; afterwards ws.A holds A_i and
  // ws.mono its monomials (sum them per species, then features_from_monomials gives sum_i B_i).
  void monomials(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws) const;
  // The same, but the monomials are added to sum[0..n_monomials) instead of stored in ws.mono.
  void add_monomials(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws, double* sum) const;
  void features_from_monomials(const double* mono, double* B) const;
  // Pass 2: as energy_gradient, but with A_i kept from pass 1 (not accumulated again).
  double energy_gradient_from_A(int zi, int n_neigh, const double* rij, const int* zj, const double* A,
                                const double* w, double* dE_drij, Workspace& ws,
                                const double* w_energy = nullptr) const;

  // One atomic-base pass for a coefficient vector that depends on B_i (the atom gate): prepare_gradient
  // leaves A_i and its gradients in ws (features_from_A(ws.A) gives B_i); gradient_prepared then runs
  // the adjoint of E = c . B_i for per-feature coefficients c (n_features) on them: dE/dr_ij as
  // energy_gradient, without accumulating A_i again, the monomial weights gathered from c as the
  // pass needs them and no energy (the caller has it from B_i).
  // With A (n_A values: A_i of this atom from an earlier values-only pass, atomic_values) A_i is not
  // accumulated again but copied into ws.A.
  void prepare_gradient(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                        const double* A = nullptr) const;
  // Values only: A_i into ws.A (no monomials, no gradients); features_from_A(ws.A) gives B_i (the
  // neighbourhood gate's first stage, which keeps A_i for prepare_gradient in its third).
  void atomic_values(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws) const;
  void gradient_prepared(int n_neigh, const double* rij, const int* zj, const double* c, double* dE_drij,
                         Workspace& ws) const;

  // Fitting: B_i and dB_i/dr_ij laid out as [(j*3 + a) * n_features + v].
  void descriptor_gradients(int zi, int n_neigh, const double* rij, const int* zj, double* B,
                            double* dB_drij, Workspace& ws) const;

  // Radial functions and derivatives at r (n_radial each); exposed for tests.
  void radial(double r, double* R, double* dR) const;

 private:
  void atomic_base(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws, bool grad,
                   bool accumulate = true) const;
  // R (and dR, unless null) of n neighbours at distances r[0..n), tmp >= 7 n doubles: the
  // Chebyshev recurrence runs across neighbours, so the chains are independent and pipeline.
  void radial_block(int n, const double* r, double* R, double* dR, double* tmp) const;
  void apply_core_envelope(int zi, const int* zj, const double* rr, Workspace& ws, bool grad) const;
  template <class W, bool kEnergy>
  double monomial_adjoint(const double* A, const W& w, const double* we, double* gA) const;
  double adjoint(int n_neigh, const double* rij, const int* zj, const double* A, const double* w,
                 double* dE_drij, Workspace& ws, const double* w_energy) const;
  void monomial_values(Workspace& ws) const;
  void build_feature_transpose();   // mono_feat_* (feature_map.cpp)
  template <bool Add>
  void monomial_values_into(const double* A, double* out) const;
  // sink(t, value) for every monomial t, value = the product of its A's (runs of equal order: no
  // branch in the inner loops); monomial_values_into and features_from_A are its two sinks
  template <class Sink>
  void for_each_monomial(const double* A, Sink&& sink) const {
    const int* idx = spec_.mono_idx.data();
    for (const OrderRun& run : order_runs_) {
      int t = run.begin;
      const int end = run.end;
      switch (run.order) {
        case 1:
          for (; t < end; ++t, idx += kMaxOrder) sink(t, A[idx[0]]);
          break;
        case 2:
          for (; t < end; ++t, idx += kMaxOrder) sink(t, A[idx[0]] * A[idx[1]]);
          break;
        case 3:
          for (; t < end; ++t, idx += kMaxOrder) sink(t, A[idx[0]] * A[idx[1]] * A[idx[2]]);
          break;
        default:
          for (; t < end; ++t, idx += kMaxOrder) sink(t, A[idx[0]] * A[idx[1]] * A[idx[2]] * A[idx[3]]);
      }
    }
  }
  void adjoint_to_rij(int n_neigh, const double* rij, const int* zj, const Workspace& ws,
                      double* dE_drij) const;

  BasisSpec spec_;
  int n_A_ = 0, n_mono_ = 0, n_Y_ = 0;
  std::vector<int> chan_offset_;
  struct WeightedChannel {
    int c;
    double weight;  // 1, or W_{z_c z} of the embedded basis
  };
  std::vector<std::vector<WeightedChannel>> chans_of_species_;  // channels a neighbour of species z feeds
  struct ChannelRun {
    int l, n0, count, offset;  // channels (z, l, n0..n0+count-1) stored contiguously from offset
    double weight;             // what a neighbour of this run's species contributes with
  };
  std::vector<std::vector<ChannelRun>> runs_of_species_;
  std::vector<int> mono_order_;
  struct OrderRun {
    int begin, end, order;  // monomials begin..end-1 all have this order
  };
  std::vector<OrderRun> order_runs_;
  // the features' CSR rows transposed: monomial t is in features mono_feat_[q] with coupling
  // coefficient mono_feat_coef_[q], q in mono_feat_ptr_[t]..mono_feat_ptr_[t+1] (features ascending)
  std::vector<int> mono_feat_ptr_, mono_feat_;
  std::vector<double> mono_feat_coef_;
  bool one_feature_each_ = false;   // every monomial in exactly one feature (mono_feat_ptr_[t] = t)
};

// Real spherical harmonics of unit-or-not vectors u (values only for the unit direction).
// Y has (l_max+1)^2 entries; dY (3 per entry, [k*3+a]) is the gradient with respect to the
// *vector* r (not the unit vector), i.e. it includes the 1/|r| projection factor.
void real_sph_harm(int l_max, const double* r, double* Y, double* dY);

}  // namespace dcace
