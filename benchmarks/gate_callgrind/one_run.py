"""One LAMMPS run (bcc Mo, 2000 atoms, 100 NVE steps from 300 K, 1 rank; the deck of local_gate.speed)
with pair_style dcace POT and the lmp of the running Python's venv: prints TAG, µs/atom-step (wall),
% CPU and the CPU-adjusted µs/atom-step.  Usage: python one_run.py POT TAG WORKDIR"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lammps_common as lc  # noqa: E402

pot, tag, work = sys.argv[1:4]
r = lc.run_lmp(lc.bcc_deck(10, ["pair_style dcace", f"pair_coeff * * {pot} Mo"], 100), Path(work) / tag)
print(tag, f"{r['us_atom_step']:.3f}", f"{r['cpu_pct']:.1f}", f"{r['us_atom_step'] * r['cpu_pct'] / 100:.3f}", flush=True)
