"""The one settings object (dcace.settings.FitSettings): fit's keywords, pipeline.DEFAULTS, the options of
`dcace fit`, its --config keys and the keywords the command line passes all come from its fields, so a
default cannot differ between them and an option cannot be missing from one of them.  No fit: < 1 s."""
from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import pytest

import dcace
from dcace import cli, pipeline, settings
from dcace.settings import FitSettings

#: the keys DEFAULTS had before it was derived from FitSettings (code importing them keeps working)
OLD_DEFAULT_KEYS = {
    "energy_weight", "force_weight", "stress_weight", "cv_folds", "max_experts", "temperatures", "ridge_grid",
    "ridge_experts_floor", "ridge_dc_factors", "parsimony", "pca_variance", "pca_max_components", "batch_size",
    "memory_budget_gb", "frames_budget_gb", "repulsion_restraints", "shared_one_body", "anchors",
    "anchors_auto_grid", "anchors_auto_force_ratio", "chemical_embedding", "block_ridge", "degree_ridge",
    "top_degree_ridge", "top_degree_ridge_grid"}
#: the keys added since (each a FitSettings field with a default)
NEW_DEFAULT_KEYS = {"rows_budget_gb", "cluster_sample", "crystal_constraints", "local_experts_grid", "kink_check"}


def fit_parser():
    return cli.build_parser()._subparsers._group_actions[0].choices["fit"]


def test_defaults_are_the_fields_defaults():
    assert set(pipeline.DEFAULTS) == OLD_DEFAULT_KEYS | NEW_DEFAULT_KEYS
    by_name = {f.name: f for f in fields(FitSettings)}
    for key, value in pipeline.DEFAULTS.items():
        assert by_name[key].default == value, key
    assert pipeline.DEFAULTS["energy_weight"] == 300.0 and pipeline.DEFAULTS["temperatures"] == (0.35, 0.7)


def test_fit_signature_is_the_keyword_fields():
    params = inspect.signature(dcace.fit).parameters
    assert set(params) - {"comm"} == {f.name for f in settings.keywords()}
    assert params["elements"].default is inspect.Parameter.empty and params["cutoff"].default is inspect.Parameter.empty
    assert params["body_order"].default == 4 and params["energy_weight"].default is None
    with pytest.raises(TypeError, match=r"fit\(\) got an unexpected keyword argument 'energy_wieght'"):
        dcace.fit([], elements=["Mo"], cutoff=5.0, energy_wieght=1.0)
    with pytest.raises(TypeError, match=r"fit\(\) missing required keyword-only argument: 'cutoff'"):
        dcace.fit([], elements=["Mo"])


def test_every_cli_field_has_its_option_and_config_key():
    f = fit_parser()
    dests = {a.dest for a in f._actions}
    keys = cli._config_keys(f)
    for fld in settings.cli_fields():
        for a in fld.metadata["cli"]:
            assert a.dest in dests and a.dest in keys, (fld.name, a.flags)
    for a in f._actions:   # every setting's option says its default (the required ones: that they are)
        if a.dest in keys:
            assert "default:" in a.help or "(required" in a.help, a.dest


def test_command_line_defaults_are_the_fit_defaults():
    """A command line naming only the required options gives the settings of fit() with no keywords: no
    option has a default of its own."""
    args = fit_parser().parse_args(["--train", "t.xyz", "--elements", "Mo", "--cutoff", "5", "-o", "p.dcace"])
    for k, v in cli.KEY_DEFAULTS.items():   # (filled as in _cmd_fit: dcace eval shares these options)
        if getattr(args, k) is None:
            setattr(args, k, v)
    kw = settings.from_args(args)
    assert set(kw) <= {f.name for f in settings.keywords()}
    from_cli = settings.from_keywords(kw)
    plain = settings.from_keywords(dict(train="t.xyz", elements=["Mo"], cutoff=5.0))
    for fld in fields(FitSettings):
        assert getattr(from_cli, fld.name) == getattr(plain, fld.name), fld.name


def test_typed_options_reach_their_fields():
    args = fit_parser().parse_args(["--train", "a.xyz", "b.xyz", "--elements", "Ti,Al", "--cutoff", "5", "-o", "p",
                                    "--no-pca", "--no-baseline", "--quiet", "--angular-weight", "1", "--e0", "Ti=-1",
                                    "--max-degree-blocks", "2:8", "--anchors", "auto", "--plots", "figs",
                                    "--no-kink-check"])
    kw = settings.from_args(args)
    assert kw["train"] == ["a.xyz", "b.xyz"] and kw["elements"] == ["Ti", "Al"] and kw["cutoff"] == 5.0
    assert kw["pca"] is False and kw["baseline"] is None and kw["progress"] is False and kw["w_L"] == 1.0
    assert kw["e0"] == {"Ti": -1.0} and kw["max_degree_blocks"] == {2: 8.0} and kw["anchors"] == "auto"
    assert kw["keep_arrays"] is True and kw["kink_check"] is False


def test_help_shows_the_fields_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    h = " ".join(capsys.readouterr().out.split())
    assert "(default: 300; example: --energy-weight 100)" in h
    assert "(default: 0.35 0.7; example: --temperatures 0.5 1)" in h
    assert "(default: 5; example: --cv-folds 10)" in h


def test_required_fields_have_no_default():
    required = {f.name for f in fields(FitSettings) if f.default is MISSING and f.default_factory is MISSING}
    assert required == {"elements", "cutoff"}
