// Real orthonormal spherical harmonics and their gradients with respect to the vector r.
//
// Y is written as a polynomial of the unit vector u: Y_lm = N_l^|m|(u_z) * {C_m or S_m}(u_x, u_y)
// with C_m + i S_m = (u_x + i u_y)^m and N_l^m = K_lm P_l^m / sin^m(theta), a polynomial in u_z
// (Condon-Shortley phase included; K_lm the orthonormalisation, times sqrt(2) for m > 0).  N obeys
// the three-term recursion of the associated Legendre functions with the normalisation folded into
// tabulated coefficients, so the inner loop has no division.  The gradient with respect to r is the
// tangential part of grad_u Y divided by |r|, so it is exact at the poles (no 1/sin(theta)).
#include <cmath>

#include "dcace/ace_basis.hpp"

namespace dcace {

namespace {
constexpr double kPi = 3.14159265358979323846;

// N_m^m = first[m];  N_{m+1}^m = second[m] u_z N_m^m;
// N_l^m = a[l][m] u_z N_{l-1}^m - b[l][m] N_{l-2}^m  (l >= m + 2).
struct RecursionTable {
  double first[kMaxL + 1], second[kMaxL + 1];
  double a[kMaxL + 1][kMaxL + 1], b[kMaxL + 1][kMaxL + 1];
  RecursionTable() {
    double K[kMaxL + 1][kMaxL + 1];  // sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) (sqrt 2 cancels in ratios)
    for (int l = 0; l <= kMaxL; ++l)
      for (int m = 0; m <= l; ++m) {
        double ratio = 1.0;
        for (int k = l - m + 1; k <= l + m; ++k) ratio /= k;
        K[l][m] = std::sqrt((2 * l + 1) / (4.0 * kPi) * ratio);
      }
    double dfact = 1.0;  // (2m-1)!!
    for (int m = 0; m <= kMaxL; ++m) {
      if (m > 0) dfact *= (2 * m - 1);
      first[m] = (m % 2 ? -1.0 : 1.0) * dfact * K[m][m] * (m > 0 ? std::sqrt(2.0) : 1.0);
      second[m] = m + 1 <= kMaxL ? (2 * m + 1) * K[m + 1][m] / K[m][m] : 0.0;
      for (int l = m + 2; l <= kMaxL; ++l) {
        a[l][m] = (2.0 * l - 1.0) / (l - m) * K[l][m] / K[l - 1][m];
        b[l][m] = (l + m - 1.0) / (l - m) * K[l][m] / K[l - 2][m];
      }
    }
  }
};
const RecursionTable kRec;

template <bool Grad>
void sph_harm_impl(int l_max, const double* r, double* Y, double* dY) {
  if (l_max < 0 || l_max > kMaxL) throw InputError("l_max outside 0..15");
  const double rn = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
  if (!(rn > 0.0)) throw InputError("spherical harmonics of a zero-length vector");
  const double inv = 1.0 / rn;
  const double u[3] = {r[0] * inv, r[1] * inv, r[2] * inv};
  const double uz = u[2];
  double cm = 1.0, sm = 0.0, cm1 = 0.0, sm1 = 0.0;  // C_m, S_m, C_{m-1}, S_{m-1}

  // Y_l^{+-m} (and gradients) from N = N_l^m and dN = dN_l^m/du_z
  auto emit = [&](int l, int m, double N, double dN) {
    const int ip = l * l + l + m, im = l * l + l - m;
    Y[ip] = N * cm;
    if (m > 0) Y[im] = N * sm;
    if constexpr (Grad) {
      const double gc[3] = {N * m * cm1, -N * m * sm1, dN * cm};  // grad_u of N C_m
      const double pc = gc[0] * u[0] + gc[1] * u[1] + gc[2] * u[2];
      for (int q = 0; q < 3; ++q) dY[ip * 3 + q] = (gc[q] - pc * u[q]) * inv;
      if (m > 0) {
        const double gs[3] = {N * m * sm1, N * m * cm1, dN * sm};  // grad_u of N S_m
        const double ps = gs[0] * u[0] + gs[1] * u[1] + gs[2] * u[2];
        for (int q = 0; q < 3; ++q) dY[im * 3 + q] = (gs[q] - ps * u[q]) * inv;
      }
    }
  };

  for (int m = 0; m <= l_max; ++m) {
    if (m > 0) {
      const double c = u[0] * cm - u[1] * sm, s = u[0] * sm + u[1] * cm;
      cm1 = cm;
      sm1 = sm;
      cm = c;
      sm = s;
    }
    double n2 = 0.0, d2 = 0.0;                 // N_{l-2}, dN_{l-2}
    double n1 = kRec.first[m], d1 = 0.0;       // N_{l-1}, dN_{l-1}
    emit(m, m, n1, d1);
    if (m + 1 > l_max) continue;
    {
      const double c = kRec.second[m];
      n2 = n1;
      d2 = d1;
      n1 = c * uz * n2;
      d1 = c * n2;
      emit(m + 1, m, n1, d1);
    }
    for (int l = m + 2; l <= l_max; ++l) {
      const double a = kRec.a[l][m], b = kRec.b[l][m];
      const double n = a * uz * n1 - b * n2;
      double d = 0.0;
      if constexpr (Grad) d = a * (n1 + uz * d1) - b * d2;
      n2 = n1;
      d2 = d1;
      n1 = n;
      d1 = d;
      emit(l, m, n, d);
    }
  }
}
}  // namespace

void real_sph_harm(int l_max, const double* r, double* Y, double* dY) {
  if (dY)
    sph_harm_impl<true>(l_max, r, Y, dY);
  else
    sph_harm_impl<false>(l_max, r, Y, nullptr);
}

}  // namespace dcace
