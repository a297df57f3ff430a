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
  const int M = n_experts, D = dim_in, d = dim_out;
  // scratch kept per thread: the atom gate calls this once per atom
  thread_local std::vector<double> z, y, logit, g, gbar;
  z.resize(D);
  y.assign(d, 0.0);
  logit.resize(M);
  g.resize(static_cast<size_t>(M) * d);
  for (int k = 0; k < D; ++k) z[k] = (p[k] - mean[k]) / scale[k];
  for (int a = 0; a < d; ++a) {
    const double* row = projection.data() + static_cast<size_t>(a) * D;
    double s = 0.0;
    for (int k = 0; k < D; ++k) s += row[k] * z[k];
    y[a] = s;
  }
  double best = std::numeric_limits<double>::infinity(), lmax = -std::numeric_limits<double>::infinity();
  for (int m = 0; m < M; ++m) {
    const double t = temperature * spread[m];
    double r2 = 0.0;
    for (int a = 0; a < d; ++a) {
      const double diff = y[a] - centroids[static_cast<size_t>(m) * d + a];
      r2 += diff * diff;
      g[static_cast<size_t>(m) * d + a] = -diff / (t * t);  // d logit_m / d y
    }
    logit[m] = bias[m] - 0.5 * r2 / (t * t);
    best = std::min(best, std::sqrt(r2) / spread[m]);
    lmax = std::max(lmax, logit[m]);
  }
  double sum = 0.0;
  for (int m = 0; m < M; ++m) sum += (w[m] = std::exp(logit[m] - lmax));
  for (int m = 0; m < M; ++m) w[m] /= sum;
  if (nearest) *nearest = best;
  if (!dw_dy) return;
  gbar.assign(d, 0.0);
  for (int m = 0; m < M; ++m)
    for (int a = 0; a < d; ++a) gbar[a] += w[m] * g[static_cast<size_t>(m) * d + a];
  for (int m = 0; m < M; ++m)
    for (int a = 0; a < d; ++a)
      dw_dy[static_cast<size_t>(m) * d + a] = w[m] * (g[static_cast<size_t>(m) * d + a] - gbar[a]);
}

}  // namespace dcace
