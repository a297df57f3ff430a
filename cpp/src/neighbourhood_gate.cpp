// The neighbourhood gate of the divide-and-conquer potential (issue 11): each atom is gated on the
// smooth average of B over itself and its same-species neighbours within r_g,
//   p_i = (B_i + sum_j f(r_ij) B_j) / (1 + S_i),  S_i = sum_j f(r_ij),  f(r) = (1 + cos(pi r / r_g)) / 2,
// by its species' gate (the atom gate's Gate and LocalGateTable).  P is linear, so the gate input is
// z_i = sum_j a_ij y_j with y_j = P ((B_j - mean) / scale) the atom gate's own input: the atom gate's
// pieces (local_project, local_gate_energy, local_ceff in local_gate.cpp) are reused with this
// mixing in between.  Only same-species neighbours mix (each species' gate has its own standardiser
// and PCA: another species' y_j lives in other coordinates).  Ranges: an atom energy depends on the
// atoms within r_cut + r_g, a force on those within 2 (r_cut + r_g).
// Three per-atom stages (y_j of every atom; the mixing, weights and dE/dy; the adjoint), called by
// Potential::compute for whole structures and by pair_style dcace, which forward-communicates y and
// reverse-communicates dE/dy between them.  Stage 1 hands A_i to stage 3 (which then only forms the
// gradients of the atomic base) and stage 2 each pair's mixing weights (docs/local-gates.md).
#include <algorithm>
#include <cmath>
#include <vector>

#include "dcace/potential.hpp"

