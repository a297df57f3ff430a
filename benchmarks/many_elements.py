"""Many elements on Nb-Mo-Ta: explicit vs per-block vs species-embedded bases (accuracy, cost, LAMMPS
speed, ternary extrapolation) and the cost scaling with 1-5 species (HEA probe).

Why this file exists: issue 15 asks which basis to use when the number of elements grows, and
whether the cost printed before pass 2 (dcace.cost) is right.  Every number is measured here.
Each sub-command stays under ~10 minutes on the shared 2-core machine (run them one by one):

    python benchmarks/many_elements.py fit MODEL --quick --workdir W    # MODEL in MODELS below
    python benchmarks/many_elements.py scaling --workdir W              # K, memory, s/structure
    python benchmarks/many_elements.py dc-cost --workdir W              # committee memory, no fit
    python benchmarks/many_elements.py table --quick --workdir W > docs/many-elements.md
    python benchmarks/many_elements.py choose --workdir W --keep docs/many-elements.md  # w on validation only

`--quick` fits every 4th training structure (the test set is complete) at the degrees in MODELS, and
scores the structures after those ("1::4", not fitted) as a validation set (W/MODEL.json "validation");
without it all 2,974 training structures are used (pass 2 then takes ~4x longer).  Fits are
linear (experts=1) unless the model is a "-dc" one, one thread, 5-fold CV, memory budget 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
NBMOTA_TRAIN = DATA / "nbmota" / "NbMoTa_train.xyz"
NBMOTA_TEST = DATA / "nbmota" / "NbMoTa_test.xyz"
HEA = DATA / "hea" / "HEA_randII_example.xyz"
EL = ["Nb", "Mo", "Ta"]
CUTOFF = 5.0
MASS = {"Nb": 92.906, "Mo": 95.95, "Ta": 180.95}

#: the factors on the ridge that CV tries for each species block (dcace.block_ridge)
BLOCK_RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
#: the exponents p of the smoothness prior (d / d_min)^p CV tries (0, the uniform ridge, always)
DEGREE_RIDGE_GRID = (0.5, 1.0, 2.0, 4.0)
#: with --quick, the training structures scored as a validation set (not fitted: the fit takes "::4"), so
#: that settings such as the binaries' weights are chosen without the test set
VALIDATION = "1::4"
#: the binary solid-solution groups (config_type) of the training data
BINARIES = ("Nb-Mo", "Ta-Mo", "Ta-Nb")
MIX_CORE = {"Nb-Mo": (1.886, 2.136), "Nb-Ta": (1.851, 2.101), "Mo-Ta": (1.841, 2.091)}
#: (a) explicit at the largest degree whose fit stays within 2 GB peak RSS (D = 9; D = 10 peaked at
#: 3.2 GB, docs/many-elements.md), (b) per-block degrees, (c) embedded with 1 / 2 channels, cosine
#: (fixed) or PCA (data-driven) embedding (3 channels = the explicit span)
MODELS = {
    "explicit": dict(body_order=4, max_degree=8),
    "explicit-9": dict(body_order=4, max_degree=9),
    "blocks": dict(body_order=4, max_degree=10, max_degree_blocks={2: 8, 3: 6}),
    "blocks-9-9-3": dict(body_order=4, max_degree=9, max_degree_blocks={3: 3}),   # (a) without its 3-species block
    "blocks-10-9-3": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 3}),
    "blocks-12-9-3": dict(body_order=4, max_degree=12, max_degree_blocks={2: 9, 3: 3}),
    "embedded-1": dict(body_order=4, max_degree=12, chemical_channels=1),
    "embedded-2": dict(body_order=4, max_degree=10, chemical_channels=2),
    "embedded-pca-1": dict(body_order=4, max_degree=12, chemical_channels=1, chemical_embedding="pca"),
    "embedded-pca-2": dict(body_order=4, max_degree=10, chemical_channels=2, chemical_embedding="pca"),
    "embedded-fit-1": dict(body_order=4, max_degree=12, chemical_channels=1, chemical_embedding="fit"),
    "embedded-fit-2": dict(body_order=4, max_degree=10, chemical_channels=2, chemical_embedding="fit"),
    "embedded-1-dc": dict(body_order=4, max_degree=12, chemical_channels=1, experts="auto", max_experts=4),
    # the core windows of the unlike pairs by a mixing rule (mean of the like pairs' default windows,
    # which the fits above place at Nb-Nb 1.896-2.146, Mo-Mo 1.876-2.126, Ta-Ta 1.807-2.057 A) instead
    # of 0.3-0.05 A below the binary data's shortest unlike distance (Nb-Ta: 2.55-2.85 A, above the
    # 2.81 A nearest-neighbour distance of bcc at a = 3.25 A): see "Ternary MD" in docs/many-elements.md
    "embedded-1-mixcore": dict(body_order=4, max_degree=12, chemical_channels=1, core_range=MIX_CORE),
    "embedded-1-dc-mixcore": dict(body_order=4, max_degree=12, chemical_channels=1, experts="auto", max_experts=4,
                                  core_range=MIX_CORE),
    "embedded-1-dc-agree": dict(body_order=4, max_degree=12, chemical_channels=1, experts="auto", max_experts=4,
                                core_range=MIX_CORE, agreement=1.0),
    "blocks-dc": dict(body_order=4, max_degree=10, max_degree_blocks={2: 8, 3: 6}, experts="auto", max_experts=4),
    # session 6: "2:10"-style blocks for the bar (degree 10 on the 1- and 2-species functions, none coupling
    # three species: those are zero on unary and binary data), (a) without its 3-species functions, and
    # the unlike-pair core rule (dcace.baseline.UNLIKE_PAIRS) against the rule before it ("data")
    "blocks-10-10-0": dict(body_order=4, max_degree=10, max_degree_blocks={3: 0}),
    "blocks-9-9-0": dict(body_order=4, max_degree=9, max_degree_blocks={3: 0}),
    "embedded-1-datacore": dict(body_order=4, max_degree=12, chemical_channels=1, unlike_pairs="data"),
    "embedded-1-dc-datacore": dict(body_order=4, max_degree=12, chemical_channels=1, experts="auto", max_experts=4,
                                   unlike_pairs="data"),
    # session 8: a ridge per species block (dcace.block_ridge), CV over BLOCK_RIDGE_GRID for each block
    "blocks-9-9-0-br": dict(body_order=4, max_degree=9, max_degree_blocks={3: 0}, block_ridge=BLOCK_RIDGE_GRID),
    "blocks-10-9-0-br": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0},
                             block_ridge=BLOCK_RIDGE_GRID),
    "blocks-11-9-0-br": dict(body_order=4, max_degree=11, max_degree_blocks={2: 9, 3: 0},
                             block_ridge=BLOCK_RIDGE_GRID),
    # ... with the smoothness prior (ridge x (degree / smallest)^p, p by CV from DEGREE_RIDGE_GRID) under it
    # (blocks-10-9-0-dr, the prior normalised at the top degree, ran on be34f71: docs/many-elements-summary.md)
    "blocks-10-9-0-dp": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0},
                             block_ridge=BLOCK_RIDGE_GRID, degree_ridge=DEGREE_RIDGE_GRID),
    # session 9: the top degree shell's own ridge (dcace.block_ridge, --top-degree-ridge 9): lambda chosen with
    # the 1-species functions of degree > 9 all but off ((a)'s functions and, nearly, its lambda), then their
    # factor by CV; so (a) without its 3-species functions (blocks-9-9-0, equal to (a)) is a candidate
    "blocks-10-9-0-tr": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9),
    "blocks-11-9-0-tr": dict(body_order=4, max_degree=11, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9),
    # session 10: the binaries' rows weighted (config_type weights, row multipliers: x w^2 in the loss) so that
    # the unary frames' forces, ~98 % of the loss, do not set the 1-species columns alone; the shell's
    # ridge and the per-block ridge together
    **{f"blocks-{d}-9-0-tr-b{w:g}": dict(body_order=4, max_degree=d, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                          weights={g: float(w) for g in BINARIES})
       for d in (10, 11) for w in (1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16)},
    # session 12 (issue 15): the config groups' weights by a rule on the training data alone, no tuned number
    # (balanced_weights: every config_type the same total weight in the loss, by frames or by atoms), and the
    # w grid above extended past 8 so that `choose` (the validation score, training frames 1::4) has a minimum
    "blocks-10-9-0-tr-balf": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                  balance="frames"),
    # a diagnostic, not a candidate (run after the test numbers were read): w = 10 with w = 6's ridge fixed, to
    # see whether the ridge's decade (CV: 1e-13 at w = 10, 1e-12 at w = 6) sets the Ta-Nb test force
    "blocks-10-9-0-tr-b10-r12": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                     weights={g: 10.0 for g in BINARIES}, ridge=1e-12),
    "blocks-10-9-0-tr-ball": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                  balance="loss:blocks-10-9-0-tr"),
    "blocks-10-9-0-tr-bala": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                  balance="atoms"),
    "blocks-10-9-0-trbr-b3": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                  block_ridge=BLOCK_RIDGE_GRID, weights={g: 3.0 for g in BINARIES}),
    "blocks-10-9-0-trbr": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                               block_ridge=BLOCK_RIDGE_GRID),
    "blocks-10-9-0-tr-e1000": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                                   energy_weight=1000.0),
    # session 14: cross-validation folds that keep a trajectory together (cv_groups="trajectory": consecutive frames
    # of one config_type, size and cell in one fold), since random folds put neighbouring AIMD frames in the
    # training and the validation folds at once and CV chose a ridge a decade too small (session 12); the
    # binaries' weight w in {1, 3, 6, 10}, and (a)'s basis with the same CV for reference
    "blocks-10-9-0-tr-g": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0}, top_degree_ridge=9,
                               cv_groups="trajectory"),
    **{f"blocks-10-9-0-tr-g-b{w:g}": dict(body_order=4, max_degree=10, max_degree_blocks={2: 9, 3: 0},
                                           top_degree_ridge=9, weights={g: float(w) for g in BINARIES},
                                           cv_groups="trajectory")
       for w in (3, 6, 10)},
    "explicit-9-g": dict(body_order=4, max_degree=9, cv_groups="trajectory"),
}


def describe(kw):
    s = f"body order {kw['body_order']}, D = {kw['max_degree']}"
    if kw.get("max_degree_blocks"):
        s += ", blocks " + ",".join(f"{b}:{d}" for b, d in kw["max_degree_blocks"].items())
    if kw.get("chemical_channels"):
        s += f", C = {kw['chemical_channels']} ({kw.get('chemical_embedding', 'cosine')} embedding)"
    if kw.get("experts", 1) != 1:
        s += f", experts {kw['experts']} (M <= {kw['max_experts']})"
    if kw.get("unlike_pairs"):
        s += f", unlike-pair core rule {kw['unlike_pairs']!r}"
    if kw.get("degree_ridge"):
        s += ", smoothness prior (CV)"
    if kw.get("block_ridge"):
        s += ", ridge per block (CV)"
    if kw.get("top_degree_ridge") is not None:
        s += f", ridge of degrees > {kw['top_degree_ridge']:g} (CV)"
    if kw.get("balance"):
        s += f", weights balanced by {kw['balance']}"
    if kw.get("weights"):
        s += ", weights " + ",".join(f"{g}:{w:g}" for g, w in kw["weights"].items())
    if kw.get("ridge") is not None:
        s += f", ridge fixed at {kw['ridge']:g}"
    if kw.get("energy_weight") is not None:
        s += f", energy weight {kw['energy_weight']:g}"
    if kw.get("cv_groups") is not None:
        s += f", CV folds by {kw['cv_groups']}"
    return s


# ------------------------------------------------------------------------------ fit one model
def balanced_weights(frames, by):
    """{config_type: w} so that every config_type has the same total weight in the loss (weights multiply
    rows, so the loss counts w^2): sum over a group's frames of w^2 = n_frames / G (by="frames") or
    sum of w^2 N_atoms = n_atoms / G (by="atoms"), i.e. w_g = sqrt(n / (G n_g)).  A rule with no tuned
    number, from the training frames alone."""
    if by.startswith("loss:"):   # "loss:MODEL": the groups' shares of MODEL's training loss (W/MODEL.dcace)
        return loss_balanced_weights(frames, by[len("loss:"):])
    if by not in ("frames", "atoms"):
        raise ValueError(f"balance: {by!r} must be 'frames', 'atoms' or 'loss:MODEL'")
    n = {}
    for fr in frames:
        g = fr.info.get("config_type")
        n[g] = n.get(g, 0) + (1 if by == "frames" else len(fr))
    if None in n:
        raise ValueError("balance: some training frames have no config_type")
    total, G = sum(n.values()), len(n)
    return {g: float(np.sqrt(total / (G * c))) for g, c in sorted(n.items())}


def group_errors(pot, frames):
    """Energy (meV/atom) and force (eV/Å) MAE per config_type."""
    out = {}
    for fr in frames:
        res = pot.compute(fr)
        g = out.setdefault(fr.info.get("config_type", "?"), {"dE": [], "dF": []})
        g["dE"].append(abs(res["energy"] - fr.get_potential_energy()) / len(fr))
        g["dF"].append(np.abs(res["forces"] - fr.get_forces()).ravel())
    return {k: {"n": len(v["dE"]), "energy_mae_mev": 1e3 * float(np.mean(v["dE"])),
                "force_mae": float(np.mean(np.concatenate(v["dF"])))} for k, v in sorted(out.items())}


#: where loss_balanced_weights finds the unweighted fit (set by cmd_fit from --workdir)
WORKDIR = Path("W")


def loss_balanced_weights(frames, model):
    """{config_type: w} so that every config_type contributes the same to the training loss of the fit W/MODEL
    (one reweighting step from an unweighted fit, on the frames it was fitted to, no tuned number):
    L_g = sum over the group's frames of 300^2 ((E_pred - E)/N)^2 + sum (F_pred - F)^2 (the default row
    weights, dcace.pipeline), w_g = sqrt(L / (G L_g)).  Training data only: the fitted frames' residuals."""
    import dcace

    pot = dcace.load(WORKDIR / f"{model}.dcace")
    L = {}
    for fr in frames:
        res = pot.compute(fr)
        g = fr.info.get("config_type")
        e = 300.0 * (res["energy"] - fr.get_potential_energy()) / len(fr)
        L[g] = L.get(g, 0.0) + e * e + float(np.sum((res["forces"] - fr.get_forces()) ** 2))
    total, G = sum(L.values()), len(L)
    print("training loss per group of " + model + ": " + ", ".join(f"{g} {v:.4g}" for g, v in sorted(L.items())),
          flush=True)
    return {g: float(np.sqrt(total / (G * v))) for g, v in sorted(L.items())}


