"""The report on per-clip scores with known effects: a moved threshold is not a better detector, a real
separation gain is; the bootstrap covers a known effect at about its nominal rate; Holm and BH by hand."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from conftest import write_sweep
from scipy.special import expit, ndtr
from typer.testing import CliRunner

from hpc_radr import operating_points as op
from hpc_radr.cli import app
from hpc_radr.manifest import Manifest
from hpc_radr.report import build_report
from hpc_radr.report.bootstrap import Bootstrap
from hpc_radr.report.multiplicity import benjamini_hochberg, holm
from hpc_radr.results import RunScores, run_scores, write_result
from hpc_radr.run_dir import RunDir
from hpc_radr.submission import prepare
from hpc_radr.sweep import Configuration


def test_holm_and_benjamini_hochberg_match_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, math.nan])
    # Holm: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm(p)[4])
    # BH: 0.005 x4/1 = 0.02, 0.01 x4/2 = 0.02, 0.03 x4/3 = 0.04, 0.04 x4/4 = 0.04 -> running min from the top
    assert benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02]) and math.isnan(benjamini_hochberg(p)[4])


def _scores(latent: np.ndarray, positive: np.ndarray, shift: float, separation: float, noise: np.ndarray,
            ) -> np.ndarray:
    return expit(latent + noise + shift + separation * positive).astype(np.float32)


def write_scored_run(small_data, folder, effects: Callable[[Configuration], tuple[float, float]],
                     without_scores: Callable[[Configuration], bool] = lambda config: False, **sweep) -> Manifest:
    """A run directory whose results carry per-clip scores with known effects: ``effects(config)`` is the
    (shift of every logit, separation added to the positives' logits) of a run. Every run scores the same test
    clips; each seed adds its own noise, the same in all its runs. ``without_scores`` runs are written as the
    previous version did."""
    manifest = prepare(write_sweep(folder, **sweep), folder / "run", small_data, None, dedupe=True, overrides={})
    rng = np.random.default_rng(7)
    test_positive, val_positive = rng.random(300) < 0.25, rng.random(120) < 0.25
    test_latent = rng.normal(-2.0, 1.0, 300) + 2.0 * test_positive
    val_latent = rng.normal(-2.0, 1.0, 120) + 2.0 * val_positive
    for config in manifest.runs:
        seed_rng = np.random.default_rng(config.seed)  # the same noise in every run of a seed
        test_noise, val_noise = seed_rng.normal(0, 0.3, 300), seed_rng.normal(0, 0.3, 120)
        shift, separation = effects(config)
        scores = RunScores(_scores(test_latent, test_positive, shift, separation, test_noise), test_positive,
                           _scores(val_latent, val_positive, shift, separation, val_noise), val_positive,
                           "held_out_split")
        recall, precision = op.at_threshold(scores.test, test_positive, 0.5)
        test = {"auprc": float(op.average_precision(scores.test, test_positive)[0]), "auroc": 0.9,
                "precision": float(precision[0]), "recall": float(recall[0]), "f1": 0.5, "precision_opt": 0.5,
                "recall_opt": 0.5, "f1_opt": 0.5, "threshold_opt": 0.5, "tp": 1, "fp": 1, "tn": 1, "fn": 1,
                "n_positive": int(test_positive.sum()), "n_negative": int((~test_positive).sum())}
        after = 60 if config.upsampling_ratio else 20
        write_result(RunDir(folder / "run"), config.run_id, {
            "configuration": config.as_dict(), "evaluation_protocol": "held_out", "test": test,
            "validation_at_best_epoch": {"auprc": 0.8, "auroc": 0.9, "loss": 0.3}, "epochs_run": 30,
            "best_epoch": 20, "timings": {"fit_s": 1.0}, "versions": {"hpc-radr": "test"},
            "sample_counts": {"dataset": {"positive": 25, "negative": 75},
                              "fit_before_upsampling": {"positive": 20, "negative": 60},
                              "fit_after_upsampling": {"positive": after, "negative": 60}},
            **({} if without_scores(config) else {"scores": scores.as_record()})})
    return manifest


ONE_DATASET = '[[datasets]]\nname = "d"\ntiers = ["high"]\n'


def test_a_moved_threshold_is_not_a_better_detector_and_a_separation_gain_is(small_data, tmp_path):
    """linear x1 adds 2.0 to every logit (same ranking, more recall at 0.5); smote x1 adds 1.5 to the positives'
    logits only (a better detector). Every run shares the clips; seeds add their own noise."""
    effects = {"linear": (2.0, 0.0), "smote": (0.0, 1.5), "none": (0.0, 0.0)}
    write_scored_run(small_data, tmp_path, lambda c: effects["none" if c.upsampling_ratio == 0 else c.upsampling_mode],
                     modes='["linear", "smote"]', ratios="[0.0, 1.0]", focal="[false]", seeds="[1, 2, 3, 4]",
                     epochs=50, datasets=ONE_DATASET)
    report = build_report(tmp_path / "run")
    rows = report.effects.set_index(["remedy", "metric"])
    assert rows.loc[("linear x1", "recall"), "mean"] > 0.2  # much more recall at 0.5 ...
    assert rows.loc[("linear x1", "auprc"), "mean"] == pytest.approx(0, abs=1e-12)  # ... from the same ranking
    assert rows.loc[("linear x1", "recall_at_p0.9"), "mean"] == pytest.approx(0, abs=1e-12)
    assert rows.loc[("smote x1", "auprc"), "boot_low"] > 0 and rows.loc[("smote x1", "recall_at_p0.9"), "mean"] > 0
    assert (report.effects["p_source"] == "bootstrap").all()
    verdicts = {entry["remedy"]: verdict for answer in report.analysis.answer for verdict in
                ("detects_better", "threshold_only", "no_gain") for entry in answer[verdict]}
    assert verdicts == {"linear x1": "threshold_only", "smote x1": "detects_better"}
    assert "recall_at_p0.9_by_ratio.png" in [path.name for path in report.figures]


def test_bootstrap_intervals_cover_a_known_effect_at_about_their_nominal_rate():
    """Recall at threshold 0.5 (logit 0) of positives with logits N(mu + seed shift, 1 + run noise): the true
    remedy-minus-baseline effect is known in closed form; each draw is a new test set and new seeds."""
    base_mu, remedy_mu, seed_sd, noise_sd, seeds = 0.5, 0.9, 0.1, 0.3, 5
    spread = math.sqrt(1 + noise_sd ** 2 + seed_sd ** 2)
    truth = float(ndtr(remedy_mu / spread) - ndtr(base_mu / spread))
    rng = np.random.default_rng(11)
    covered, draws = 0, 150
    for _ in range(draws):
        n = 200
        positive = np.ones(n, bool)
        clips = rng.normal(0, 1, n)
        boot = Bootstrap(n, 400, int(rng.integers(1 << 30)), seeds, [0.9], [0.5])
        left, right = [], []
        for seed in range(seeds):
            shift = rng.normal(0, seed_sd)
            for mu, out in ((remedy_mu, left), (base_mu, right)):
                scores = expit(clips + mu + shift + rng.normal(0, noise_sd, n))
                out.append((f"{mu}-{seed}", RunScores(scores, positive, scores[:10], positive[:10], "held_out_split")))
        found = boot.paired(left, right, "recall")
        covered += found["boot_low"] <= truth <= found["boot_high"]
    assert 0.88 <= covered / draws <= 0.995, covered / draws


COVERAGE_CLIPS, COVERAGE_VALIDATION, COVERAGE_PREVALENCE = 300, 600, 0.3
COVERAGE_SEPARATION, COVERAGE_GAIN, COVERAGE_SEED_SD, COVERAGE_NOISE_SD = 1.5, 0.6, 0.2, 0.3


def _coverage_clips(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    positive = rng.random(n) < COVERAGE_PREVALENCE
    return positive, rng.normal(0, 1, n) + COVERAGE_SEPARATION * positive


def _coverage_pair(rng: np.random.Generator, positive: np.ndarray, latent: np.ndarray) -> tuple[RunScores, ...]:
    """A remedy's run and the baseline's of one seed on the same test clips: the remedy adds COVERAGE_GAIN to the
    positives' logits; the seed shifts both; each run has its own noise and its own validation split."""
    shift = rng.normal(0, COVERAGE_SEED_SD)

    def run(gain: float) -> RunScores:
        val_positive, val_latent = _coverage_clips(rng, COVERAGE_VALIDATION)

        def score(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
            return expit(x + gain * pos + shift + rng.normal(0, COVERAGE_NOISE_SD, len(x))).astype(np.float32)

        return RunScores(score(latent, positive), positive, score(val_latent, val_positive), val_positive,
                         "held_out_split")

    return run(COVERAGE_GAIN), run(0.0)


def _observed(scores: RunScores, metric: str) -> float:
    if metric == "auprc":
        return float(op.average_precision(scores.test, scores.test_positive)[0])
    return op.operating_points(scores, [0.9], [0.5])["recall_at_p0.9"]


def test_bootstrap_intervals_of_auprc_and_recall_at_a_fixed_precision_cover_the_known_effect():
    """Binormal scores, a remedy that separates the classes better. AUPRC and recall at precision >= 0.9 (the
    threshold chosen on each run's validation split) have no closed form at a finite test set, so the true effect
    is the mean of 3000 independent (test set, seed) replicates; then each of 120 draws is a new test set and 5
    new seeds, and its 95 % interval must hold that truth about 95 % of the time."""
    metrics = ("auprc", "recall_at_p0.9")
    truth_rng = np.random.default_rng(5)
    replicates = {metric: [] for metric in metrics}
    for _ in range(3000):
        remedy, baseline = _coverage_pair(truth_rng, *_coverage_clips(truth_rng, COVERAGE_CLIPS))
        for metric in metrics:
            replicates[metric].append(_observed(remedy, metric) - _observed(baseline, metric))
    truth = {metric: float(np.mean(values)) for metric, values in replicates.items()}
    assert truth["auprc"] > 0.05 and truth["recall_at_p0.9"] > 0.1  # a real effect, not a test of zero
    rng = np.random.default_rng(6)
    covered, draws, seeds = dict.fromkeys(metrics, 0), 120, 5
    for _ in range(draws):
        positive, latent = _coverage_clips(rng, COVERAGE_CLIPS)
        boot = Bootstrap(COVERAGE_CLIPS, 300, int(rng.integers(1 << 30)), seeds, [0.9], [0.5])
        pairs = [_coverage_pair(rng, positive, latent) for _ in range(seeds)]
        left = [(f"remedy-{k}", remedy) for k, (remedy, _) in enumerate(pairs)]
        right = [(f"baseline-{k}", baseline) for k, (_, baseline) in enumerate(pairs)]
        for metric in metrics:
            found = boot.paired(left, right, metric)
            covered[metric] += found["boot_low"] <= truth[metric] <= found["boot_high"]
    for metric in metrics:
        assert 0.87 <= covered[metric] / draws <= 0.995, (metric, covered[metric] / draws)


TWO_SCORED = '[[datasets]]\nname = "a"\ntiers = ["high", "medium"]\n\n[[datasets]]\nname = "b"\ntiers = ["high"]\n'


def test_focal_and_dataset_comparisons_get_the_bootstrap_each_family_adjusted_on_its_own(small_data, tmp_path):
    """Focal loss adds 1.0 to the positives' logits and dataset b takes 1.0 from them: both better detectors. The
    focal and dataset tables carry the paired bootstrap like the remedies, Holm-adjusted within each table."""
    write_scored_run(small_data, tmp_path, lambda c: (0.0, float(c.focal_loss) - float(c.dataset == "b")),
                     modes='["linear"]', ratios="[0.0, 1.0]", focal="[false, true]", seeds="[1, 2, 3, 4]",
                     epochs=50, datasets=TWO_SCORED)
    report = build_report(tmp_path / "run")
    focal, between = report.analysis.focal, report.analysis.datasets
    assert len(focal) == 2 * 2 * 5 and len(between) == 2 * 2 * 5  # (datasets or settings) x 5 metrics
    for frame in (focal, between):
        assert (frame["p_source"] == "bootstrap").all() and (frame["boot_high"] > frame["boot_low"]).all()
        assert frame["p_adjusted"].to_numpy() == pytest.approx(holm(frame["p_value"].to_numpy()))
        auprc = frame[frame["metric"] == "auprc"]
        assert (auprc["boot_low"] > 0).all() and auprc["significant"].all(), auprc
        assert (frame["seeds_needed"] >= 2).all()
    markdown = report.markdown.read_text()
    focal_part = markdown[markdown.index("## Focal loss on vs off"):markdown.index("## Ranking per dataset")]
    assert "bootstrap CI" in focal_part and "over the 20 comparisons of this table" in focal_part
    assert "## Datasets compared" in markdown and "### a minus b" in markdown
    collected = CliRunner().invoke(app, ["collect", str(tmp_path / "run"), "--json"])
    assert collected.exit_code == 0, collected.output
    data = json.loads(collected.stdout)  # strict JSON: NaN is null
    assert all(row["boot_low"] is not None and row["p_adjusted"] is not None for row in data["focal"])
    assert all(row["boot_low"] is not None for row in data["datasets"])


def test_targets_given_after_the_sweep_are_recomputed_from_the_kept_scores(small_data, tmp_path):
    """`report`/`collect --precision-target 0.8 --recall-target 0.7` replace the sweep file's targets without
    retraining; seed 4's results were written without scores (the previous version): their metrics are missing."""
    write_scored_run(small_data, tmp_path, lambda c: (0.0, 1.5 * (c.upsampling_ratio > 0)),
                     without_scores=lambda c: c.seed == 4, modes='["smote"]', ratios="[0.0, 1.0]", focal="[false]",
                     seeds="[1, 2, 3, 4]", epochs=50, datasets=ONE_DATASET)
    run_dir = tmp_path / "run"
    targets = ["--precision-target", "0.8", "--recall-target", "0.7"]
    built = CliRunner().invoke(app, ["report", str(run_dir), *targets, "--json"])
    assert built.exit_code == 0, built.output
    data = json.loads(built.stdout)
    assert {e["metric"] for e in data["effects"]} == {"auprc", "recall_at_p0.8", "precision_at_r0.7", "recall",
                                                      "precision"}
    assert data["provenance"]["analysis_overrides"] == {"precision_targets": [0.8], "recall_targets": [0.7]}
    assert "scores_missing" in {w["kind"] for w in data["warnings"]}
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "recall at precision ≥ 0.8" in markdown and "not taken from the sweep file's [analysis]" in markdown
    assert "recall_at_p0.8_by_ratio.png" in [name.rsplit("/", 1)[-1] for name in data["figures"]]

    collected = CliRunner().invoke(app, ["collect", str(run_dir), *targets, "--json"])
    assert collected.exit_code == 0, collected.output
    rows = json.loads(collected.stdout)["rows"]
    assert len(rows) == 8 and all("recall_at_p0.9" not in row for row in rows)
    for row in rows:
        scores = run_scores(json.loads(RunDir(run_dir).result(row["run_id"]).read_text()))
        if row["seed"] == 4:
            assert scores is None and row["scores_kept"] is False and row["state"] == "completed"
            assert row["recall_at_p0.8"] is None and row["precision_at_r0.7"] is None and row["auprc"] is not None
            continue
        expected = op.operating_points(scores, [0.8], [0.7])
        assert row["scores_kept"] is True and row["recall_at_p0.8"] == pytest.approx(expected["recall_at_p0.8"])
        assert row["precision_at_r0.7"] == pytest.approx(expected["precision_at_r0.7"])
        assert row["threshold_at_p0.8"] == pytest.approx(expected["threshold_at_p0.8"])

    again = json.loads(CliRunner().invoke(app, ["collect", str(run_dir), "--json"]).stdout)
    assert again["report_rebuilt"] and "recall_at_p0.9" in again["rows"][0]  # the sweep file's targets again
    assert "recall_at_p0.8" not in again["rows"][0]


@pytest.mark.parametrize("command", ["report", "collect"])
@pytest.mark.parametrize(("given", "said"), [
    (["--precision-target", "1.5"], "targets must lie strictly between 0 and 1, got 1.5"),
    (["--recall-target", "0"], "targets must lie strictly between 0 and 1, got 0.0"),
    (["--precision-target", "0.8", "--precision-target", "0.8"], "targets must not repeat"),
])
def test_a_bad_target_is_refused_in_one_line_before_anything_is_read(small_data, tmp_path, command, given, said):
    prepare(write_sweep(tmp_path), tmp_path / "run", small_data, None, dedupe=True, overrides={})
    result = CliRunner().invoke(app, [command, str(tmp_path / "run"), *given])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: invalid analysis setting:") and said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "report").exists() and not (tmp_path / "run" / "results.csv").exists()