namespace dcace {

namespace {

// f(r) = (1 + cos(pi r / r_g)) / 2 of a pair (0 unless same species and r < r_g) and f'(r) / r in *dfr
inline double mixing_weight(const double* d, bool same_species, double rg, double* dfr) {
  *dfr = 0.0;
  if (!same_species) return 0.0;
  const double r = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  if (!(r < rg)) return 0.0;
  const double k = M_PI / rg;
  double sn, cs;
#if defined(__GLIBC__)
  sincos(k * r, &sn, &cs);   // one call for both (glibc: the values sin and cos give)
#else
  sn = std::sin(k * r);
  cs = std::cos(k * r);
#endif
  if (r > 0.0) *dfr = -0.5 * k * sn / r;
  return 0.5 * (1.0 + cs);
}

// The mixing of one structure: per pair f(r_ij) and f'(r_ij) / r_ij, per atom 1 / (1 + S_i).
struct Mixing {
  std::vector<double> f, dfr, inv;
};

Mixing neighbourhood_mixing(const Neighbours& nl, double rg) {
  const int64_t P = nl.first[nl.n_atoms];
  Mixing mx;
  mx.f.assign(P, 0.0);
  mx.dfr.assign(P, 0.0);
  mx.inv.assign(nl.n_atoms, 1.0);
  for (int i = 0; i < nl.n_atoms; ++i) {
    double S = 0.0;
    for (int64_t p = nl.first[i]; p < nl.first[i + 1]; ++p) {
      mx.f[p] = mixing_weight(nl.rij + 3 * p, nl.species[nl.j[p]] == nl.species[i], rg, &mx.dfr[p]);
      S += mx.f[p];
    }
    mx.inv[i] = 1.0 / (1.0 + S);
  }
  return mx;
}

// z_i = inv_i (y_i + sum_j f_ij y_j) (d values; y rows of stride ld)
void mix(const Neighbours& nl, const Mixing& mx, const double* y, int ld, int d, int i, double* z) {
  for (int a = 0; a < d; ++a) z[a] = y[static_cast<size_t>(i) * ld + a];
  for (int64_t p = nl.first[i]; p < nl.first[i + 1]; ++p) {
    if (mx.f[p] == 0.0) continue;
    const double* yj = y + static_cast<size_t>(nl.j[p]) * ld;
    for (int a = 0; a < d; ++a) z[a] += mx.f[p] * yj[a];
  }
  for (int a = 0; a < d; ++a) z[a] *= mx.inv[i];
}

}  // namespace

void neighbourhood_descriptors(const ACEBasis& basis, const Neighbours& nl, double r_g, double* P) {
  if (!(r_g > 0.0) || !(r_g <= basis.cutoff()))
    throw InputError("the neighbourhood gate's range r_g must be in (0, r_cut]");
  const int K = basis.n_features();
  std::vector<double> B(static_cast<size_t>(nl.n_atoms) * K);
  structure_descriptors(basis, nl, B.data());
  const Mixing mx = neighbourhood_mixing(nl, r_g);
  for (int i = 0; i < nl.n_atoms; ++i) mix(nl, mx, B.data(), K, K, i, P + static_cast<size_t>(i) * K);
}

int Potential::gate_dim() const {
  int d = 0;
  for (const LocalGateTable& t : local_tables_) d = std::max(d, t.d);
  return d;
}

void Potential::neighbourhood_inputs(int zi, int n, const double* rij, const int* zj, double* y, double* a,
                                     double* f, AtomScratch& sc, double* A) const {
  const int d = local_tables_[zi].d, L = gate_dim(), M = n_experts_;
  sc.B.resize(n_features());
  basis_->atomic_values(zi, n, rij, zj, sc.basis);   // A_i, then B_i straight from it (as the atom gate)
  basis_->features_from_A(sc.basis.A.data(), sc.B.data());
  if (A) std::copy(sc.basis.A.begin(), sc.basis.A.end(), A);
  sc.yk.resize(d + M);
  local_project(zi, sc.B.data(), sc.yk.data());
  std::fill_n(y, L, 0.0);
  std::copy_n(sc.yk.data(), d, y);
  std::copy_n(sc.yk.data() + d, M, a);
  *f = atom_core_switch(zi, n, rij);
}

double Potential::neighbourhood_gate(int i, int zi, int n, const double* rij, const int* zj, const int* jidx,
                                     const double* y, const double* a, double f, double* z, double* w, double* g,
                                     double* eps, double* h, AtomScratch& sc, double* mix) const {
  const int d = local_tables_[zi].d, L = gate_dim(), M = n_experts_;
  if (!mix) {
    sc.mix.resize(2 * static_cast<size_t>(n));
    mix = sc.mix.data();
  }
  double S = 0.0;
  for (int k = 0; k < d; ++k) z[k] = y[static_cast<size_t>(i) * L + k];
  for (int p = 0; p < n; ++p) {   // each pair's f and f'/r once (stage 3 reads them from mix)
    const double fp = mixing_weight(rij + 3 * p, zj[p] == zi, gate_range_, &mix[2 * p + 1]);
    mix[2 * p] = fp;
    if (fp == 0.0) continue;
    const double* yj = y + static_cast<size_t>(jidx[p]) * L;
    for (int k = 0; k < d; ++k) z[k] += fp * yj[k];
    S += fp;
  }
  const double inv = 1.0 / (1.0 + S);
  for (int k = 0; k < d; ++k) z[k] *= inv;
  const double eg = local_gate_energy(zi, z, a, f, sc, eps);
  std::copy_n(sc.gw.data(), M, w);
  std::fill_n(g, L, 0.0);
  std::copy_n(sc.gz.data(), d, g);
  double* hi = h + static_cast<size_t>(i) * L;
  for (int k = 0; k < d; ++k) hi[k] += inv * g[k];
  for (int p = 0; p < n; ++p) {
    const double fp = mix[2 * p];
    if (fp == 0.0) continue;
    double* hj = h + static_cast<size_t>(jidx[p]) * L;
    for (int k = 0; k < d; ++k) hj[k] += inv * fp * g[k];
  }
  return eg;
}

// c_eff,i = f_i sum_m w_im c_m + P^T h_i / scale through the adjoint, plus the pair term of the
// mixing weights: dE/dr_ij += inv_i f'(r_ij) g_i . (y_j - z_i) r_ij / r_ij.
double Potential::neighbourhood_adjoint(int i, int zi, int n, const double* rij, const int* zj, const int* jidx,
                                        const double* y, const double* z, const double* w, const double* g,
                                        double eg, double eps, const double* h, double* dE, AtomScratch& sc,
                                        const double* mix, const double* A) const {
  const int d = local_tables_[zi].d, L = gate_dim(), M = n_experts_;
  double df = 0.0;
  const double f = ace_share(zi, n, rij, &df, sc);
  basis_->prepare_gradient(zi, n, rij, zj, sc.basis, A);   // A_i from stage 1 when given
  sc.gw.assign(w, w + M);
  local_ceff(zi, h + static_cast<size_t>(i) * L, f, sc);
  basis_->gradient_prepared(n, rij, zj, sc.c.data(), dE, sc.basis);
  if (!mix) {
    sc.mix.resize(2 * static_cast<size_t>(n));
    for (int p = 0; p < n; ++p) sc.mix[2 * p] = mixing_weight(rij + 3 * p, zj[p] == zi, gate_range_, &sc.mix[2 * p + 1]);
    mix = sc.mix.data();
  }
  double S = 0.0;
  for (int p = 0; p < n; ++p) S += mix[2 * p];
  const double inv = 1.0 / (1.0 + S);
  for (int p = 0; p < n; ++p) {
    const double dfr = mix[2 * p + 1];
    if (dfr == 0.0) continue;
    const double* yj = y + static_cast<size_t>(jidx[p]) * L;
    double gy = 0.0;
    for (int k = 0; k < d; ++k) gy += g[k] * (yj[k] - z[k]);
    const double c = inv * dfr * gy;
    for (int q = 0; q < 3; ++q) dE[3 * p + q] += c * rij[3 * p + q];
  }
  return eg + core_energy_gradient(zi, n, rij, zj, f, df, eps, dE, sc);
}

double Potential::neighbourhood_compute(const Neighbours& nl, double* energies, double* forces, double* virial,
                                        double* virial_atoms, double* atom_weights) const {
  const int N = nl.n_atoms, M = n_experts_, L = gate_dim(), nA = basis_->n_A();
  const size_t NL = static_cast<size_t>(N) * L, NM = static_cast<size_t>(N) * M;
  // per atom y, z, g, h, the experts' energies, w, A_i (stage 1 to 3); per pair the mixing weights
  std::vector<double> y(NL), z(NL), g(NL), h(NL, 0.0), a(NM), w(NM), eg(N), eps(N), fsh(N);
  std::vector<double> A(static_cast<size_t>(N) * nA), mix(2 * static_cast<size_t>(nl.first[N]));
  AtomScratch sc;
  for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {   // y_j of every atom
    neighbourhood_inputs(s, n, rij, zj, y.data() + static_cast<size_t>(i) * L, a.data() + static_cast<size_t>(i) * M,
                         &fsh[i], sc, A.data() + static_cast<size_t>(i) * nA);
  });
  for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {   // gates, dE/dy
    const size_t iL = static_cast<size_t>(i) * L, iM = static_cast<size_t>(i) * M;
    eg[i] = neighbourhood_gate(i, s, n, rij, zj, nl.j + nl.first[i], y.data(), a.data() + iM, fsh[i], z.data() + iL,
                               w.data() + iM, g.data() + iL, &eps[i], h.data(), sc, mix.data() + 2 * nl.first[i]);
  });
  if (atom_weights) std::copy(w.begin(), w.end(), atom_weights);
  return tally_atoms(*basis_, nl, energies, forces, virial, virial_atoms,
                     [&](int i, int s, int n, const double* rij, const int* zj, double* dE) {
                       const size_t iL = static_cast<size_t>(i) * L, iM = static_cast<size_t>(i) * M;
                       return neighbourhood_adjoint(i, s, n, rij, zj, nl.j + nl.first[i], y.data(), z.data() + iL,
                                                    w.data() + iM, g.data() + iL, eg[i], eps[i], h.data(), dE, sc,
                                                    mix.data() + 2 * nl.first[i], A.data() + static_cast<size_t>(i) * nA);
                     });
}

