"""The local gates (atom, neighbourhood on all of p_i and on its 2+3-body part) against the structure
gate and the linear model, in one run (issue 11):

1. fits on Zuo Mo (train / test): linear (experts=1), structure gate, atom gate and the two
   neighbourhood gates (experts=M, r_g = r_cut): test MAE, fit timings (pass 2 of the linear rows,
   the local gate's own rows + CV, total);
2. locality: two vacancy cells (frames 0 and 11, 9.45 A) stacked 7 + 7 along x: max |dF| on atoms of
   half A farther than the force range (2 r_cut; 2 (r_cut + r_g) for the neighbourhood gate) from
   half B, stack vs half A alone; two-slab energy gap |E(A+B) - E(A) - E(B)| / |E(A+B)| across 12 A of
   vacuum (> r_cut + r_g);
3. LAMMPS speed: bcc Mo, 2000 atoms, NVE from 300 K, 1 rank, us per atom-step (min of --repeat
   interleaved runs, wall and CPU-adjusted), ratios to the linear potential measured in the same run.

Usage: python benchmarks/local_gate.py [--quick] [--experts 4] [--repeat 3] [--skip-lammps]
       [--markdown docs/local-gates-benchmark.md]
--quick: body order 3, degree 8, 40 MD steps (a minute); default body order 4, degree 12, 100 steps.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

import dcace
import lammps_common as lc

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "zuo2020"
CUT = 5.2


def stack(cells, reps):
    L = cells[0].cell[0, 0]
    pos, n = [], 0
    for c, r in zip(cells, reps):
        pos += [c.positions + [(n + k) * L, 0, 0] for k in range(r)]
        n += r
    cell = cells[0].cell.array.copy()
    cell[0] *= n
    P = np.concatenate(pos)
    return Atoms(f"Mo{len(P)}", positions=P, cell=cell, pbc=True)


def force_range(pot):
    return 2 * (CUT + pot.gate["range"]) if pot.gate_kind == "neighbourhood" else 2 * CUT


def locality(pot, a, b, reps=7):
    both, alone = stack([a, b], [reps, reps]), stack([a], [reps])
    x, L, R = alone.positions[:, 0], reps * a.cell[0, 0], force_range(pot)
    far = (x > R + 0.3) & (x < L - R - 0.3)
    Fb, Fa = pot.compute(both)["forces"][:len(alone)], pot.compute(alone)["forces"]
    return float(np.abs(Fb[far] - Fa[far]).max()), int(far.sum()), float(np.sqrt((Fa[far] ** 2).sum(1).mean()))


def slab_gap(pot, a, b, gap=12.0):
    L = a.cell[0, 0]
    P = np.concatenate([a.positions, a.positions + [L, 0, 0], b.positions + [2 * L + gap, 0, 0],
                        b.positions + [3 * L + gap, 0, 0]])
    cell = a.cell.array.copy()
    cell[0, 0] = 4 * L + 2 * gap
    both = Atoms(f"Mo{len(P)}", positions=P, cell=cell, pbc=True)
    E = lambda at: pot.compute(at)["energy"]   # noqa: E731
    h = 2 * len(a)
    return abs(E(both) - E(both[:h]) - E(both[h:])) / abs(E(both))


def speed(files, steps, repeat, workdir):
    """Min over interleaved repeats of LAMMPS' loop time per atom-step, wall and times "% CPU use"
    (what the process got of its core on a shared machine)."""
    wall, cpu = {}, {}
    for k in range(repeat):
        for name, f in files.items():
            r = lc.run_lmp(lc.bcc_deck(10, ["pair_style dcace", f"pair_coeff * * {f} Mo"], steps),
                           Path(workdir) / f"md_{name}_{k}")
            wall[name] = min(wall.get(name, np.inf), r["us_atom_step"])
            cpu[name] = min(cpu.get(name, np.inf), r["us_atom_step"] * r["cpu_pct"] / 100.0)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--skip-lammps", action="store_true", help="no LAMMPS speed runs")
    a = ap.parse_args()
    bo, deg, steps = (3, 8, 40) if a.quick else (4, 12, 100)
    train, test = read(DATA / "Mo_train.xyz", ":"), read(DATA / "Mo_test.xyz", ":")
    vac = [f for f in train if f.info.get("config_type") == "Vacancy"]
    work = Path(tempfile.mkdtemp(prefix="dcace_local_gate_"))
    rows, files, pots = [], {}, {}
    for name, kw in (("linear", dict(experts=1)), ("structure", dict(experts=a.experts, gate="structure")),
                     ("atom", dict(experts=a.experts, gate="atom")),
                     ("neighbourhood", dict(experts=a.experts, gate="neighbourhood")),
                     ("neighbourhood 2+3-body", dict(experts=a.experts, gate="neighbourhood", gate_body_order=3))):
        t0 = time.perf_counter()
        pot = dcace.fit(train, test=test, elements=["Mo"], cutoff=CUT, body_order=bo, max_degree=deg,
                        progress=False, **kw)
        wall = time.perf_counter() - t0
        r = pot.report
        err = r.errors["dc" if pot.n_experts > 1 else "linear"]["test"]
        tm = r.timings
        rows.append(dict(model=name, M=pot.n_experts, tau=r.selection.get("temperature"),
                         e=err["energy_mae_mev_per_atom"], f=err["force_mae_ev_per_a"], pass2=tm["pass2"],
                         atom_gate=tm.get("atom_gate", tm.get("neighbourhood_gate")), total=wall))
        files[name] = work / f"Mo_{name.replace(' ', '_')}.dcace"
        pot.save(files[name])
        pots[name] = pot
    loc = {n: (locality(pots[n], vac[0], vac[11]), slab_gap(pots[n], vac[0], vac[11])) for n in pots}
    sp, sp_cpu = ({}, {}) if a.skip_lammps else speed(files, steps, a.repeat, work)
    lines = [f"Generated by `python benchmarks/local_gate.py{' --quick' if a.quick else ''} --experts {a.experts} "
             f"--repeat {a.repeat}{' --skip-lammps' if a.skip_lammps else ''}` (do not edit by hand). Zuo Mo, body order {bo}, degree {deg}, cutoff {CUT} A, "
             f"{lc.machine()}.", "",
             "| model | M | tau | test E MAE (meV/atom) | test F MAE (eV/A) | linear rows pass 2 (s) | local-gate rows + CV (s) | fit total (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ag = "" if r["atom_gate"] is None else f"{r['atom_gate']:.1f}"
        lines.append(f"| {r['model']} | {r['M']} | {r['tau']} | {r['e']:.2f} | {r['f']:.3f} | {r['pass2']:.1f} | "
                     f"{ag} | {r['total']:.1f} |")
    lines += ["", "Locality (7 + 7 stacked vacancy cells, atoms farther than the force range from the other half: 2 r_cut, "
              "2 (r_cut + r_g) for the neighbourhood gates) and the two-slab energy gap:", "",
              "| model | force range (A) | max dF (eV/A) | atoms compared | rms F there (eV/A) | energy gap (relative) |",
              "|---|---|---|---|---|---|"]
    for n, ((dF, nf, rms), gap) in loc.items():
        lines.append(f"| {n} | {force_range(pots[n]):.1f} | {dF:.2e} | {nf} | {rms:.2f} | {gap:.1e} |")
    lines += [] if a.skip_lammps else ["", f"LAMMPS, bcc Mo 2000 atoms, {steps} NVE steps from 300 K, 1 rank (min of {a.repeat} interleaved "
              "runs; cpu = wall x LAMMPS' % CPU use):", "",
              "| model | us/atom-step wall | / linear | us/atom-step cpu | / linear |", "|---|---|---|---|---|"]
    for n, v in sp.items():
        lines.append(f"| {n} | {v:.2f} | {v / sp['linear']:.2f} | {sp_cpu[n]:.2f} | {sp_cpu[n] / sp_cpu['linear']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.markdown:
        Path(a.markdown).write_text("# Local gates vs structure gate vs linear (benchmark)\n\n" + text)


if __name__ == "__main__":
    sys.exit(main())
