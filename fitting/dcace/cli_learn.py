"""Command-line parts of the learning loop (issue 14), kept out of ``dcace.cli``:

    dcace fit ... --save-state S                        also write the fit state (docs/fit-state.md)
    dcace fit --resume S --add NEW.xyz -o OUT.dcace     incremental refit [--recluster] [--save-state S2]
    dcace select POOL... --potential P [--state S] -n K -o picked.xyz     (``dcace.active``)
"""
from __future__ import annotations

import sys
from pathlib import Path

from .atomic import check_output_file, same_file, write_text_atomic
from .settings import resume_refused_options

__all__ = ["add_fit_state_options", "refit_requested", "cmd_refit", "add_select_parser", "cmd_select",
           "check_state_output"]

#: options of ``dcace fit`` that --resume refuses (typing them is an error): the FitSettings fields a refit
#: takes from the state or cannot take (refit="state" / "refused", dcace.settings), and a --config file
_FROM_STATE = resume_refused_options() + ("config",)


#: the options add_fit_state_options adds (none of them may come from a --config file)
STATE_OPTIONS = ("save_state", "resume", "add", "recluster", "keep_core")


def add_fit_state_options(f):
    g = f.add_argument_group("fit state and incremental refit (docs/fit-state.md)")
    g.add_argument("--save-state", metavar="S.npz", default=None,
                   help="also write the fit state an incremental refit continues from (default: none; "
                        "example: --save-state Mo.state.npz)")
    g.add_argument("--resume", metavar="S.npz", default=None,
                   help="refit incrementally from this state: the fit settings, folds, clusters and e_ref come "
                        "from it (needs --add; example: --resume Mo.state.npz)")
    g.add_argument("--add", nargs="+", metavar="FILE", default=None,
                   help="new training data for --resume, any ASE-readable file(s) (example: --add new.xyz)")
    g.add_argument("--recluster", action="store_true",
                   help="with --resume: cluster again (a full refit on the state's training files, read again, "
                        "plus --add)")
    g.add_argument("--keep-core", action="store_true",
                   help="with --resume: keep the state's short-range core when new structures reach into it "
                        "(default: an error naming them; --recluster moves the core as a fit from scratch)")


def refit_requested(args) -> bool:
    return bool(args.resume or args.add or args.recluster or args.keep_core)


def check_state_output(args, inputs) -> None:
    """--save-state must not overwrite data, the potential or (unless named) anything else."""
    if not args.save_state:
        return
    for opt, data in inputs:
        if same_file(args.save_state, data):
            raise ValueError(f"--save-state {args.save_state} is the {opt} file {data}: refusing to overwrite it")
    if same_file(args.save_state, args.output):
        raise ValueError(f"--save-state {args.save_state} and -o/--output {args.output} are the same file")
    check_output_file(args.save_state, "--save-state")


def cmd_refit(args) -> int:
    """``dcace fit --resume S --add NEW -o OUT``."""
    if not args.resume:
        raise ValueError("--add/--recluster/--keep-core need --resume S.npz (the state written by dcace fit --save-state); "
                         "for a fit from scratch give the data with --train")
    if not args.add:
        raise ValueError(f"--resume {args.resume} needs --add NEW.xyz (the new training structures)")
    typed = [o for o in _FROM_STATE if getattr(args, o, None) not in (None, False)]
    if typed:
        raise ValueError(f"--resume takes the fit settings from the state {args.resume}; remove "
                         + ", ".join("--" + o.replace("_", "-") for o in typed))
    if not args.output:
        raise ValueError("dcace fit --resume needs -o/--output OUT.dcace")
    inputs = [("--add", f) for f in args.add] + [("--test", f) for f in (args.test or [])] + [("--resume", args.resume)]
    for opt, data in inputs:
        if same_file(args.output, data):
            raise ValueError(f"-o/--output {args.output} is the {opt} file {data}: refusing to overwrite it")
    check_output_file(args.output, "-o/--output")
    check_state_output(args, [i for i in inputs if i[0] != "--resume"])
    from .state import refit

    add = args.add if len(args.add) > 1 else args.add[0]
    test = None if not args.test else (args.test if len(args.test) > 1 else args.test[0])
    pot = refit(add, args.resume, test=test, state=args.save_state, recluster=args.recluster, keep_core=args.keep_core,
                threads=None if args.threads is None else int(args.threads), memory_budget_gb=args.memory_budget,
                progress=not args.quiet and sys.stderr.isatty())
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, pot.to_string())
    rep = pot.report
    print(str(rep))
    r = rep.selection.get("refit")
    if r:
        print(f"\nrefit: {r['added']} structures added to the {r['previous']} of {r['state']}"
              + (f"; new structures per cluster {r['received']}" if r["received"] is not None else ""))
        if r["relative_change"] is not None:
            print("relative coefficient change per expert: " + ", ".join(f"{x:.3g}" for x in r["relative_change"])
                  + (f" (committee {r['committee']}: experts {r['changed']} changed)"))
        else:
            print("the number of experts changed: every expert is new")
    t = rep.timings
    print(f"\nwrote {out} ({pot.n_experts} expert(s)); time {t.get('total', 0):.2f} s")
    _print_state(rep)
    if args.report_json:
        write_text_atomic(args.report_json, rep.to_json())
    return 0


def _print_state(rep):
    s = rep.selection.get("state")
    if s:
        print(f"wrote fit state {s['path']}: {s['bytes'] / 2**20:.1f} MiB ({s['normal_equations'] / 2**20:.1f} MiB "
              f"normal equations, independent of the data; {s['per_structure'] / 2**20:.2f} MiB per-structure sums)")


print_state = _print_state


def add_select_parser(sub):
    s = sub.add_parser("select", help="pick structures to label from a pool by extrapolation grade and diversity",
                       description="Rank the pool's structures by their largest per-atom extrapolation grade and "
                                   "pick K diverse ones (greedy MaxVol on the descriptors of extrapolative atoms).",
                       epilog="example:\n  dcace select dump.lammpstrj --potential Mo.dcace -n 10 -o picked.xyz")
    s.add_argument("pool", nargs="+", metavar="POOL", help="extxyz / ASE-readable files or LAMMPS dumps (*.lammpstrj, "
                                                          "*.dump, or --format lammps-dump-text)")
    s.add_argument("--potential", required=True, metavar="P", help="the .dcace potential (with a grade, format >= 3)")
    s.add_argument("--state", metavar="S.npz", default=None,
                   help="its fit state: checked to belong to the potential; the picks are also made diverse "
                        "against the training set's active set (default: none)")
    s.add_argument("-n", type=int, required=True, metavar="K", help="number of structures to pick")
    s.add_argument("-o", "--output", required=True, metavar="picked.xyz", help="extxyz file of the picks")
    s.add_argument("--type-map", nargs="+", metavar="EL", default=None,
                   help="element of LAMMPS atom type 1, 2, ... (default: the potential's element order, i.e. the "
                        "pair_coeff * * order; needed for dumps of multi-element potentials)")
    s.add_argument("--threshold", type=float, default=1.0, metavar="G",
                   help="atoms with grade above G are extrapolative (default: 1)")
    s.add_argument("--cut-radius", type=float, default=None, metavar="R",
                   help="write, instead of each picked frame, a cluster of radius R Å around its most "
                        "extrapolative atom (non-periodic; default: whole frames)")
    s.add_argument("--format", default=None, metavar="FMT", help="ASE format of the pool files (default: guessed)")
    s.add_argument("--json", action="store_true", help="also print the picks as one JSON object")
    return s


def cmd_select(args) -> int:
    from .active import select_cli

    return select_cli(args)