def cmd_fit(args):
    import dcace
    from ase.io import read

    import dcace.baseline

    kw = dict(MODELS[args.model])
    kw.setdefault("experts", 1)
    settings = describe(kw)
    dcace.baseline.UNLIKE_PAIRS = kw.pop("unlike_pairs", dcace.baseline.UNLIKE_PAIRS)   # the rule under test
    train = read(NBMOTA_TRAIN, "::4" if args.quick else ":")
    test = read(NBMOTA_TEST, ":")
    balance = kw.pop("balance", None)
    global WORKDIR
    WORKDIR = Path(args.workdir)
    if balance:   # the rule's weights, from the frames this fit sees
        kw["weights"] = balanced_weights(train, balance)
        print(f"balanced weights ({balance}): {kw['weights']}", flush=True)
    from memory_profile import Sampler, rss_bytes

    sampler = Sampler(threading.get_ident())   # RSS every 20 ms, with the code that raised it
    sampler.start()
    rss_before = rss_bytes() / 2**20
    load_start, code = os.getloadavg()[0], code_version()   # at the start: the installed code is that commit's
    loads_start, cpu0 = list(os.getloadavg()), cpu_seconds()
    t0 = time.perf_counter()
    pot = dcace.fit(train, elements=EL, cutoff=CUTOFF, compare=False, threads=1,
                    memory_budget_gb=2.0, progress=True, **kw)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    sampler.stop = True
    sampler.join()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pot.save(work / f"{args.model}.dcace")
    c = pot.report.cost
    res = {"model": args.model, "settings": settings, "experts": pot.n_experts, "quick": args.quick,
           "load": [load_start, os.getloadavg()[0]], "code": code, "cpu_s": cpu,
           "loads_1_5_15": [loads_start, list(os.getloadavg())],
           "block_ridge": (pot.report.selection.get("block_ridge") or {}).get("factors"),
           "degree_ridge": (pot.report.selection.get("degree_ridge") or {}).get("exponent"),
           "top_degree_ridge": {k: (pot.report.selection.get("top_degree_ridge") or {}).get(k)
                                for k in ("degree", "factor", "n_columns", "cv")},
           "ridge": pot.report.selection.get("ridge"), "weights": kw.get("weights"),
           "cv_groups": kw.get("cv_groups"), "ridge_cv": pot.report.selection.get("ridge_cv"),
           "top_degree_cv_loss": (pot.report.selection.get("top_degree_ridge") or {}).get("cv_loss"),
           "fold_notes": [x for x in pot.report.notes if "cv_groups" in x],
           "pass2_estimate_parts": {k: c.get(k) for k in ("rows_and_products_s", "updates_s", "merges_s",
                                                          "n_batches", "n_blocks", "unit_costs")},
           "core_notes": [x for x in pot.report.notes if "core window" in x],
           "n_train": len(train),
           "n_train_atoms": int(sum(len(a) for a in train)), "K": pot.basis.n_features,
           "fit_s": wall, "pass2_s": c["pass2_measured_s"], "pass2_estimate_s": c["seconds"],
           "memory_normal_eq_mib": sum(c["memory_bytes"].values()) / 2**20,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_fit_mib": rss_before, "rss_steps": sampler.events,
           "expected_peak_mib": c.get("expected_peak_bytes", float("nan")) / 2**20,
           "test": group_errors(pot, test)}
    if args.quick:   # the training structures the quick fit leaves out: a validation set to choose settings on
        res["validation"] = group_errors(pot, read(NBMOTA_TRAIN, VALIDATION))
    (work / f"{args.model}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "test"}))


def cpu_seconds():
    """User + system CPU time of this process (all its threads), s: what a quiet machine waits."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def code_version():
    """The commit the fit ran on (the table says which rows came from older code)."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


# ------------------------------------------------------------------------------ choose a setting on validation
def doc_validation(doc):
    """{model: {group: {"energy_mae_mev", "force_mae"}}} from a committed page's "Validation per group" table
    (rounded as printed: 3 decimals in meV/atom, 5 in eV/Å), for the runs whose JSON is not in W."""
    out, groups, inside = {}, None, False
    for line in Path(doc).read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith("## Validation per group")
            continue
        if not inside or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "model":
            groups = cells[1:]
            continue
        out[cells[0]] = {g: {"energy_mae_mev": float(c.split("/")[0]), "force_mae": float(c.split("/")[1])}
                         for g, c in zip(groups, cells[1:])}
    return out


def cmd_choose(args):
    """Score the candidates of a family (models named PREFIX + a number, e.g. the binaries' weights w of
    blocks-10-9-0-tr-bW, and PREFIX without a trailing "-b": w = 1) on the validation set only (training structures
    1::4, not fitted) against (a) = explicit-9: per group and quantity the ratio validation error / (a)'s,
    then the max and the mean of the 12 ratios.  Prints the ranking by max (mean breaks ties) and the pick.
    Test errors are not read."""
    work = Path(args.workdir)
    val = doc_validation(args.keep) if args.keep else {}
    src = {m: "doc" for m in val}
    for m in MODELS:
        f = work / f"{m}.json"
        if f.exists() and "validation" in (r := json.loads(f.read_text())):
            val[m], src[m] = r["validation"], "W"
    ref = val.get("explicit-9")
    if ref is None:
        raise SystemExit("choose: no validation errors of explicit-9 (run it in W or pass --keep DOC)")
    prefix = args.model or "blocks-10-9-0-tr-b"
    def in_family(m):   # PREFIX + a number (a grid value), or PREFIX without its "-b" (w = 1)
        try:
            return m == prefix.removesuffix("-b") or (m.startswith(prefix) and float(m[len(prefix):]) > 0)
        except ValueError:
            return False

    cands = [m for m in val if in_family(m) and m != "explicit-9"]
    rows = []
    for m in cands:
        keys = [(g, q) for g in sorted(ref) for q in ("energy_mae_mev", "force_mae")]
        r = [val[m][g][q] / ref[g][q] for g, q in keys]
        above = ", ".join(f"{g} {'E' if q[0] == 'e' else 'F'} {x:.4f}" for (g, q), x in zip(keys, r) if x > 1)
        rows.append((max(r), float(np.mean(r)), sum(x > 1 for x in r), m, above))
    rows.sort()
    print(f"validation score against explicit-9 ({src['explicit-9']}), candidates {prefix}*:")
    for mx, mean, miss, m, above in rows:
        print(f"  {m:28s} max {mx:.4f}  mean {mean:.4f}  above (a) on {miss} of 12  [{src[m]}]  {above}")
    print(f"pick (lowest max ratio): {rows[0][3]}; lowest mean ratio: {min(rows, key=lambda t: t[1])[3]}")


# ------------------------------------------------------------------------------ cost scaling
def cmd_scaling(args):
    import dcace
    from ase.io import read

    from dcace.cost import linear_nbytes

    frames = read(HEA, ":")
    probe = frames[0]
    names = sorted(set(probe.get_chemical_symbols()))   # Co Cr Fe Mn Ni
    rows = []
    for S in range(1, 6):
        els = names[:S]
        at = probe.copy()
        at.set_chemical_symbols([els[names.index(s) % S] for s in probe.get_chemical_symbols()])
        bases = {"explicit D=8": dict(max_degree=8),
                 "blocks D=8 (2:6,3:4)": dict(max_degree=8, max_degree_blocks={b: 8 - 2 * (b - 1) for b in (2, 3)
                                                                               if b <= S} or None)}
        for C in (1, 2, 4):
            if C <= S:
                bases[f"embedded C={C} D=8"] = dict(max_degree=8, chemical_channels=C)
        for name, kw in bases.items():
            basis = dcace.ACEBasis(els, CUTOFF, 4, kw["max_degree"], max_degree_blocks=kw.get("max_degree_blocks"),
                                   chemical_channels=kw.get("chemical_channels"))
            K = basis.n_features
            Dp = S * K + S
            row = {"species": S, "basis": name, "K": K, "unknowns": Dp,
                   "linear_mib": linear_nbytes(S, K, 5) / 2**20, "rows_s": None, "gram_s": None}
            if Dp <= 13000:
                t0 = time.perf_counter()
                r = basis.fitting_rows(at)
                t1 = time.perf_counter()
                _ = r.forces.T @ r.forces
                row["rows_s"], row["gram_s"] = t1 - t0, time.perf_counter() - t1
            rows.append(row)
            print(json.dumps(row), flush=True)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "scaling.json").write_text(json.dumps({"atoms": len(probe), "rows": rows}, indent=1))


