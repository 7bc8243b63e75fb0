"""The report on result sets built for the purpose, whose effects are known by construction.

A real run directory is frozen through ``hpc_radr.submission.prepare``; then result files are written with
metrics = baseline + seed shift + true effect + jitter. The seed shift is shared by every setting of a seed
(pairing by seed must cancel it) and the jitter is a rotation of a zero-sum triple (so a paired mean
difference over the 3 seeds equals the true effect exactly, with a non-zero spread).
"""

from __future__ import annotations

import json
import math

import matplotlib.image
import numpy as np
import pytest
import typer
from conftest import write_sweep
from scipy import stats
from typer.testing import CliRunner

from hpc_radr.cli import collect as collect_cli
from hpc_radr.cli import report as report_cli
from hpc_radr.report import build_report
from hpc_radr.report.analysis import interval
from hpc_radr.results import write_failure, write_result
from hpc_radr.run_dir import RunDir
from hpc_radr.submission import prepare

DATASETS = ("high_medium_low", "high_medium")
BASE = {"recall": 0.60, "precision": 0.90, "auprc": 0.80}
DATASET_SHIFT = {"high_medium_low": {"recall": 0.05}, "high_medium": {}}
SEED_SHIFT = {1: 0.0, 2: 0.03, 3: -0.02}
JITTER = (0.003, -0.002, -0.001)
EPOCHS = 50
# True effects against the baseline: linear x1 adds recall and AUPRC, smote x1 does nothing,
# focal loss adds a little recall and costs precision. They add up when combined.
LINEAR = {"recall": 0.10, "auprc": 0.03}
FOCAL = {"recall": 0.04, "precision": -0.05}


def true_effect(mode: str, ratio: float, focal: bool) -> dict[str, float]:
    effect = {"recall": 0.0, "precision": 0.0, "auprc": 0.0}
    for part, applies in ((LINEAR, mode == "linear" and ratio > 0), (FOCAL, focal)):
        if applies:
            for metric, value in part.items():
                effect[metric] += value
    return effect


def metrics(config, dataset_index: int) -> dict[str, float]:
    effect = true_effect(config.upsampling_mode, config.upsampling_ratio, config.focal_loss)
    rotation = (int(config.focal_loss) + (config.upsampling_ratio > 0) * (1 if config.upsampling_mode == "linear"
                                                                          else 2) + dataset_index) % 3
    jitter = JITTER[(config.seed - 1 + rotation) % 3]
    return {m: BASE[m] + DATASET_SHIFT[config.dataset].get(m, 0.0) + SEED_SHIFT[config.seed] + effect[m] + jitter
            for m in BASE}


def record(config, values: dict[str, float], best_epoch: int = 30, epochs_run: int = 36,
           upsampled: bool = True) -> dict:
    """A result in the shape the runner writes (only what collect reads, plus versions). Upsampling raises the
    fit split's 10 positives to int(max(10, 24) x ratio), as BirdNET does; ``upsampled=False``: it added none."""
    tp = round(values["recall"] * 24)
    after = int(24 * config.upsampling_ratio) if upsampled and config.upsampling_ratio > 0 else 10
    return {
        "configuration": config.as_dict(),
        "evaluation_protocol": "held_out",
        "test": {"auprc": values["auprc"], "auroc": min(1.0, values["auprc"] + 0.1), "precision": values["precision"],
                 "recall": values["recall"], "f1": 0.7, "precision_opt": values["precision"],
                 "recall_opt": values["recall"], "f1_opt": 0.72, "threshold_opt": 0.4, "tp": tp, "fp": 3,
                 "tn": 97, "fn": 24 - tp, "n_positive": 24, "n_negative": 100},
        "validation_at_best_epoch": {"auprc": 0.8, "auroc": 0.9, "loss": 0.3},
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "sample_counts": {"dataset": {"positive": 12, "negative": 30},
                          "fit_before_upsampling": {"positive": 10, "negative": 24},
                          "fit_after_upsampling": {"positive": after, "negative": 24}},
        "timings": {"fit_s": 1.0},
        "versions": {"hpc-radr": "0.1.0", "birdnet-analyzer": "2.4.0", "tensorflow": "2.21.0"},
        "environment": {"host": "test", "slurm": {}},
    }


