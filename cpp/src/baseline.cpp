// The short-range core (formulas in baseline.hpp).
#include "dcace/baseline.hpp"

#include <cmath>
#include <string>

namespace dcace {

double zbl_energy(double za, double zb, double r, double* dphi_dr) {
  static const double c[4] = {0.18175, 0.50986, 0.28022, 0.02817};
  static const double d[4] = {3.19980, 0.94229, 0.40290, 0.20162};
  const double a = 0.46850 / (std::pow(za, 0.23) + std::pow(zb, 0.23));
  double screen = 0.0, dscreen = 0.0;
  for (int k = 0; k < 4; ++k) {
    const double e = c[k] * std::exp(-d[k] * r / a);
    screen += e;
    dscreen -= d[k] / a * e;
  }
  const double q = kCoulomb * za * zb;
  *dphi_dr = q * (dscreen / r - screen / (r * r));
  return q * screen / r;
}

double core_density(double r_rho, int n_neigh, const double* rij, double* drho_drij) {
  const double inv2 = 1.0 / (r_rho * r_rho);
  double rho = 0.0;
  for (int j = 0; j < n_neigh; ++j) {
    const double* d = rij + 3 * j;
    const double u = 1.0 - (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) * inv2;
    if (drho_drij) {
      double* g = drho_drij + 3 * j;
      g[0] = g[1] = g[2] = 0.0;
      if (u <= 0.0) continue;
      const double u2 = u * u, u5 = u2 * u2 * u, s = -12.0 * u5 * inv2;  // d/dr_vec u^6 = 6 u^5 (-2 r / r_rho^2)
      g[0] = s * d[0];
      g[1] = s * d[1];
      g[2] = s * d[2];
      rho += u5 * u;
    } else if (u > 0.0) {
      const double u2 = u * u;
      rho += u2 * u2 * u2;
    }
  }
  return rho;
}

double Baseline::pair_energy_gradient(const ACEBasis& basis, int zi, int n_neigh, const double* rij,
                                      const int* zj, double* dE_drij) const {
  if (!enabled()) return 0.0;
  double e = 0.0;
  for (int j = 0; j < n_neigh; ++j) {
    const int z = zj[j];
    const double* d = rij + 3 * j;
    const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    const double hi = basis.core_hi(zi, z);
    if (!(r2 < hi * hi)) continue;
    const double r = std::sqrt(r2);
    if (r == 0.0) throw InputError("neighbour " + std::to_string(j) + " sits on the atom (distance 0)");
    double dphi, dg;
    const double phi = zbl_energy(atomic_numbers[zi], atomic_numbers[z], r, &dphi) + shift(zi, z);
    const double g = core_switch(r, basis.core_lo(zi, z), hi, &dg);
    e += 0.5 * phi * (1.0 - g);
    const double s = 0.5 * (dphi * (1.0 - g) - phi * dg) / r;  // (dE/dr) / r
    dE_drij[3 * j] += s * d[0];
    dE_drij[3 * j + 1] += s * d[1];
    dE_drij[3 * j + 2] += s * d[2];
  }
  return e;
}

double Baseline::density_switch(int zi, double rho, double* df) const {
  if (!has_density_core()) {
    *df = 0.0;
    return 1.0;
  }
  double ds;
  const double s = core_switch(rho, rho_lo[zi], rho_hi[zi], &ds);
  *df = -ds;
  return 1.0 - s;
}

double Baseline::density_wall(int zi, double rho, double* dwall_drho) const {
  if (!has_density_wall()) {
    *dwall_drho = 0.0;
    return 0.0;
  }
  const double width = rho_hi[zi] - rho_lo[zi];
  *dwall_drho = wall_slope[zi] / width;
  return wall_level[zi] + wall_slope[zi] * (rho - rho_lo[zi]) / width;
}

double Baseline::dense_core_energy_gradient(const ACEBasis& basis, int zi, int n_neigh, const double* rij,
                                            const int* zj, double scale, double* dE_drij) const {
  const double rc = basis.cutoff(), taper_lo = 0.75 * rc;
  double kappa = 0.0;
  for (int j = 0; j < n_neigh; ++j) {
    const int z = zj[j];
    const double* d = rij + 3 * j;
    const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if (!(r2 < rc * rc)) continue;
    const double r = std::sqrt(r2);
    if (r == 0.0) throw InputError("neighbour " + std::to_string(j) + " sits on the atom (distance 0)");
    double dphi, dg, dt;
    const double phi = zbl_energy(atomic_numbers[zi], atomic_numbers[z], r, &dphi);
    const double g = core_switch(r, basis.core_lo(zi, z), basis.core_hi(zi, z), &dg);
    const double t = 1.0 - core_switch(r, taper_lo, rc, &dt);
    dt = -dt;
    kappa += 0.5 * phi * g * t;
    const double s = scale * 0.5 * (dphi * g * t + phi * dg * t + phi * g * dt) / r;
    dE_drij[3 * j] += s * d[0];
    dE_drij[3 * j + 1] += s * d[1];
    dE_drij[3 * j + 2] += s * d[2];
  }
  return kappa;
}

void Baseline::check(const ACEBasis& basis) const {
  if (!enabled()) {
    if (has_density_core()) throw InputError("a density core needs the ZBL baseline");
    return;
  }
  const size_t S = static_cast<size_t>(basis.n_species());
  if (atomic_numbers.size() != S) throw InputError("the baseline needs one atomic number per element");
  for (double z : atomic_numbers)
    if (!(z >= 1.0 && z <= 118.0) || z != std::floor(z))
      throw InputError("baseline atomic numbers must be integers in 1..118");
  if (!basis.has_core()) throw InputError("a ZBL baseline needs the basis's core windows (where it hands over to ACE)");
  if (!pair_shift.empty()) {
    if (pair_shift.size() != S * S) throw InputError("core shift: one value per element pair (S x S)");
    for (size_t a = 0; a < S; ++a)
      for (size_t b = 0; b < S; ++b) {
        const double v = pair_shift[a * S + b];
        if (!std::isfinite(v) || v < 0.0 || v > 1e6) throw InputError("core shifts must be finite, >= 0 and <= 1e6 eV");
        if (v != pair_shift[b * S + a]) throw InputError("the core shift matrix must be symmetric");
      }
  }
  if (!has_density_core()) {
    if (has_density_wall()) throw InputError("a density wall needs the density core");
    return;
  }
  if (has_density_wall()) {
    if (wall_level.size() != S || wall_slope.size() != S) throw InputError("core wall: one level and slope per element");
    for (size_t s = 0; s < S; ++s)
      if (!std::isfinite(wall_level[s]) || !(std::fabs(wall_level[s]) <= 1e6) || !std::isfinite(wall_slope[s]) ||
          !(wall_slope[s] >= 0.0) || !(wall_slope[s] <= 1e6))
        throw InputError("core wall: levels must be finite with |L| <= 1e6 eV, slopes finite in [0, 1e6] eV");
  }
  if (!(density_cutoff <= basis.cutoff()) || !std::isfinite(density_cutoff))
    throw InputError("core density cutoff must be in (0, cutoff]");
  if (rho_lo.size() != S || rho_hi.size() != S) throw InputError("core density thresholds: one pair per element");
  for (size_t s = 0; s < S; ++s)
    if (!(rho_lo[s] > 0.0) || !(rho_hi[s] > rho_lo[s]) || !std::isfinite(rho_hi[s]))
      throw InputError("core density thresholds must satisfy 0 < rho_lo < rho_hi");
}

}  // namespace dcace
