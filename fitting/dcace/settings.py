"""Every parameter of a fit in one place: its default, its help line and its command-line option.

``FitSettings`` is the one list the rest reads: ``dcace.fit`` takes its fields as keywords (its
signature is built from them), ``pipeline.DEFAULTS`` is derived from their defaults, ``dcace fit``
builds its options, its ``--config`` keys and the keywords it passes to ``fit`` from their ``cli``
specs, and ``pipeline_checks.checked`` validates them (the messages tests match) before any data is
read.  The file's metadata (``settings`` / ``metadata["fit"]``) is written from the checked values.

Adding an option: one field below -- ``option(default, help, cli=arg("--flag", ...))`` (its place among
the fields is its place in ``dcace fit -h``) -- then its check in ``pipeline_checks`` if it needs one, and
the stage that uses it (docs/pipeline.md).  Nothing else keeps a list of options.
"""
from __future__ import annotations

import inspect
from dataclasses import MISSING, dataclass, field, fields

import numpy as np

__all__ = ["FitSettings", "Arg", "arg", "option", "defaults", "keywords", "cli_fields", "from_keywords",
           "refit_settings", "resume_refused_options"]


@dataclass(frozen=True)
class Arg:
    """One command-line option of ``dcace fit``: argparse's ``add_argument(*flags, **kwargs)``.
    ``advanced``: in the "advanced" group; ``formatted``: its help names the default as ``{default}``."""
    flags: tuple
    kwargs: dict
    advanced: bool = False
    formatted: bool = False

    @property
    def dest(self):
        return self.kwargs.get("dest") or self.flags[-1].lstrip("-").replace("-", "_")


def arg(*flags, advanced=False, formatted=False, **kwargs) -> Arg:
    return Arg(tuple(flags), kwargs, advanced, formatted)


REFIT_KINDS = ("free", "state", "refused")
#: experts="auto" with a local gate (atom, neighbourhood): the numbers of experts CV compares (issue 11)
LOCAL_EXPERTS_GRID = (2, 4, 6, 8)
_LOCAL_MS = ", ".join(str(M) for M in LOCAL_EXPERTS_GRID)


def option(default, doc="", *, cli=(), from_args=None, keyword=True, none_is_default=False, refit="free"):
    """A field of FitSettings.

    cli: the Arg(s) of the option (none: Python only); from_args(args) -> the fit keyword's value from the
    parsed command line (default: the option's value as typed, None when not typed, which fit reads as
    the default); keyword: a keyword of ``dcace.fit`` (else a tuning constant: in ``DEFAULTS`` only);
    none_is_default: ``fit(name=None)`` means the default (a field whose None has a meaning of its own,
    as ``ridge=None`` = by CV, keeps it); refit: what an incremental refit (``dcace.refit``, ``dcace fit
    --resume``) does with it -- "state": takes it from the fit state (typing its option with --resume is an
    error), "refused": a --resume refit cannot take it (an error too), "free": given anew (test, threads, ...).
    """
    if refit not in REFIT_KINDS:
        raise ValueError(f"refit={refit!r}: one of {REFIT_KINDS}")
    cli = (cli,) if isinstance(cli, Arg) else tuple(cli)
    meta = dict(doc=doc, cli=cli, from_args=from_args, keyword=keyword, none_is_default=none_is_default, refit=refit)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _typed(name):
    return lambda args: getattr(args, name)


def _nonneg(value):
    from .cli import _nonneg as check

    return check(value)


def _positive(value):
    from .cli import _positive as check

    return check(value)


def _experts(value):
    from .cli import _experts as check

    return check(value)


def _anchors(value):
    from .cli import _anchors as check

    return check(value)


def _parsed(name, parser):
    """from_args: cli.<parser>(value) when typed, else None."""
    def get(args):
        from . import cli

        v = getattr(args, name)
        return None if v is None else getattr(cli, parser)(v)
    return get


def _or_default(name, conv=None):
    """from_args: the typed value (through conv), else the field's default."""
    def get(args):
        v = getattr(args, name)
        if v is None:
            return next(f.default for f in fields(FitSettings) if f.name == name)
        return v if conv is None else conv(v)
    return get


def _core_range(args):
    from .baseline import parse_core_range

    return None if args.core_range is None else parse_core_range(args.core_range)