# ------------------------------------------------------------------------------ what a DC committee would cost
#: the bases whose committee memory dc-cost prints (the 1- / 2-species degrees; none couples three species)
DC_BASES = {"blocks-9-9-0": (9, {3: 0}), "blocks-10-9-0": (10, {2: 9, 3: 0}), "blocks-10-8-0": (10, {2: 8, 3: 0}),
            "blocks-9-8-0": (9, {2: 8, 3: 0}), "blocks-8-8-0": (8, {3: 0}), "blocks-9-7-0": (9, {2: 7, 3: 0})}


def cmd_dc_cost(args):
    """The memory of a joint committee of M = 2, 3 experts at one temperature on each DC_BASES basis,
    from the fit's own accounting (dcace.committee.joint_nbytes, dcace.cost.linear_nbytes and
    expected_peak), without fitting: the linear model's 5 fold sums plus the committee's against the
    2 GB budget, and the expected peak with what a blocks fit holds before pass 2 (--resident-mib,
    measured: 284 MiB in blocks-10-9-0-dp)."""
    from dcace.basis_spec import count_features
    from dcace.committee import joint_nbytes
    from dcace.cost import counted_nbytes, expected_peak

    S, k = len(EL), 5
    rows = []
    for name, (D, blocks) in DC_BASES.items():
        K = count_features(S, 4, D, max_degree_blocks=blocks)
        Dp = S * K + S
        lin = 8 * k * Dp * Dp
        for M in (2, 3):
            joint = joint_nbytes(k, M, Dp)
            counted = counted_nbytes(S, K, k, lin, {(M, 0.35): joint})   # the figure held against the budget
            peak = expected_peak(S, K, lin, {(M, 0.35): joint}, args.resident_mib * 2**20)
            rows.append({"basis": name, "K": K, "M": M, "unknowns": M * Dp, "committee_mib": joint / 2**20,
                         "counted_mib": counted / 2**20, "expected_peak_mib": peak / 2**20})
            print(json.dumps(rows[-1]), flush=True)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "dc-cost.json").write_text(json.dumps(rows, indent=1))