// Fitting rows of the committee under fixed neighbourhood gates (one gate set per temperature), as
// Potential::local_fitting_rows documents (columns col(m, s, v)).  With w_im = w_m(z_i):
//   energy row:  sum_i w_im [B_i, 1]
//   force rows:  -sum_i [w_im dB_i/dx + (dw_im/dz_i . dz_i/dx) [B_i, 1]],
//   dz_i/dx = sum_j a_ij (P/scale) dB_j/dx + sum_j inv_i f'(r_ij) (y_j - z_i) dr_ij/dx  (the pair term);
// the virial rows alike with -r_pair (x) d/dr_pair.  B_j, dB_j/dr and dy_j/dr once for all temperatures.
void Potential::neighbourhood_fitting_rows(const Neighbours& nl, const std::vector<std::vector<Gate>>& gates,
                                           double* energy_row, double* force_rows, double* virial_rows) const {
  const int N = nl.n_atoms, K = n_features(), S = n_species(), M = n_experts_, L = gate_dim();
  const size_t SK = static_cast<size_t>(S) * K, Dp = SK + S, nc = static_cast<size_t>(M) * Dp;
  const size_t nF = 3 * static_cast<size_t>(N) * nc, nT = gates.size();
  const int64_t P = nl.first[N];
  auto col = [&](int m, int s, int v) { return m * Dp + (v < K ? static_cast<size_t>(s) * K + v : SK + s); };
  static const int va[6] = {0, 1, 2, 1, 0, 0}, vb[6] = {0, 1, 2, 2, 2, 1};
  // per atom: B_i (N x K), y_i (N x L); per pair: dB/dr (3 x K) and dy/dr (3 x L)
  std::vector<double> B(static_cast<size_t>(N) * K), y(static_cast<size_t>(N) * L, 0.0);
  std::vector<double> dB(static_cast<size_t>(P) * 3 * K), dY(static_cast<size_t>(P) * 3 * L, 0.0), yk;
  Workspace ws;
  for_each_atom(*basis_, nl, [&](int i, int s, int n, const double* rij, const int* zj) {
    const LocalGateTable& tab = local_tables_[s];
    const int64_t b = nl.first[i];
    double* dBi = dB.data() + static_cast<size_t>(b) * 3 * K;
    basis_->descriptor_gradients(s, n, rij, zj, B.data() + static_cast<size_t>(i) * K, dBi, ws);
    yk.resize(tab.d + M);
    local_project(s, B.data() + static_cast<size_t>(i) * K, yk.data());
    std::copy_n(yk.data(), tab.d, y.data() + static_cast<size_t>(i) * L);
    for (int64_t q = 0; q < 3 * static_cast<int64_t>(n); ++q)
      for (int k = 0; k < tab.d; ++k) {
        double t = 0.0;
        const double* row = tab.rows.data() + static_cast<size_t>(k) * K;
        const double* g = dBi + static_cast<size_t>(q) * K;
        for (int v = 0; v < K; ++v) t += row[v] * g[v];
        dY[(static_cast<size_t>(b) * 3 + q) * L + k] = t;
      }
  });
  const Mixing mx = neighbourhood_mixing(nl, gate_range_);
  std::vector<double> z(L), Zx(static_cast<size_t>(N) * 3 * L), Zv(6 * static_cast<size_t>(L)), w(M), dw(static_cast<size_t>(M) * L);
  std::vector<char> touched(N);
  std::vector<int> list;
  for (int i = 0; i < N; ++i) {
    const int s = nl.species[i], d = local_tables_[s].d;
    const double* Bi = B.data() + static_cast<size_t>(i) * K;
    mix(nl, mx, y.data(), L, d, i, z.data());
    // dz_i/dx_k (3 x d per touched atom k) and its virial sum_pairs r_va dz_i/dr_vb (6 x d)
    std::fill(Zv.begin(), Zv.end(), 0.0);
    std::fill(touched.begin(), touched.end(), 0);
    list.clear();
    auto add = [&](int from, int to, const double* r, const double* D, double c) {   // D: 3 x L
      for (int k2 : {from, to})
        if (!touched[k2]) {
          touched[k2] = 1;
          list.push_back(k2);
          std::fill_n(Zx.data() + static_cast<size_t>(k2) * 3 * L, 3 * L, 0.0);
        }
      double* zt = Zx.data() + static_cast<size_t>(to) * 3 * L;
      double* zf = Zx.data() + static_cast<size_t>(from) * 3 * L;
      for (int q = 0; q < 3; ++q)
        for (int k = 0; k < d; ++k) {
          zt[q * L + k] += c * D[q * L + k];
          zf[q * L + k] -= c * D[q * L + k];
        }
      for (int q = 0; q < 6; ++q)
        for (int k = 0; k < d; ++k) Zv[q * L + k] += c * r[va[q]] * D[vb[q] * L + k];
    };
    auto through = [&](int j, double c) {   // a_ij (P/scale) dB_j/dx over atom j's pairs
      for (int64_t p = nl.first[j]; p < nl.first[j + 1]; ++p)
        add(j, nl.j[p], nl.rij + 3 * p, dY.data() + static_cast<size_t>(p) * 3 * L, c);
    };
    through(i, mx.inv[i]);
    std::vector<double> D(3 * static_cast<size_t>(L), 0.0);
    for (int64_t p = nl.first[i]; p < nl.first[i + 1]; ++p) {
      if (mx.f[p] == 0.0 && mx.dfr[p] == 0.0) continue;
      const int j = nl.j[p];
      through(j, mx.inv[i] * mx.f[p]);
      const double* r = nl.rij + 3 * p;
      const double* yj = y.data() + static_cast<size_t>(j) * L;
      for (int q = 0; q < 3; ++q)
        for (int k = 0; k < d; ++k) D[q * L + k] = mx.inv[i] * mx.dfr[p] * (yj[k] - z[k]) * r[q];
      add(i, j, r, D.data(), 1.0);
    }
    const int64_t b = nl.first[i];
    const int n = static_cast<int>(nl.first[i + 1] - b);
    for (size_t t = 0; t < nT; ++t) {
      double* er = energy_row + t * nc;
      double* fr = force_rows + t * nF;
      double* vr6 = virial_rows + t * 6 * nc;
      gates[t][s].softmax_projected(z.data(), w.data(), dw.data(), nullptr);   // dw/dz: M x d
      for (int m = 0; m < M; ++m) {
        for (int v = 0; v < K; ++v) er[col(m, s, v)] += w[m] * Bi[v];
        er[col(m, s, K)] += w[m];
      }
      // w_im dB_i/dr over atom i's own pairs
      for (int p = 0; p < n; ++p) {
        const int j = nl.j[b + p];
        const double* r = nl.rij + 3 * (b + p);
        const double* g = dB.data() + static_cast<size_t>(b + p) * 3 * K;
        for (int m = 0; m < M; ++m) {
          const size_t c0 = col(m, s, 0);
          for (int q = 0; q < 3; ++q) {
            double* fi = fr + static_cast<size_t>(3 * i + q) * nc + c0;
            double* fj = fr + static_cast<size_t>(3 * j + q) * nc + c0;
            const double* gq = g + static_cast<size_t>(q) * K;
            for (int v = 0; v < K; ++v) {
              fj[v] -= w[m] * gq[v];
              fi[v] += w[m] * gq[v];
            }
          }
          for (int q = 0; q < 6; ++q) {
            double* vr = vr6 + q * nc + c0;
            const double* gq = g + static_cast<size_t>(vb[q]) * K;
            for (int v = 0; v < K; ++v) vr[v] -= r[va[q]] * w[m] * gq[v];
          }
        }
      }
      // the gate term: (dw_im/dz_i . dz_i/dx) [B_i, 1]
      for (int m = 0; m < M; ++m) {
        const double* dwm = dw.data() + static_cast<size_t>(m) * d;
        const size_t c0 = col(m, s, 0), c1 = col(m, s, K);
        for (int k2 : list) {
          const double* zx = Zx.data() + static_cast<size_t>(k2) * 3 * L;
          for (int q = 0; q < 3; ++q) {
            double G = 0.0;
            for (int k = 0; k < d; ++k) G += dwm[k] * zx[q * L + k];
            double* fk = fr + static_cast<size_t>(3 * k2 + q) * nc;
            for (int v = 0; v < K; ++v) fk[c0 + v] -= G * Bi[v];
            fk[c1] -= G;
          }
        }
        for (int q = 0; q < 6; ++q) {
          double G = 0.0;
          for (int k = 0; k < d; ++k) G += dwm[k] * Zv[q * L + k];
          double* vr = vr6 + q * nc;
          for (int v = 0; v < K; ++v) vr[c0 + v] -= G * Bi[v];
          vr[c1] -= G;
        }
      }
    }
  }
}

}  // namespace dcace