def _one_or_list(name):
    def get(args):
        v = getattr(args, name)
        return None if not v else (v if len(v) > 1 else v[0])
    return get


def _elements(args):
    from .cli import _elements as split

    return split(args.elements)


@dataclass(kw_only=True)
class FitSettings:
    """The parameters of a fit (``dcace.fit`` keywords, ``dcace fit`` options), in ``dcace fit -h`` order."""

    # ------------------------------------------------------------------ data and basis
    train: object = option(None, "training data: path(s), ase.Atoms list or dcace.data.Dataset", cli=arg(
        "--train", nargs="+", metavar="FILE",
        help="training data, any ASE-readable file(s) (required; example: --train Mo_train.xyz)"),
        from_args=_one_or_list("train"), refit="refused")
    test: object = option(None, "test data evaluated with every compared model after the fit", cli=arg(
        "--test", nargs="+", metavar="FILE",
        help="test data evaluated after the fit (default: none; example: --test Mo_test.xyz)"),
        from_args=_one_or_list("test"))
    elements: object = option(MISSING, "element symbols of the potential", cli=arg(
        "--elements", nargs="+", metavar="EL",
        help="element symbols of the potential (required; example: --elements Ti Al)"), from_args=_elements, refit="state")
    cutoff: float = option(MISSING, "cutoff radius in A", cli=arg(
        "--cutoff", type=float, metavar="R", help="cutoff radius in Å (required; example: --cutoff 5.2)"),
        from_args=lambda a: float(a.cutoff), refit="state")
    body_order: int = option(4, "body order 2..5", cli=arg(
        "--body-order", type=int, default=None, metavar="B",
        help="body order 2..5 (default: 4; example: --body-order 3)"), from_args=_or_default("body_order", int),
        refit="state")
    max_degree: float = option(12, "total degree of the basis", cli=arg(
        "--max-degree", type=float, default=None, metavar="D",
        help="total degree: a feature is kept if sum_t (n_t + W_L l_t) <= D, n_t >= 1, W_L = "
             "--angular-weight (default: 12; example: --max-degree 16)"), from_args=_or_default("max_degree", float),
             refit="state")
    max_degree_blocks: object = option(None, "{2: 10, 3: 8}: a smaller max_degree for functions coupling that "
                                             "many distinct species (dcace.basis_spec)", cli=arg(
        "--max-degree-blocks", default=None, metavar="B:D,...",
        help="a smaller max degree D for functions coupling B distinct species (pacemaker's "
             "UNARY/BINARY/... blocks; blocks not named keep --max-degree) (default: none; example: "
             "--max-degree 12 --max-degree-blocks 2:10,3:8)"), from_args=_parsed("max_degree_blocks", "parse_degree_blocks"),
             refit="state")
    chemical_channels: object = option(None, "C, the species-embedded basis (dcace.ACEBasis)", cli=arg(
        "--chemical-channels", type=int, default=None, metavar="C",
        help="species-embedded basis with C chemical channels (1..number of elements): "
             "A_{k n l m} = sum_j W_{k z_j} R_n Y_lm with a fixed embedding W, so K is that of C "
             "species whatever the number of elements; C = 1 is SNAP's weighted density "
             "(default: explicit species channels; example: --chemical-channels 2)"), refit="state")
    chemical_embedding: object = option("cosine", "W of chemical_channels: cosine | pca | fit | a C x S matrix "
                                                  "(dcace.embedding)", cli=arg(
        "--chemical-embedding", choices=("cosine", "pca", "fit"), default=None,
        help="the embedding W of --chemical-channels: 'cosine' (fixed), 'pca' (leading components of the "
             "training data's species-resolved radial densities) or 'fit' (from a linear explicit 2-body "
             "fit's coefficients); docs/many-elements.md (default: cosine; example: --chemical-embedding fit)"),
        none_is_default=True, refit="state")
    # ------------------------------------------------------------------ experts and gate
    experts: object = option("auto", "'auto' (M and tau by CV) or an integer M", cli=arg(
        "--experts", type=_experts, default=None, metavar="auto|M",
        help="number of experts: 'auto' chooses M = 1..max-experts and the gate temperature by "
             "k-fold cross-validation (a local --gate: M = " + _LOCAL_MS + " up to --max-experts, each its own pass "
             "over the data); 1 is the plain linear potential (default: auto; example: --experts 4)"),
        from_args=_or_default("experts"), refit="state")
    gate: str = option("structure", "structure | atom | neighbourhood | auto (dcace.local_gate)", cli=arg(
        "--gate", choices=("structure", "atom", "neighbourhood", "auto"), default=None,
        help="what the gate sees: 'structure' (the paper's gate on the structure's mean descriptor), "
             "'atom' (a local gate on each atom's own descriptor: forces depend on atoms within "
             "2 r_cut only; --experts auto tries M = " + _LOCAL_MS + " up to --max-experts, by CV), 'neighbourhood' "
             "(a local gate on the smooth "
             "average of the descriptors of the atom and its same-species neighbours within "
             "--gate-range: forces depend on atoms within 2 (r_cut + r_g)), 'auto' (all; the lowest "
             "CV loss among linear, structure, atom and neighbourhood gate wins) "
             "(default: structure; example: --gate atom --experts 4)"), from_args=_or_default("gate"), refit="refused")
    gate_range: object = option(None, "the neighbourhood gate's r_g in A (None: the cutoff)", cli=arg(
        "--gate-range", type=float, default=None, metavar="R",
        help="the neighbourhood gate's range r_g in Å, 0 < r_g <= --cutoff (default: the cutoff; "
             "example: --gate-range 4)"), refit="refused")
    gate_body_order: object = option(None, "the neighbourhood gate's PCA on the columns of body order <= this",
                                     cli=arg(
        "--gate-body-order", type=int, default=None, metavar="B",
        help="the neighbourhood gate's PCA on the features of body order <= B only (3: its 2+3-body "
             "part); 0 = all features (default: 0; example: --gate-body-order 3)"), refit="refused")
    # ------------------------------------------------------------------ ridge
    ridge: object = option(None, "ridge parameter on scaled columns; None = by CV", cli=arg(
        "--ridge", type=_nonneg, default=None, metavar="L",
        help="ridge parameter on scaled columns (dimensionless); chosen by cross-validation over "
             "1e-14..1e-3 if not given (default: CV; example: --ridge 1e-8)"), refit="state")
    block_ridge: object = option(None, "ridge factor per species block: None | grid | {b: f} (dcace.block_ridge)",
                                 cli=arg(
        "--block-ridge", default=None, metavar="F,...|B:F,...",
        help="a ridge per species block (the columns of B distinct species, centre included): a grid of factors "
             "on the ridge, one chosen per block by cross-validation, or fixed factors B:F "
             "(dcace.block_ridge; explicit bases) (default: one ridge for all blocks; example: "
             "--block-ridge 1e-4,1e-2,1,1e2,1e4)"), from_args=_parsed("block_ridge", "parse_block_ridge"),
        none_is_default=True, refit="state")
    degree_ridge: object = option(None, "smoothness prior exponent p: None | p | grid (dcace.block_ridge)", cli=arg(
        "--degree-ridge", default=None, metavar="P|P,...",
        help="smoothness prior: the ridge of a feature of degree d is the ridge x (d / smallest d)^P; "
             "a list of exponents is chosen from by cross-validation (dcace.block_ridge) (default: "
             "off; example: --degree-ridge 0.5,1,2,4)"), from_args=_parsed("degree_ridge", "parse_degree_ridge"),
        none_is_default=True, refit="state")
    top_degree_ridge: object = option(None, "ridge factor of the columns of degree > D: None | D | (D, F) "
                                            "(dcace.block_ridge)", cli=arg(
        "--top-degree-ridge", default=None, metavar="D|D:F",
        help="a ridge of its own for the top degree shell, the features of degree > D: the ridge is "
             "chosen with them all but off, then their factor F on it by cross-validation (the "
             "degree-D model stays a candidate), or F fixed (dcace.block_ridge) (default: off; "
             "example: --top-degree-ridge 9)"), from_args=_parsed("top_degree_ridge", "parse_top_degree_ridge"),
        none_is_default=True, refit="state")
    # ------------------------------------------------------------------ loss
    energy_weight: float = option(300.0, "per-atom energy row vs one force component (1.0)", cli=arg(
        "--energy-weight", type=_nonneg, default=None, metavar="W", formatted=True,
        help="weight of a per-atom energy row (eV/atom) relative to one force component (eV/Å) "
             "(default: {default}; example: --energy-weight 100)"), none_is_default=True, refit="state")
    force_weight: float = option(1.0, "weight of a force-component row", cli=arg(
        "--force-weight", type=_nonneg, default=None, metavar="W", formatted=True,
        help="weight of a force-component row (default: {default}; example: --force-weight 1)"),
        none_is_default=True, refit="state")
    stress_weight: float = option(1.0, "virial-per-atom rows (sigma V / N, eV/atom)", cli=arg(
        "--stress-weight", type=_nonneg, default=None, metavar="W", formatted=True,
        help="weight of a stress row expressed as virial per atom (sigma V/N, eV/atom); 0 ignores "
             "stresses (default: {default}; example: --stress-weight 10)"), none_is_default=True, refit="state")
    # the four data keys: dcace fit and dcace eval share their options (cli._add_key_options)
    energy_key: str = option("energy", "total-energy key", cli=arg("--energy-key", default=None), refit="state")
    forces_key: str = option("forces", "per-atom force array key", cli=arg("--forces-key", default=None), refit="state")
    stress_key: object = option("stress", "stress key (None: no stress rows)", cli=arg("--stress-key", default=None),
    refit="state")
    virial_key: object = option(None, "virial key, stress = -virial / volume", cli=arg("--virial-key", default=None),
    refit="state")
    weights: object = option(None, "per-config_type weights {type: w}, multiplying all rows of those frames", cli=arg(
        "--weights", metavar="SPEC", default=None,
        help="weights of configuration types, multiplying all rows (energy, forces, stress) of their "
             "frames: 'config_type=TYPE:W,TYPE:W' or 'TYPE:W,TYPE:W' (default: all 1; example: "
             "--weights config_type=AIMD-NVT:0.5,Surface:2)"), from_args=_parsed("weights", "parse_weights"), refit="state")
    e0: object = option(None, "isolated-atom energies {el: eV} that fix the one-body terms", cli=arg(
        "--e0", nargs="+", metavar="EL=E", default=None,
        help="isolated-atom energies (eV) that fix the one-body terms instead of fitting them "
             "(default: from frames with config_type = isolated_atom, else least squares on atom "
             "counts; example: --e0 Ti=-1.23 Al=-0.45)"), from_args=_parsed("e0", "parse_e0"), refit="state")
    weight_key: str = option("weight", "per-frame weight key in atoms.info", cli=arg(
        "--weight-key", metavar="K", default=None,
        help="per-frame weight in the frames' info, multiplied with --weights (default: weight; "
             "example: --weight-key w)"), from_args=lambda a: a.weight_key or "weight", refit="state")
    seed: int = option(0, "seed of the CV folds and k-means", cli=arg(
        "--seed", type=int, default=None, metavar="S",
        help="seed of the CV folds and k-means (default: 0; example: --seed 3)"),
        from_args=lambda a: 0 if a.seed is None else int(a.seed), refit="state")
    keep_arrays: bool = option(False, "keep per-structure predictions for plots (report.arrays)", cli=arg(
        "--plots", metavar="DIR", default=None,
        help="write parity plots, error distributions and a cluster map into DIR (default: none; "
             "example: --plots figs/)"), from_args=lambda a: bool(a.plots), refit="refused")
    # ------------------------------------------------------------------ advanced (dcace fit -h: "advanced")
    w_L: float = option(1.5, "weight of l in the total degree", cli=arg(
        "--angular-weight", type=_positive, default=None, metavar="W_L", advanced=True,
        help="weight of l in the total degree: a feature is kept if sum_t (n_t + W_L l_t) <= D, n_t >= 1, "
             "D = --max-degree; smaller values give "
             "more angular resolution per coefficient (Ni: W_L 1.0 at degree 12 has K = 347 and "
             "test force MAE 0.0153 vs 0.0173 at 1.5, K = 211; docs/user-guide.md) "
             "(default: 1.5; example: --angular-weight 1.0)"),
        from_args=lambda a: 1.5 if a.angular_weight is None else float(a.angular_weight), refit="state")
    inner_cutoff: float = option(0.5, "start of the radial basis in A", cli=arg(
        "--inner-cutoff", type=_nonneg, default=None, metavar="R", advanced=True,
        help="start of the radial basis in Å; with --no-baseline a pair closer than it is an error "
             "in MD (default: 0.5; example: --inner-cutoff 1.0)"),
        from_args=lambda a: 0.5 if a.inner_cutoff is None else float(a.inner_cutoff), refit="state")
    baseline: object = option("zbl", "'zbl' (the short-range core, dcace.baseline), None or LAMMPS lines", cli=(
        arg("--no-baseline", action="store_true", advanced=True,
            help="fit without the short-range core (ZBL repulsion below the data's shortest distances "
                 "and where an atom is denser than any training atom; docs/short-range.md) "
                 "(default: with it)"),
        arg("--baseline", metavar="B", default=None, advanced=True,
            help="what the experts are fitted on top of: 'zbl' (the built-in short-range core), 'none', or "
                 "LAMMPS lines of another pair style, separated by ';', evaluated on the training frames "
                 "through the lammps module; the potential then holds the experts only, to be run as "
                 "'pair_style hybrid/overlay <style> dcace' (default: zbl; example: --baseline "
                 "'pair_style zbl 1.0 1.5; pair_coeff * * 42 42')")),
        from_args=lambda a: None if a.no_baseline else (a.baseline or "zbl"), refit="state")
    repulsion_restraints: float = option(0.01, "weight of the dimer restraints (dcace.restraints) x force weight; "
                                               "0 = off", cli=arg(
        "--repulsion-restraints", type=_nonneg, default=None, metavar="W", advanced=True,
        help="weight (x the force weight) of the dimer restraints: the forces of isolated dimers between "
             "each pair's core window and its shortest training distance are fitted to ZBL's, so no "
             "dimer falls below the data; 0 = off (default: 0.01, chosen on the Zuo test sets, "
             "docs/short-range.md; example: --repulsion-restraints 0)"), none_is_default=True, refit="state")
    crystal_constraints: bool = option(True, "the linear model re-solved with P > 0 on compressed crystals that "
                                             "fail the compression probe (dcace.crystal_constraints)", cli=arg(
        "--no-crystal-constraints", action="store_true", default=None, advanced=True,
        help="do not constrain the linear model on compressed crystals: by default, when bcc or fcc of an "
             "element (or the lowest-energy training structure), compressed from its own a0, falls or has P <= 0 "
             "below 0.95 a0 where ACE alone acts, the linear model is solved again with P >= 0.5 GPa there "
             "(default: constrained where a crystal fails; docs/short-range.md, 'Crystal constraints')"),
        from_args=lambda a: False if a.no_crystal_constraints else None, none_is_default=True)
    kink_check: bool = option(True, "a structure-gate committee whose pressure kinks along compressed or expanded "
                                    "crystals is turned down for the next candidate by CV (dcace.gate_kinks)", cli=arg(
        "--no-kink-check", action="store_true", default=None, advanced=True,
        help="keep the committee CV chooses even if its gate switches within a step along a crystal: by "
             "default, bcc and fcc of every element and the lowest-energy training structure are scaled from "
             "0.85 to 1.10 of their own a0, and a committee whose pressure kinks by more than 0.5 GPa + 1 %% of "
             "|P| within 0.00015 a0 is turned down for the next (M, tau) by CV "
             "(default: checked; docs/short-range.md, 'Pressure kinks')"),
        from_args=lambda a: False if a.no_kink_check else None, none_is_default=True)
    anchors: object = option(0.03, "weight of the off-data anchors of committees, structure or local gate (dcace.anchors) "
                                   "or 'auto'", cli=arg(
        "--anchors", type=_anchors, default=None, metavar="W", advanced=True,
        help="weight of the off-data anchors of committees (structure and local gates): compressed and rattled "
             "copies of training frames, free atoms and dimers, where every expert is fitted to "
             "follow the linear model; 0 = off; 'auto' = the smallest of 0, 0.003, 0.005, 0.01, 0.03, 0.1 whose "
             "committee passes the dimer, compression and rattle probes (dcace.anchor_choice) "
             "(default: 0.03, docs/short-range.md; example: --anchors auto)"), none_is_default=True, refit="state")
    shared_one_body: bool = option(False, "committees share the linear model's one-body terms "
                                          "(selection.Selector)", cli=arg(
        "--shared-one-body", action="store_true", default=None, advanced=True,
        help="every expert of a committee takes the linear model's one-body terms (one free-atom "
             "energy per element whatever the gate; default: each expert its own, "
             "docs/short-range.md)"), none_is_default=True, refit="state")
    core_range: object = option(None, "where ZBL hands over to ACE: None | (lo, hi) | {pair: (lo, hi)}", cli=arg(
        "--core-range", metavar="LO:HI", default=None, advanced=True,
        help="where ZBL hands over to ACE, in Å: LO:HI for every pair or 'Ti-Al=LO:HI,Al-Al=LO:HI' "
             "(default: from the data, from 0.3 to 0.05 A below each pair's shortest distance; "
             "example: --core-range 1.6:2.0)"), from_args=_core_range, refit="state")
    committee: str = option("joint", "joint | independent (the paper's experts)", cli=arg(
        "--committee", choices=("joint", "independent"), default=None, advanced=True,
        help="'joint': all experts fitted together on the combined model's energies, conservative "
             "forces and stresses; 'independent': each expert on its cluster (the paper) "
             "(default: joint; example: --committee independent)"),
        from_args=lambda a: a.committee or "joint", refit="state")
    regularise: str = option("global", "ridge of the experts toward 0 or toward the global linear solution", cli=arg(
        "--regularise", choices=("zero", "global"), default=None, advanced=True,
        help="ridge of the experts toward 0 or toward the global linear solution "
             "(default: global; example: --regularise zero)"), from_args=lambda a: a.regularise or "global", refit="state")
    agreement: float = option(0.0, "weight kappa of the penalty keeping experts near the global model", cli=arg(
        "--agreement", type=_nonneg, default=None, metavar="KAPPA", advanced=True,
        help="weight of a penalty keeping each expert's energy near the global model on training "
             "structures the gate does not give it (bounds gate-gradient forces; costs accuracy) "
             "(default: 0; example: --agreement 0.1)"), from_args=lambda a: a.agreement or 0.0, refit="state")
    max_experts: int = option(8, "largest M of experts='auto'", cli=arg(
        "--max-experts", type=int, default=None, metavar="M", advanced=True, formatted=True,
        help="largest M tried by --experts auto (default: {default}; example: --max-experts 4)"),
        none_is_default=True, refit="state")
    temperatures: tuple = option((0.35, 0.7), "gate temperature grid tau", cli=arg(
        "--temperatures", type=float, nargs="+", default=None, metavar="T", advanced=True, formatted=True,
        help="gate temperatures tau tried by cross-validation (default: "
             "{default}; example: --temperatures 0.5 1)"), none_is_default=True, refit="state")
    cv_folds: int = option(5, "folds of the cross-validation", cli=arg(
        "--cv-folds", type=int, default=None, metavar="K", advanced=True, formatted=True,
        help="folds of the cross-validation (default: {default}; example: --cv-folds 10)"), none_is_default=True,
        refit="state")
    # a refit keeps the state's folds (its structures' were grouped when it was written); the new structures get the
    # state's deterministic per-structure folds (dcace.state.new_folds), as in the fit that reuses the state
    cv_groups: object = option(None, "None | 'trajectory' | an atoms.info key: the structures of a group share one "
                                     "CV fold (pipeline.cv_group_labels)", cli=arg(
        "--cv-groups", default=None, metavar="trajectory|KEY", advanced=True,
        help="keep groups of training structures in one cross-validation fold: 'trajectory' (consecutive "
             "frames of one file with the same config_type, number of atoms and cell: an MD trajectory; "
             "strained frames, each a cell of its own, are groups of one) or KEY (the frames with equal "
             "atoms.info[KEY]); with random folds, neighbouring frames of one trajectory sit in the training "
             "and the validation folds at once and CV chooses too small a ridge (docs/fitting.md) "
             "(default: none, structures assigned at random; example: --cv-groups trajectory)"), refit="state")
    pca: bool = option(True, "cluster and gate on the leading principal components", cli=arg(
        "--no-pca", action="store_true", advanced=True,
        help="cluster and gate on all standardised descriptor columns instead of their leading "
             "principal components (default: PCA on; example: --no-pca)"), from_args=lambda a: not a.no_pca, refit="state")
    threads: object = option(None, "threads per process (None: the cores this process may use)", cli=arg(
        "--threads", type=int, default=None, metavar="N", advanced=True,
        help="threads per process for descriptors and fitting rows (default: the cores this process may "
             "use, shared among MPI ranks; example: --threads 4)"),
        from_args=lambda a: None if a.threads is None else int(a.threads))
    memory_budget_gb: float = option(1.2, "memory for the normal equations, GB", cli=arg(
        "--memory-budget", type=float, default=None, metavar="GB", advanced=True, formatted=True,
        help="memory for the normal equations (linear model, independent experts, committee "
             "candidates): candidates that do not fit are skipped and reported; a basis whose linear "
             "model alone does not fit is refused before any work "
             "(default: {default}; example: --memory-budget 4)"), none_is_default=True)
    # an MPI rank holds its own parsed frames between passes while they take at most this (dcace.restream.held_bytes,
    # ~0.1 kB/atom: 2.4 million atoms); above it, it parses them again in every pass (memory independent of them)
    frames_budget_gb: float = option(0.25, "an MPI rank holds its parsed frames between passes below this, GB", cli=arg(
        "--frames-budget", type=float, default=None, metavar="GB", advanced=True, formatted=True,
        help="MPI fits from extended XYZ files: a rank holds its own parsed frames between passes if they "
             "take at most this, else it parses them again in every pass (memory independent of the "
             "data; 0 = always) (default: {default}; example: --frames-budget 0)"), none_is_default=True)
    # rank 0 keeps D descriptor sums and 6 x D stress rows per training structure (dcace.rowstore); above this
    # they go to a scratch file read back 256 structures at a time (memory independent of the structures)
    rows_budget_gb: float = option(1.0, "rank 0 holds the per-structure rows in memory below this, GB", cli=arg(
        "--rows-budget", type=float, default=None, metavar="GB", advanced=True, formatted=True,
        help="rank 0 holds every training structure's descriptor sums and stress rows in memory if they take "
             "at most this, else in an unnamed scratch file in TMPDIR read back 256 structures at a time "
             "(memory independent of the data; 0 = always) (default: {default}; example: --rows-budget 0)"),
        none_is_default=True)
    # the standardiser, PCA and k-means of the structure gate see at most this many structures (seeded);
    # the others join the nearest centroid (their memory: n x D x 8 bytes a copy, bounded by it)
    cluster_sample: int = option(4096, "structures the structure gate's clustering is fitted on", cli=arg(
        "--cluster-sample", type=int, default=None, metavar="N", advanced=True, formatted=True,
        help="structures (a seeded sample when there are more) on which the structure gate's standardiser, "
             "PCA and k-means are fitted; the others join their nearest centroid (default: {default}; "
             "example: --cluster-sample 2000)"), none_is_default=True, refit="state")
    progress: bool = option(True, "progress and cost lines on stderr", cli=arg(
        "--quiet", action="store_true", advanced=True,
        help="no progress or cost lines (default: on stderr: K, memory and "
             "the estimated pass-2 time before pass 2, then a bar per pass on a terminal, plain lines with "
             "elapsed time and ETA otherwise)"), from_args=lambda a: not a.quiet)
    # ------------------------------------------------------------------ fit state (its options: dcace.cli_learn)
    state: object = option(None, "path: also write the fit state (dcace.state)", from_args=_typed("save_state"))
    reuse: object = option(None, "a fit state whose structures come first, with its folds and clusters")
    # ------------------------------------------------------------------ Python only
    compare: bool = option(True, "also fit and report the paper's variant (independent experts, eq. 8 gate)")
    batch_size: int = option(64, "structures per block of passes 1 and 2", none_is_default=True)
    verbose: bool = option(False, "(unused)")
    # ------------------------------------------------------------------ tuning constants (DEFAULTS only)
    ridge_grid: tuple = option(tuple(10.0 ** np.arange(-14, -2)), "the ridges CV tries", keyword=False)
    ridge_experts_floor: float = option(1e-10, "committees start from max(linear ridge, this) ...", keyword=False)
    ridge_dc_factors: tuple = option((1e-2, 1.0, 1e2, 1e4), "... and the chosen one is refined x these, by CV",
                                     keyword=False)
    parsimony: float = option(0.01, "fewer experts win if their CV loss is within 1 % of the best", keyword=False)
    local_experts_grid: tuple = option(LOCAL_EXPERTS_GRID, "experts='auto' with a local gate: the M tried (those <= "
                                       "max_experts the data and the memory budget allow), lowest CV loss wins",
                                       keyword=False)
    pca_variance: float = option(0.99, "variance the PCA of the gate keeps", keyword=False)
    pca_max_components: int = option(10, "at most this many PCA components", keyword=False)
    anchors_auto_grid: tuple = option((0.0, 0.003, 0.005, 0.01, 0.03, 0.1), "anchors='auto' tries these, "
                                       "smallest first (dcace.anchor_choice; docs/anchor-schemes.md)", keyword=False)
    anchors_auto_force_ratio: float = option(2.0, "... its rattle probe: committee's largest force <= this x the "
                                                  "linear model's", keyword=False)
    top_degree_ridge_grid: tuple = option(tuple(10.0 ** np.arange(0, 15, 2)), "the factors of the top degree "
                                          "shell CV tries (largest: nearly off)", keyword=False)