# ------------------------------------------------------------------------------ LAMMPS and extrapolation
def lammps_speed(pot_file, work, n_cells=8, steps=20):
    """µs/atom/step of force evaluations on a random Nb-Mo-Ta bcc cell (no integrator: the
    positions stay, so the timing does not depend on how the potential extrapolates), and whether
    20 steps of 300 K NVE from it keep every atom in the box."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from lammps_common import run_lmp

    def deck(md):
        dyn = "velocity all create 300 4928459 loop geom\nfix 1 all nve\ntimestep 0.001\n" if md else ""
        return f"""units metal
atom_style atomic
lattice bcc 3.25
region box block 0 {n_cells} 0 {n_cells} 0 {n_cells}
create_box 3 box
create_atoms 1 box
set type 1 type/fraction 2 0.3333 1234
set type 1 type/fraction 3 0.5 5678
mass 1 {MASS['Nb']}
mass 2 {MASS['Mo']}
mass 3 {MASS['Ta']}
pair_style dcace
pair_coeff * * {pot_file} Nb Mo Ta
{dyn}thermo {steps}
run 2
run {steps}
"""
    cwd = Path(work) / f"lmp_{Path(pot_file).stem}"
    best = None
    for rep in range(2):
        out = run_lmp(deck(False), cwd)
        best = out["us_atom_step"] if best is None else min(best, out["us_atom_step"])
    try:
        run_lmp(deck(True), cwd)
        md_ok = True
    except RuntimeError as exc:
        md_ok = False if "Lost atoms" in str(exc) else None   # None: another LAMMPS error
    return best, out["atoms"], md_ok


def ternary_frames(test, n=30, seed=0):
    """(cells, reference E/N): test cells of >= 16 atoms with every species drawn at random, and a
    rule-of-mixtures estimate of their energy: the DFT energy of the original cell plus, per atom
    whose species changed, the difference of the unary test groups' mean energies per atom."""
    mu = {el: np.mean([a.get_potential_energy() / len(a) for a in test if a.info.get("config_type") == el])
          for el in EL}
    rng = np.random.default_rng(seed)
    big = [a for a in test if len(a) >= 16][:n]
    cells, ref = [], []
    for a in big:
        b = a.copy()
        old = b.get_chemical_symbols()
        new = list(rng.choice(EL, size=len(b)))
        b.set_chemical_symbols(new)
        cells.append(b)
        ref.append((a.get_potential_energy() + sum(mu[y] - mu[x] for x, y in zip(old, new))) / len(a))
    return cells, np.array(ref)


