// A fitted dcace potential: the ACE basis, M linear experts and the gate that combines them, read
// from and written to the plain-text .dcace file (format: docs/potential-format.md).  Both the
// Python calculator and pair_style dcace load potentials only through this class.
//
// The divide-and-conquer combination for a structure S of N atoms (global gate):
//   Bsum_s = sum_{i: Z_i = s} B_i,  p = concat_s(Bsum_s) / N            (D = S*K numbers)
//   E_m    = sum_s c_{m,s} . Bsum_s + sum_s N_s e0_{m,s}
//   y      = P ((p - mean) / scale),     logit_m = bias_m - |y - mu_m|^2 / (2 (tau sigma_m)^2)
//   w      = softmax(logit),             E = sum_m w_m E_m
//   c_eff,s = sum_m w_m c_{m,s} + (1/N) sum_m E_m dw_m/dp_s      (forces: F = -sum_i c_eff . dB_i/dr)
//   e_i    = sum_m w_m (c_{m,Z_i} . B_i + e0_{m,Z_i})            (per-atom energies sum to E)
// With M = 1 the gate is absent and c_eff = c_1.
//
// Local (atom) gate (format version 6, local_gate.cpp): one Gate per species s on the atom's own
// descriptor B_i (dim_in = K); no reduction over the structure:
//   w_i = softmax(logit(B_i)),  e_i = sum_m w_im (f_i c_{m,s} . B_i + e0_{m,s}) (+ cores)
//   c_eff,i = f_i sum_m w_im c_{m,s} + sum_m (f_i c_{m,s} . B_i + e0_{m,s} - e_i') dw_im/dB_i
// (f_i the density-core switch, e_i' the gated part), forces F = -sum_i c_eff,i . dB_i/dr.
// Neighbourhood gate (format version 7, neighbourhood_gate.cpp): the same per-species gates on
//   z_i = sum_j a_ij y_j,  y_j = P_s ((B_j - mean_s) / scale_s),  a_ii = 1 / (1 + S_i),
//   a_ij = f(r_ij) / (1 + S_i) for same-species neighbours j closer than r_g, S_i = sum_j f(r_ij),
//   f(r) = (1 + cos(pi r / r_g)) / 2;  z_i is P_s applied to p_i = (B_i + sum_j f_ij B_j) / (1 + S_i).
// The atom gate is a_ij = delta_ij.  Adjoint: g_i = dE/dz_i, dE/dy_j = sum_i a_ij g_i,
//   c_eff,j = f_j sum_m w_jm c_m + P^T (dE/dy_j) / scale, plus the pair term of df/dr_ij.
// An optional short-range baseline (baseline.hpp, ZBL) adds its pair energy to E and to e_i.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dcace/ace_basis.hpp"
#include "dcace/baseline.hpp"
#include "dcace/grade.hpp"
#include "dcace/structure.hpp"

