// The gate of the divide-and-conquer potential: a softmax over Gaussian logits of the distance,
// in units of each cluster's spread, between the structure's standardised (and projected) mean
// descriptor (structure gate) or an atom's own descriptor (atom gate, local_gate.cpp) and the
// cluster centroids.  C-infinity in p, stable for any distance.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dcace/potential.hpp"

namespace dcace {

void Gate::evaluate(const double* p, double* w, double* dw_dp, double* nearest) const {
  const int M = n_experts, D = dim_in, d = dim_out;
  if (M == 1) {
    w[0] = 1.0;
    if (dw_dp) std::fill(dw_dp, dw_dp + D, 0.0);
    if (nearest) *nearest = 0.0;
    return;
  }
  thread_local std::vector<double> dy;   // scratch kept per thread
  dy.resize(static_cast<size_t>(M) * d);
  evaluate_projected(p, w, dw_dp ? dy.data() : nullptr, nearest);
  if (!dw_dp) return;
  for (int m = 0; m < M; ++m) {   // dw_m/dp = (sum_a dw_m/dy_a P_a) / scale
    double* out = dw_dp + static_cast<size_t>(m) * D;
    std::fill(out, out + D, 0.0);
    for (int a = 0; a < d; ++a) {
      const double* row = projection.data() + static_cast<size_t>(a) * D;
      const double c = dy[static_cast<size_t>(m) * d + a];
      for (int k = 0; k < D; ++k) out[k] += c * row[k];
    }
    for (int k = 0; k < D; ++k) out[k] /= scale[k];
  }
}

void Gate::evaluate_projected(const double* p, double* w, double* dw_dy, double* nearest) const {
  const int D = dim_in, d = dim_out;
  // scratch kept per thread (the structure gate calls this once per structure)
  thread_local std::vector<double> z, y;
  z.resize(D);
  y.assign(d, 0.0);
  for (int k = 0; k < D; ++k) z[k] = (p[k] - mean[k]) / scale[k];
  for (int a = 0; a < d; ++a) {
    const double* row = projection.data() + static_cast<size_t>(a) * D;
    double s = 0.0;
    for (int k = 0; k < D; ++k) s += row[k] * z[k];
    y[a] = s;
  }
  softmax_projected(y.data(), w, dw_dy, nearest);
}

void Gate::softmax_projected(const double* y, double* w, double* dw_dy, double* nearest) const {
  const int M = n_experts, d = dim_out;
  // logits in w, d logit_m / d y_a = -(y_a - mu_ma) / t_m^2 in dw_dy (then turned into dw/dy)
  double best = std::numeric_limits<double>::infinity(), lmax = -std::numeric_limits<double>::infinity();
  for (int m = 0; m < M; ++m) {
    const double t = temperature * spread[m];
    double r2 = 0.0;
    for (int a = 0; a < d; ++a) {
      const double diff = y[a] - centroids[static_cast<size_t>(m) * d + a];
      r2 += diff * diff;
      if (dw_dy) dw_dy[static_cast<size_t>(m) * d + a] = -diff / (t * t);
    }
    w[m] = bias[m] - 0.5 * r2 / (t * t);
    best = std::min(best, std::sqrt(r2) / spread[m]);
    lmax = std::max(lmax, w[m]);
  }
  double sum = 0.0;
  for (int m = 0; m < M; ++m) sum += (w[m] = std::exp(w[m] - lmax));
  for (int m = 0; m < M; ++m) w[m] /= sum;
  if (nearest) *nearest = best;
  if (!dw_dy) return;
  for (int a = 0; a < d; ++a) {   // dw_m/dy_a = w_m (g_ma - sum_k w_k g_ka)
    double gbar = 0.0;
    for (int m = 0; m < M; ++m) gbar += w[m] * dw_dy[static_cast<size_t>(m) * d + a];
    for (int m = 0; m < M; ++m) {
      double& g = dw_dy[static_cast<size_t>(m) * d + a];
      g = w[m] * (g - gbar);
    }
  }
}

double combine_committee(int M, size_t SK, const double* coef, size_t coef_stride, const double* weights,
                         const double* dw_dp, const double* expert_energy, double n_atoms, double* c_eff) {
  double E = 0.0;
  for (int m = 0; m < M; ++m) E += weights[m] * expert_energy[m];
  std::fill(c_eff, c_eff + SK, 0.0);
  for (int m = 0; m < M; ++m) {
    const double wm = weights[m], em = n_atoms > 0.0 ? (expert_energy[m] - E) / n_atoms : 0.0;
    const double* c = coef + m * coef_stride;
    const double* g = dw_dp + m * SK;
    for (size_t k = 0; k < SK; ++k) c_eff[k] += wm * c[k] + em * g[k];
  }
  return E;
}

}  // namespace dcace
