/* pair_style dcace: the LAMMPS side of a divide-and-conquer linear ACE potential.
 *
 * Energy of the atoms handled by this style (types mapped to an element of the potential):
 *   E = sum_m w_m(p) E_m,   E_m = sum_i c_{m,Z_i} . B_i + e0_{m,Z_i},   p = (sum_i B_i per species) / N
 * The gate weights w_m depend on the whole system, so compute() runs two passes (DESIGN.md,
 * "In LAMMPS"):
 *   pass 1 (only with M > 1 experts): B_i of local atoms, summed per species, MPI_Allreduce of the
 *          sums and counts; every rank then evaluates the same gate and effective coefficients
 *          c_eff (Potential::combine);
 *   pass 2: the linear-ACE adjoint with c_eff for forces (dE/dr_ij applied to i and to the
 *          neighbour j, ghosts included: newton on, LAMMPS reverse-communicates) and with
 *          sum_m w_m c_m for per-atom energies, which sum to E.
 * With a local (atom) gate there is no pass 1: each atom is gated on its own B_i inside
 * Potential::atom_energy_gradient (per-atom effective coefficients), no reduction, one pass.
 * With the neighbourhood gate (compute_neighbourhood_gate) three stages of the core's per-atom
 * calls: y_i of local atoms, forward communication of y to ghosts; the gates of local atoms and
 * their dE/dy_j (ghosts included), reverse communication of dE/dy; the adjoint (no reduction).
 * The per-atom virial is tallied pair by pair from r_ij and dE/dr_ij; the global virial comes from
 * virial_fdotr_compute() unless pair_modify nofdotr asks for the pairwise tally.
 */

#include "pair_dcace.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "platform.h"
#include "update.h"
#include "utils.h"

#include "dcace/potential.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef DCACE_VERSION
#define DCACE_VERSION "unknown"
#endif
#ifndef DCACE_LAMMPS_VERSION_STRING
#define DCACE_LAMMPS_VERSION_STRING "unknown"
#endif

using namespace LAMMPS_NS;

struct PairDCACE::Impl {
  std::unique_ptr<dcace::Potential> pot;
  std::string filename;        // as resolved on rank 0 (for messages)
  double cut = 0.0, cutsq = 0.0;
  int n_species = 0, n_features = 0, n_monomials = 0, n_experts = 1;

  dcace::Combination comb;     // the gate result of the current step (same on every rank)
  bool comb_valid = false;     // M = 1: computed once per potential

  // scratch, grown only when needed
  dcace::AtomScratch sc;
  std::vector<double> rij, dE;  // 3 per neighbour
  std::vector<int> zj, jidx;    // species and LAMMPS index per neighbour
  std::vector<double> sums_local, sums_global;  // S*K descriptor sums + S counts
  std::vector<double> mono_sums;                // S * n_monomials, pass 1 (M > 1)
  std::vector<double> core_sums;                // S * n_monomials: density-core correction (pass 1)

  // M > 1: what pass 1 learned about each local atom, reused by pass 2 (no second gather and no
  // second accumulation of A).  Vectors are swapped in and out, so capacities persist across steps.
  // The neighbourhood gate keeps the same per atom from stage 1 to stages 2 and 3, and mix (2 per
  // neighbour: its mixing weights, from stage 2 to 3).
  struct AtomCache {
    std::vector<double> A, rij, mix;
    std::vector<int> zj, jidx;
    int n = 0;
  };
  std::vector<AtomCache> cache;
  // local (atom) gate: no pass 1; the gate weights of every local atom of the last step (nlocal x M)
  std::vector<double> atom_weights;
  // neighbourhood gate: per atom (local and ghost) y_j and dE/dy_j (stride L = gate_dim); per local
  // atom the experts' c_m . B_i (M), f_i, z_i, g_i (L), e_i's gated part and eps_i
  int L = 0;
  std::vector<double> y, h, a, fsh, z, g, eg, eps;

  // compute dcace/atom: descriptors of a block of atoms, their species, indices, grades, scratch
  std::vector<double> grade_B, grade_out, grade_core, grade_scratch;
  std::vector<int> grade_s, grade_i;
};