def random_bcc(n_cells=8, a=3.25, seed=1234):
    """The LAMMPS benchmark's cell in ASE: n^3 bcc cells, species drawn at random in equal parts."""
    from ase.build import bulk

    at = bulk("Nb", "bcc", a=a, cubic=True).repeat(n_cells)
    at.set_chemical_symbols(list(np.random.default_rng(seed).choice(EL, size=len(at))))
    return at


def cmd_diagnose(args):
    """Why a model misbehaves on random ternaries: per cell, E/N, the experts' E/N, the gate weights,
    the nearest-centroid distance, the largest force and grade; the 1024-atom bcc cell first."""
    import dcace
    from ase.io import read

    pot = dcace.load(Path(args.workdir) / f"{args.model}.dcace")
    cells = [("bcc 1024 random", random_bcc())] + [(f"test cell {k}", a) for k, a in
                                                   enumerate(ternary_frames(read(NBMOTA_TEST, ":"), n=6)[0])]
    rows = []
    for name, at in cells:
        out = pot.compute(at)
        N = len(at)
        ee = np.asarray(out["expert_energies"], dtype=float)
        ee = ee.sum(axis=0) if ee.ndim == 2 and ee.shape[0] == N else ee
        rows.append({"cell": name, "E/N": out["energy"] / N, "expert E/N": (ee / N).round(3).tolist(),
                     "weights": np.round(out["weights"], 3).tolist(), "nearest": out["nearest"],
                     "max |F|": float(np.abs(out["forces"]).max()),
                     "max grade": float(np.max(out["extrapolation"])) if out["extrapolation"] is not None else None})
        print(json.dumps(rows[-1]), flush=True)
    (Path(args.workdir) / f"{args.model}.diagnose.json").write_text(json.dumps(rows, indent=1))


