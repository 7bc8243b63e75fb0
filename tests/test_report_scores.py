"""The report on per-clip scores with known effects: a moved threshold is not a better detector, a real
separation gain is; the bootstrap covers a known effect at about its nominal rate; Holm and BH by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import write_sweep
from scipy.special import expit, ndtr

from hpc_radr import operating_points as op
from hpc_radr.report import build_report
from hpc_radr.report.bootstrap import Bootstrap
from hpc_radr.report.multiplicity import benjamini_hochberg, holm
from hpc_radr.results import RunScores, write_result
from hpc_radr.run_dir import RunDir
from hpc_radr.submission import prepare


def test_holm_and_benjamini_hochberg_match_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, math.nan])
    # Holm: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm(p)[4])
    # BH: 0.005 x4/1 = 0.02, 0.01 x4/2 = 0.02, 0.03 x4/3 = 0.04, 0.04 x4/4 = 0.04 -> running min from the top
    assert benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02]) and math.isnan(benjamini_hochberg(p)[4])


def _scores(latent: np.ndarray, positive: np.ndarray, shift: float, separation: float, noise: np.ndarray,
            ) -> np.ndarray:
    return expit(latent + noise + shift + separation * positive).astype(np.float32)


def test_a_moved_threshold_is_not_a_better_detector_and_a_separation_gain_is(small_data, tmp_path):
    """linear x1 adds 2.0 to every logit (same ranking, more recall at 0.5); smote x1 adds 1.5 to the positives'
    logits only (a better detector). Both seeds' runs share the clips; seeds add their own noise."""
    sweep = write_sweep(tmp_path, modes='["linear", "smote"]', ratios="[0.0, 1.0]", focal="[false]",
                        seeds="[1, 2, 3, 4]", epochs=50, datasets='[[datasets]]\nname = "d"\ntiers = ["high"]\n')
    manifest = prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={})
    rng = np.random.default_rng(7)
    test_positive, val_positive = rng.random(300) < 0.25, rng.random(120) < 0.25
    test_latent = rng.normal(-2.0, 1.0, 300) + 2.0 * test_positive
    val_latent = rng.normal(-2.0, 1.0, 120) + 2.0 * val_positive
    effects = {"linear": (2.0, 0.0), "smote": (0.0, 1.5), "none": (0.0, 0.0)}
    for config in manifest.runs:
        seed_rng = np.random.default_rng(config.seed)
        test_noise, val_noise = seed_rng.normal(0, 0.3, 300), seed_rng.normal(0, 0.3, 120)
        shift, separation = effects["none" if config.upsampling_ratio == 0 else config.upsampling_mode]
        scores = RunScores(_scores(test_latent, test_positive, shift, separation, test_noise), test_positive,
                           _scores(val_latent, val_positive, shift, separation, val_noise), val_positive,
                           "held_out_split")
        recall, precision = op.at_threshold(scores.test, test_positive, 0.5)
        test = {"auprc": float(op.average_precision(scores.test, test_positive)[0]), "auroc": 0.9,
                "precision": float(precision[0]), "recall": float(recall[0]), "f1": 0.5, "precision_opt": 0.5,
                "recall_opt": 0.5, "f1_opt": 0.5, "threshold_opt": 0.5, "tp": 1, "fp": 1, "tn": 1, "fn": 1,
                "n_positive": int(test_positive.sum()), "n_negative": int((~test_positive).sum())}
        after = 60 if config.upsampling_ratio else 20
        write_result(RunDir(tmp_path / "run"), config.run_id, {
            "configuration": config.as_dict(), "evaluation_protocol": "held_out", "test": test,
            "validation_at_best_epoch": {"auprc": 0.8, "auroc": 0.9, "loss": 0.3}, "epochs_run": 30,
            "best_epoch": 20, "timings": {"fit_s": 1.0}, "versions": {"hpc-radr": "test"},
            "sample_counts": {"dataset": {"positive": 25, "negative": 75},
                              "fit_before_upsampling": {"positive": 20, "negative": 60},
                              "fit_after_upsampling": {"positive": after, "negative": 60}},
            "scores": scores.as_record()})
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
