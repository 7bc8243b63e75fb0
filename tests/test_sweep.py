"""The sweep file: validation with clear errors, the fixed expansion order, and run deduplication."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpc_radr.cli import app
from hpc_radr.sweep import SweepError, expand, load_sweep, parse_sweep, unique_runs

SWEEP = Path(__file__).parents[1] / "jobs" / "imbalance_regularization.toml"


def test_the_user_sweep_has_108_configurations_in_documented_order():
    sweep, _ = load_sweep(SWEEP)
    configs = expand(sweep)
    assert len(configs) == 108
    assert [c.index for c in configs] == list(range(108))
    first, last = configs[0], configs[-1]
    assert (first.dataset, first.upsampling_mode, first.upsampling_ratio, first.focal_loss, first.seed) == (
        "high_medium_low", "linear", 0.0, False, 1)
    assert (last.dataset, last.upsampling_mode, last.upsampling_ratio, last.focal_loss, last.seed) == (
        "high_medium", "smote", 1.0, True, 3)
    # seed varies fastest, then focal, then ratio, then mode, then dataset
    assert [c.seed for c in configs[:4]] == [1, 2, 3, 1]
    assert [c.focal_loss for c in configs[:7:3]] == [False, True, False]
    assert configs[6].upsampling_ratio == 0.5 and configs[18].upsampling_mode == "mean"
    assert configs[54].dataset == "high_medium"
    assert len({(c.dataset, c.upsampling_mode, c.upsampling_ratio, c.focal_loss, c.seed) for c in configs}) == 108


def test_ratio_zero_modes_share_one_run_and_literal_keeps_them_apart():
    sweep, _ = load_sweep(SWEEP)
    configs = expand(sweep)
    assert len(unique_runs(configs)) == 84
    zero = [c for c in configs if c.upsampling_ratio == 0.0]
    assert len(zero) == 36
    by_point = {}
    for c in zero:
        by_point.setdefault((c.dataset, c.focal_loss, c.seed), set()).add(c.run_id)
    assert all(len(ids) == 1 for ids in by_point.values())
    nonzero = [c for c in configs if c.upsampling_ratio > 0]
    assert len({c.run_id for c in nonzero}) == len(nonzero)
    assert len(unique_runs(expand(sweep, dedupe=False))) == 108


def test_plan_json_lists_every_configuration():
    result = CliRunner().invoke(app, ["plan", str(SWEEP), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 108
    assert set(rows[0]) >= {"index", "dataset", "upsampling_mode", "upsampling_ratio", "focal_loss", "seed", "run_id"}
    assert rows[1]["run_id"] != rows[0]["run_id"] and rows[0]["run_id"] == rows[18]["run_id"]


GOOD = SWEEP.read_text()


@pytest.mark.parametrize("change, expected", [
    (("upsampling_modes = [\"linear\", \"mean\", \"smote\"]", "upsampling_modes = [\"linear\", \"cubic\"]"),
     ["grid.upsampling_modes.1", "'linear', 'mean', 'smote' or 'repeat'", "'cubic'"]),
    (("upsampling_ratios = [0.0, 0.5, 1.0]", "upsampling_ratios = [0.0, 1.5]"),
     ["grid.upsampling_ratios", "[0, 1]", "1.5"]),
    (("seeds = [1, 2, 3]", "seeds = [1, 1, 2]"), ["grid.seeds", "must not repeat"]),
    (("seeds = [1, 2, 3]", "seeds = [1, 2.5]"), ["grid.seeds", "integers", "2.5"]),
    (("seeds = [1, 2, 3]", "seeds = [1, \"2\"]"), ["grid.seeds", "integers"]),
    (('name = "high_medium"\n', 'name = "high_medium_low"\n'), ["datasets", "dataset names must not repeat"]),
    (("epochs = 50", "epocs = 50"), ["training.epocs", "unknown field"]),
    (("[grid]", "[grid\n"), ["not valid TOML"]),
    (("negative_class = \"noise\"", "negative_class = \"frogs\""), ["data.negative_class", "noise"]),
])
def test_bad_sweep_files_name_the_file_field_and_allowed_values(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(SweepError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_cli_reports_a_bad_sweep_without_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace("0.5, 1.0]", "0.5, 2.0]"))
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "upsampling ratios must lie in [0, 1]" in result.output and "Traceback" not in result.output


def test_missing_sweep_file():
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(Path("/nonexistent/sweep.toml"))


def test_dataset_names_with_shell_characters_get_safe_distinct_run_ids():
    text = GOOD.replace('name = "high_medium"\n', 'name = "a b; $(touch x)"\n', 1)
    sweep = parse_sweep(text, "inline")
    ids = {c.run_id for c in expand(sweep)}
    assert all("/" not in i and " " not in i and "$" not in i for i in ids)
    assert any(c.dataset == "a b; $(touch x)" for c in expand(sweep))


def test_the_108_configuration_indices_and_run_ids_are_pinned():
    """Any change to the expansion that would give an index of the user's study another meaning fails here:
    tests/golden/imbalance_regularization_plan.jsonl is the plan as first submitted."""
    golden = Path(__file__).parent / "golden" / "imbalance_regularization_plan.jsonl"
    expected = [json.loads(line) for line in golden.read_text().splitlines()]
    sweep, _ = load_sweep(Path(__file__).parent.parent / "jobs" / "imbalance_regularization.toml")
    assert [c.as_dict() for c in expand(sweep)] == expected
