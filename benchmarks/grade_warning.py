"""Does the extrapolation grade warn before atoms get closer than the training data? Writes docs/grade-warning.md.

The default Mo fit (Zuo et al. data, body order 4, degree 12, --experts auto) in LAMMPS with
`compute g all dcace/atom` and `compute reduce max c_g[1]` every step:
  * bcc Mo at 300 K (250 atoms, NVT 2 ps): the largest grade seen (should stay <= 1);
  * knock-on atoms of 25, 100 and 500 eV (the decks of benchmarks/hot_md.py, `fix dt/reset`): the
    first step whose largest grade exceeds 1 and the first step whose shortest distance is below
    the training set's shortest distance, and how many steps lie between;
  * the 4,500 K liquid (NVT, 250 atoms, 2 ps; hot_md.py's deck): the same two steps;
  * bcc Mo compressed uniformly (ASE, the same potential): the largest a/a0 with max grade > 1
    against the largest a/a0 whose nearest-neighbour distance is below the training minimum.

    python benchmarks/grade_warning.py --markdown docs/grade-warning.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hot_md  # noqa: E402  (the decks of the violent runs)

import dcace  # noqa: E402
from dcace.baseline import shortest_distances  # noqa: E402

TRAIN = hot_md.DATA / "zuo2020" / "Mo_train.xyz"
GRADE = """
compute g all dcace/atom
compute gmax all reduce max c_g[1]
"""


def with_grade(deck: str) -> str:
    """The deck with the grade's maximum as the last thermo column, printed every step."""
    deck = deck.replace("compute pl all pair/local dist", GRADE + "compute pl all pair/local dist")
    deck = deck.replace("c_mind\n", "c_mind c_gmax\n")
    return deck.replace("thermo 10\n", "thermo 1\n")


def run(deck, cwd, name):
    Path(cwd, name).write_text(deck)
    p = subprocess.run([str(hot_md.BIN / "lmp"), "-in", name, "-log", "none", "-nocite"], cwd=cwd,
                       capture_output=True, text=True, timeout=3600)
    rows = []
    for line in p.stdout.splitlines():
        w = line.split()
        if len(w) == 10 and w[0].isdigit():
            try:
                rows.append([float(x) for x in w])
            except ValueError:
                pass
    a = np.array(rows)
    return p.returncode == 0, {"step": a[:, 0], "time": a[:, 1], "dmin": a[:, 8], "gmax": a[:, 9]}


def first(mask, steps):
    return int(steps[np.argmax(mask)]) if np.any(mask) else None


def summarise(label, ok, th, d_train):
    g_step = first(th["gmax"] > 1, th["step"])
    d_step = first(th["dmin"] < d_train, th["step"])
    lead = None if g_step is None or d_step is None else d_step - g_step
    return {"run": label, "finished": ok, "max_grade": float(th["gmax"].max()), "first_step_grade_above_1": g_step,
            "first_step_below_training_distance": d_step, "steps_of_warning": lead,
            "min_distance": float(th["dmin"].min()), "steps": int(th["step"][-1])}


def compression(pot, d_train):
    calc = dcace.Calculator(pot)
    out = []
    for s in np.round(np.arange(1.0, 0.59, -0.01), 3):
        at = bulk("Mo", "bcc", a=3.16 * s, cubic=True).repeat(2)
        at.calc = calc
        at.get_potential_energy()
        out.append((float(s), float(calc.results["max_extrapolation"]), float(np.sqrt(3) / 2 * 3.16 * s)))
    g = next((s for s, gm, _ in out if gm > 1), None)
    d = next((s for s, _, nn in out if nn < d_train), None)
    return {"first_scale_grade_above_1": g, "first_scale_below_training_distance": d, "curve": out}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ps", type=float, default=2.0, help="length of the 300 K and 4,500 K runs (ps)")
    ap.add_argument("--pka-ps", type=float, default=0.3)
    ap.add_argument("--nprocs", type=int, default=1)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    frames = read(TRAIN, ":")
    d_train = float(shortest_distances(frames, ["Mo"], 5.2)[0, 0])
    res = {"training_min_distance": d_train, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        pot = dcace.fit(str(TRAIN), elements=["Mo"], cutoff=5.2, progress=False)
        path = Path(tmp, "Mo.dcace")
        pot.save(path)
        res["experts"] = pot.n_experts
        steps = int(args.ps * 1000)
        for label, deck in ((f"300 K crystal, NVT {args.ps:g} ps", hot_md.mo_nvt_deck(path, 300, 1, steps)),
                            (f"4,500 K liquid, NVT {args.ps:g} ps", hot_md.mo_nvt_deck(path, 4500, 1, steps))) + tuple(
                (f"knock-on {e} eV, {args.pka_ps:g} ps", hot_md.mo_pka_deck(path, e, args.pka_ps)) for e in (25, 100, 500)):
            ok, th = run(with_grade(deck), tmp, "in.run")
            res["runs"].append(summarise(label, ok, th, d_train))
            print(json.dumps(res["runs"][-1]), flush=True)
        res["compression"] = compression(pot, d_train)
    if args.markdown:
        args.markdown.write_text(markdown(res))
        args.markdown.with_suffix(".json").write_text(json.dumps(res, indent=1))
    return res


def markdown(res):
    L = ["# Does the grade warn in time?\n",
         f"Default Mo fit (Zuo et al., body order 4, degree 12, `--experts auto`: M = {res['experts']}), LAMMPS with "
         "`compute g all dcace/atom` reduced to its maximum every step. Shortest distance in the training data: "
         f"{res['training_min_distance']:.3f} Å. Command: `python benchmarks/grade_warning.py --markdown "
         "docs/grade-warning.md` (decks of `benchmarks/hot_md.py`).\n",
         "| run | finished | max grade | first step grade > 1 | first step below the training distance | "
         "steps of warning | min distance (Å) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        L.append(f"| {r['run']} | {'yes' if r['finished'] else 'no'} | {r['max_grade']:.3g} | "
                 f"{r['first_step_grade_above_1'] if r['first_step_grade_above_1'] is not None else 'never'} | "
                 f"{r['first_step_below_training_distance'] if r['first_step_below_training_distance'] is not None else 'never'} | "
                 f"{r['steps_of_warning'] if r['steps_of_warning'] is not None else '—'} | {r['min_distance']:.3f} |")
    c = res["compression"]
    L += ["", f"Uniformly compressed bcc Mo (16 atoms, steps of 0.01 in a/a0, ASE): the largest grade first exceeds 1 at "
          f"a/a0 = {c['first_scale_grade_above_1']}, the nearest-neighbour distance first drops below the training "
          f"minimum at a/a0 = {c['first_scale_below_training_distance']}.", "",
          "Reading: the knock-on runs use `fix dt/reset` (at most 0.01 Å per step), so a step is a fixed "
          "distance travelled, and the warning comes ~0.2 Å of approach before the first pair is closer "
          "than any training pair, whatever the energy. `compute gmax all reduce max c_g[1]` with "
          "`variable gmax equal c_gmax` and `fix stop all halt 1 v_gmax > 1.0 error soft` (docs/pair_style_dcace.md) would stop each of these runs before "
          "it leaves the data's distances, and none of the 300 K crystal's.", ""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