def cmd_table(args):
    import dcace
    from ase.io import read

    work = Path(args.workdir)
    res = {m: json.loads((work / f"{m}.json").read_text()) for m in MODELS if (work / f"{m}.json").exists()}
    test = read(NBMOTA_TEST, ":")
    tern, e_mix = ternary_frames(test)
    E = {}
    for m in res:
        cache = work / f"{m}.table.json"   # per model, so that the table can be built as fits finish
        if cache.exists() and cache.stat().st_mtime > (work / f"{m}.dcace").stat().st_mtime:
            extra = json.loads(cache.read_text())
        else:
            pot = dcace.load(work / f"{m}.dcace")
            e, g = [], []
            for a in tern:
                out = pot.compute(a)
                e.append(out["energy"] / len(a))
                g.append(float(np.max(out["extrapolation"])))
            extra = {"tern_e": e, "grade_median": float(np.median(g)), "grade_max": float(np.max(g))}
            extra["us_atom_step"], extra["lmp_atoms"], extra["md_ok"] = lammps_speed(work / f"{m}.dcace", work)
            cache.write_text(json.dumps(extra))
        E[m] = np.array(extra.pop("tern_e"))
        res[m].update(extra)
    stack = np.array([E[m] for m in res])
    med = np.median(stack, axis=0)
    for k, m in enumerate(res):
        res[m]["tern_dev_mev"] = 1e3 * float(np.mean(np.abs(stack[k] - med)))
        res[m]["tern_mix_mev"] = 1e3 * float(np.mean(np.abs(stack[k] - e_mix)))
    spread = 1e3 * (stack.max(axis=0) - stack.min(axis=0))
    scaling = json.loads((work / "scaling.json").read_text()) if (work / "scaling.json").exists() else None
    dc_cost = json.loads((work / "dc-cost.json").read_text()) if (work / "dc-cost.json").exists() else None
    md = markdown(res, spread, scaling, args, dc_cost)
    if args.keep:   # the rows of models without a run in W, as the committed doc has them
        from kept_rows import merge

        md = merge(md, Path(args.keep).read_text(), MODELS)
    print(md)


def peak_where(r):
    """The innermost dcace function running when RSS last grew (benchmarks/memory_profile.py)."""
    steps = r.get("rss_steps") or []
    if not steps or not steps[-1][2]:
        return "-"
    return "`" + steps[-1][2][-1].split(" ", 1)[1] + "` (" + steps[-1][2][-1].split(" ", 1)[0] + ")"


def at_or_below(r, ref, key):
    """Whether r's energy and force MAE (r[key]: "test" or "validation") are at or below ref's on every group."""
    return all(g in r[key] and r[key][g]["energy_mae_mev"] <= ref[key][g]["energy_mae_mev"]
               and r[key][g]["force_mae"] <= ref[key][g]["force_mae"] for g in ref[key])


