// Real orthonormal spherical harmonics and their gradients with respect to the vector r.
//
// Y is written as a polynomial of the unit vector u: Y_lm = K_lm Q_l^|m|(u_z) * {C_m or S_m}(u_x, u_y)
// with C_m + i S_m = (u_x + i u_y)^m and Q_l^m = P_l^m / sin^m(theta) (a polynomial; Condon-Shortley
// phase included).  The gradient with respect to r is the tangential part of grad_u Y divided by |r|,
// so it is exact at the poles (no 1/sin(theta) anywhere).
#include <cmath>

#include "dcace/ace_basis.hpp"

namespace dcace {

namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxL = 15;

// K_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!), times sqrt(2) for m > 0: computed once.
struct NormTable {
  double v[kMaxL + 1][kMaxL + 1];
  NormTable() {
    for (int l = 0; l <= kMaxL; ++l)
      for (int m = 0; m <= l; ++m) {
        double ratio = 1.0;
        for (int k = l - m + 1; k <= l + m; ++k) ratio /= k;
        v[l][m] = std::sqrt((2 * l + 1) / (4.0 * kPi) * ratio) * (m > 0 ? std::sqrt(2.0) : 1.0);
      }
  }
};
const NormTable kNorm;
}  // namespace

void real_sph_harm(int l_max, const double* r, double* Y, double* dY) {
  const double rn = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
  if (!(rn > 0.0)) throw InputError("spherical harmonics of a zero-length vector");
  const double ux = r[0] / rn, uy = r[1] / rn, uz = r[2] / rn;
  const int L1 = l_max + 1;
  // C_m, S_m and Q_l^m with z-derivatives
  double C[32], S[32];
  C[0] = 1.0;
  S[0] = 0.0;
  for (int m = 1; m <= l_max; ++m) {
    C[m] = ux * C[m - 1] - uy * S[m - 1];
    S[m] = ux * S[m - 1] + uy * C[m - 1];
  }
  if (l_max < 0 || l_max > kMaxL) throw InputError("l_max outside 0..15");
  double Q[(kMaxL + 1) * (kMaxL + 1)], dQ[(kMaxL + 1) * (kMaxL + 1)];  // index l*L1 + m
  double dfact = 1.0;                             // (2m-1)!!
  for (int m = 0; m <= l_max; ++m) {
    if (m > 0) dfact *= (2 * m - 1);
    const double qmm = (m % 2 ? -1.0 : 1.0) * dfact;
    Q[m * L1 + m] = qmm;
    dQ[m * L1 + m] = 0.0;
    if (m + 1 <= l_max) {
      Q[(m + 1) * L1 + m] = (2 * m + 1) * uz * qmm;
      dQ[(m + 1) * L1 + m] = (2 * m + 1) * qmm;
    }
    for (int l = m + 2; l <= l_max; ++l) {
      const double a = 2 * l - 1, b = l + m - 1, c = l - m;
      const double ic = 1.0 / c;
      Q[l * L1 + m] = (a * uz * Q[(l - 1) * L1 + m] - b * Q[(l - 2) * L1 + m]) * ic;
      if (dY)
        dQ[l * L1 + m] =
            (a * (Q[(l - 1) * L1 + m] + uz * dQ[(l - 1) * L1 + m]) - b * dQ[(l - 2) * L1 + m]) * ic;
    }
  }
  for (int l = 0; l <= l_max; ++l) {
    for (int m = 0; m <= l; ++m) {
      const double K = kNorm.v[l][m];
      const double q = Q[l * L1 + m];
      const double cm = C[m], sm = S[m];
      const int ip = l * l + l + m, im = l * l + l - m;
      Y[ip] = K * q * cm;
      if (m > 0) Y[im] = K * q * sm;
      if (!dY) continue;
      // gradient with respect to u of the polynomial, for the cos (+m) and sin (-m) parts
      const double dq = dQ[l * L1 + m];
      double gc[3], gs[3];
      const double cm1 = m > 0 ? C[m - 1] : 0.0, sm1 = m > 0 ? S[m - 1] : 0.0;
      gc[0] = K * q * m * cm1;
      gc[1] = -K * q * m * sm1;
      gc[2] = K * dq * cm;
      gs[0] = K * q * m * sm1;
      gs[1] = K * q * m * cm1;
      gs[2] = K * dq * sm;
      {
        const double pc = gc[0] * ux + gc[1] * uy + gc[2] * uz;
        for (int a = 0; a < 3; ++a) dY[ip * 3 + a] = (gc[a] - pc * (a == 0 ? ux : a == 1 ? uy : uz)) / rn;
        if (m > 0) {
          const double ps = gs[0] * ux + gs[1] * uy + gs[2] * uz;
          for (int a = 0; a < 3; ++a)
            dY[im * 3 + a] = (gs[a] - ps * (a == 0 ? ux : a == 1 ? uy : uz)) / rn;
        }
      }
    }
  }
}

}  // namespace dcace
