// Structure-level loops over a CSR neighbour list (see structure.hpp).
#include "dcace/structure.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace dcace {

namespace {

void check_centre(const ACEBasis& basis, const Neighbours& nl, int i) {
  const int s = nl.species[i];
  if (s < 0 || s >= basis.n_species())
    throw InputError("atom " + std::to_string(i) + " has species index " + std::to_string(s) + " out of range");
  if (nl.first[i + 1] < nl.first[i]) throw InputError("neighbour list offsets decrease at atom " + std::to_string(i));
}

// Neighbour species of the pairs of atom i, gathered into a reusable buffer.
const int* neighbour_species(const Neighbours& nl, int i, std::vector<int>& buf) {
  const int64_t b = nl.first[i], e = nl.first[i + 1];
  buf.resize(static_cast<size_t>(e - b));
  for (int64_t p = b; p < e; ++p) {
    const int j = nl.j[p];
    if (j < 0 || j >= nl.n_atoms) throw InputError("neighbour index " + std::to_string(j) + " out of range");
    buf[p - b] = nl.species[j];
  }
  return buf.data();
}

// Rethrow an input error with the atom index in front.
[[noreturn]] void rethrow_for_atom(int i, const InputError& e) {
  throw InputError("atom " + std::to_string(i) + ": " + e.what());
}

}  // namespace

void structure_descriptors(const ACEBasis& basis, const Neighbours& nl, double* B) {
  Workspace ws;
  std::vector<int> zj;
  const int K = basis.n_features();
  for (int i = 0; i < nl.n_atoms; ++i) {
    check_centre(basis, nl, i);
    const int64_t b = nl.first[i];
    const int n = static_cast<int>(nl.first[i + 1] - b);
    const int* z = neighbour_species(nl, i, zj);
    try {
      basis.descriptors(nl.species[i], n, nl.rij + 3 * b, z, B + static_cast<size_t>(i) * K, ws);
    } catch (const InputError& e) { rethrow_for_atom(i, e); }
  }
}

void structure_descriptor_sums(const ACEBasis& basis, const Neighbours& nl, double* Bsum, double* counts) {
  const int K = basis.n_features(), S = basis.n_species();
  std::fill(Bsum, Bsum + static_cast<size_t>(S) * K, 0.0);
  std::fill(counts, counts + S, 0.0);
  std::vector<double> B(K);
  Workspace ws;
  std::vector<int> zj;
  for (int i = 0; i < nl.n_atoms; ++i) {
    check_centre(basis, nl, i);
    const int64_t b = nl.first[i];
    const int n = static_cast<int>(nl.first[i + 1] - b);
    const int* z = neighbour_species(nl, i, zj);
    try {
      basis.descriptors(nl.species[i], n, nl.rij + 3 * b, z, B.data(), ws);
    } catch (const InputError& e) { rethrow_for_atom(i, e); }
    const int s = nl.species[i];
    for (int v = 0; v < K; ++v) Bsum[s * K + v] += B[v];
    counts[s] += 1.0;
  }
}

void structure_fitting_rows(const ACEBasis& basis, const Neighbours& nl, double* energy_row,
                            double* force_rows, double* virial_rows) {
  const int K = basis.n_features(), S = basis.n_species();
  const size_t SK = static_cast<size_t>(S) * K;
  std::fill(energy_row, energy_row + SK, 0.0);
  std::fill(force_rows, force_rows + 3 * static_cast<size_t>(nl.n_atoms) * SK, 0.0);
  std::fill(virial_rows, virial_rows + 6 * SK, 0.0);
  std::vector<double> B(K), dB;
  Workspace ws;
  std::vector<int> zj;
  static const int va[6] = {0, 1, 2, 1, 0, 0}, vb[6] = {0, 1, 2, 2, 2, 1};
  for (int i = 0; i < nl.n_atoms; ++i) {
    check_centre(basis, nl, i);
    const int64_t b = nl.first[i];
    const int n = static_cast<int>(nl.first[i + 1] - b);
    const int* z = neighbour_species(nl, i, zj);
    dB.resize(static_cast<size_t>(n) * 3 * K);
    try {
      basis.descriptor_gradients(nl.species[i], n, nl.rij + 3 * b, z, B.data(), dB.data(), ws);
    } catch (const InputError& e) { rethrow_for_atom(i, e); }
    const size_t off = static_cast<size_t>(nl.species[i]) * K;
    for (int v = 0; v < K; ++v) energy_row[off + v] += B[v];
    double* Fi = force_rows + static_cast<size_t>(3 * i) * SK + off;
    for (int p = 0; p < n; ++p) {
      const int j = nl.j[b + p];
      const double* r = nl.rij + 3 * (b + p);
      double* Fj = force_rows + static_cast<size_t>(3 * j) * SK + off;
      for (int a = 0; a < 3; ++a) {
        const double* g = dB.data() + (static_cast<size_t>(p) * 3 + a) * K;
        double* fj = Fj + a * SK;
        double* fi = Fi + a * SK;
        for (int v = 0; v < K; ++v) {
          fj[v] -= g[v];
          fi[v] += g[v];
        }
      }
      for (int q = 0; q < 6; ++q) {
        const double* g = dB.data() + (static_cast<size_t>(p) * 3 + vb[q]) * K;
        double* w = virial_rows + q * SK + off;
        const double ra = r[va[q]];
        for (int v = 0; v < K; ++v) w[v] -= ra * g[v];
      }
    }
  }
}