namespace dcace {

// A malformed potential file; what() starts with "<file>:<line>: ".
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Which descriptor the gate sees: none (M = 1), the structure's mean (the paper's, two passes and a
// reduction), the atom's own B_i (local: one pass, per-atom effective coefficients) or the
// neighbourhood average p_i of B over the atom and its same-species neighbours within r_g (local:
// two passes, neighbourhood_gate.cpp).
enum class GateKind { None, Structure, Atom, Neighbourhood };
const char* gate_kind_name(GateKind k);

struct Gate {
  int n_experts = 1;   // M
  int dim_in = 0;      // D = n_species * n_features
  int dim_out = 0;     // d (rows of the projection)
  double temperature = 1.0;
  std::vector<double> mean, scale;   // D
  std::vector<double> projection;    // d x D
  std::vector<double> centroids;     // M x d
  std::vector<double> spread;        // M
  std::vector<double> bias;          // M
  // w (M), optional dw/dp (M x D) and the distance to the nearest centroid in units of its spread.
  void evaluate(const double* p, double* w, double* dw_dp, double* nearest) const;
  // The same with dw/dy (M x d, in the projected space) instead of dw/dp: dw_m/dp = P^T dw_m/dy / scale.
  void evaluate_projected(const double* p, double* w, double* dw_dy, double* nearest) const;
  // The softmax from the projected input y (d) itself: w (M), optional dw/dy (M x d) and nearest;
  // no scratch memory (the atom gate calls it once per atom).
  void softmax_projected(const double* y, double* w, double* dw_dy, double* nearest) const;
};

// Throws InputError unless g is a valid gate of M experts on D inputs (what/dim_name for messages).
void check_gate(const Gate& g, size_t D, int M, const std::string& what, const char* dim_name);

// The result of the global gate for one structure (or one LAMMPS step).
struct Combination {
  std::vector<double> weights;         // M
  std::vector<double> expert_energy;   // M
  std::vector<double> c_eff;           // S x K, for forces and virial
  std::vector<double> c_energy;        // S x K, sum_m w_m c_m (per-atom energies)
  std::vector<double> e0_energy;       // S, sum_m w_m e0_m
  std::vector<double> w_force;         // S x n_monomials (monomial weights of c_eff)
  std::vector<double> w_energy;        // S x n_monomials (monomial weights of c_energy)
  double energy = 0.0;
  double nearest = 0.0;                // distance to the nearest centroid / its spread (0 if M = 1)
};

// Eq. 7 and its gradient for one structure, shared by Potential::combine and the fit (its CV
// scoring, report and refit, through dcace._core.committee_combine): from the gate's w (M) and
// dw/dp (M x SK) at p = Bsum / N and the experts' energies E_m, returns E = sum_m w_m E_m and writes
// c_eff = sum_m [w_m c_m + (E_m - E) / N dw_m/dp] (SK); expert m's SK coefficients are at
// coef + m * coef_stride.  (sum_m dw_m/dp = 0, so E_m is measured from E: fewer cancellations.)
double combine_committee(int M, size_t SK, const double* coef, size_t coef_stride, const double* weights,
                         const double* dw_dp, const double* expert_energy, double n_atoms, double* c_eff);

// The atom gate of one species as one (d + M) x K matrix, built once from the file
// (local_gate.cpp): rows a < d are the gate's projection divided by the scale, P_a / scale, rows
// d + m the expert coefficients c_{m,s}.  The d projected numbers y_i = rows_a . B_i - offset_a
// (offset_a = P_a . (mean / scale)) and the M expert energies are one pass over B_i, and
// c_eff,i = sum_r k_r rows_r one pass back.
struct LocalGateTable {
  int d = 0, M = 0;
  std::vector<double> rows;     // (d + M) x K
  std::vector<double> offset;   // d
};

// Scratch memory of the per-atom evaluator (one per thread; reuse across atoms).
struct AtomScratch {
  Workspace basis;
  std::vector<double> B, gw, gdw, c, em;  // local gate: B_i, w_i, dw/dy (M x d), c_eff,i, e_m
  std::vector<double> yk;                 // local gate: (d + M) projections, then the row weights
  std::vector<double> gz;                 // local gate: dE/dz_i (d)
  std::vector<double> mix;                // neighbourhood gate: f(r_ij), f'(r_ij) / r_ij per pair
  std::vector<double> w;     // per-atom monomial weights (density core)
  std::vector<double> drho;  // d rho_i / d r_ij
  double rho = 0.0;          // rho_i (set by ace_share)
};

// The neighbourhood gate's average p_i = (B_i + sum_j f(r_ij) B_j) / (1 + sum_j f(r_ij)) of every atom
// (n_atoms x K; same-species neighbours closer than r_g, neighbourhood_gate.cpp): what the fit clusters.
void neighbourhood_descriptors(const ACEBasis& basis, const Neighbours& nl, double r_g, double* P);

class Potential {
 public:
  static Potential read(const std::string& path);                           // throws FileError
  static Potential parse(const std::string& text, const std::string& name);  // name for messages
  std::string write() const;  // exact round trip: parse(write()) == *this, %.17g numbers

  Potential() = default;
  Potential(std::vector<std::string> elements, BasisSpec spec, std::vector<double> coef,
            std::vector<double> e0, int n_experts, Gate gate, std::string metadata,
            Baseline baseline = {}, GateKind kind = GateKind::Structure, std::vector<Gate> local_gates = {});

