// The local (atom) gate of the divide-and-conquer potential: each atom is gated on its own
// descriptor B_i by the Gate of its species, so an atom's energy depends only on its neighbours
// (range r_cut, forces 2 r_cut) and no quantity is reduced over the structure.  This file holds
// the per-atom evaluator of that gate (called by Potential::atom_energy_gradient, hence by
// Potential::compute and pair_style dcace) and the fitting rows of the committee under a fixed gate.
// The evaluator costs little beyond the linear model's: B_i straight from A_i, one pass over the
// species' (d + M) x K table for the gate input and the expert energies, the softmax, one pass back
// for c_eff,i, and the linear adjoint with c_eff,i (docs/local-gates.md, "Speed").
#include <algorithm>
#include <string>
#include <vector>

#include "dcace/potential.hpp"
#include "gate_kernels.hpp"

namespace dcace {

void Potential::check_local_gates() const {
  const int S = n_species(), K = n_features(), M = n_experts_;
  if (static_cast<int>(local_gates_.size()) != S)
    throw InputError(std::string("the ") + gate_kind_name(kind_) + " gate needs one gate per species (" + std::to_string(S) + "), got " +
                     std::to_string(local_gates_.size()));
  for (int s = 0; s < S; ++s)
    check_gate(local_gates_[s], static_cast<size_t>(K), M, "atom gate of " + elements_[s], "n_features");
  for (int s = 1; s < S; ++s)   // one temperature (the file has one record)
    if (local_gates_[s].temperature != local_gates_[0].temperature)
      throw InputError("the atom gates of all species must have the same temperature");
}

void Potential::set_neighbourhood(double r_g, int body_order) {
  if (kind_ != GateKind::Atom && kind_ != GateKind::Neighbourhood)
    throw InputError("a neighbourhood gate needs the per-species gates of a local gate (M > 1)");
  if (!(r_g > 0.0) || !(r_g <= cutoff()))
    throw InputError("the neighbourhood gate's range r_g must be in (0, r_cut = " + std::to_string(cutoff()) +
                     "], got " + std::to_string(r_g));
  if (body_order < 0) throw InputError("the neighbourhood gate's body order must be >= 0 (0: all columns)");
  kind_ = GateKind::Neighbourhood;
  gate_range_ = r_g;
  gate_body_order_ = body_order;
}

void Potential::build_local_tables() {
  const int S = n_species(), K = n_features(), M = n_experts_;
  const size_t SK = static_cast<size_t>(S) * K;
  local_tables_.assign(S, {});
  for (int s = 0; s < S; ++s) {
    const Gate& g = local_gates_[s];
    LocalGateTable& t = local_tables_[s];
    t.d = g.dim_out;
    t.M = M;
    t.rows.resize(static_cast<size_t>(t.d + M) * K);
    t.offset.assign(t.d, 0.0);
    for (int a = 0; a < t.d; ++a)
      for (int v = 0; v < K; ++v) {
        const double p = g.projection[static_cast<size_t>(a) * K + v] / g.scale[v];
        t.rows[static_cast<size_t>(a) * K + v] = p;
        t.offset[a] += p * g.mean[v];
      }
    for (int m = 0; m < M; ++m)
      std::copy_n(coef_.data() + m * SK + static_cast<size_t>(s) * K, K,
                  t.rows.data() + static_cast<size_t>(t.d + m) * K);
  }
}

void Potential::local_project(int zi, const double* B, double* yk) const {
  const LocalGateTable& tab = local_tables_[zi];
  gate_kernels().project(tab.rows.data(), tab.d + tab.M, n_features(), B, yk);
  for (int a = 0; a < tab.d; ++a) yk[a] -= tab.offset[a];
}

double Potential::local_gate_energy(int zi, const double* z, const double* a, double f, AtomScratch& sc,
                                    double* eps) const {
  const int M = n_experts_, S = n_species(), d = local_tables_[zi].d;
  sc.gw.resize(M);
  sc.gdw.resize(static_cast<size_t>(M) * d);
  sc.em.resize(M);
  sc.gz.resize(d);
  local_gates_[zi].softmax_projected(z, sc.gw.data(), sc.gdw.data(), nullptr);   // dw/dz (M x d)
  // e_m = f a_m + e0_m; the gated energy eg = sum_m w_m e_m, eps = sum_m w_m a_m
  double eg = 0.0;
  *eps = 0.0;
  for (int m = 0; m < M; ++m) {
    sc.em[m] = f * a[m] + e0_[m * S + zi];
    eg += sc.gw[m] * sc.em[m];
    *eps += sc.gw[m] * a[m];
  }
  // dE/dz_a = sum_m (e_m - eg) dw_m/dz_a   (sum_m dw_m = 0: e_m measured from eg)
  for (int k = 0; k < d; ++k) {
    double g = 0.0;
    for (int m = 0; m < M; ++m) g += (sc.em[m] - eg) * sc.gdw[static_cast<size_t>(m) * d + k];
    sc.gz[k] = g;
  }
  return eg;
}

void Potential::local_ceff(int zi, const double* h, double f, AtomScratch& sc) const {
  // c = sum_a h_a P_a / scale + sum_m f w_m c_m: the row weights (h, f w) of the table
  const LocalGateTable& tab = local_tables_[zi];
  const int d = tab.d, M = tab.M;
  sc.yk.resize(d + M);
  for (int a = 0; a < d; ++a) sc.yk[a] = h[a];
  for (int m = 0; m < M; ++m) sc.yk[d + m] = f * sc.gw[m];
  sc.c.resize(n_features());
  gate_kernels().combine(tab.rows.data(), sc.yk.data(), d + M, n_features(), sc.c.data());
}

// The atom gate: z_i = y_i (a_ij = delta_ij), so dE/dy_i = dE/dz_i and one pass suffices.
double Potential::local_energy_gradient(int zi, int n, const double* rij, const int* zj, double* dE,
                                        AtomScratch& sc, double* weights) const {
  const int K = n_features(), M = n_experts_;
  const int d = local_tables_[zi].d;
  double df = 0.0;
  const double f = ace_share(zi, n, rij, &df, sc);
  basis_->prepare_gradient(zi, n, rij, zj, sc.basis);   // A_i and its gradients once
  sc.B.resize(K);
  basis_->features_from_A(sc.basis.A.data(), sc.B.data());
  sc.yk.resize(d + M);
  local_project(zi, sc.B.data(), sc.yk.data());   // one pass over the table: y_i and c_m . B_i
  double eps = 0.0;   // (local_ceff overwrites sc.yk only after the gate has read it)
  const double eg = local_gate_energy(zi, sc.yk.data(), sc.yk.data() + d, f, sc, &eps);
  local_ceff(zi, sc.gz.data(), f, sc);
  basis_->gradient_prepared(n, rij, zj, sc.c.data(), dE, sc.basis);
  double e = eg;
  e += core_energy_gradient(zi, n, rij, zj, f, df, eps, dE, sc);
  if (weights) std::copy(sc.gw.begin(), sc.gw.end(), weights);
  return e;
}

namespace {
// Atom i's derivative rows for one pair and direction into T (M x (K + 1)): expert m's
// d(w_m B)/dx = w_m dB/dx + B (dw_m/dB . dB/dx) and, in slot K, d w_m / dx (its one-body column).
void pair_rows(int M, int K, const double* w, const double* dw, const double* B, const double* g, double* T) {
  for (int m = 0; m < M; ++m) {
    const double* dwm = dw + static_cast<size_t>(m) * K;
    double G = 0.0;
    for (int v = 0; v < K; ++v) G += dwm[v] * g[v];
    double* t = T + static_cast<size_t>(m) * (K + 1);
    for (int v = 0; v < K; ++v) t[v] = w[m] * g[v] + G * B[v];
    t[K] = G;
  }
}
}  // namespace

void Potential::local_fitting_rows(const Neighbours& nl, const std::vector<double>& temperatures,
                                   double* energy_row, double* force_rows, double* virial_rows) const {
  if (!local_gate()) throw InputError("local_fitting_rows needs a potential with a local (atom or neighbourhood) gate");
  const int K = n_features(), S = n_species(), M = n_experts_;
  const size_t SK = static_cast<size_t>(S) * K, Dp = SK + S, nc = static_cast<size_t>(M) * Dp;
  const size_t nT = temperatures.empty() ? 1 : temperatures.size(), nF = 3 * static_cast<size_t>(nl.n_atoms) * nc;
  std::vector<std::vector<Gate>> gates(nT, local_gates_);   // the gates at each temperature
  for (size_t t = 0; t < temperatures.size(); ++t) {
    if (!(temperatures[t] > 0.0)) throw InputError("local_fitting_rows: temperatures must be > 0");
    for (Gate& g : gates[t]) g.temperature = temperatures[t];
  }
  std::fill(energy_row, energy_row + nT * nc, 0.0);
  std::fill(force_rows, force_rows + nT * nF, 0.0);
  std::fill(virial_rows, virial_rows + nT * 6 * nc, 0.0);
  if (kind_ == GateKind::Neighbourhood) return neighbourhood_fitting_rows(nl, gates, energy_row, force_rows, virial_rows);
  std::vector<double> B(K), dB, w(M), dw(static_cast<size_t>(M) * K), T(3 * static_cast<size_t>(M) * (K + 1));
  Workspace ws;
  static const int va[6] = {0, 1, 2, 1, 0, 0}, vb[6] = {0, 1, 2, 2, 2, 1};
  // column of (expert m, slot v) for centre species s: v < K features, v = K the one-body term
  auto col = [&](int m, int s, int v) { return m * Dp + (v < K ? static_cast<size_t>(s) * K + v : SK + s); };
  for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {
    dB.resize(static_cast<size_t>(n) * 3 * K);
    basis_->descriptor_gradients(s, n, rij, zj, B.data(), dB.data(), ws);   // once for all temperatures
    for (size_t t = 0; t < nT; ++t) {
      double* er = energy_row + t * nc;
      double* fr = force_rows + t * nF;
      double* vr6 = virial_rows + t * 6 * nc;
      gates[t][s].evaluate(B.data(), w.data(), dw.data(), nullptr);
      for (int m = 0; m < M; ++m) {
        for (int v = 0; v < K; ++v) er[col(m, s, v)] += w[m] * B[v];
        er[col(m, s, K)] += w[m];
      }
      const int64_t b = nl.first[i];
      for (int p = 0; p < n; ++p) {
        const int j = nl.j[b + p];
        const double* r = rij + 3 * p;
        for (int a = 0; a < 3; ++a)
          pair_rows(M, K, w.data(), dw.data(), B.data(), dB.data() + (static_cast<size_t>(p) * 3 + a) * K,
                    T.data() + static_cast<size_t>(a) * M * (K + 1));
        for (int a = 0; a < 3; ++a) {
          double* fi = fr + static_cast<size_t>(3 * i + a) * nc;
          double* fj = fr + static_cast<size_t>(3 * j + a) * nc;
          const double* tr = T.data() + static_cast<size_t>(a) * M * (K + 1);
          for (int m = 0; m < M; ++m)
            for (int v = 0; v <= K; ++v) {
              const double x = tr[static_cast<size_t>(m) * (K + 1) + v];
              const size_t c = col(m, s, v);
              fj[c] -= x;
              fi[c] += x;
            }
        }
        for (int q = 0; q < 6; ++q) {
          const double* tr = T.data() + static_cast<size_t>(vb[q]) * M * (K + 1);
          double* vr = vr6 + q * nc;
          const double ra = r[va[q]];
          for (int m = 0; m < M; ++m)
            for (int v = 0; v <= K; ++v) vr[col(m, s, v)] -= ra * tr[static_cast<size_t>(m) * (K + 1) + v];
        }
      }
    }
  });
}

}  // namespace dcace