namespace {

// Broadcast a string from rank 0 (chunked: MPI counts are int).
void bcast_string(std::string &s, MPI_Comm world)
{
  long long n = static_cast<long long>(s.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, world);
  s.resize(static_cast<size_t>(n));
  const long long chunk = INT_MAX / 2;
  for (long long off = 0; off < n; off += chunk) {
    const int len = static_cast<int>(std::min(chunk, n - off));
    MPI_Bcast(&s[static_cast<size_t>(off)], len, MPI_CHAR, 0, world);
  }
}

template <typename T> void grow(std::vector<T> &v, size_t n)
{
  if (v.size() < n) v.resize(n);
}

// Standard atomic weights (IUPAC, rounded; mass number of the longest-lived isotope for elements
// without one) for Z = 1..94, to catch pair_coeff element lists in the wrong order.
const char *const kSymbols[] = {
    "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu"};
const double kMasses[] = {
    1.008,   4.0026,  6.94,    9.0122,  10.81,   12.011,  14.007,  15.999,  18.998,  20.180,
    22.990,  24.305,  26.982,  28.085,  30.974,  32.06,   35.45,   39.948,  39.098,  40.078,
    44.956,  47.867,  50.942,  51.996,  54.938,  55.845,  58.933,  58.693,  63.546,  65.38,
    69.723,  72.630,  74.922,  78.971,  79.904,  83.798,  85.468,  87.62,   88.906,  91.224,
    92.906,  95.95,   97.907,  101.07,  102.91,  106.42,  107.87,  112.41,  114.82,  118.71,
    121.76,  127.60,  126.90,  131.29,  132.91,  137.33,  138.91,  140.12,  140.91,  144.24,
    144.91,  150.36,  151.96,  157.25,  158.93,  162.50,  164.93,  167.26,  168.93,  173.05,
    174.97,  178.49,  180.95,  183.84,  186.21,  190.23,  192.22,  195.08,  196.97,  200.59,
    204.38,  207.2,   208.98,  208.98,  209.99,  222.02,  223.02,  226.03,  227.03,  232.04,
    231.04,  238.03,  237.05,  244.06};
static_assert(sizeof(kSymbols) / sizeof(kSymbols[0]) == 94 && sizeof(kMasses) / sizeof(kMasses[0]) == 94,
              "one mass per element symbol, Z = 1..94");

// Standard atomic mass of an element symbol, or a negative number if it is not one of Z = 1..94.
double standard_mass(const std::string &symbol)
{
  for (int z = 0; z < 94; z++)
    if (symbol == kSymbols[z]) return kMasses[z];
  return -1.0;
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairDCACE::PairDCACE(LAMMPS *lmp) :
    Pair(lmp), impl(new Impl), map(nullptr), npvector_alloc(0), scale(nullptr), mass_checked(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  reinitflag = 1;    // fix adapt changes "scale" (extract()); init_one() has no other side effect
  centroidstressflag = CENTROID_NOTAVAIL;
  nextra = 0;
  pvector = nullptr;
}

/* ---------------------------------------------------------------------- */

PairDCACE::~PairDCACE()
{
  if (copymode) return;
  memory->destroy(pvector);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(map);
    memory->destroy(scale);
  }
}

/* ---------------------------------------------------------------------- */

void PairDCACE::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(map, n, "pair:map");
  for (int i = 0; i < n; i++) map[i] = -1;
  memory->create(scale, n, n, "pair:scale");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) scale[i][j] = 1.0;
}

/* ----------------------------------------------------------------------
   pair_style dcace   (no arguments)
------------------------------------------------------------------------- */

void PairDCACE::settings(int narg, char **arg)
{
  if (narg != 0)
    error->all(FLERR, "Illegal pair_style dcace command: it takes no arguments, got '{}'",
               utils::join_words(std::vector<std::string>(arg, arg + narg), " "));
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style dcace requires 'metal' units");
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style dcace: dcace {} (plugin built against LAMMPS {})\n",
                   DCACE_VERSION, DCACE_LAMMPS_VERSION_STRING);
}

/* ----------------------------------------------------------------------
   pair_coeff * * file.dcace El1 El2 ... ElN   (N = number of atom types; NULL = not handled)
------------------------------------------------------------------------- */