  const std::vector<std::string>& elements() const { return elements_; }
  int species_index(const std::string& element) const;  // -1 if absent
  const ACEBasis& basis() const { return *basis_; }
  int n_experts() const { return n_experts_; }
  int n_species() const { return basis_->n_species(); }
  int n_features() const { return basis_->n_features(); }
  double cutoff() const { return basis_->cutoff(); }
  const std::vector<double>& coefficients() const { return coef_; }  // M x S x K
  const std::vector<double>& one_body() const { return e0_; }         // M x S
  const Gate& gate() const { return gate_; }                            // structure gate
  GateKind gate_kind() const { return kind_; }                          // None if M = 1
  // a gate per atom (atom or neighbourhood gate): weights (N, M), no structure-wide reduction
  bool local_gate() const { return kind_ == GateKind::Atom || kind_ == GateKind::Neighbourhood; }
  // neighbourhood gate: its range r_g (0 < r_g <= r_cut) and the largest body order of the columns
  // its PCA was computed on (0: all columns); both 0 for other gates
  double gate_range() const { return gate_range_; }
  int gate_body_order() const { return gate_body_order_; }
  void set_neighbourhood(double r_g, int body_order);   // makes an atom gate a neighbourhood gate
  // The neighbourhood gate atom by atom (neighbourhood_gate.cpp; Potential::compute and pair_style
  // dcace).  Per-atom arrays y and h have stride gate_dim() (the largest d of the species' gates);
  // neighbour p of atom i is atom jidx[p] of them (ghosts included in LAMMPS).
  int gate_dim() const;
  // stage 1: y_i (gate_dim values, zero-padded), the experts' c_m . B_i (M) and the ACE share f_i;
  // with A (n_A values, may be null) A_i too, for stage 3 (which then does not accumulate it again)
  void neighbourhood_inputs(int zi, int n_neigh, const double* rij, const int* zj, double* y, double* a,
                            double* f, AtomScratch& sc, double* A = nullptr) const;
  // stage 2 (every y_j known): z_i, w_i (M), g_i = dE/dz_i and eps_i = sum_m w_im a_im; adds
  // dE/dy_j = a_ij g_i to h (h[i] and h[jidx[p]]); returns the gated energy of atom i.  With mix
  // (2 n_neigh values, may be null) the mixing weights f(r_ij) and f'(r_ij) / r_ij of each pair, for stage 3.
  double neighbourhood_gate(int i, int zi, int n_neigh, const double* rij, const int* zj, const int* jidx,
                            const double* y, const double* a, double f, double* z, double* w, double* g,
                            double* eps, double* h, AtomScratch& sc, double* mix = nullptr) const;
  // stage 3 (h complete): dE/dr_ij (n_neigh x 3, overwritten) of atom i's pairs and its energy
  // e_i = eg + the short-range core, from stage 2's eg, z_i, w_i, g_i, eps_i and h_i; mix and A (may
  // be null: computed again) from stages 2 and 1
  double neighbourhood_adjoint(int i, int zi, int n_neigh, const double* rij, const int* zj, const int* jidx,
                               const double* y, const double* z, const double* w, const double* g, double eg,
                               double eps, const double* h, double* dE_drij, AtomScratch& sc,
                               const double* mix = nullptr, const double* A = nullptr) const;
  const std::vector<Gate>& local_gates() const { return local_gates_; }  // one per species (local)
  const std::string& metadata() const { return metadata_; }            // JSON text (provenance)
  const Baseline& baseline() const { return baseline_; }               // short-range core (may be off)
  const std::string& source() const { return source_; }                // file name it was read from
  // Throws InputError "<source>: non-finite <what> ..." unless all n values are finite.
  void check_finite(const double* v, size_t n, const char* what) const;

  // Global gate from per-species descriptor sums (S x K) and atom counts (S).  For M = 1 this is
  // cheap and needs no sums (pass nullptr): weights = {1}, c_eff = c_1.  With a density core,
  // core_correction (S x K, may be null) is sum_i (f_i - 1) B_i: the experts' energies use
  // Bsum + core_correction, the gate input p = Bsum / N does not.
  void combine(const double* Bsum, const double* counts, Combination& out,
               const double* core_correction = nullptr) const;

  // The per-atom evaluator behind Potential::compute and pair_style dcace.
  // Pass 1 (M > 1 only): adds atom i's monomials to mono_sum (n_monomials of its species) and, with
  // a density core, (f_i - 1) times them to core_sum; leaves A_i in sc.basis.A.
  void atom_pass1(int zi, int n_neigh, const double* rij, const int* zj, double* mono_sum, double* core_sum,
                  AtomScratch& sc) const;
  // Pass 2: energy e_i of atom i (centre species zi; ACE, one-body term and short-range core) for the
  // step's combination, and dE/dr_ij (n_neigh x 3, overwritten).  A: A_i kept from pass 1, or null.
  // With a local gate comb and A are not used (one pass) and weights (M, may be null) receives w_i;
  // with the structure gate it receives comb.weights.
  double atom_energy_gradient(int zi, int n_neigh, const double* rij, const int* zj, const Combination& comb,
                              const double* A, double* dE_drij, AtomScratch& sc, double* weights = nullptr) const;
  // Fitting rows of a local-gate committee for a fixed gate (local_gate.cpp).  Columns: expert m's
  // block [c_{m,s} (S*K), e0_{m,s} (S)], n_cols = M (S*K + S); E = row . theta:
  //   energy_row (n_cols), force_rows (3N x n_cols) = -d energy_row / dr, virial_rows (6 x n_cols,
  //   Voigt xx yy zz yz xz xy), as structure_fitting_rows for the linear model.  Ignores the cores.
  // With temperatures (T values; empty = the file's) the rows of the same gate at each temperature,
  // one after the other (T x n_cols, T x 3N x n_cols, T x 6 x n_cols): B_i and dB_i/dr once for all.
  void local_fitting_rows(const Neighbours& nl, const std::vector<double>& temperatures, double* energy_row,
                          double* force_rows, double* virial_rows) const;
  // The short-range core's part of the extrapolation grade of one atom: the largest of
  // hi(s, z_j) / r_ij over its neighbours closer than their pair's hi and rho_i / rho_lo,s where
  // that is > 1: 0 for every training atom with the default core, > 1 where the core takes over
  // from ACE (a neighbour inside the window, or a neighbourhood denser than any training atom).  The grade reported is max(MaxVol gamma, this).
  double core_grade(int zi, int n_neigh, const double* rij, const int* zj) const;
  // f_i of the density core (1 without one).
  double atom_core_switch(int zi, int n_neigh, const double* rij) const;