def _fields():
    return fields(FitSettings)


def defaults() -> dict:
    """``pipeline.DEFAULTS``: what ``fit(name=None)`` means, and the tuning constants."""
    return {f.name: f.default for f in _fields()
            if f.default is not MISSING and (f.metadata["none_is_default"] or not f.metadata["keyword"])}


def keywords() -> list:
    """The fields ``dcace.fit`` takes as keywords, in order."""
    return [f for f in _fields() if f.metadata["keyword"]]


def cli_fields() -> list:
    """The fields with command-line options, in ``dcace fit -h`` order."""
    return [f for f in _fields() if f.metadata["cli"]]


def refit_settings() -> tuple:
    """The fit() keywords an incremental refit takes from the fit state (``dcace.state.refit``)."""
    return tuple(f.name for f in keywords() if f.metadata["refit"] == "state")


def resume_refused_options() -> tuple:
    """The ``dcace fit`` options (argparse dests) that ``--resume`` refuses: those it takes from the state
    and those a refit cannot take (``dcace.cli_learn``)."""
    return tuple(a.dest for f in cli_fields() if f.metadata["refit"] != "free" for a in f.metadata["cli"])


def help_text(a: Arg, f) -> str:
    """The option's help, with the field's default where it names it."""
    if not a.formatted:
        return a.kwargs["help"]
    d = f.default
    shown = " ".join(f"{t:g}" for t in d) if isinstance(d, tuple) else f"{d:g}"
    return a.kwargs["help"].format(default=shown)


