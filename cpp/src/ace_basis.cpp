// Evaluation of one atom's ACE basis: A from the neighbours, monomials of A, features B as sparse
// combinations of monomials, the adjoint pass (dE/dA -> dE/dr_ij) and the explicit Jacobian for fitting.
#include "dcace/ace_basis.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace dcace {

namespace {

std::string fmt(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

// Partial derivatives of the product of `order` values a[0..order-1] with respect to each factor.
inline void product_partials(int order, const double* a, double* p) {
  switch (order) {
    case 1: p[0] = 1.0; break;
    case 2: p[0] = a[1]; p[1] = a[0]; break;
    case 3: p[0] = a[1] * a[2]; p[1] = a[0] * a[2]; p[2] = a[0] * a[1]; break;
    default: {
      const double ab = a[0] * a[1], cd = a[2] * a[3];
      p[0] = a[1] * cd; p[1] = a[0] * cd; p[2] = ab * a[3]; p[3] = ab * a[2];
    }
  }
}

}  // namespace

ACEBasis::ACEBasis(BasisSpec spec) : spec_(std::move(spec)) {
  const BasisSpec& s = spec_;
  if (s.n_species < 1) throw InputError("n_species must be >= 1, got " + std::to_string(s.n_species));
  if (!(s.r_cut > 0.0) || !std::isfinite(s.r_cut)) throw InputError("cutoff must be > 0, got " + fmt(s.r_cut));
  if (!(s.r_inner >= 0.0) || !(s.r_inner < s.r_cut))
    throw InputError("inner cutoff must be in [0, cutoff), got " + fmt(s.r_inner));
  if (s.n_radial < 1) throw InputError("n_radial must be >= 1");
  if (!s.core_lo.empty() || !s.core_hi.empty()) {
    const size_t np = static_cast<size_t>(s.n_species) * s.n_species;
    if (s.core_lo.size() != np || s.core_hi.size() != np)
      throw InputError("core range arrays must have n_species^2 = " + std::to_string(np) + " entries");
    for (int a = 0; a < s.n_species; ++a)
      for (int b = 0; b < s.n_species; ++b) {
        const double lo = s.core_lo[a * s.n_species + b], hi = s.core_hi[a * s.n_species + b];
        const std::string pair = "species " + std::to_string(a) + "-" + std::to_string(b);
        if (!(lo >= s.r_inner) || !(lo < hi) || !(hi < s.r_cut) || !std::isfinite(hi))
          throw InputError("core range of " + pair + " must satisfy inner cutoff " + fmt(s.r_inner) +
                           " <= lo < hi < cutoff " + fmt(s.r_cut) + ", got [" + fmt(lo) + ", " + fmt(hi) + "]");
        if (lo != s.core_lo[b * s.n_species + a] || hi != s.core_hi[b * s.n_species + a])
          throw InputError("core range of " + pair + " is not symmetric");
      }
  }
  if (s.l_max < 0 || s.l_max > kMaxL)
    throw InputError("l_max must be in 0.." + std::to_string(kMaxL) + ", got " + std::to_string(s.l_max));
  const size_t nc = s.chan_z.size();
  if (s.chan_n.size() != nc || s.chan_l.size() != nc) throw InputError("channel arrays differ in length");
  if (s.n_chem < 0 || s.n_chem > s.n_species)
    throw InputError("the number of chemical channels must be in 0..n_species = " + std::to_string(s.n_species) +
                     ", got " + std::to_string(s.n_chem));
  if (s.n_chem > 0) {
    if (s.chem_weights.size() != static_cast<size_t>(s.n_chem) * s.n_species)
      throw InputError("chemical channel weights must have n_chem x n_species = " +
                       std::to_string(s.n_chem * s.n_species) + " entries");
    for (double w : s.chem_weights)
      if (!std::isfinite(w)) throw InputError("non-finite chemical channel weight");
  } else if (!s.chem_weights.empty()) {
    throw InputError("chemical channel weights given without chemical channels");
  }
  const int n_z = s.n_chem > 0 ? s.n_chem : s.n_species;  // range of chan_z
  chan_offset_.resize(nc + 1, 0);
  std::vector<std::vector<int>> chans_of_z(n_z);
  for (size_t c = 0; c < nc; ++c) {
    if (s.chan_z[c] < 0 || s.chan_z[c] >= n_z)
      throw InputError(std::string(s.n_chem > 0 ? "channel chemical index" : "channel species") + " out of range");
    if (s.chan_n[c] < 0 || s.chan_n[c] >= s.n_radial) throw InputError("channel radial index out of range");
    if (s.chan_l[c] < 0 || s.chan_l[c] > s.l_max) throw InputError("channel l out of range");
    chan_offset_[c + 1] = chan_offset_[c] + 2 * s.chan_l[c] + 1;
    chans_of_z[s.chan_z[c]].push_back(static_cast<int>(c));
  }
  n_A_ = chan_offset_[nc];
  // what a neighbour of species z feeds: its own channels (weight 1), or every chemical channel k
  // with weight W_{k z} (zero weights skipped)
  chans_of_species_.assign(s.n_species, {});
  runs_of_species_.assign(s.n_species, {});
  for (int z = 0; z < s.n_species; ++z)
    for (int k = 0; k < n_z; ++k) {
      if (s.n_chem == 0 && k != z) continue;
      const double wt = s.n_chem > 0 ? s.chem_weights[static_cast<size_t>(k) * s.n_species + z] : 1.0;
      if (wt == 0.0) continue;
      bool first = true;
      for (int c : chans_of_z[k]) {
        chans_of_species_[z].push_back({c, wt});
        auto& runs = runs_of_species_[z];
        const int l = s.chan_l[c], n = s.chan_n[c];
        if (!first && !runs.empty()) {
          ChannelRun& g = runs.back();
          if (g.l == l && n == g.n0 + g.count && chan_offset_[c] == g.offset + g.count * (2 * l + 1)) {
            ++g.count;
            continue;
          }
        }
        first = false;
        runs.push_back({l, n, 1, chan_offset_[c], wt});
      }
    }
  n_Y_ = (s.l_max + 1) * (s.l_max + 1);
  if (s.mono_idx.size() % kMaxOrder) throw InputError("monomial index array is not a multiple of 4");
  n_mono_ = static_cast<int>(s.mono_idx.size() / kMaxOrder);
  mono_order_.resize(n_mono_);
  for (int t = 0; t < n_mono_; ++t) {
    int o = 0;
    while (o < kMaxOrder && s.mono_idx[t * kMaxOrder + o] >= 0) ++o;
    if (o == 0) throw InputError("empty monomial " + std::to_string(t));
    for (int q = 0; q < kMaxOrder; ++q) {
      const int k = s.mono_idx[t * kMaxOrder + q];
      if (q < o && k >= n_A_) throw InputError("monomial index out of range in monomial " + std::to_string(t));
      if (q >= o && k >= 0) throw InputError("monomial " + std::to_string(t) + " is not -1 padded");
    }
    mono_order_[t] = o;
    if (order_runs_.empty() || order_runs_.back().order != o) order_runs_.push_back({t, t + 1, o});
    else order_runs_.back().end = t + 1;
  }
  if (s.n_features < 0 || static_cast<int>(s.feat_ptr.size()) != s.n_features + 1)
    throw InputError("feature pointer array has the wrong length");
  if (s.feat_ptr[0] != 0 || s.feat_ptr.back() != static_cast<int>(s.feat_mono.size()) ||
      s.feat_mono.size() != s.feat_coef.size())
    throw InputError("feature CSR arrays are inconsistent");
  for (int v = 0; v < s.n_features; ++v)
    if (s.feat_ptr[v + 1] < s.feat_ptr[v]) throw InputError("feature pointers decrease");
  for (int m : s.feat_mono)
    if (m < 0 || m >= n_mono_) throw InputError("feature refers to a missing monomial");
  for (double c : s.feat_coef)
    if (!std::isfinite(c)) throw InputError("non-finite coupling coefficient");
  build_feature_transpose();
}

void ACEBasis::radial(double r, double* R, double* dR) const {
  double tmp[8];
  radial_block(1, &r, R, dR, tmp);
}

void ACEBasis::radial_block(int n, const double* r, double* R, double* dR, double* tmp) const {
  const int nr = spec_.n_radial;
  const double w = spec_.r_cut - spec_.r_inner;
  // R_k = T_k(x) (1 - s)^3 with x = 1 - 2 s, s = (r - r_inner) / w; dR_k = (-2 T_k' env + T_k env') / w
  double* x = tmp;
  double* env = tmp + n;
  double* denv = tmp + 2 * n;  // d env / ds
  double* t0 = tmp + 3 * n;
  double* t1 = tmp + 4 * n;
  double* d0 = tmp + 5 * n;
  double* d1 = tmp + 6 * n;
  for (int a = 0; a < n; ++a) {
    const double sv = (r[a] - spec_.r_inner) / w;
    x[a] = 1.0 - 2.0 * sv;
    const double om = 1.0 - sv;
    env[a] = om * om * om;
    denv[a] = -3.0 * om * om;
    t0[a] = 1.0;
    t1[a] = x[a];
    d0[a] = 0.0;
    d1[a] = 1.0;
  }
  for (int a = 0; a < n; ++a) R[static_cast<size_t>(a) * nr] = env[a];
  if (dR)
    for (int a = 0; a < n; ++a) dR[static_cast<size_t>(a) * nr] = denv[a] / w;
  if (nr > 1) {
    for (int a = 0; a < n; ++a) R[static_cast<size_t>(a) * nr + 1] = x[a] * env[a];
    if (dR)
      for (int a = 0; a < n; ++a)
        dR[static_cast<size_t>(a) * nr + 1] = (-2.0 * env[a] + x[a] * denv[a]) / w;
  }
  for (int k = 2; k < nr; ++k) {
    if (dR) {
      for (int a = 0; a < n; ++a) {
        const double t = 2.0 * x[a] * t1[a] - t0[a];
        const double d = 2.0 * t1[a] + 2.0 * x[a] * d1[a] - d0[a];
        t0[a] = t1[a];
        t1[a] = t;
        d0[a] = d1[a];
        d1[a] = d;
        R[static_cast<size_t>(a) * nr + k] = t * env[a];
        dR[static_cast<size_t>(a) * nr + k] = (-2.0 * d * env[a] + t * denv[a]) / w;
      }
    } else {
      for (int a = 0; a < n; ++a) {
        const double t = 2.0 * x[a] * t1[a] - t0[a];
        t0[a] = t1[a];
        t1[a] = t;
        R[static_cast<size_t>(a) * nr + k] = t * env[a];
      }
    }
  }
}

// R_n <- g R_n and dR_n <- g dR_n + g' R_n for the active neighbours of a centre of species zi
// (rr: their distances); g = 1 above the pair's window, so most neighbours cost one comparison.
void ACEBasis::apply_core_envelope(int zi, const int* zj, const double* rr, Workspace& ws, bool grad) const {
  const int nr = spec_.n_radial;
  for (size_t a = 0; a < ws.active.size(); ++a) {
    const int z = zj[ws.active[a]];
    const double hi = core_hi(zi, z);
    if (rr[a] >= hi) continue;
    double dg;
    const double g = core_switch(rr[a], core_lo(zi, z), hi, &dg);
    double* R = ws.R.data() + a * nr;
    if (grad) {
      double* dR = ws.dR.data() + a * nr;
      for (int k = 0; k < nr; ++k) dR[k] = g * dR[k] + dg * R[k];
    }
    for (int k = 0; k < nr; ++k) R[k] *= g;
  }
}

void ACEBasis::atomic_base(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws, bool grad,
                           bool accumulate) const {
  const int nr = spec_.n_radial;
  if (accumulate) ws.A.assign(n_A_, 0.0);
  // 1. neighbours inside the cutoff (their distances kept in rad_tmp's last block)
  ws.active.clear();
  const bool core = has_core();
  if (core && (zi < 0 || zi >= spec_.n_species))
    throw InputError("centre species index " + std::to_string(zi) + " out of range");
  ws.rad_tmp.resize(8 * static_cast<size_t>(n_neigh) + 8);
  double* rr = ws.rad_tmp.data() + 7 * static_cast<size_t>(n_neigh);
  const double rc2 = spec_.r_cut * spec_.r_cut;
  for (int j = 0; j < n_neigh; ++j) {
    const double* d = rij + 3 * j;
    const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if (!std::isfinite(r2)) throw InputError("neighbour " + std::to_string(j) + " has a non-finite position");
    if (r2 >= rc2) continue;
    const double r = std::sqrt(r2);
    const int z = zj[j];
    if (z < 0 || z >= spec_.n_species)
      throw InputError("neighbour species index " + std::to_string(z) + " out of range");
    if (core) {
      if (r <= core_lo(zi, z)) continue;  // inside the core: only the baseline acts
    } else if (r < spec_.r_inner || r == 0.0) {
      throw InputError("neighbour at distance " + fmt(r) + " A, closer than the inner cutoff " +
                       fmt(spec_.r_inner) + " A");
    }
    rr[ws.active.size()] = r;
    ws.active.push_back(j);
  }
  const int na = static_cast<int>(ws.active.size());
  if (ws.R.size() < static_cast<size_t>(na) * nr) ws.R.resize(static_cast<size_t>(na) * nr);
  if (ws.Y.size() < static_cast<size_t>(na) * n_Y_) ws.Y.resize(static_cast<size_t>(na) * n_Y_);
  if (grad) {
    if (ws.dR.size() < static_cast<size_t>(na) * nr) ws.dR.resize(static_cast<size_t>(na) * nr);
    if (ws.dY.size() < static_cast<size_t>(na) * n_Y_ * 3) ws.dY.resize(static_cast<size_t>(na) * n_Y_ * 3);
  }
  // 2. radial functions of all of them
  radial_block(na, rr, ws.R.data(), grad ? ws.dR.data() : nullptr, ws.rad_tmp.data());
  if (core) apply_core_envelope(zi, zj, rr, ws, grad);
  // 3. harmonics, and A_{(z l n) m} += R_n Y_lm over runs of channels with equal (z, l) and
  //    consecutive n
  for (int a = 0; a < na; ++a) {
    const int j = ws.active[a];
    const double* R = ws.R.data() + static_cast<size_t>(a) * nr;
    double* Y = ws.Y.data() + static_cast<size_t>(a) * n_Y_;
    real_sph_harm(spec_.l_max, rij + 3 * j, Y, grad ? ws.dY.data() + static_cast<size_t>(a) * n_Y_ * 3 : nullptr);
    if (!accumulate) continue;
    double* A = ws.A.data();
    for (const ChannelRun& g : runs_of_species_[zj[j]]) {
      const double* Rg = R + g.n0;
      const double* Yl = Y + g.l * g.l;
      double* Ag = A + g.offset;
      if (g.l == 0) {
        const double y = Yl[0] * g.weight;
        for (int k = 0; k < g.count; ++k) Ag[k] += Rg[k] * y;
      } else {
        const int w = 2 * g.l + 1;
        for (int k = 0; k < g.count; ++k) {
          const double rk = Rg[k] * g.weight;
          double* row = Ag + k * w;
          for (int m = 0; m < w; ++m) row[m] += rk * Yl[m];
        }
      }
    }
  }
}

void ACEBasis::monomial_values(Workspace& ws) const {
  ws.mono.resize(n_mono_);
  monomial_values_into<false>(ws.A.data(), ws.mono.data());
}

template <bool Add>
void ACEBasis::monomial_values_into(const double* A, double* out) const {
  for_each_monomial(A, [out](int t, double v) {
    if constexpr (Add)
      out[t] += v;
    else
      out[t] = v;
  });
}

void ACEBasis::monomials(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws) const {
  atomic_base(zi, n_neigh, rij, zj, ws, false);
  monomial_values(ws);
}

void ACEBasis::add_monomials(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                             double* sum) const {
  atomic_base(zi, n_neigh, rij, zj, ws, false);
  monomial_values_into<true>(ws.A.data(), sum);
}

void ACEBasis::features_from_monomials(const double* mono, double* B) const {
  for (int v = 0; v < spec_.n_features; ++v) {
    double b = 0.0;
    for (int p = spec_.feat_ptr[v]; p < spec_.feat_ptr[v + 1]; ++p) b += spec_.feat_coef[p] * mono[spec_.feat_mono[p]];
    B[v] = b;
  }
}

void ACEBasis::descriptors(int zi, int n_neigh, const double* rij, const int* zj, double* B, Workspace& ws) const {
  monomials(zi, n_neigh, rij, zj, ws);
  features_from_monomials(ws.mono.data(), B);
}

void ACEBasis::adjoint_to_rij(int n_neigh, const double* rij, const int* zj, const Workspace& ws,
                              double* dE_drij) const {
  // dE/dr_ij = sum_{(n l m)} gA_{nlm} d(R_n Y_lm)/dr = u sum_lm Y_lm H_lm + sum_lm dY_lm G_lm with
  // G_lm = sum_n R_n gA_{nlm} and H_lm = sum_n R'_n gA_{nlm} (channels of the neighbour's species),
  // accumulated over the runs of channels with consecutive n, as A is.
  std::fill(dE_drij, dE_drij + 3 * static_cast<size_t>(n_neigh), 0.0);
  const int nr = spec_.n_radial;
  double G[(kMaxL + 1) * (kMaxL + 1)], H[(kMaxL + 1) * (kMaxL + 1)];
  for (size_t a = 0; a < ws.active.size(); ++a) {
    const int j = ws.active[a];
    const double* d = rij + 3 * j;
    const double r = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    const double* R = ws.R.data() + a * nr;
    const double* dR = ws.dR.data() + a * nr;
    const double* Y = ws.Y.data() + a * n_Y_;
    const double* dY = ws.dY.data() + a * n_Y_ * 3;
    std::fill(G, G + n_Y_, 0.0);
    std::fill(H, H + n_Y_, 0.0);
    for (const ChannelRun& g : runs_of_species_[zj[j]]) {
      const int w = 2 * g.l + 1;
      const double* Rg = R + g.n0;
      const double* dRg = dR + g.n0;
      const double* gAg = ws.gA.data() + g.offset;
      double* Gl = G + g.l * g.l;
      double* Hl = H + g.l * g.l;
      for (int k = 0; k < g.count; ++k) {
        const double rk = Rg[k] * g.weight, drk = dRg[k] * g.weight;
        const double* row = gAg + k * w;
        for (int m = 0; m < w; ++m) {
          Gl[m] += rk * row[m];
          Hl[m] += drk * row[m];
        }
      }
    }
    double sYH = 0.0, g0 = 0.0, g1 = 0.0, g2 = 0.0;
    for (int k = 0; k < n_Y_; ++k) {
      sYH += Y[k] * H[k];
      g0 += dY[3 * k] * G[k];
      g1 += dY[3 * k + 1] * G[k];
      g2 += dY[3 * k + 2] * G[k];
    }
    const double s = sYH / r;
    dE_drij[3 * j] = g0 + s * d[0];
    dE_drij[3 * j + 1] = g1 + s * d[1];
    dE_drij[3 * j + 2] = g2 + s * d[2];
  }
}

double ACEBasis::energy_gradient(int zi, int n_neigh, const double* rij, const int* zj, const double* w,
                                 double* dE_drij, Workspace& ws, const double* w_energy) const {
  atomic_base(zi, n_neigh, rij, zj, ws, true);
  return adjoint(n_neigh, rij, zj, ws.A.data(), w, dE_drij, ws, w_energy);
}

void ACEBasis::prepare_gradient(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws,
                                const double* A) const {
  if (!A) {
    atomic_base(zi, n_neigh, rij, zj, ws, true);
    return;
  }
  atomic_base(zi, n_neigh, rij, zj, ws, true, false);
  ws.A.assign(A, A + n_A_);
}

void ACEBasis::atomic_values(int zi, int n_neigh, const double* rij, const int* zj, Workspace& ws) const {
  atomic_base(zi, n_neigh, rij, zj, ws, false);
}


double ACEBasis::energy_gradient_from_A(int zi, int n_neigh, const double* rij, const int* zj, const double* A,
                                        const double* w, double* dE_drij, Workspace& ws,
                                        const double* w_energy) const {
  atomic_base(zi, n_neigh, rij, zj, ws, true, false);
  return adjoint(n_neigh, rij, zj, A, w, dE_drij, ws, w_energy);
}

double ACEBasis::adjoint(int n_neigh, const double* rij, const int* zj, const double* A, const double* w,
                         double* dE_drij, Workspace& ws, const double* w_energy) const {
  ws.gA.assign(n_A_, 0.0);
  const double E = monomial_adjoint<const double*, true>(A, w, w_energy ? w_energy : w, ws.gA.data());
  adjoint_to_rij(n_neigh, rij, zj, ws, dE_drij);
  return E;
}

namespace {
// w_t gathered from per-feature coefficients c when every monomial is in one feature
struct GatheredWeights {
  const double* coupling;
  const int* feature;
  const double* c;
  double operator[](int t) const { return coupling[t] * c[feature[t]]; }
};
}  // namespace

void ACEBasis::gradient_prepared(int n_neigh, const double* rij, const int* zj, const double* c, double* dE_drij,
                                 Workspace& ws) const {
  ws.gA.assign(n_A_, 0.0);
  if (one_feature_each_) {
    const GatheredWeights w{mono_feat_coef_.data(), mono_feat_.data(), c};
    monomial_adjoint<GatheredWeights, false>(ws.A.data(), w, nullptr, ws.gA.data());
  } else {
    ws.mono.resize(n_mono_);   // the weights once (a monomial in several features)
    monomial_weights(c, ws.mono.data());
    monomial_adjoint<const double*, false>(ws.A.data(), ws.mono.data(), nullptr, ws.gA.data());
  }
  adjoint_to_rij(n_neigh, rij, zj, ws, dE_drij);
}

// gA += dE/dA of E = sum_t w_t monomial_t (gA holds n_A values); returns sum_t we_t monomial_t
// when kEnergy (the energy costs a serial sum over the monomials: the atom gate knows its own)
template <class W, bool kEnergy>
double ACEBasis::monomial_adjoint(const double* A, const W& w, const double* we, double* gA) const {
  double E = 0.0;
  const int* idx = spec_.mono_idx.data();
  double a[kMaxOrder], p[kMaxOrder];
  // runs of equal order: no branch in the inner loops
  for (const OrderRun& run : order_runs_) {
    int t = run.begin;
    const int end = run.end;
    switch (run.order) {
      case 1:
        for (; t < end; ++t, idx += kMaxOrder) {
          if constexpr (kEnergy) E += we[t] * A[idx[0]];
          gA[idx[0]] += w[t];
        }
        break;
      case 2:
        for (; t < end; ++t, idx += kMaxOrder) {
          const double a0 = A[idx[0]], a1 = A[idx[1]], wt = w[t];
          if constexpr (kEnergy) E += we[t] * a0 * a1;
          gA[idx[0]] += wt * a1;
          gA[idx[1]] += wt * a0;
        }
        break;
      case 3:
        for (; t < end; ++t, idx += kMaxOrder) {
          const double a0 = A[idx[0]], a1 = A[idx[1]], a2 = A[idx[2]], wt = w[t];
          const double a01 = a0 * a1;
          if constexpr (kEnergy) E += we[t] * a01 * a2;
          gA[idx[0]] += wt * a1 * a2;
          gA[idx[1]] += wt * a0 * a2;
          gA[idx[2]] += wt * a01;
        }
        break;
      default:
        for (; t < end; ++t, idx += kMaxOrder) {
          for (int q = 0; q < run.order; ++q) a[q] = A[idx[q]];
          product_partials(run.order, a, p);
          if constexpr (kEnergy) E += we[t] * p[0] * a[0];
          const double wt = w[t];
          for (int q = 0; q < run.order; ++q) gA[idx[q]] += wt * p[q];
        }
    }
  }
  return E;
}

void ACEBasis::descriptor_gradients(int zi, int n_neigh, const double* rij, const int* zj, double* B,
                                    double* dB_drij, Workspace& ws) const {
  const int K = spec_.n_features;
  atomic_base(zi, n_neigh, rij, zj, ws, true);
  monomial_values(ws);
  ws.dBdA.assign(static_cast<size_t>(n_A_) * K, 0.0);
  double a[kMaxOrder], p[kMaxOrder];
  for (int v = 0; v < K; ++v) {
    double b = 0.0;
    for (int q = spec_.feat_ptr[v]; q < spec_.feat_ptr[v + 1]; ++q) {
      const int t = spec_.feat_mono[q];
      const double c = spec_.feat_coef[q];
      b += c * ws.mono[t];
      const int* idx = spec_.mono_idx.data() + static_cast<size_t>(t) * kMaxOrder;
      const int o = mono_order_[t];
      for (int s = 0; s < o; ++s) a[s] = ws.A[idx[s]];
      product_partials(o, a, p);
      for (int s = 0; s < o; ++s) ws.dBdA[static_cast<size_t>(idx[s]) * K + v] += c * p[s];
    }
    B[v] = b;
  }
  std::fill(dB_drij, dB_drij + static_cast<size_t>(n_neigh) * 3 * K, 0.0);
  const int nr = spec_.n_radial;
  for (size_t act = 0; act < ws.active.size(); ++act) {
    const int j = ws.active[act];
    const double* d = rij + 3 * j;
    const double r = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    const double u[3] = {d[0] / r, d[1] / r, d[2] / r};
    const double* R = ws.R.data() + act * nr;
    const double* dR = ws.dR.data() + act * nr;
    const double* Y = ws.Y.data() + act * n_Y_;
    const double* dY = ws.dY.data() + act * n_Y_ * 3;
    double* out0 = dB_drij + (static_cast<size_t>(j) * 3 + 0) * K;
    double* out1 = out0 + K;
    double* out2 = out1 + K;
    for (const WeightedChannel& wc : chans_of_species_[zj[j]]) {
      const int c = wc.c, l = spec_.chan_l[c], n = spec_.chan_n[c];
      const double Rn = wc.weight * R[n], dRn = wc.weight * dR[n];
      for (int m = 0; m < 2 * l + 1; ++m) {
        const int k = l * l + m;
        const double da0 = dRn * u[0] * Y[k] + Rn * dY[3 * k];
        const double da1 = dRn * u[1] * Y[k] + Rn * dY[3 * k + 1];
        const double da2 = dRn * u[2] * Y[k] + Rn * dY[3 * k + 2];
        const double* row = ws.dBdA.data() + static_cast<size_t>(chan_offset_[c] + m) * K;
        for (int v = 0; v < K; ++v) {
          const double g = row[v];
          out0[v] += g * da0;
          out1[v] += g * da1;
          out2[v] += g * da2;
        }
      }
    }
  }
}

}  // namespace dcace
