/* compute ID group dcace/atom: the per-atom extrapolation grade of pair_style dcace.
 *
 *   compute g all dcace/atom          (after pair_coeff; the potential file needs a grade, version >= 3)
 *
 * Per-atom array with M+1 columns: c_g[1] the extrapolation grade gamma_i (<= 1 on the training
 * atoms, > 1 extrapolation), c_g[2..M+1] the gate weights w_m of the last force evaluation (global
 * gate: the same for every atom).  Zero for atoms outside the group or of types the pair style does
 * not handle.  Evaluated only on the steps a fix, dump, variable or thermo output asks for it.
 */
#ifndef LMP_COMPUTE_DCACE_ATOM_H
#define LMP_COMPUTE_DCACE_ATOM_H

#include "compute.h"

namespace LAMMPS_NS {

class PairDCACE;

class ComputeDCACEAtom : public Compute {
 public:
  ComputeDCACEAtom(class LAMMPS *, int, char **);
  ~ComputeDCACEAtom() override;
  void init() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  int nmax;
  double **garray;
  PairDCACE *find_pair();
};

}    // namespace LAMMPS_NS

#endif