def from_args(args) -> dict:
    """The ``dcace.fit`` keywords of a parsed ``dcace fit`` command line (None: not typed, the default)."""
    out = {}
    for f in cli_fields() + [f for f in _fields() if f.metadata["from_args"] and not f.metadata["cli"]]:
        get = f.metadata["from_args"] or _typed(f.metadata["cli"][0].dest)
        out[f.name] = get(args)
    return out


def from_keywords(kw: dict, where: str = "fit") -> FitSettings:
    """FitSettings from ``fit(**kw)`` (None where the default is meant); unknown or missing keywords are
    TypeErrors as Python's own."""
    known = {f.name: f for f in keywords()}
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
    missing = [n for n, f in known.items() if n not in kw and f.default is MISSING]
    if missing:
        raise TypeError(f"{where}() missing required keyword-only argument: {missing[0]!r}")
    vals = {}
    for name, f in known.items():
        if name not in kw:
            continue
        v = kw[name]
        if v is None and f.metadata["none_is_default"]:
            continue
        vals[name] = v
    return FitSettings(**vals)


def signature() -> inspect.Signature:
    """``fit(train, *, elements, cutoff, ...)`` from the fields: the one ``help(dcace.fit)`` shows."""
    params = [inspect.Parameter("train", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in keywords():
        if f.name == "train":
            continue
        default = inspect.Parameter.empty if f.default is MISSING else (
            None if f.metadata["none_is_default"] else f.default)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default))
        if f.name == "reuse":   # (comm: the MPI communicator, not a setting of the fit)
            params.append(inspect.Parameter("comm", inspect.Parameter.KEYWORD_ONLY, default=None))
    return inspect.Signature(params, return_annotation="Potential")
