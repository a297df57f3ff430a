"""What an MPI rank's passes cost per atom, held frames against streamed ones (issue 13's row-pass efficiency).

Times, in one process on the Zuo Mo training set, each stage a rank runs on its own frames: the parse (ase's
``read_xyz`` from the frame's byte offset), the validation (``dcace.data.frame_of``), the atoms-only re-parse
(``StreamedFrames.atoms``), the baseline (a zero-coefficient ``Potential`` with the short-range core, as the
fit builds it), the descriptor sums (pass 1) and the fitting rows (pass 2), at the given basis.  Then counts
how often each runs in a fit whose rank holds its frames and in one that streams them (``dcace.restream``,
before and after this branch's changes), and prints the per-atom work of each and their ratio:

    OMP_NUM_THREADS=1 python benchmarks/restream_stages.py --max-degree 12 [--repeats 3]

Process CPU time (time.process_time), the minimum of the repeats; the machine may be shared.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MO = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"

#: stage -> times it runs per own frame in a fit: held frames / streamed at main (f868159) / streamed now; the
#: grade's two passes counted (a species of more than 50,000 atoms is subsampled and graded in a second pass)
COUNTS = {
    "parse": (1, 8, 5),          # read; streamed: + extremes, residual check, passes 1-3, the grade's two (now: not those 3)
    "validate": (1, 8, 5),       # frame_of; now: the extremes and the grade take the atoms alone
    "atoms": (0, 0, 3),          # the atoms-only re-parse (``StreamedFrames.atoms``): extremes, the grade's two
    "baseline": (1, 5, 2),       # held: once; main: check, passes 1 and 2, the grade's two; now: check, pass 2
    "descriptors": (3, 3, 3),    # pass 1 and the grade's two
    "rows": (1, 1, 1),           # pass 2
}


def timed(fn, items, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        for x in items:
            fn(x)
        best = min(best, time.process_time() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-degree", type=float, default=12)
    ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--every", type=int, default=4, help="every k-th training structure (default 4)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import dcace
    from dcace.baseline import core_window, density_core, neighbour_extremes
    from dcace.data import frame_of, xyz_frame_table
    from dcace.restream import FrameTable, StreamedFrames
    from dcace.stream import _parse_frame

    table = xyz_frame_table(MO)[::args.every]
    kw = dict(elements=["Mo"], weight_key="weight", energy_key="energy", forces_key="forces", stress_key="stress",
              virial_key=None)
    with open(MO, "rb") as fh:
        parsed = [_parse_frame(fh, str(MO), i, int(o), int(n)) for i, (o, n) in enumerate(table)]
    frames = [frame_of(a, str(MO), i, {"stress_key": False, "virial_key": False}, set(), {}, **kw)
              for i, a in enumerate(parsed)]
    n_atoms = sum(fr.n_atoms for fr in frames)
    shortest, rho_max = neighbour_extremes(frames, ["Mo"], 5.2)
    lo, hi, _ = core_window(["Mo"], shortest, 5.2, 0.5, None)
    basis = dcace.ACEBasis(["Mo"], 5.2, args.body_order, args.max_degree, core_window=(lo, hi))
    base = dcace.Potential.from_parts(basis, np.zeros((1, 1, basis.n_features)), np.zeros((1, 1)), None, {},
                                      short_range=density_core(rho_max, 5.2))
    ft = FrameTable(len(frames), [str(MO)])
    ft.n_atoms[:] = table[:, 1]
    ft.index[:] = np.arange(len(frames))
    streamed = StreamedFrames(ft, [MO], np.arange(len(frames)), table[:, 0], kw)

    def parse(k):
        with open(MO, "rb") as fh:
            _parse_frame(fh, str(MO), k, int(table[k, 0]), int(table[k, 1]))

    stages = {
        "parse": (parse, range(len(frames))),
        "validate": (lambda a: frame_of(a, str(MO), 0, {"stress_key": False, "virial_key": False}, set(), {}, **kw),
                     parsed),
        "atoms": (lambda _: sum(1 for _ in streamed.atoms(np.arange(len(frames)))), [0]),   # parse included
        "baseline": (lambda fr: base.compute(fr.atoms), frames),
        "descriptors": (lambda fr: basis.descriptor_sums(fr.atoms), frames),
        "rows": (lambda fr: basis.fitting_rows(fr.atoms), frames),
    }
    us = {}
    for name, (fn, items) in stages.items():
        us[name] = 1e6 * timed(fn, items, args.repeats) / n_atoms
    print(f"Mo, every {args.every}th training structure ({len(frames)} frames, {n_atoms} atoms), bo {args.body_order} "
          f"degree {args.max_degree:g}, K = {basis.n_features}; CPU us per atom (min of {args.repeats}):")
    for name, v in us.items():
        print(f"  {name:12s} {v:9.1f}   runs per frame: held {COUNTS[name][0]}, streamed at main {COUNTS[name][1]}, "
              f"streamed now {COUNTS[name][2]}")
    work = [sum(us[k] * COUNTS[k][j] for k in us) for j in range(3)]
    print(f"per-atom work of a rank's passes (without pass 3's two potentials): held {work[0]:.0f} us, streamed at "
          f"main {work[1]:.0f} us ({work[1] / work[0]:.2f} x held), streamed now {work[2]:.0f} us "
          f"({work[2] / work[0]:.2f} x held)")


if __name__ == "__main__":
    main()