void PairDCACE::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;

  if (narg < 3) utils::missing_cmd_args(FLERR, "pair_coeff (pair_style dcace)", error);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style dcace must start with '* *', got '{} {}'", arg[0],
               arg[1]);
  const std::string file = arg[2];
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * {} needs one element name (or NULL) per atom type: "
               "{} atom types, got {} names",
               file, ntypes, narg - 3);

  // rank 0 finds and reads the file, every rank parses the same text

  std::string status, path, text;
  if (comm->me == 0) {
    path = utils::get_potential_file_path(file);
    if (path.empty()) {
      status = fmt::format("Cannot open dcace potential file {}: file not found", file);
    } else if (platform::path_is_directory(path)) {
      status = fmt::format("Cannot open dcace potential file {}: it is a directory", path);
    } else {
      std::ifstream in(path, std::ios::in | std::ios::binary);
      if (!in) {
        status = fmt::format("Cannot open dcace potential file {}: {}", path, strerror(errno));
      } else {
        std::ostringstream ss;
        ss << in.rdbuf();
        if (in.bad())
          status = fmt::format("Error reading dcace potential file {}", path);
        else
          text = ss.str();
      }
    }
  }
  bcast_string(status, world);
  if (!status.empty()) error->all(FLERR, status);
  bcast_string(path, world);
  bcast_string(text, world);

  std::unique_ptr<dcace::Potential> pot;
  try {
    pot.reset(new dcace::Potential(dcace::Potential::parse(text, path)));
  } catch (dcace::FileError &e) {
    error->all(FLERR, "Invalid dcace potential file: {}", e.what());    // "<file>:<line>: ..."
  } catch (std::exception &e) {
    error->all(FLERR, "Invalid dcace potential file {}: {}", path, e.what());
  }
  text.clear();
  text.shrink_to_fit();

  // type -> species

  std::vector<int> newmap(ntypes + 1, -1);
  for (int i = 1; i <= ntypes; i++) {
    const char *name = arg[2 + i];
    if (strcmp(name, "NULL") == 0) continue;
    const int s = pot->species_index(name);
    if (s < 0)
      error->all(FLERR, "Element {} not found in dcace potential file {} (it has: {})", name, path,
                 utils::join_words(pot->elements(), " "));
    newmap[i] = s;
  }

  int count = 0;
  mass_checked = 0;
  for (int i = 1; i <= ntypes; i++) {
    map[i] = newmap[i];
    for (int j = i; j <= ntypes; j++) scale[i][j] = 1.0;
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (newmap[i] >= 0 && newmap[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  }
  if (count == 0)
    error->all(FLERR, "pair_coeff * * {}: every atom type is NULL, pair_style dcace has nothing to do",
               file);

  Impl &d = *impl;
  d.pot = std::move(pot);
  d.filename = path;
  d.cut = d.pot->cutoff();
  d.cutsq = d.cut * d.cut;
  d.n_species = d.pot->n_species();
  d.n_features = d.pot->n_features();
  d.n_monomials = d.pot->basis().n_monomials();
  d.n_experts = d.pot->n_experts();
  d.comb_valid = false;
  d.L = d.pot->gate_kind() == dcace::GateKind::Neighbourhood ? d.pot->gate_dim() : 0;
  comm_forward = comm_reverse = d.L;   // the neighbourhood gate's y_j and dE/dy_j

  // compute pair <id> dcace reads nextra when the compute is created, so pvector never shrinks
  nextra = d.n_experts + 1;
  if (nextra > npvector_alloc) {
    memory->destroy(pvector);
    memory->create(pvector, nextra, "pair:pvector");
    npvector_alloc = nextra;
  }
  for (int k = 0; k < npvector_alloc; k++) pvector[k] = 0.0;

  if (comm->me == 0)
    utils::logmesg(lmp,
                   "Read dcace potential {}: elements {}, {} features, {} monomials, {} expert(s), "
                   "cutoff {} A, {}\n",
                   path, utils::join_words(d.pot->elements(), " "), d.n_features, d.n_monomials,
                   d.n_experts, d.cut,
                   d.pot->baseline().enabled() ? "ZBL short-range baseline" : "no short-range baseline");
}

/* ---------------------------------------------------------------------- */

void PairDCACE::init_style()
{
  if (!impl->pot) error->all(FLERR, "pair_style dcace: no potential read (missing pair_coeff)");
  if (force->newton_pair == 0) error->all(FLERR, "Pair style dcace requires newton pair on");
  neighbor->add_request(this, NeighConst::REQ_FULL);
  if (!mass_checked) check_masses();
}

/* ----------------------------------------------------------------------
   rank 0, once per pair_coeff: warn when a type's mass contradicts the element mapped to it
   (e.g. "pair_coeff * * TiAl.dcace Al Ti" for a data file whose type 1 is Ti).  Masses are set
   by init time, not necessarily at pair_coeff time.
------------------------------------------------------------------------- */

void PairDCACE::check_masses()
{
  mass_checked = 1;
  if (comm->me != 0 || atom->rmass_flag || !atom->mass || !impl->pot) return;
  const std::vector<std::string> &elements = impl->pot->elements();
  for (int t = 1; t <= atom->ntypes; t++) {
    if (map[t] < 0 || !atom->mass_setflag[t]) continue;
    const std::string &el = elements[map[t]];
    const double m_el = standard_mass(el);
    if (m_el < 0.0) continue;    // not an element symbol: nothing to compare with
    const double m = atom->mass[t];
    if (std::fabs(m - m_el) > 1.0)
      error->warning(FLERR,
                     "pair_style dcace: atom type {} has mass {} but pair_coeff maps it to element {} "
                     "(standard atomic mass {}): check the order of the element names in pair_coeff",
                     t, m, el, m_el);
  }
}

/* ---------------------------------------------------------------------- */

double PairDCACE::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  scale[j][i] = scale[i][j];
  return impl->cut;
}

