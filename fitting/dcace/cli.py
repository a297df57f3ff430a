"""Command line: ``dcace fit``, ``dcace eval``, ``dcace --version``.

    dcace fit --train TRAIN.xyz [--test TEST.xyz] --elements Mo --cutoff 5.2 --body-order 4 \\
              --max-degree 12 [--experts auto|M] [--ridge L] [--energy-weight W] [--force-weight W] \\
              [--stress-weight W] [--energy-key K] [--forces-key K] [--stress-key K] [--virial-key K] \\
              [--seed S] [--plots DIR] -o OUT.dcace
    dcace eval POTENTIAL DATA.xyz [--json] [same key options]
    dcace fit --resume S.npz --add NEW.xyz -o OUT.dcace      (incremental refit, dcace.cli_learn)
    dcace select POOL... --potential P -n K -o picked.xyz     (active learning, dcace.active)

Bad input (unreadable data, missing labels, unknown elements, a corrupted potential file) ends with
one line ``dcace: error: ...`` naming the file and frame (or line) and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10: the tomli backport (a dependency there)
    import tomli as tomllib

from . import cli_learn
from .settings import FitSettings
from .atomic import check_output_dir, check_output_file, same_file, write_text_atomic

__all__ = ["main"]

_EXAMPLE_FIT = ("example:\n  dcace fit --train Mo_train.xyz --test Mo_test.xyz --elements Mo --cutoff 5.2 "
                "--body-order 4 --max-degree 12 -o Mo.dcace\n"
                "  dcace fit --train TiAl.xyz --elements Ti Al --cutoff 5.5 --body-order 3 --max-degree 10 "
                "--forces-key force --virial-key virial -o TiAl.dcace")


#: Data keys when neither the command line, a config file nor (for eval) the potential names them.
KEY_DEFAULTS = {k: v.default for k, v in FitSettings.__dataclass_fields__.items() if k.endswith("_key") and k != "weight_key"}


def _add_key_options(p, where="default"):
    # argparse defaults are None so that "not typed" can be told from "typed the default value"
    # (a config file, or the keys stored in a potential, fill what the user did not type)
    p.add_argument("--energy-key", default=None, metavar="K",
                   help=f"total-energy key in atoms.info / calculator results ({where}: energy; example: --energy-key dft_energy)")
    p.add_argument("--forces-key", default=None, metavar="K",
                   help=f"per-atom force array key ({where}: forces; example: --forces-key force)")
    p.add_argument("--stress-key", default=None, metavar="K",
                   help="stress key, eV/Å^3, ASE sign convention, 3x3/9/6 numbers; frames without it get no "
                        "stress rows, but a key you name that no frame has is an error "
                        f"({where}: stress; example: --stress-key dft_stress)")
    p.add_argument("--virial-key", default=None, metavar="K",
                   help="virial key (eV, 3x3/9/6 numbers), used as stress = -virial/volume where no stress is "
                        f"given; a key no frame has is an error ({where}: none; example: --virial-key virial)")


def _elements(values):
    out = []
    for v in values:
        out += [x for x in v.replace(",", " ").split() if x]
    return out


def _experts(value):
    if value == "auto":
        return value
    try:
        m = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {value!r}") from None
    if m < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {value!r}")
    return m


def _positive(value):
    x = _nonneg(value)
    if x == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return x


def _anchors(value):
    """--anchors: a number >= 0 or 'auto'."""
    return "auto" if str(value).strip().lower() == "auto" else _nonneg(value)


def _nonneg(value):
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value!r}")
    return x


def _add_settings_options(f, g) -> None:
    """The options of every fit setting (dcace.settings.FitSettings, in its order), the data keys (shared with
    dcace eval) and the outputs only the command line has."""
    from .settings import cli_fields, help_text

    for fld in cli_fields():
        if fld.name == "energy_key":
            _add_key_options(f)
        if fld.name.endswith("_key") and fld.name != "weight_key":
            continue
        for a in fld.metadata["cli"]:
            (g if a.advanced else f).add_argument(*a.flags, **dict(a.kwargs, help=help_text(a, fld)))
        if fld.name == "keep_arrays":
            f.add_argument("-o", "--output", metavar="OUT.dcace",
                           help="potential file to write (required; example: -o Mo.dcace)")
        if fld.name == "frames_budget_gb":
            g.add_argument("--report-json", metavar="FILE", default=None,
                           help="also write the full fit report as JSON (default: none; example: --report-json fit.json)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="dcace", description="Divide-and-conquer linear ACE interatomic potentials: fit and evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'dcace fit -h' or 'dcace eval -h' for the options of a command")
    parser.add_argument("--version", action="version", version=f"dcace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{fit,eval,select}")

    f = sub.add_parser("fit", help="fit a linear or divide-and-conquer potential",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EXAMPLE_FIT,
                       description="Fit a linear (--experts 1) or divide-and-conquer ACE potential and write "
                                   "one .dcace file; prints a table of train / cross-validation / test errors.")
    f.add_argument("--config", metavar="FILE",
                   help="TOML file with any of these options (keys as the long options, '-' or '_'); command-line "
                        "values win (default: none; example: --config fit.toml)")
    g = f.add_argument_group("advanced")
    _add_settings_options(f, g)
    cli_learn.add_fit_state_options(f)

    e = sub.add_parser("eval", help="evaluate a potential on data",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  dcace eval Mo.dcace Mo_test.xyz --json",
                       description="Energy, force and stress errors of a potential on a data set.")
    e.add_argument("potential", metavar="POTENTIAL", help="a .dcace potential file (example: Mo.dcace)")
    e.add_argument("data", metavar="DATA", nargs="+", help="ASE-readable data file(s) (example: Mo_test.xyz)")
    e.add_argument("--json", action="store_true",
                   help="print one JSON object (n_structures, n_atoms, energy/force MAE and RMSE, stress_mae_gpa, "
                        "n_experts) instead of a table (default: table)")
    e.add_argument("--plots", metavar="FILE", default=None,
                   help="write a parity plot to FILE (default: none; example: --plots parity.png)")
    _add_key_options(e, where="default: the keys the potential was fitted with, else")
    cli_learn.add_select_parser(sub)
    return parser


def _config_keys(fit_parser) -> set:
    """The options a --config file may set: every option of dcace fit but the config itself and those of
    a fit state and its refit (dcace.cli_learn)."""
    return {a.dest for a in fit_parser._actions} - {"help", "config"} - set(cli_learn.STATE_OPTIONS)


def _merge_config(args, parser):
    """Fill the options the user did not type from the ``--config`` TOML file.

    Every fit option has the argparse default None (False for the two flags), so "not typed" is
    exactly "still None / False": a value typed on the command line wins, even when it equals the
    built-in default (``--seed 0``, ``--energy-key energy``); everything else comes from the file.
    """
    if not args.config:
        return args
    path = Path(args.config)
    try:
        cfg = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    cfg = cfg.get("fit", cfg)
    keys = _config_keys(parser._subparsers._group_actions[0].choices["fit"])
    for key, value in cfg.items():
        k = key.replace("-", "_")
        if k == "o":
            k = "output"
        if k not in keys:
            raise ValueError(f"{path}: unknown option {key!r}")
        current = getattr(args, k, None)
        if current is None or current is False:   # not `in (None, False)`: 0 == False (--seed 0)
            if k in ("train", "test", "elements") and isinstance(value, str):
                value = [value]
            setattr(args, k, value)
    return args


_BASIS_OPTIONS = ("body_order", "max_degree", "max_degree_blocks", "chemical_channels")


def _many_element_defaults(args, kw):
    """The basis of a 3+ element fit without basis options (dcace.cost.default_many_element_basis)."""
    from .cost import default_many_element_basis
    from .pipeline import DEFAULTS

    folds = DEFAULTS["cv_folds"] if args.cv_folds is None else int(args.cv_folds)
    budget = float(DEFAULTS["memory_budget_gb"] if args.memory_budget is None else args.memory_budget) * 2**30
    bo, D, blocks = default_many_element_basis(len(kw["elements"]), folds, budget)
    if not args.quiet:
        print(f"dcace fit: {len(kw['elements'])} elements and no basis options: --body-order {bo} --max-degree {D} "
              f"--max-degree-blocks {','.join(f'{b}:{d}' for b, d in blocks.items())} (the largest degree <= 12 "
              f"whose linear normal equations take <= 1/4 of the memory budget; docs/fitting.md)", file=sys.stderr)
    return bo, D, blocks


def parse_block_ridge(spec):
    """'1e-4,1,1e4' -> a grid (1e-4, 1.0, 1e4); '2:1e-4' -> {2: 1e-4}; a TOML list or table as is."""
    if isinstance(spec, (list, dict)):
        return spec
    items = [x.strip() for x in str(spec).split(",")]
    try:
        if all(":" in x for x in items):
            return {int(b): float(f) for b, f in (x.split(":", 1) for x in items)}
        return tuple(float(x) for x in items)
    except ValueError:
        raise ValueError(f"--block-ridge {spec!r}: give factors (1e-4,1,1e4) or BLOCK:FACTOR pairs "
                         "(2:1e-4), not a mix") from None


def parse_degree_ridge(spec):
    """'4' -> 4.0 (fixed); '0,2,4' -> a grid (0.0, 2.0, 4.0); a TOML number or list as is."""
    if isinstance(spec, (int, float, list)):
        return spec
    try:
        items = [float(x) for x in str(spec).split(",")]
    except ValueError:
        raise ValueError(f"--degree-ridge {spec!r}: give an exponent (4) or a list of them (0,2,4,8)") from None
    return items[0] if len(items) == 1 and "," not in str(spec) else tuple(items)


def parse_top_degree_ridge(spec):
    """'9' -> 9.0 (factor by CV); '9:1e4' -> (9.0, 1e4) (fixed); a TOML number or [D, F] list as is."""
    if isinstance(spec, (int, float, list)):
        return spec
    d, sep, f = str(spec).partition(":")
    try:
        return (float(d), float(f)) if sep else float(d)
    except ValueError:
        raise ValueError(f"--top-degree-ridge {spec!r}: give a degree (9) or DEGREE:FACTOR (9:1e4)") from None


def parse_degree_blocks(spec):
    """'2:10,3:8' (or a TOML table {2 = 10}) -> {2: 10.0, 3: 8.0}; checked against the elements in the fit."""
    if isinstance(spec, dict):
        items = spec.items()
    else:
        items = [item.partition(":")[::2] for item in str(spec).split(",")]
    out = {}
    for b, d in items:
        try:
            out[int(str(b).strip())] = float(str(d).strip())
        except ValueError:
            raise ValueError(f"--max-degree-blocks {spec!r}: each block must be SPECIES:DEGREE, e.g. "
                             "--max-degree-blocks 2:10,3:8") from None
    return out


def parse_e0(items):
    """['Ti=-1.23', 'Al=-0.45'] (or a TOML table) -> {'Ti': -1.23, 'Al': -0.45}."""
    if isinstance(items, dict):
        return items
    out = {}
    for item in ([items] if isinstance(items, str) else items):
        el, sep, v = str(item).partition("=")
        try:
            if not sep:
                raise ValueError
            out[el.strip()] = float(v)
        except ValueError:
            raise ValueError(f"--e0 {item!r} must be ELEMENT=ENERGY, e.g. --e0 Ti=-1.23") from None
    return out


def parse_weights(spec):
    """'config_type=AIMD-NVT:0.5,Surface:2' (or without 'config_type=', or a TOML table) -> dict."""
    if isinstance(spec, dict):
        return spec
    text = str(spec).strip()
    if text.startswith("config_type="):
        text = text[len("config_type="):]
    elif "=" in text.split(":", 1)[0]:
        raise ValueError(f"--weights {spec!r}: only config_type weights are supported (write "
                         "config_type=TYPE:W,TYPE:W); per-frame weights come from --weight-key")
    out = {}
    for item in text.split(","):
        name, sep, w = item.rpartition(":")
        if not sep or not name.strip():
            raise ValueError(f"--weights {spec!r}: {item!r} must be TYPE:WEIGHT")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            raise ValueError(f"--weights {spec!r}: weight {w!r} of {name.strip()!r} is not a number") from None
    return out


def _cmd_fit(args, parser) -> int:
    if cli_learn.refit_requested(args):
        return cli_learn.cmd_refit(args)
    args = _merge_config(args, parser)
    missing = [opt for opt, val in (("--train", args.train), ("--elements", args.elements),
                                    ("--cutoff", args.cutoff), ("-o/--output", args.output)) if val in (None, [])]
    if missing:
        raise ValueError(f"dcace fit needs {', '.join(missing)}")
    for k, v in KEY_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    _check_fit_outputs(args)
    from .parallel import world_from_environment
    from .pipeline import fit

    comm = world_from_environment()   # mpiexec -n N dcace fit: N ranks, rank 0 writes (dcace.parallel)

    from .settings import from_args

    kw = dict(from_args(args), comm=comm)   # every fit keyword from its option (dcace.settings)
    if len(kw["elements"]) >= 3 and all(getattr(args, k) is None for k in _BASIS_OPTIONS):
        kw["body_order"], kw["max_degree"], kw["max_degree_blocks"] = _many_element_defaults(args, kw)
    if float(kw["max_degree"]).is_integer():
        kw["max_degree"] = int(kw["max_degree"])
    pot = fit(kw.pop("train"), **kw)
    if comm is not None and comm.Get_rank() != 0:
        return 0
    out = Path(args.output)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, pot.to_string())
    rep = pot.report
    print(str(rep))
    if rep.cv_table and len(rep.cv_table) > 1:
        print("\ncross-validation of the candidates (loss = weighted squared error of held-out folds):")
        print(rep.cv_markdown())
    t = rep.timings
    print(f"\nwrote {out} ({pot.n_experts} expert(s)); time {t.get('total', 0):.1f} s "
          f"(pass 1 {t.get('pass1', 0):.1f} s, pass 2 {t.get('pass2', 0):.1f} s, selection {t.get('selection', 0):.1f} s; "
          f"{t.get('ranks', 1)} rank(s) x {t.get('threads', 1)} thread(s))")
    cli_learn.print_state(rep)
    if args.plots:
        from .plots import write_fit_plots

        files = write_fit_plots(rep, args.plots)
        print("plots: " + ", ".join(files))
    if args.report_json:
        write_text_atomic(args.report_json, rep.to_json())
    return 0


def _check_fit_outputs(args) -> None:
    """Refuse, before any work, outputs that would overwrite the data or cannot be written."""
    inputs = [("--train", f) for f in args.train] + [("--test", f) for f in (args.test or [])]
    outputs = [("-o/--output", args.output)] + ([("--report-json", args.report_json)] if args.report_json else [])
    for opt, path in outputs:
        for in_opt, data in inputs:
            if same_file(path, data):
                raise ValueError(f"{opt} {path} is the {in_opt} data file {data}: refusing to overwrite the "
                                 f"training/test data; choose another output name")
        check_output_file(path, opt)
    if args.report_json and same_file(args.report_json, args.output):
        raise ValueError(f"--report-json {args.report_json} and -o/--output {args.output} are the same file")
    if args.plots:
        check_output_dir(args.plots, "--plots")   # an existing file (data or not) is refused here
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError('--plots needs matplotlib, which is not installed: pip install "dcace[plots]"') from None
    cli_learn.check_state_output(args, inputs + [("--report-json", args.report_json)] if args.report_json else inputs)


def evaluate(pot, data):
    """Error summary (the ``dcace eval --json`` object) of a potential on a Dataset."""
    from .report import ErrorStats

    st = ErrorStats(keep=True)
    gmax = []   # per-structure maximum extrapolation grade (if the file has a grade)
    for fr in data.frames:
        try:
            out = pot.compute(fr.atoms)
        except ValueError as exc:
            from .data import DataError

            raise DataError(f"{fr.where}: {exc}") from None
        st.add(fr.n_atoms, fr.energy, out["energy"], fr.forces, out["forces"],
               fr.stress if (fr.stress is not None and out["stress"] is not None) else None, out["stress"])
        if out["extrapolation"] is not None:
            gmax.append(float(out["extrapolation"].max()))
    d = st.summary()
    d["n_experts"] = pot.n_experts
    d["max_extrapolation"] = max(gmax) if gmax else None
    d["extrapolating_structures"] = (sum(g > 1.0 for g in gmax) / len(gmax)) if gmax else None
    return d, st


def eval_keys(args, metadata):
    """Data keys of ``dcace eval``: typed on the command line, else the ones the potential was fitted
    with (``metadata["fit"]``), else the built-in defaults.  Returns (keys, names typed)."""
    fitted = (metadata or {}).get("fit") or {}
    keys, typed = {}, set()
    for k, default in KEY_DEFAULTS.items():
        v = getattr(args, k)
        if v is not None:
            keys[k] = v
            typed.add(k)
        elif isinstance(fitted.get(k), str):
            keys[k] = fitted[k]
        else:
            keys[k] = default
    return keys, typed


def _cmd_eval(args) -> int:
    from .data import read_data
    from .potential import Potential

    if args.plots:
        for what, path in [("POTENTIAL", args.potential)] + [("DATA", d) for d in args.data]:
            if same_file(args.plots, path):
                raise ValueError(f"--plots {args.plots} is the {what} file {path}: refusing to overwrite it")
        check_output_file(args.plots, "--plots")
    pot = Potential.load(args.potential)
    src = args.data if len(args.data) > 1 else args.data[0]
    keys, typed = eval_keys(args, pot.metadata)
    data = read_data(src, elements=pot.elements, **keys,
                     required_keys={k for k in ("stress_key", "virial_key") if k in typed and keys[k] is not None})
    d, st = evaluate(pot, data)
    if args.plots:
        from .plots import plot_eval

        e_ref, e_pred, f_ref, f_pred = st.arrays()
        plot_eval(e_ref, e_pred, f_ref, f_pred, args.plots, title=f"{args.potential} on {args.data[0]}")
    if args.json:
        print(json.dumps(d, sort_keys=True))
    else:
        from .report import format_table

        print(f"{args.potential}: {pot.n_experts} expert(s), {d['n_structures']} structures, {d['n_atoms']} atoms")
        print(format_table([("potential", Path(args.data[0]).name, d)]))
        if d["max_extrapolation"] is None:
            print("extrapolation grade: not available (potential file format version < 3)")
        else:
            print(f"extrapolation grade: max {d['max_extrapolation']:.3g}; "
                  f"{100 * d['extrapolating_structures']:.1f} % of the structures have an atom above 1")
        for note in data.notes:
            print(f"note: {note}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "fit":
            return _cmd_fit(args, parser)
        if args.command == "select":
            return cli_learn.cmd_select(args)
        return _cmd_eval(args)
    except (ValueError, OSError) as exc:
        msg = str(exc) or type(exc).__name__
        print(f"dcace: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("dcace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
