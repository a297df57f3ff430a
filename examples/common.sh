# Sourced by the examples' run.sh scripts (not run on its own): the Python that has dcace installed
# ($PYTHON, else python3 on the PATH), the directory of its lmp and mpiexec, and the bundled data.
#   here=...; source "$here/../common.sh" [OUTDIR]   -> $py, $bin, $data_dir, and OUTDIR made
py=${PYTHON:-$(command -v python3 || command -v python)}
bin=$("$py" -c 'import os, sys; print(os.path.dirname(sys.executable))')
data_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/data"
if [[ $# -gt 0 ]]; then mkdir -p "$1"; fi