/* ----------------------------------------------------------------------
   "scale" (dim 2, per type pair) for fix adapt and pair_style hybrid/scaled; as for pair_style
   pace, atom i's energy and its pair gradients are multiplied by scale[type_i][type_i]
------------------------------------------------------------------------- */

void *PairDCACE::extract(const char *str, int &dim)
{
  dim = 2;
  if (strcmp(str, "scale") == 0) return (void *) scale;
  return nullptr;
}

/* ----------------------------------------------------------------------
   scale atom i's gradients dE/dr_ij (impl->dE, n pairs) and energy ei by scale[t_i][t_i];
   compute() calls it once per atom, after ei is complete and before the gradients are applied
------------------------------------------------------------------------- */

double PairDCACE::apply_scale(int i, int n, double ei)
{
  const double s = scale[atom->type[i]][atom->type[i]];
  if (s == 1.0) return ei;
  double *g = impl->dE.data();
  for (int k = 0; k < 3 * n; k++) g[k] *= s;
  return s * ei;
}

/* ----------------------------------------------------------------------
   neighbours of local atom i that this style handles, inside the cutoff, into impl->rij/zj/jidx
------------------------------------------------------------------------- */

int PairDCACE::gather_neighbours(int i)
{
  Impl &d = *impl;
  double **x = atom->x;
  const int *type = atom->type;
  const int jnum = list->numneigh[i];
  const int *jlist = list->firstneigh[i];
  grow(d.rij, 3 * static_cast<size_t>(jnum));
  grow(d.zj, static_cast<size_t>(jnum));
  grow(d.jidx, static_cast<size_t>(jnum));

  const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
  int n = 0;
  for (int jj = 0; jj < jnum; jj++) {
    const int j = jlist[jj] & NEIGHMASK;
    const int sj = map[type[j]];
    if (sj < 0) continue;
    const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
    if (dx * dx + dy * dy + dz * dz >= d.cutsq) continue;
    d.rij[3 * n] = dx;
    d.rij[3 * n + 1] = dy;
    d.rij[3 * n + 2] = dz;
    d.zj[n] = sj;
    d.jidx[n] = j;
    n++;
  }
  return n;
}

/* ---------------------------------------------------------------------- */

