/* compute dcace/atom: per-atom extrapolation grade and gate weights of pair_style dcace.
 * The math is the core's (dcace::Potential::atom_descriptors and grade_values, via PairDCACE); this file only
 * finds the pair style, owns the per-atom array and checks that a grade is available.
 */

#include "compute_dcace_atom.h"

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "pair_dcace.h"
#include "update.h"

#include <string>

using namespace LAMMPS_NS;

ComputeDCACEAtom::ComputeDCACEAtom(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), nmax(0), garray(nullptr)
{
  if (narg != 3)
    error->all(FLERR, "Illegal compute {} dcace/atom command: it takes no arguments", arg[0]);
  PairDCACE *pair = find_pair();
  peratom_flag = 1;
  size_peratom_cols = 1 + pair->n_experts();
  array_atom = nullptr;
}

ComputeDCACEAtom::~ComputeDCACEAtom()
{
  memory->destroy(garray);
}

PairDCACE *ComputeDCACEAtom::find_pair()
{
  auto *pair = dynamic_cast<PairDCACE *>(force->pair_match("dcace", 0));
  if (!pair || !pair->has_potential())
    error->all(FLERR,
               "compute {} dcace/atom needs pair_style dcace (alone or as one sub-style of a hybrid) "
               "with its pair_coeff, defined before the compute",
               id);
  return pair;
}

void ComputeDCACEAtom::init()
{
  PairDCACE *pair = find_pair();
  if (!pair->has_grade())
    error->all(FLERR,
               "compute {} dcace/atom: potential file {} has no extrapolation grade (format version "
               "< 3); refit with this dcace",
               id, pair->potential_file());
  if (1 + pair->n_experts() != size_peratom_cols)
    error->all(FLERR,
               "compute {} dcace/atom: the potential changed its number of experts since the "
               "compute was defined; define the compute again",
               id);
}

void ComputeDCACEAtom::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  if (atom->nmax > nmax) {
    memory->destroy(garray);
    nmax = atom->nmax;
    memory->create(garray, nmax, size_peratom_cols, "dcace/atom:array");
    array_atom = garray;
  }
  const int nlocal = atom->nlocal;
  for (int i = 0; i < nlocal; i++)
    for (int k = 0; k < size_peratom_cols; k++) garray[i][k] = 0.0;
  find_pair()->extrapolation_per_atom(garray, atom->mask, groupbit);
}

double ComputeDCACEAtom::memory_usage()
{
  return static_cast<double>(nmax) * size_peratom_cols * sizeof(double);
}