def build_run(small_data, folder, skip=(), fail=(), degenerate=(), chance=(), inert=()):
    """48 configurations (2 datasets x linear/smote x 0.0/1.0 x focal off/on x 3 seeds), 36 runs.
    ``skip``/``fail``/``degenerate``/``chance``/``inert`` (upsampling added nothing) name runs by
    (dataset, mode, ratio, focal, seed)."""
    sweep = write_sweep(folder, modes='["linear", "smote"]', ratios="[0.0, 1.0]", focal="[false, true]",
                        seeds="[1, 2, 3]", epochs=EPOCHS)
    manifest = prepare(sweep, folder / "run", small_data, None, dedupe=True, overrides={})
    run_dir = RunDir(folder / "run")
    for config in manifest.runs:
        key = (config.dataset, config.upsampling_mode, config.upsampling_ratio, config.focal_loss, config.seed)
        values = metrics(config, DATASETS.index(config.dataset))
        if key in skip:
            continue
        if key in fail:
            write_failure(run_dir, config.run_id, {"error": "RuntimeError: out of memory", "log": "x.log"})
            continue
        if key in chance:
            values["auprc"] = 0.15  # test prevalence is 24 / 124 = 0.19
        epochs = {"best_epoch": 1, "epochs_run": 6} if key in degenerate else {}
        write_result(run_dir, config.run_id, record(config, values, **epochs, upsampled=key not in inert))
    return manifest


def index_of(manifest, dataset, mode, ratio, focal, seed) -> int:
    return next(c.index for c in manifest.configurations
                if (c.dataset, c.upsampling_mode, c.upsampling_ratio, c.focal_loss, c.seed)
                == (dataset, mode, ratio, focal, seed))


def effect(report, dataset, remedy, metric):
    rows = report.effects
    found = rows[(rows["dataset"] == dataset) & (rows["remedy"] == remedy) & (rows["metric"] == metric)]
    assert len(found) == 1, (dataset, remedy, metric)
    return found.iloc[0]