void PairDCACE::compute(int eflag, int vflag)
{
  if (impl->pot->gate_kind() == dcace::GateKind::Neighbourhood) {
    compute_neighbourhood_gate(eflag, vflag);
    return;
  }
  ev_init(eflag, vflag);

  Impl &d = *impl;
  const dcace::Potential &pot = *d.pot;
  const dcace::ACEBasis &basis = pot.basis();
  const int S = d.n_species, K = d.n_features, M = d.n_experts;
  const size_t nm = static_cast<size_t>(d.n_monomials);

  const int *type = atom->type;
  const tagint *tag = atom->tag;
  const int nlocal = atom->nlocal;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  dcace::Combination &comb = d.comb;

  // pass 1: the global gate (structure gate with M > 1 only; a local gate needs none)

  const bool local_gate = pot.local_gate();
  const bool two_pass = M > 1 && !local_gate;
  if (local_gate) {
    d.atom_weights.assign(static_cast<size_t>(nlocal) * M, 0.0);
    if (!d.comb_valid) {
      pot.combine(nullptr, nullptr, comb);
      d.comb_valid = true;
    }
  } else if (two_pass) {
    // reduced per step: sum_i B_i (S x K), counts (S) and, with a density core, sum_i (f_i - 1) B_i
    const bool core = pot.baseline().has_density_core();
    const size_t SK = static_cast<size_t>(S) * K, nsum = SK + S + (core ? SK : 0);
    d.sums_local.assign(nsum, 0.0);
    grow(d.sums_global, nsum);
    d.mono_sums.assign(static_cast<size_t>(S) * nm, 0.0);
    d.core_sums.assign(core ? static_cast<size_t>(S) * nm : 0, 0.0);
    if (d.cache.size() < static_cast<size_t>(inum)) d.cache.resize(inum);
    for (int ii = 0; ii < inum; ii++) {
      const int i = ilist[ii];
      const int s = map[type[i]];
      if (s < 0) continue;
      const int n = gather_neighbours(i);
      try {  // values only, monomials added to the species' sums
        pot.atom_pass1(s, n, d.rij.data(), d.zj.data(), d.mono_sums.data() + static_cast<size_t>(s) * nm,
                       core ? d.core_sums.data() + static_cast<size_t>(s) * nm : nullptr, d.sc);
      } catch (std::exception &e) {
        error->one(FLERR, "pair dcace: atom {} (type {}): {}", tag[i], type[i], e.what());
      }
      d.sums_local[SK + s] += 1.0;
      Impl::AtomCache &c = d.cache[ii];
      std::swap(c.A, d.sc.basis.A);
      std::swap(c.rij, d.rij);
      std::swap(c.zj, d.zj);
      std::swap(c.jidx, d.jidx);
      c.n = n;
    }
    // sum_i B_i = features applied once to the per-species monomial sums
    for (int s = 0; s < S; s++) {
      basis.features_from_monomials(d.mono_sums.data() + static_cast<size_t>(s) * nm,
                                    d.sums_local.data() + static_cast<size_t>(s) * K);
      if (core)
        basis.features_from_monomials(d.core_sums.data() + static_cast<size_t>(s) * nm,
                                      d.sums_local.data() + SK + S + static_cast<size_t>(s) * K);
    }
    MPI_Allreduce(d.sums_local.data(), d.sums_global.data(), static_cast<int>(nsum), MPI_DOUBLE,
                  MPI_SUM, world);
    try {
      pot.combine(d.sums_global.data(), d.sums_global.data() + SK, comb,
                  core ? d.sums_global.data() + SK + S : nullptr);
    } catch (std::exception &e) {
      error->all(FLERR, "pair dcace: gate evaluation failed: {}", e.what());
    }
  } else if (!d.comb_valid) {
    pot.combine(nullptr, nullptr, comb);
    d.comb_valid = true;
  }

  // pass 2: forces, per-atom energies, virial

  // sums that are finite only if every per-atom energy and force term is (checked after the loop)
  double energy_check = 0.0, force_check = 0.0;
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int s = map[type[i]];
    if (s < 0) continue;
    int n;
    Impl::AtomCache *c = nullptr;
    if (two_pass) {  // neighbours and A from pass 1
      c = &d.cache[ii];
      std::swap(c->rij, d.rij);
      std::swap(c->zj, d.zj);
      std::swap(c->jidx, d.jidx);
      n = c->n;
    } else {
      n = gather_neighbours(i);
    }
    grow(d.dE, 3 * static_cast<size_t>(n));
    double ei = 0.0;
    try {
      ei = pot.atom_energy_gradient(s, n, d.rij.data(), d.zj.data(), comb, c ? c->A.data() : nullptr,
                                    d.dE.data(), d.sc,
                                    local_gate ? d.atom_weights.data() + static_cast<size_t>(i) * M : nullptr);
    } catch (std::exception &e) {
      error->one(FLERR, "pair dcace: atom {} (type {}): {}", tag[i], type[i], e.what());
    }
    ei = apply_scale(i, n, ei);    // fix adapt / hybrid/scaled (scale[t_i][t_i])
    energy_check += ei;

    force_check += tally_atom(i, n, ei);
  }

  if (!std::isfinite(energy_check) || !std::isfinite(force_check))
    error->one(FLERR, "pair dcace: non-finite {} from potential file {} on step {}: its coefficients or "
               "gate overflow for this configuration", std::isfinite(energy_check) ? "forces" : "energy",
               d.filename, update->ntimestep);

  if (vflag_fdotr) virial_fdotr_compute();

  // gate output for compute pair: it sums pvector over ranks, so only rank 0 contributes

  if (nextra > 0) {
    for (int k = 0; k < npvector_alloc; k++) pvector[k] = 0.0;
    if (local_gate) {  // each rank its atoms' share of the mean weights (compute pair sums ranks)
      const double inv = atom->natoms > 0 ? 1.0 / static_cast<double>(atom->natoms) : 0.0;
      for (int ii = 0; ii < inum; ii++) {
        const int i = ilist[ii];
        if (map[type[i]] < 0) continue;
        for (int m = 0; m < M; m++) pvector[m] += inv * d.atom_weights[static_cast<size_t>(i) * M + m];
      }
    } else if (comm->me == 0) {
      for (int m = 0; m < M; m++) pvector[m] = comb.weights[m];
      pvector[M] = comb.nearest;
    }
  }
}

