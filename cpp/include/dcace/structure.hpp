// Whole-structure evaluation over a CSR neighbour list: the bridge between per-atom basis
// evaluation and what Python needs (descriptor matrices, fitting rows, energy/forces/virial).
// LAMMPS does not use this file: it loops over its own neighbour lists with the per-atom calls.
#pragma once

#include <cstdint>
#include <functional>

#include "dcace/ace_basis.hpp"

namespace dcace {

// Neighbours of every atom of one structure.  Pairs of atom i are first[i] .. first[i+1]-1; j[p] is
// the neighbour's atom index (periodic images map to their original atom) and rij[3p..3p+2] the
// vector from i to the neighbour image.  species[i] is in 0..n_species-1.
struct Neighbours {
  int n_atoms = 0;
  const int* species = nullptr;
  const int64_t* first = nullptr;
  const int* j = nullptr;
  const double* rij = nullptr;
};

// Per-atom callback: atom index i, centre species s, its n neighbours (vectors rij, n x 3, and species zj).
using AtomFn = std::function<void(int i, int s, int n, const double* rij, const int* zj)>;
// The same, returning e_i and filling dE/dr_ij (n x 3).
using AtomEnergyFn = std::function<double(int i, int s, int n, const double* rij, const int* zj, double* dE)>;

// Calls fn for every atom, in order (InputErrors get "atom i: " in front).
void for_each_atom(const ACEBasis& basis, const Neighbours& nl, const AtomFn& fn);
// Calls fn for every atom and tallies: energies[i] = e_i, forces = -dE/dr (n_atoms x 3), virial
// (Voigt, eV) = -sum_pairs r_ij (x) dE/dr_ij, and (if not null) per-atom virials (n_atoms x 6, half
// of each pair to i and half to j).  Returns E = sum_i e_i.
double tally_atoms(const ACEBasis& basis, const Neighbours& nl, double* energies, double* forces, double* virial,
                   double* virial_atoms, const AtomEnergyFn& fn);

// B (n_atoms x K, row-major).
void structure_descriptors(const ACEBasis& basis, const Neighbours& nl, double* B);

// Fitting rows for design columns (s, v) = s*K + v, s = centre species:
//   energy_row[s*K+v]          = sum_{i: Z_i = s} B_{i,v}
//   force_rows[(3k+a)*SK + col] = -d energy_row[col] / d r_{k,a}
//   virial_rows[q*SK + col]     = -sum_pairs r_ij,a d energy_row[col] / d r_ij,b, Voigt q: xx yy zz yz xz xy
void structure_fitting_rows(const ACEBasis& basis, const Neighbours& nl, double* energy_row,
                            double* force_rows, double* virial_rows);

// Linear energy with per-species monomial weights w (n_species x n_monomials) and one-body
// constants e0 (n_species): per-atom energies, forces (n_atoms x 3) and virial (Voigt, eV; the
// ASE stress is -virial / volume).  Returns the total energy.
// With w_energy given, per-atom energies use those monomial weights instead of w (DC gate).
// With virial_atoms given (n_atoms x 6, same Voigt order), half of each pair's -r_ij (x) dE/dr_ij
// goes to i and half to j (as LAMMPS' ev_tally_xyz): the per-atom virials sum to the virial.
double structure_energy_forces(const ACEBasis& basis, const Neighbours& nl, const double* w,
                               const double* e0, double* energies, double* forces, double* virial,
                               const double* w_energy = nullptr, double* virial_atoms = nullptr);

// Sum over atoms of B per centre species (n_species x K) and the atom count per species.
void structure_descriptor_sums(const ACEBasis& basis, const Neighbours& nl, double* Bsum, double* counts);

}  // namespace dcace