@pytest.fixture(scope="module")
def clean(small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    build_run(small_data, folder)
    return folder / "run", build_report(folder / "run")


SINGLE = [("high_medium", "smote", 1.0, True, 2), ("high_medium", "smote", 1.0, True, 3)]
FAILED = ("high_medium_low", "linear", 1.0, True, 2)
MISSING = ("high_medium", "smote", 1.0, False, 3)
DEGENERATE = ("high_medium", "linear", 1.0, False, 1)
CHANCE = ("high_medium_low", "smote", 1.0, False, 1)


@pytest.fixture(scope="module")
def defects(small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("defects")
    manifest = build_run(small_data, folder, skip=[MISSING, *SINGLE], fail=[FAILED], degenerate=[DEGENERATE],
                         chance=[CHANCE])
    return manifest, build_report(folder / "run")


def test_interval_is_scipys_t_interval_and_undefined_below_two_seeds():
    diffs = np.array([0.08, 0.11, 0.12])
    expected = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    found = interval(diffs)
    assert found["n"] == 3 and found["mean"] == pytest.approx(diffs.mean())
    assert (found["ci_low"], found["ci_high"]) == pytest.approx((expected.low, expected.high))
    single = interval(np.array([0.1]))
    assert single["n"] == 1 and math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
    assert "no interval" in single["note"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(("remedy", "metric", "truth"), [
    ("linear x1", "recall", 0.10), ("linear x1", "auprc", 0.03),
    ("focal loss", "precision", -0.05), ("focal loss", "recall", 0.04),
    ("linear x1 + focal loss", "recall", 0.14), ("linear x1 + focal loss", "precision", -0.05),
])
def test_known_effects_have_the_right_sign_and_an_interval_around_the_truth(clean, dataset, remedy, metric, truth):
    _, report = clean
    row = effect(report, dataset, remedy, metric)
    assert row["n"] == 3 and row["seeds"] == [1, 2, 3]
    assert np.sign(row["mean"]) == np.sign(truth)
    assert row["mean"] == pytest.approx(truth, abs=1e-9)
    assert row["ci_low"] < truth < row["ci_high"]
    assert row["ci_low"] > 0 or row["ci_high"] < 0  # excludes 0
    assert row["ci_high"] - row["ci_low"] < 0.05  # pairing by seed cancelled the seed shifts


@pytest.mark.parametrize("metric", ["recall", "precision", "auprc"])
def test_a_remedy_without_effect_has_an_interval_containing_zero(clean, metric):
    _, report = clean
    row = effect(report, "high_medium_low", "smote x1", metric)
    assert row["n"] == 3 and row["ci_low"] < 0 < row["ci_high"]


def test_results_without_scores_are_judged_by_holm_adjusted_t_tests(clean):
    """These results carry no per-clip scores, as the previous version wrote them: no operating points and no
    bootstrap; each verdict rests on the t-test over seeds, Holm-adjusted over every comparison made."""
    _, report = clean
    effects = report.effects
    made = effects[effects["p_value"].notna()]
    assert set(made["metric"]) == {"auprc", "recall", "precision"}  # operating points need scores
    assert (made["p_source"] == "t-test over seeds").all()
    assert effects[effects["metric"] == "recall_at_p0.9"]["mean"].isna().all()
    order = np.argsort(made["p_value"].to_numpy(), kind="stable")
    m = len(made)
    by_hand = np.empty(m)
    by_hand[order] = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * made["p_value"].to_numpy()[order]))
    assert made["p_adjusted"].to_numpy() == pytest.approx(by_hand)
    assert (made["significant"] == (made["p_adjusted"] <= 0.05)).all()
    for entry in report.analysis.answer:
        assert not entry["detects_better"] or {e["remedy"] for e in entry["detects_better"]} <= {
            "linear x1", "linear x1 + focal loss"}
        assert {e["remedy"] for e in entry["no_gain"]} >= {"smote x1"}
        assert entry["n_remedies"] == 5 and entry["baseline"]["n"] == 3


def test_focal_and_dataset_comparisons_are_paired_by_seed(clean):
    _, report = clean
    focal = report.analysis.focal
    for upsampling in ("no upsampling", "linear x1", "smote x1"):
        row = focal[(focal["dataset"] == "high_medium") & (focal["upsampling"] == upsampling)
                    & (focal["metric"] == "precision")].iloc[0]
        assert row["n"] == 3 and row["ci_low"] < -0.05 < row["ci_high"] < 0
    between = report.analysis.datasets
    row = between[(between["setting"] == "linear x1") & (between["metric"] == "recall")].iloc[0]
    assert (row["dataset_a"], row["dataset_b"]) == DATASETS
    assert row["mean"] == pytest.approx(0.05) and row["ci_low"] < 0.05 < row["ci_high"] and row["ci_low"] > 0


def test_ranking_puts_the_best_auprc_first(clean):
    _, report = clean
    ranking = report.analysis.ranking
    top = ranking[(ranking["dataset"] == "high_medium") & (ranking["rank"] == 1)].iloc[0]
    assert top["setting"] in ("linear x1", "linear x1 + focal loss") and top["n_seeds"] == 3
    assert len(ranking) == 2 * 6  # ratio 0.0 counted once per focal setting, not once per mode


def test_clean_run_warns_only_that_ratio_zero_rows_are_one_run(clean):
    _, report = clean
    assert [w["kind"] for w in report.warnings] == ["scores_missing", "shared_runs"]


def test_missing_failed_degenerate_and_few_seed_results_are_reported(defects):
    manifest, report = defects
    by_kind = {}
    for warning in report.warnings:
        by_kind.setdefault(warning["kind"], []).append(warning)
    assert by_kind["failed"][0]["indices"] == [index_of(manifest, *FAILED)]
    assert by_kind["missing"][0]["indices"] == sorted(index_of(manifest, *key) for key in [MISSING, *SINGLE])
    degenerate = by_kind["degenerate"]
    assert len(degenerate) == 1 and degenerate[0]["indices"] == [index_of(manifest, *DEGENERATE)]
    assert "best epoch 1" in degenerate[0]["message"] and "6 of 50" in degenerate[0]["message"]
    assert by_kind["chance_level"][0]["indices"] == [index_of(manifest, *CHANCE)]
    few = " ".join(w["message"] for w in by_kind["few_seeds"])
    assert "high_medium smote x1 + focal loss (1 seed(s))" in few
    assert "high_medium_low linear x1 + focal loss (2 seed(s))" in few
    single = effect(report, "high_medium", "smote x1 + focal loss", "recall")
    assert single["n"] == 1 and math.isnan(single["ci_low"]) and single["verdict"] == "undetermined"
    markdown = report.markdown.read_text()
    assert "1 seed, no interval" in markdown and "[degenerate]" in markdown


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_figures_are_readable_pngs(clean):
    _, report = clean
    names = sorted(path.name for path in report.figures)
    assert names == ["auprc_by_ratio.png", "precision_by_ratio.png", "precision_recall.png", "recall_by_ratio.png"]
    for path in report.figures:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400, (path, pixels.shape)
        assert pixels.std() > 0.01  # not a blank canvas


def test_html_answers_first_and_embeds_its_figures(clean):
    run_dir, report = clean
    assert report.html == run_dir / "report" / "report.html"
    page = report.html.read_text()
    assert page.index('id="answer"') < page.index('id="effects"') < page.index('id="figures"')
    answer = page[page.index('id="answer"'):page.index('id="effects"')]
    assert "Baseline (3 seed(s))" in answer and "recall at precision ≥ 0.9" in answer
    assert page.count('src="data:image/png;base64,') == 4
    assert "birdnet-analyzer 2.4.0" in page and "tensorflow 2.21.0" in page and "held_out" in page
    markdown = report.markdown.read_text()
    assert "](recall_by_ratio.png)" in markdown and "upsampling_ratios" in markdown
    data = json.loads(report.data.read_text())
    assert {"answer", "effects", "warnings", "ranking", "focal", "datasets", "summary"} <= set(data)


def _app() -> typer.Typer:
    app = typer.Typer()
    report_cli.register(app)
    collect_cli.register(app)
    return app


def test_report_command_returns_effects_as_json(clean):
    run_dir, _ = clean
    result = CliRunner().invoke(_app(), ["report", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    found = [e for e in data["effects"] if e["dataset"] == "high_medium" and e["remedy"] == "linear x1"
             and e["metric"] == "recall"]
    assert len(found) == 1 and found[0]["mean"] == pytest.approx(0.10)
    assert data["html"].endswith("report.html")


def test_collect_builds_the_report_and_includes_effects_and_warnings(defects):
    manifest, _ = defects
    run_dir = manifest.run_dir.path
    result = CliRunner().invoke(_app(), ["collect", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == str(run_dir / "report" / "report.html") and data["effects"]
    assert {"failed", "missing", "degenerate"} <= {w["kind"] for w in data["warnings"]}
    shown = CliRunner().invoke(_app(), ["collect", str(run_dir)])
    assert shown.exit_code == 0 and "report.html" in shown.output


def test_a_run_without_results_still_gets_a_report(small_data, tmp_path):
    sweep = write_sweep(tmp_path, seeds="[1, 2]")
    prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={})
    report = build_report(tmp_path / "run")
    assert report.figures == [] and report.effects["n"].eq(0).all()
    assert {w["kind"] for w in report.warnings} >= {"missing", "few_seeds"}
    assert "No figures: no run has finished yet." in report.html.read_text()


def _collect(run_dir) -> dict:
    result = CliRunner().invoke(_app(), ["collect", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_collect_rebuilds_the_report_only_when_what_it_shows_changed(small_data, tmp_path):
    manifest = build_run(small_data, tmp_path, skip=[MISSING])
    run_dir, html = manifest.run_dir, tmp_path / "run" / "report" / "report.html"
    assert _collect(run_dir.path)["report_rebuilt"]
    built_at = html.stat().st_mtime_ns
    again = _collect(run_dir.path)
    assert not again["report_rebuilt"] and html.stat().st_mtime_ns == built_at
    assert again["warnings"] and again["answer"]  # the kept report still answers
    missing = next(c for c in manifest.runs if (c.dataset, c.upsampling_mode, c.upsampling_ratio, c.focal_loss,
                                                  c.seed) == MISSING)
    path = run_dir.result(missing.run_id)
    path.write_text("{ half a result")  # a skipped file is news to the report
    data = _collect(run_dir.path)
    assert data["report_rebuilt"] and any(w["kind"] == "skipped_file" for w in data["warnings"])
    write_result(run_dir, missing.run_id, record(missing, metrics(missing, DATASETS.index(missing.dataset))))
    data = _collect(run_dir.path)
    assert data["report_rebuilt"] and not {"missing", "skipped_file"} & {w["kind"] for w in data["warnings"]}
    (tmp_path / "run" / "report" / "recall_by_ratio.png").unlink()
    assert _collect(run_dir.path)["report_rebuilt"]
    assert (tmp_path / "run" / "report" / "recall_by_ratio.png").is_file()


def test_a_report_build_that_breaks_off_is_not_taken_for_current(small_data, tmp_path, monkeypatch):
    from hpc_radr.report import render

    manifest = build_run(small_data, tmp_path, skip=[MISSING])
    assert _collect(manifest.run_dir.path)["report_rebuilt"]
    missing = next(c for c in manifest.runs if (c.dataset, c.upsampling_mode, c.upsampling_ratio, c.focal_loss,
                                                  c.seed) == MISSING)
    write_result(manifest.run_dir, missing.run_id, record(missing, metrics(missing, 1)))

    def broken(*args, **kwargs):
        raise RuntimeError("killed while writing the report")

    with monkeypatch.context() as patch:
        patch.setattr(render, "to_html", broken)
        result = CliRunner().invoke(_app(), ["collect", str(manifest.run_dir.path), "--json"])
        assert result.exit_code != 0
    data = _collect(manifest.run_dir.path)
    assert data["report_rebuilt"] and "missing" not in {w["kind"] for w in data["warnings"]}


def test_upsampling_that_added_no_samples_is_named_not_applied_not_an_effect_of_zero(small_data, tmp_path):
    """On a small real set, ratio 0.5 added nothing: the positives already reached int(max(pos, neg) x 0.5)."""
    inert = [(dataset, "smote", 1.0, focal, seed) for dataset in DATASETS for focal in (False, True)
             for seed in (1, 2, 3)]
    manifest = build_run(small_data, tmp_path, inert=inert)
    report = build_report(tmp_path / "run")
    for entry in report.analysis.answer:
        assert [e["remedy"] for e in entry["not_applied"]] == ["smote x1"]  # not "no clear recall gain"
        assert "smote x1" not in [e["remedy"] for e in entry["no_gain"]]
        inert_rows = report.effects[(report.effects["remedy"] == "smote x1")]
        assert inert_rows["p_value"].isna().all() and inert_rows["p_adjusted"].isna().all()  # not in the family
    warning = next(w for w in report.warnings if w["kind"] == "not_applied")
    assert "smote x1" in warning["message"] and "smote x1 + focal loss" in warning["message"]
    assert sorted(warning["indices"]) == sorted(c.index for c in manifest.configurations
                                                if c.upsampling_mode == "smote" and c.upsampling_ratio == 1.0)
    assert "not applied on this data" in report.html.read_text()


def test_runs_that_held_a_gpu_but_trained_on_the_cpu_are_named(small_data, tmp_path):
    manifest = build_run(small_data, tmp_path)
    run_dir = RunDir(tmp_path / "run")
    held = manifest.runs[0]
    record = json.loads(run_dir.result(held.run_id).read_text())
    record["gpus"] = {"SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1", "tensorflow": [], "trained_on": "CPU"}
    write_result(run_dir, held.run_id, {k: v for k, v in record.items() if k not in ("schema", "run_id")})
    report = build_report(tmp_path / "run")
    warning = next(w for w in report.warnings if w["kind"] == "unused_gpu")
    assert held.run_id in warning["message"] and "--gpus-per-task 0" in warning["message"]
    assert warning["indices"] == [c.index for c in manifest.configurations if c.run_id == held.run_id]


HIDDEN_GAIN = {"recall": 0.10, "auprc": 0.03}  # hidden_units 128 against the linear head, in every seed


def test_a_sweep_with_axes_is_compared_with_its_declared_baseline(small_data, tmp_path):
    """hidden units x focal gamma on linear x1: every setting against [baseline] (hidden 0, focal off), the
    gamma duplicates with focal loss off counted once, and the known hidden-units gain found exactly."""
    sweep = tmp_path / "axes.toml"
    sweep.write_text('name = "axes"\n[[datasets]]\nname = "high_medium"\ntiers = ["high", "medium"]\n'
                     '[grid]\nupsampling_modes = ["linear"]\nupsampling_ratios = [1.0]\nfocal_loss = [false, true]\n'
                     'hidden_units = [0, 128]\nfocal_loss_gamma = [2.0, 4.0]\nseeds = [1, 2, 3]\n'
                     '[baseline]\nupsampling_ratio = 1.0\nhidden_units = 0\n[training]\nepochs = 5\n')
    manifest = prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={})
    assert len(manifest.configurations) == 24 and len(manifest.runs) == 18
    for config in manifest.runs:
        values = {m: BASE[m] + SEED_SHIFT[config.seed] for m in BASE}
        if config.settings["hidden_units"] == 128:
            values = {m: v + HIDDEN_GAIN.get(m, 0.0) for m, v in values.items()}
        write_result(RunDir(tmp_path / "run"), config.run_id, record(config, values))
    report = build_report(tmp_path / "run")
    remedies = set(report.effects["remedy"])
    assert remedies == {"linear x1, no focal loss, hidden units 128",
                        *(f"linear x1, focal loss (gamma {g}), hidden units {h}" for g in (2, 4) for h in (0, 128))}
    gain = effect(report, "high_medium", "linear x1, no focal loss, hidden units 128", "recall")
    assert gain["mean"] == pytest.approx(HIDDEN_GAIN["recall"]) and gain["n"] == 3
    same = effect(report, "high_medium", "linear x1, focal loss (gamma 4), hidden units 0", "recall")
    assert same["mean"] == pytest.approx(0.0)
    assert any(w["kind"] == "shared_runs" and "focal_loss_gamma" in w["message"] for w in report.warnings)
    assert sorted(p.name for p in report.figures)[0].startswith("effect_")
    assert ("baseline of the same dataset (upsampling ratio 1, focal loss off, hidden units 0; each setting's "
            "own gamma)") in report.markdown.read_text()