/* ----------------------------------------------------------------------
   atom i's forces from dE/dr_ij (impl->dE, r_ij = x_j - x_i), its pair virials and its energy ei;
   returns the sum of the components (the finite check)
------------------------------------------------------------------------- */

double PairDCACE::tally_atom(int i, int n, double ei)
{
  Impl &d = *impl;
  double **f = atom->f;
  const int nlocal = atom->nlocal, newton_pair = force->newton_pair;
  double sum = 0.0;
  for (int p = 0; p < n; p++) {
    const int j = d.jidx[p];
    const double *g = d.dE.data() + 3 * p;
    sum += g[0] + g[1] + g[2];
    for (int q = 0; q < 3; q++) {
      f[i][q] += g[q];
      f[j][q] -= g[q];
    }
    if (vflag_either) {
      const double *r = d.rij.data() + 3 * p;
      ev_tally_xyz(i, j, nlocal, newton_pair, 0.0, 0.0, g[0], g[1], g[2], -r[0], -r[1], -r[2]);
    }
  }
  if (eflag_either) ev_tally_full(i, 2.0 * ei, 0.0, 0.0, 0.0, 0.0, 0.0);
  return sum;
}

/* ----------------------------------------------------------------------
   the neighbourhood gate: y_i (stage 1), forward comm; z_i, w_i, dE/dy (stage 2), reverse comm;
   the adjoint with c_eff,i and the mixing weights' pair term (stage 3)
------------------------------------------------------------------------- */

void PairDCACE::compute_neighbourhood_gate(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  Impl &d = *impl;
  const dcace::Potential &pot = *d.pot;
  const int M = d.n_experts, L = d.L;
  const int *type = atom->type;
  const tagint *tag = atom->tag;
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  for (int t = 1; t <= atom->ntypes; t++)
    if (map[t] >= 0 && scale[t][t] != 1.0)
      error->all(FLERR, "pair dcace: gate neighbourhood does not support fix adapt / hybrid/scaled scale "
                        "factors (type {} has {})", t, scale[t][t]);
  if (!d.comb_valid) {
    pot.combine(nullptr, nullptr, d.comb);
    d.comb_valid = true;
  }
  d.y.assign(static_cast<size_t>(nall) * L, 0.0);
  d.h.assign(static_cast<size_t>(nall) * L, 0.0);
  d.a.assign(static_cast<size_t>(nlocal) * M, 0.0);
  d.fsh.assign(nlocal, 1.0);
  d.z.assign(static_cast<size_t>(nlocal) * L, 0.0);
  d.g.assign(static_cast<size_t>(nlocal) * L, 0.0);
  d.eg.assign(nlocal, 0.0);
  d.eps.assign(nlocal, 0.0);
  d.atom_weights.assign(static_cast<size_t>(nlocal) * M, 0.0);
  // stage 1: gather the neighbours once; they, A_i and (stage 2) the mixing weights stay in the cache
  const size_t nA = static_cast<size_t>(pot.basis().n_A());
  if (d.cache.size() < static_cast<size_t>(inum)) d.cache.resize(inum);
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii], s = map[type[i]];
    if (s < 0) continue;
    const int n = gather_neighbours(i);
    Impl::AtomCache &c = d.cache[ii];
    grow(c.A, nA);
    try {
      pot.neighbourhood_inputs(s, n, d.rij.data(), d.zj.data(), d.y.data() + static_cast<size_t>(i) * L,
                               d.a.data() + static_cast<size_t>(i) * M, &d.fsh[i], d.sc, c.A.data());
    } catch (std::exception &e) {
      error->one(FLERR, "pair dcace: atom {} (type {}): {}", tag[i], type[i], e.what());
    }
    std::swap(c.rij, d.rij);
    std::swap(c.zj, d.zj);
    std::swap(c.jidx, d.jidx);
    c.n = n;
  }
  comm->forward_comm(this);
  for (int ii = 0; ii < inum; ii++) {   // stage 2
    const int i = ilist[ii], s = map[type[i]];
    if (s < 0) continue;
    Impl::AtomCache &c = d.cache[ii];
    grow(c.mix, 2 * static_cast<size_t>(c.n));
    const size_t iL = static_cast<size_t>(i) * L, iM = static_cast<size_t>(i) * M;
    try {
      d.eg[i] = pot.neighbourhood_gate(i, s, c.n, c.rij.data(), c.zj.data(), c.jidx.data(), d.y.data(),
                                       d.a.data() + iM, d.fsh[i], d.z.data() + iL, d.atom_weights.data() + iM,
                                       d.g.data() + iL, &d.eps[i], d.h.data(), d.sc, c.mix.data());
    } catch (std::exception &e) {
      error->one(FLERR, "pair dcace: atom {} (type {}): {}", tag[i], type[i], e.what());
    }
  }
  comm->reverse_comm(this);
  double energy_check = 0.0, force_check = 0.0;
  for (int ii = 0; ii < inum; ii++) {   // stage 3
    const int i = ilist[ii], s = map[type[i]];
    if (s < 0) continue;
    Impl::AtomCache &c = d.cache[ii];
    std::swap(c.rij, d.rij);   // tally_atom reads d.rij and d.jidx
    std::swap(c.zj, d.zj);
    std::swap(c.jidx, d.jidx);
    const int n = c.n;
    grow(d.dE, 3 * static_cast<size_t>(n));
    const size_t iL = static_cast<size_t>(i) * L, iM = static_cast<size_t>(i) * M;
    double ei = 0.0;
    try {
      ei = pot.neighbourhood_adjoint(i, s, n, d.rij.data(), d.zj.data(), d.jidx.data(), d.y.data(), d.z.data() + iL,
                                     d.atom_weights.data() + iM, d.g.data() + iL, d.eg[i], d.eps[i], d.h.data(),
                                     d.dE.data(), d.sc, c.mix.data(), c.A.data());
    } catch (std::exception &e) {
      error->one(FLERR, "pair dcace: atom {} (type {}): {}", tag[i], type[i], e.what());
    }
    energy_check += ei;
    force_check += tally_atom(i, n, ei);
  }
  if (!std::isfinite(energy_check) || !std::isfinite(force_check))
    error->one(FLERR, "pair dcace: non-finite {} from potential file {} on step {}: its coefficients or "
               "gate overflow for this configuration", std::isfinite(energy_check) ? "forces" : "energy",
               d.filename, update->ntimestep);
  if (vflag_fdotr) virial_fdotr_compute();
  if (nextra > 0) {   // each rank its atoms' share of the mean weights (compute pair sums ranks)
    for (int k = 0; k < npvector_alloc; k++) pvector[k] = 0.0;
    const double inv = atom->natoms > 0 ? 1.0 / static_cast<double>(atom->natoms) : 0.0;
    for (int ii = 0; ii < inum; ii++) {
      const int i = ilist[ii];
      if (map[type[i]] < 0) continue;
      for (int m = 0; m < M; m++) pvector[m] += inv * d.atom_weights[static_cast<size_t>(i) * M + m];
    }
  }
}