void for_each_atom(const ACEBasis& basis, const Neighbours& nl, const AtomFn& fn) {
  std::vector<int> zj;
  for (int i = 0; i < nl.n_atoms; ++i) {
    check_centre(basis, nl, i);
    const int64_t b = nl.first[i];
    const int n = static_cast<int>(nl.first[i + 1] - b);
    const int* z = neighbour_species(nl, i, zj);
    try {
      fn(i, nl.species[i], n, nl.rij + 3 * b, z);
    } catch (const InputError& e) { rethrow_for_atom(i, e); }
  }
}

double tally_atoms(const ACEBasis& basis, const Neighbours& nl, double* energies, double* forces, double* virial,
                   double* virial_atoms, const AtomEnergyFn& fn) {
  std::fill(forces, forces + 3 * static_cast<size_t>(nl.n_atoms), 0.0);
  std::fill(virial, virial + 6, 0.0);
  if (virial_atoms) std::fill(virial_atoms, virial_atoms + 6 * static_cast<size_t>(nl.n_atoms), 0.0);
  std::vector<double> g;
  double E = 0.0;
  for_each_atom(basis, nl, [&](int i, int s, int n, const double* rij, const int* z) {
    g.assign(static_cast<size_t>(n) * 3, 0.0);
    const double ei = fn(i, s, n, rij, z, g.data());
    energies[i] = ei;
    E += ei;
    const int64_t b = nl.first[i];
    for (int p = 0; p < n; ++p) {
      const int j = nl.j[b + p];
      const double* r = rij + 3 * p;
      const double* gp = g.data() + 3 * p;
      for (int a = 0; a < 3; ++a) {
        forces[3 * j + a] -= gp[a];
        forces[3 * i + a] += gp[a];
      }
      virial[0] -= r[0] * gp[0];
      virial[1] -= r[1] * gp[1];
      virial[2] -= r[2] * gp[2];
      virial[3] -= r[1] * gp[2];
      virial[4] -= r[0] * gp[2];
      virial[5] -= r[0] * gp[1];
      if (virial_atoms) {
        const double v[6] = {r[0] * gp[0], r[1] * gp[1], r[2] * gp[2], r[1] * gp[2], r[0] * gp[2], r[0] * gp[1]};
        double* vi = virial_atoms + 6 * static_cast<size_t>(i);
        double* vj = virial_atoms + 6 * static_cast<size_t>(j);
        for (int q = 0; q < 6; ++q) {
          vi[q] -= 0.5 * v[q];
          vj[q] -= 0.5 * v[q];
        }
      }
    }
  });
  return E;
}

double structure_energy_forces(const ACEBasis& basis, const Neighbours& nl, const double* w,
                               const double* e0, double* energies, double* forces, double* virial,
                               const double* w_energy, double* virial_atoms) {
  const size_t nm = static_cast<size_t>(basis.n_monomials());
  Workspace ws;
  return tally_atoms(basis, nl, energies, forces, virial, virial_atoms,
                     [&](int, int s, int n, const double* rij, const int* z, double* g) {
                       return basis.energy_gradient(s, n, rij, z, w + s * nm, g, ws,
                                                    w_energy ? w_energy + s * nm : nullptr) + e0[s];
                     });
}

}  // namespace dcace
