"""Training settings as sweep axes (issue #13): expansion order, shared runs by meaning, and refusals."""

import pytest

from hpc_radr.manifest import apply_overrides
from hpc_radr.sweep import SweepError, expand, parse_sweep, training_for, unique_runs

BASE = """name = "axes"
[[datasets]]
name = "d"
tiers = ["high"]
[grid]
upsampling_modes = ["linear"]
upsampling_ratios = [0.0]
focal_loss = [false, true]
seeds = [1, 2]
"""


def test_axes_expand_between_focal_loss_and_seed_in_a_fixed_order():
    # written in another order than TRAINING_AXES: the expansion order does not follow the file
    sweep = parse_sweep(BASE + "dropout = [0.0, 0.25]\nhidden_units = [0, 512]\n", "s.toml")
    configs = expand(sweep)
    assert len(configs) == 2 * 2 * 2 * 2
    assert list(configs[0].settings) == ["hidden_units", "dropout"]
    assert [(c.focal_loss, c.settings["hidden_units"], c.settings["dropout"], c.seed) for c in configs[:5]] == [
        (False, 0, 0.0, 1), (False, 0, 0.0, 2), (False, 0, 0.25, 1), (False, 0, 0.25, 2), (False, 512, 0.0, 1)]
    assert configs[2].run_id == "d__none-0__bce__hidden0__dropout0.25__seed1"
    assert training_for(sweep, configs[4]).hidden_units == 512
    assert training_for(sweep, configs[4]).dropout == 0.0


def test_focal_gamma_is_one_run_while_focal_loss_is_off():
    sweep = parse_sweep(BASE + "focal_loss_gamma = [1.0, 2.0, 4.0]\n", "s.toml")
    configs = expand(sweep)
    runs = unique_runs(configs)
    assert len(configs) == 12
    assert len(runs) == 2 + 3 * 2  # off: one run per seed; on: one per gamma and seed
    assert {c.run_id for c in configs if not c.focal_loss} == {"d__none-0__bce__seed1", "d__none-0__bce__seed2"}
    assert len({c.run_id for c in expand(sweep, dedupe=False)}) == 12


@pytest.mark.parametrize(("grid", "expected"), [
    ("mixup = [true, false]", "mixup' cannot be a sweep axis: BirdNET 2.4 applies mixup only to multi-label"),
    ("evaluation = ['held_out', 'birdnet']", "'evaluation' cannot be a sweep axis"),
    ("hidden_layers = [1, 2]", "'hidden_layers' is not a setting that can be swept"),
    ("dropout = [0.1, 1.5]", "grid.dropout: 1.5 is not allowed"),
    ("crop_mode = ['center', 'middle']", "grid.crop_mode: 'middle' is not allowed"),
    ("hidden_units = []", "grid.hidden_units"),
    ("batch_size = [32, 32]", "must not repeat"),
])
def test_bad_axes_are_refused_with_file_field_and_value(grid, expected):
    with pytest.raises(SweepError) as err:
        parse_sweep(BASE + grid + "\n", "my_sweep.toml")
    assert "my_sweep.toml" in str(err.value)
    assert expected in str(err.value)


def test_a_setting_is_swept_or_fixed_not_both_and_the_baseline_names_grid_values():
    with pytest.raises(SweepError, match="dropout: set both in \\[grid\\] and in \\[training\\]"):
        parse_sweep(BASE + "dropout = [0.0, 0.5]\n[training]\ndropout = 0.1\n", "s.toml")
    with pytest.raises(SweepError, match="baseline.hidden_units: 256 is not among grid.hidden_units"):
        parse_sweep(BASE + "hidden_units = [0, 512]\n[baseline]\nhidden_units = 256\n", "s.toml")
    with pytest.raises(SweepError, match="baseline.dropout: not an axis of this grid"):
        parse_sweep(BASE + "[baseline]\ndropout = 0.0\n", "s.toml")
    sweep = parse_sweep(BASE + "hidden_units = [0, 512]\n[baseline]\nhidden_units = 0\n", "s.toml")
    assert sweep.baseline_values() == {"upsampling_ratio": 0.0, "focal_loss": False, "hidden_units": 0}


def test_an_option_cannot_override_a_swept_setting():
    sweep = parse_sweep(BASE + "epochs = [5, 10]\n", "s.toml")
    with pytest.raises(SweepError, match="--epochs: 'epochs' is an axis of this sweep"):
        apply_overrides(sweep, {"epochs": 3})


CROP_SWEEP = """name = "crop"
[[datasets]]
name = "high_medium"
tiers = ["high", "medium"]
[grid]
upsampling_modes = ["linear"]
upsampling_ratios = [1.0]
focal_loss = [false, true]
crop_mode = ["center", "first"]
seeds = [1]
"""