int PairDCACE::pack_forward_comm(int n, int *list_, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  const int L = impl->L;
  int m = 0;
  for (int k = 0; k < n; k++) {
    const double *y = impl->y.data() + static_cast<size_t>(list_[k]) * L;
    for (int a = 0; a < L; a++) buf[m++] = y[a];
  }
  return m;
}

void PairDCACE::unpack_forward_comm(int n, int first, double *buf)
{
  const int L = impl->L;
  int m = 0;
  for (int i = first; i < first + n; i++) {
    double *y = impl->y.data() + static_cast<size_t>(i) * L;
    for (int a = 0; a < L; a++) y[a] = buf[m++];
  }
}

int PairDCACE::pack_reverse_comm(int n, int first, double *buf)
{
  const int L = impl->L;
  int m = 0;
  for (int i = first; i < first + n; i++) {
    const double *h = impl->h.data() + static_cast<size_t>(i) * L;
    for (int a = 0; a < L; a++) buf[m++] = h[a];
  }
  return m;
}

void PairDCACE::unpack_reverse_comm(int n, int *list_, double *buf)
{
  const int L = impl->L;
  int m = 0;
  for (int k = 0; k < n; k++) {
    double *h = impl->h.data() + static_cast<size_t>(list_[k]) * L;
    for (int a = 0; a < L; a++) h[a] += buf[m++];
  }
}

/* ----------------------------------------------------------------------
   compute dcace/atom: the extrapolation grade of local atoms (only when the compute is invoked)
------------------------------------------------------------------------- */

bool PairDCACE::has_potential() const { return static_cast<bool>(impl->pot); }
bool PairDCACE::has_grade() const { return impl->pot && impl->pot->has_grade(); }
int PairDCACE::n_experts() const { return impl->pot ? impl->pot->n_experts() : 1; }
std::string PairDCACE::potential_file() const { return impl->filename; }