def validation_table(res, ref):
    """The validation set's errors (--quick: the training structures 1::4, not fitted), where measured."""
    runs = {m: r for m, r in res.items() if "validation" in r}
    if not runs:
        return []
    groups = sorted({g for r in runs.values() for g in r["validation"]})
    L = ["", f"## Validation per group (training structures {VALIDATION}, not fitted; energy meV/atom / force eV/Å)",
         "", "A setting picked among runs (e.g. the binaries' weights) should be picked on these numbers, not on the "
         "test set's. They are frames of the same trajectories as the fitted ones (every 4th frame is fitted, "
         "these are the next ones), so they are closer to the training data than the test set.", "", "| model | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for m, r in runs.items():
        L.append(f"| {m} | " + " | ".join(f"{r['validation'][g]['energy_mae_mev']:.3f} / "
                                           f"{r['validation'][g]['force_mae']:.5f}" for g in groups) + " |")
    if ref in runs:
        ok = [m for m, r in runs.items() if m != ref and at_or_below(r, runs[ref], "validation")]
        L += ["", f"At or below `{ref}` on every validation group: " + (", ".join(f"`{m}`" for m in ok) or "none") + "."]
    return L


def markdown(res, spread, scaling, args, dc_cost=None):
    groups = sorted({g for r in res.values() for g in r["test"]})
    q = " --quick" if args.quick else ""
    L = ["# Many elements: explicit, per-block and species-embedded bases on Nb–Mo–Ta", "",
         "Generated by (one command at a time; the fit times are in the cost table):", "", "```",
         *[f"python benchmarks/many_elements.py fit {m}{q} --workdir W" for m in res],
         "python benchmarks/many_elements.py scaling --workdir W",
         *(["python benchmarks/many_elements.py dc-cost --workdir W"] if dc_cost else []),
         "python benchmarks/many_elements.py choose --workdir W" + (f" --keep {args.keep}" if args.keep else ""),
         f"python benchmarks/many_elements.py table{q} --workdir W"
         + (f" --keep {args.keep}" if args.keep else "") + " > W/page.md && mv W/page.md docs/many-elements.md"
         + ("   # (not straight into the page --keep reads)" if args.keep else ""), "```", "",
         "What the numbers mean (the bar, the embeddings, memory, the ternary MD): `docs/many-elements-summary.md`. "
         "Per-fit RSS steps: `python benchmarks/memory_profile.py W/MODEL.json`; why a model fails on "
         "random ternaries: `python benchmarks/many_elements.py diagnose MODEL --workdir W`.", "",
         f"Data: `../shared/data/nbmota` (README there). Training: {next(iter(res.values()))['n_train']} structures "
         f"({'every 4th, --quick' if args.quick else 'all'}); test: all 210 published test structures. Cutoff "
         f"{CUTOFF} Å, linear fits (experts=1) unless the model says experts auto (DC, M <= 4 by CV), ridge by 5-fold "
         "CV, one thread, memory budget 2 GB, ZBL core on. "
         "Shared 2-core machine (other fits running): times are wall clock, except fit CPU (user + system "
         "CPU time of the fit process, what a quiet machine waits; fits before session 8 show -).", "",
         "## Accuracy per test group (energy MAE meV/atom / force MAE eV/Å)", "",
         "| model | basis | K | " + " | ".join(groups) + " |",
         "|---|---|---:|" + "---:|" * len(groups)]
    for m, r in res.items():
        cells = [f"{r['test'][g]['energy_mae_mev']:.2f} / {r['test'][g]['force_mae']:.3f}" if g in r["test"] else "-"
                 for g in groups]
        dc = "" if r.get("experts", 1) == 1 else f"; chosen M = {r['experts']}"
        if r.get("block_ridge"):   # the ridge CV chose, times each block's factor (and the prior's exponent)
            dc += f"; ridge {r['ridge']:g} x " + ", ".join(f"{f:g} (block {b})" for b, f in r["block_ridge"].items())
        if r.get("degree_ridge") is not None:
            dc += f" x (degree / smallest)^{r['degree_ridge']:g}"
        top = r.get("top_degree_ridge") or {}
        if top.get("factor") is not None:
            dc += (f"; ridge {r['ridge']:g}, x {top['factor']:g} on the {top['n_columns']} columns of degree > "
                   f"{top['degree']:g}")
        L.append(f"| {m} | {r['settings']}{dc} | {r['K']} | " + " | ".join(cells) + " |")
    ref = "explicit-9" if "explicit-9" in res else "explicit"
    if ref in res:
        ok = [m for m, r in res.items() if m != ref and at_or_below(r, res[ref], "test")]
        L += ["", f"At or below (a) = `{ref}` ({res[ref]['settings']}) in energy and force MAE on every test group: "
              + (", ".join(f"`{m}`" for m in ok) if ok else "none") + "."]
    L += validation_table(res, ref)
    L += ["", "## Cost", "",
          "| model | K | normal equations (MiB) | + work and solve copies (MiB) | peak RSS (MiB) | fit (s) "
          "| fit CPU (s) "
          "| pass 2 estimated (s) | pass 2 measured (s) | measured / estimated | LAMMPS µs/atom/step "
          "| 300 K NVE on it | RSS before the fit (MiB) | expected peak (MiB) | where the peak is "
          "| load at start / end | code |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---|"]
    for m, r in res.items():
        Dp = 3 * r["K"] + 3
        total = r["memory_normal_eq_mib"] + 5 * 8 * Dp * Dp / 2**20   # as printed by the fit (dcace.cost)
        L.append(f"| {m} | {r['K']} | {r['memory_normal_eq_mib']:.0f} | {total:.0f} | {r['peak_rss_mib']:.0f} | "
                 f"{r['fit_s']:.0f} | " + (f"{r['cpu_s']:.0f} | " if "cpu_s" in r else "- | ")
                 + f"{r['pass2_estimate_s']:.0f} | {r['pass2_s']:.0f} | {r['pass2_s'] / r['pass2_estimate_s']:.2f} | "
                 f"{r['us_atom_step']:.1f} | {'ok' if r['md_ok'] else 'lost atoms' if r['md_ok'] is False else 'error'} | "
                 f"{r.get('rss_before_fit_mib', float('nan')):.0f} | "
                 + (f"{r['expected_peak_mib']:.0f} | " if "expected_peak_mib" in r else "- | ")
                 + f"{peak_where(r)} | "
                 + ("{:.1f} / {:.1f}".format(*r["load"]) if "load" in r else "-") + f" | {r.get('code', 's5')} |")
    L += ["", f"LAMMPS: {next(iter(res.values()))['lmp_atoms']}-atom random Nb–Mo–Ta bcc (a = 3.25 Å, a ternary: "
          "extrapolation for every model), 20 force evaluations without integrator, one MPI rank, best of 2; then "
          "20 steps of 300 K NVE from it (ok / lost atoms). The pass-2 estimate is the serial sample of `dcace.cost` "
          "(8 structures), timed at the start of each fit while other jobs ran (load average 7-9 on 2 cores: "
          "fit times and µs/atom/step are 2-4x those of a quiet machine). Expected peak: what the fit prints "
          "before pass 2 (`dcace.cost.expected_peak`; fits run before it was added show -). Load: 1-minute load "
          "average at the start and end of the fit; code: the commit it ran on (s5: session 5's runs, estimated "
          "by the model before dcace.estimate; docs/many-elements-estimate.md compares the two).", "",
          "## Ternary extrapolation (no DFT label)", "",
          f"{len(spread)} test cells with every atom's species drawn at random from Nb, Mo, Ta (the training data "
          "have no ternary cell). Grade: the largest per-atom extrapolation grade of a cell (> 1 = extrapolation), "
          "median and max over the cells; deviation: mean |E/N − median over the models|; rule of mixtures: mean "
          "|E/N − E_mix/N|, E_mix = DFT energy of the original cell + Σ over changed atoms of the difference of "
          "the unary test groups' mean energies per atom (mixing energies of these alloys are tens of meV/atom, "
          "so a sane model is within ~0.1 eV/atom of it).", "",
          "| model | grade median | grade max | deviation from the median (meV/atom) | from the rule of mixtures "
          "(meV/atom) |", "|---|---:|---:|---:|---:|"]
    for m, r in res.items():
        L.append(f"| {m} | {r['grade_median']:.3g} | {r['grade_max']:.3g} | {r['tern_dev_mev']:.1f} | "
                 f"{r['tern_mix_mev']:.1f} |")
    L += ["", f"Spread of E/N across the models per cell (max − min): mean {np.mean(spread):.1f}, "
          f"max {np.max(spread):.1f} meV/atom (over the {len(res)} models of the run that made this page; "
          "rows kept from earlier runs by `table --keep` were measured against their run's median)."]
    if dc_cost:
        L += ["", "## What a DC committee would need on the per-block bases (no fit)", "",
              "`python benchmarks/many_elements.py dc-cost --workdir W`: a joint committee of M experts at one "
              "temperature beside the linear model, 5 folds, from the fit's own accounting "
              "(`dcace.committee.joint_nbytes`; counted against the budget as `dcace.cost.counted_nbytes`; expected "
              "peak `dcace.cost.expected_peak` with the 284 MiB a blocks fit holds before pass 2). A fit skips a "
              "candidate whose counted figure exceeds the 2 GB budget (2048 MiB).", "",
              "| basis | K | M | unknowns | committee normal equations (MiB) | counted (MiB) | expected peak (MiB) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for r in dc_cost:
            L.append(f"| {r['basis']} | {r['K']} | {r['M']} | {r['unknowns']} | {r['committee_mib']:.0f} | "
                     f"{r['counted_mib']:.0f} | {r['expected_peak_mib']:.0f} |")
    if scaling:
        L += ["", f"## Cost scaling with the number of species (HEA probe, one {scaling['atoms']}-atom frame)", "",
              "Species beyond S mapped onto the first S (Co Cr Fe Mn Ni order), body order 4, cutoff "
              f"{CUTOFF} Å. Time per structure: fitting rows (C++) and the Gram product Φᵀ Φ of pass 2, one thread "
              "(not timed above 13,000 unknowns).", "",
              "| species | basis | K | unknowns | linear normal equations (MiB) | rows (s) | Φᵀ Φ (s) |",
              "|---:|---|---:|---:|---:|---:|---:|"]
        for r in scaling["rows"]:
            t = (f"{r['rows_s']:.2f} | {r['gram_s']:.2f}" if r["rows_s"] is not None else "- | -")
            L.append(f"| {r['species']} | {r['basis']} | {r['K']} | {r['unknowns']} | {r['linear_mib']:.1f} | {t} |")
    return "\n".join(L)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("fit", "scaling", "table", "diagnose", "dc-cost", "choose"))
    p.add_argument("model", nargs="?", help="a model of MODELS (choose: a name prefix, default blocks-10-9-0-tr-b)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workdir", required=True)
    p.add_argument("--keep", metavar="DOC", help="table: keep DOC's rows of the models W has no run of "
                   "(benchmarks/kept_rows.py); choose: take the validation errors of runs not in W from DOC")
    p.add_argument("--resident-mib", type=float, default=284.0, help="dc-cost: what the fit holds before pass 2")
    args = p.parse_args(argv)
    if args.command in ("fit", "diagnose") and args.model not in MODELS:
        p.error(f"{args.command}: model {args.model!r} is not one of MODELS ({', '.join(MODELS)})")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    {"fit": cmd_fit, "scaling": cmd_scaling, "table": cmd_table, "diagnose": cmd_diagnose,
     "dc-cost": cmd_dc_cost, "choose": cmd_choose}[args.command](args)


if __name__ == "__main__":
    main()
