"""Where the peak of a fit at scale is, against the expected peak it prints before pass 2 (dcace.cost).

Why this file exists: issue 13's memory model (docs/parallel-fitting.md, "Reruns on later code") was
measured on the TiAl tutorial set repeated R times (benchmarks/bench_mpi_fit.py's repeated_set) at body
order 4, degree 14, linear: the stress rows and the grade's MaxVol grow with the data, the normal
equations do not.  One process; RSS sampled by benchmarks/memory_profile.py's Sampler, the last steps
printed with the code that raised them:

    OMP_NUM_THREADS=1 python benchmarks/memory_at_scale.py --repeat 1 --workdir W    # ~5 min on a quiet core
    OMP_NUM_THREADS=1 python benchmarks/memory_at_scale.py --repeat 3 --rows-budget 0 --workdir W
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mpi_fit import SETS, repeated_set  # noqa: E402
from memory_profile import Sampler  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="copies of the TiAl tutorial set (default: 1)")
    p.add_argument("--max-degree", type=float, default=14)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", default=".", help="where the repeated set is written")
    p.add_argument("--rows-budget", type=float, default=None,
                   help="rows_budget_gb (default: the fit's; 0: rank 0's rows in a scratch file, dcace.rowstore)")
    p.add_argument("--memory-budget", type=float, default=16, help="memory_budget_gb (default: 16)")
    a = p.parse_args(argv)
    import dcace

    path = Path(a.workdir) / f"TiAlx{a.repeat}.xyz"
    path.parent.mkdir(parents=True, exist_ok=True)
    n, n_atoms = repeated_set("TiAl", a.repeat, path)
    s = SETS["TiAl"]
    sampler = Sampler(threading.get_ident())
    sampler.start()
    pot = dcace.fit(str(path), elements=s["elements"], cutoff=s["cutoff"], body_order=4, max_degree=a.max_degree,
                    experts=1, threads=a.threads, progress=True, memory_budget_gb=a.memory_budget,
                    rows_budget_gb=a.rows_budget, **s["keys"])
    sampler.stop = True
    c = pot.report.cost
    print(json.dumps(dict(repeat=a.repeat, structures=n, atoms=n_atoms, peak_mib=sampler.peak / 2**20,
                          expected_peak_mib=c["expected_peak_bytes"] / 2**20, resident_mib=c["resident_bytes"] / 2**20,
                          stress_mib=c["stress_bytes"] / 2**20, grade_mib=c["grade_bytes"] / 2**20,
                          scratch_mib=c["scratch_bytes"] / 2**20, rows_budget_gb=a.rows_budget,
                          memory_budget_gb=a.memory_budget,
                          timings=pot.report.timings)))
    for t, rss, where in sampler.events[-8:]:
        print(f"{t:8.1f} s {rss:8.0f} MiB  {' < '.join(reversed(where))}")


if __name__ == "__main__":
    main()