void PairDCACE::extrapolation_per_atom(double **out, const int *mask, int groupbit)
{
  Impl &d = *impl;
  if (!d.pot || !d.pot->has_grade())
    error->all(FLERR, "compute dcace/atom: potential file {} has no extrapolation grade", d.filename);
  if (!list || static_cast<int>(d.comb.weights.size()) != d.n_experts ||
      (d.pot->local_gate() && d.atom_weights.size() < static_cast<size_t>(atom->nlocal) * d.n_experts))
    error->all(FLERR, "compute dcace/atom is used before pair dcace has computed forces (run 0 first)");
  const int *type = atom->type;
  const tagint *tag = atom->tag;
  const int M = d.n_experts, K = d.n_features;
  // blocks of atoms: descriptors one by one, then gamma of the block at once (shares G in cache)
  const int nb = 16;
  grow(d.grade_B, static_cast<size_t>(nb) * K);
  grow(d.grade_out, static_cast<size_t>(nb));
  grow(d.grade_core, static_cast<size_t>(nb));
  grow(d.grade_s, static_cast<size_t>(nb));
  grow(d.grade_i, static_cast<size_t>(nb));
  int fill = 0;
  auto flush = [&]() {
    try {
      d.pot->grade_values(fill, d.grade_s.data(), d.grade_B.data(), d.grade_out.data(), d.grade_scratch);
    } catch (std::exception &e) {
      error->one(FLERR, "compute dcace/atom (potential file {}): {}", d.filename, e.what());
    }
    for (int a = 0; a < fill; a++) {
      const int i = d.grade_i[a];
      out[i][0] = std::max(d.grade_out[a], d.grade_core[a]);   // MaxVol and the short-range core
      for (int m = 0; m < M; m++)
        out[i][1 + m] = d.pot->local_gate() ? d.atom_weights[static_cast<size_t>(i) * M + m] : d.comb.weights[m];
    }
    fill = 0;
  };
  for (int ii = 0; ii < list->inum; ii++) {
    const int i = list->ilist[ii];
    const int s = map[type[i]];
    if (s < 0 || !(mask[i] & groupbit)) continue;
    const int n = gather_neighbours(i);
    try {
      d.pot->atom_descriptors(s, n, d.rij.data(), d.zj.data(), d.sc.basis, d.grade_B.data() + static_cast<size_t>(fill) * K);
    } catch (std::exception &e) {
      error->one(FLERR, "compute dcace/atom: atom {} (type {}): {}", tag[i], type[i], e.what());
    }
    d.grade_s[fill] = s;
    d.grade_i[fill] = i;
    d.grade_core[fill] = d.pot->core_grade(s, n, d.rij.data(), d.zj.data());
    if (++fill == nb) flush();
  }
  if (fill) flush();
}

/* ---------------------------------------------------------------------- */

double PairDCACE::memory_usage()
{
  double bytes = Pair::memory_usage();
  const Impl &d = *impl;
  const int n = atom->ntypes + 1;
  bytes += static_cast<double>(n) * n * (sizeof(int) + sizeof(double)) + n * sizeof(int);
  bytes += static_cast<double>(d.rij.capacity() + d.dE.capacity() +
                               d.sums_local.capacity() + d.sums_global.capacity()) *
      sizeof(double);
  bytes += static_cast<double>(d.zj.capacity() + d.jidx.capacity()) * sizeof(int);
  bytes += static_cast<double>(d.mono_sums.capacity() + d.core_sums.capacity()) * sizeof(double);
  bytes += static_cast<double>(d.grade_B.capacity() + d.grade_out.capacity() + d.grade_core.capacity() + d.grade_scratch.capacity()) *
      sizeof(double);
  for (const auto &c : d.cache)
    bytes += static_cast<double>(c.A.capacity() + c.rij.capacity() + c.mix.capacity()) * sizeof(double) +
        static_cast<double>(c.zj.capacity() + c.jidx.capacity()) * sizeof(int);
  const dcace::Workspace &w = d.sc.basis;
  bytes += static_cast<double>(w.R.capacity() + w.dR.capacity() + w.Y.capacity() + w.dY.capacity() +
                               w.A.capacity() + w.gA.capacity() + w.mono.capacity() +
                               w.dBdA.capacity()) *
      sizeof(double);
  if (d.pot)
    bytes += static_cast<double>(d.pot->coefficients().size() + d.pot->one_body().size() +
                                 d.pot->gate().projection.size()) *
        sizeof(double);
  const dcace::Combination &c = d.comb;
  bytes += static_cast<double>(c.c_eff.capacity() + c.c_energy.capacity() + c.w_force.capacity() +
                               c.w_energy.capacity()) *
      sizeof(double);
  return bytes;
}
