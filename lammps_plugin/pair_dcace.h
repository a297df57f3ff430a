/* pair_style dcace: divide-and-conquer linear ACE potentials (plugin for LAMMPS).
 *
 *   units metal
 *   pair_style dcace
 *   pair_coeff * * potential.dcace El1 El2 ...      (one element per atom type, NULL = not handled)
 *   compute w all pair dcace                         (c_w[1..M] gate weights, c_w[M+1] extrapolation)
 *
 * A thin adapter: neighbour lists, type -> species map, file distribution, MPI reduction of the
 * gate input and tallies live here; all descriptor and gate math is dcace::Potential (the same code
 * the Python calculator runs).  The core's headers stay out of this file (pimpl).
 */
#ifndef LMP_PAIR_DCACE_H
#define LMP_PAIR_DCACE_H

#include "pair.h"

#include <memory>
#include <string>

namespace LAMMPS_NS {

class PairDCACE : public Pair {
 public:
  PairDCACE(class LAMMPS *);
  ~PairDCACE() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  double memory_usage() override;
  void *extract(const char *, int &) override;
  // the neighbourhood gate's communication (the pair_eam pattern): forward y_j (gate_dim numbers per
  // atom) to ghosts, reverse dE/dy_j from ghosts to their owners
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // compute dcace/atom (compute_dcace_atom.cpp): gamma_i into out[i][0] and the gate weights of the
  // last force evaluation into out[i][1..M] for local atoms in the group of types handled here.
  bool has_potential() const;
  bool has_grade() const;
  int n_experts() const;
  std::string potential_file() const;
  void extrapolation_per_atom(double **out, const int *mask, int groupbit);

 protected:
  struct Impl;         // dcace::Potential, the gate result and per-atom scratch buffers
  std::unique_ptr<Impl> impl;
  int *map;            // atom type (1..ntypes) -> species index in the potential, -1 = NULL
  int npvector_alloc;  // capacity of pvector (never shrinks: compute pair caches nextra)
  double **scale;      // per type pair, default 1 (fix adapt, hybrid/scaled); atom i uses scale[t_i][t_i]
  int mass_checked;    // init_style compared the type masses with the elements (once per pair_coeff)

  double apply_scale(int i, int n, double ei);  // scales dE/dr_ij of atom i's n pairs, returns scaled e_i
  void check_masses();

  void allocate();
  int gather_neighbours(int i);
  double tally_atom(int i, int n, double ei);   // forces, pair virials, energy of atom i
  void compute_neighbourhood_gate(int eflag, int vflag);   // gate neighbourhood: three stages
};

}    // namespace LAMMPS_NS

#endif