  // Whole-structure DC evaluation (two passes) for Python: returns E, fills per-atom energies,
  // forces (N x 3), virial (6, Voigt, eV) and the combination used; optionally per-atom virials
  // (N x 6, summing to the virial; see structure_energy_forces).
  // atom_weights (N x M, may be null): the gate weights of every atom (the structure's w for every
  // atom with the structure gate).
  double compute(const Neighbours& nl, double* energies, double* forces, double* virial,
                 Combination& comb, double* virial_atoms = nullptr, double* atom_weights = nullptr) const;

  // Extrapolation grade (grade.cpp; absent in files of format version < 3).
  bool has_grade() const { return static_cast<bool>(grade_); }
  const Grade& grade() const { return *grade_; }     // only if has_grade()
  void set_grade(Grade g);                            // validates sizes and finiteness
  // gamma of every atom of a structure (n_atoms values); throws InputError without a grade.
  void extrapolation(const Neighbours& nl, double* gamma) const;
  // LAMMPS (compute dcace/atom): B_i of one atom of species s (the grade's one per-atom descriptor
  // call), then gamma of a batch of atoms from their B (n x K); scratch is grown as needed.
  void atom_descriptors(int s, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                        double* B) const;
  void grade_values(int n, const int* species, const double* B, double* gamma,
                    std::vector<double>& scratch) const;

 private:
  void check() const;
  void check_local_gates() const;
  void build_local_tables();   // local_tables_ (atom gate only)
  double local_energy_gradient(int zi, int n_neigh, const double* rij, const int* zj, double* dE_drij,
                               AtomScratch& sc, double* weights) const;
  // The pieces both local gates share (local_gate.cpp).  local_project: B_i -> yk = (y_i (d), c_m . B_i
  // (M)).  local_gate_energy: from the gate input z (d) and the experts' a_m = c_m . B_i (M) at the
  // ACE share f: w (sc.gw), e_m (sc.em), dE/dz (sc.gz); returns the gated energy and writes
  // eps = sum_m w_m a_m.  local_ceff: c (sc.c, K) = P^T h / scale + f sum_m w_m c_m.
  void local_project(int zi, const double* B, double* yk) const;
  double local_gate_energy(int zi, const double* z, const double* a, double f, AtomScratch& sc, double* eps) const;
  void local_ceff(int zi, const double* h, double f, AtomScratch& sc) const;
  // the neighbourhood gate's whole-structure evaluation (neighbourhood_gate.cpp), as compute
  double neighbourhood_compute(const Neighbours& nl, double* energies, double* forces, double* virial,
                               double* virial_atoms, double* atom_weights) const;
  void neighbourhood_fitting_rows(const Neighbours& nl, const std::vector<std::vector<Gate>>& gates,
                                  double* energy_row, double* force_rows, double* virial_rows) const;
  // ACE's share f_i of an atom under the density core (1 without it; df_i/drho in *df, drho/dr in sc)
  double ace_share(int zi, int n_neigh, const double* rij, double* df, AtomScratch& sc) const;
  // The short-range core of an atom (pair core + (1 - f) kappa), its gradient added to dE_drij;
  // eps is the atom's ACE energy (before f), whose handover to kappa the density switch moves
  double core_energy_gradient(int zi, int n_neigh, const double* rij, const int* zj, double f, double df,
                              double eps, double* dE_drij, const AtomScratch& sc) const;
  std::vector<std::string> elements_;
  std::shared_ptr<ACEBasis> basis_;
  std::vector<double> coef_, e0_;
  int n_experts_ = 1;
  Gate gate_;
  GateKind kind_ = GateKind::Structure;
  std::vector<Gate> local_gates_;
  std::vector<LocalGateTable> local_tables_;   // one per species (atom and neighbourhood gate)
  double gate_range_ = 0.0;                    // neighbourhood gate: r_g
  int gate_body_order_ = 0;                    // neighbourhood gate: columns of its PCA (0 = all)
  std::string metadata_;
  Baseline baseline_;
  std::string source_ = "<potential>";
  std::vector<double> w_single_;  // monomial weights of expert 1 (M = 1 fast path)
  std::shared_ptr<const Grade> grade_;  // extrapolation grade, if the file has one
};

}  // namespace dcace