def test_every_extraction_unit_matches_the_data_it_was_submitted_with(small_data, tmp_path):
    """A unit named dataset@crop_mode=... is the dataset inspected at submit: its files and fingerprint compare
    (a unit's own name in the fingerprint failed every run of a crop-mode sweep)."""
    from hpc_radr import clip_store
    from hpc_radr.submission import prepare

    (tmp_path / "axes.toml").write_text(CROP_SWEEP)
    manifest = prepare(tmp_path / "axes.toml", tmp_path / "run", small_data, None, dedupe=True, overrides={})
    assert sorted(manifest.units) == ["high_medium@crop_mode=center", "high_medium@crop_mode=first",
                                      "test@crop_mode=center", "test@crop_mode=first"]
    assert len({spec.key for spec in manifest.units.values()}) == 4  # one cache per unit and extraction setting
    for name, spec in manifest.units.items():
        assert clip_store.unit_of(manifest, name).fingerprint == spec.data_fingerprint, name


HEAD_SWEEP = """name = "head"
[[datasets]]
name = "high_medium"
tiers = ["high", "medium"]
[grid]
upsampling_modes = ["linear"]
upsampling_ratios = [1.0]
focal_loss = [false, true]
hidden_units = [0, 16]
focal_loss_gamma = [2.0, 4.0]
crop_mode = ["center", "first"]
seeds = [1]
[baseline]
upsampling_ratio = 1.0
focal_loss = false
hidden_units = 0
crop_mode = "center"
[training]
epochs = 3
dropout = 0.25
"""


def test_an_axis_sweep_trains_each_distinct_setting_once_and_reports_against_its_baseline(small_data, tmp_path):
    """hidden units x focal gamma x crop mode, trained for real: the settings reach BirdNET's training, each clip
    is extracted once per crop mode, gamma without focal loss is one run, and the report compares with [baseline]."""
    import json

    from hpc_radr.clip_store import ClipStore
    from hpc_radr.collect import collect
    from hpc_radr.executors.local import run_local
    from hpc_radr.report import build_report
    from hpc_radr.results import read_result
    from hpc_radr.submission import prepare, remaining

    (tmp_path / "head.toml").write_text(HEAD_SWEEP)
    manifest = prepare(tmp_path / "head.toml", tmp_path / "run", small_data, None, dedupe=True, overrides={})
    configs = manifest.configurations
    assert len(configs) == 2 * 2 * 2 * 2
    assert len({c.run_id for c in configs}) == 12  # focal off: gamma 2 and 4 share a run
    outcome = run_local(remaining(manifest), workers=1)
    assert not outcome.failed, outcome

    for config in configs:
        training = read_result(manifest.run_dir, config.run_id).record["training"]
        assert (training["hidden_units"], training["crop_mode"], training["dropout"]) == (
            config.settings["hidden_units"], config.settings["crop_mode"], 0.25), config.run_id
        if config.focal_loss:
            assert training["focal_loss_gamma"] == config.settings["focal_loss_gamma"], config.run_id

    clips = [p for p in small_data.rglob("*.wav") if "low" not in p.parts]  # the high_medium dataset and the test set
    assert len(ClipStore(manifest.run_dir).index()) == 2 * len(clips)  # every clip once per crop mode
    shards = [json.loads(p.read_text()) for p in manifest.run_dir.clips.glob("shard-*.json")]
    assert sum(s["clips"] for s in shards) == 2 * len(clips)  # and none extracted twice

    table = collect(manifest.run_dir.path, manifest).table
    assert len(table) == 16 and table["run_id"].nunique() == 12
    assert (table["state"] == "completed").all()
    report = build_report(manifest.run_dir.path)
    auprc = report.analysis.effects.query("metric == 'auprc'")
    # focal loss off: gamma is not a setting, so 4 settings (one the baseline) + 8 with focal loss on
    assert len(auprc) == 3 + 8 and auprc["remedy"].is_unique
    baseline = table.query("not focal_loss and hidden_units == 0 and crop_mode == 'center'")["auprc"]
    assert baseline.nunique() == 1
    for _, effect in auprc.iterrows():
        own = table.query(f"focal_loss == {effect.focal_loss} and hidden_units == {effect.hidden_units} "
                          f"and crop_mode == '{effect.crop_mode}'")
        if effect.focal_loss:
            own = own[own["focal_loss_gamma"] == effect.focal_loss_gamma]
        assert effect["mean"] == pytest.approx(own["auprc"].iloc[0] - baseline.iloc[0]), effect.remedy
    assert "(upsampling ratio 1, focal loss off, hidden units 0, crop mode center; each setting's own gamma)" in (
        report.markdown.read_text())
