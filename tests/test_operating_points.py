"""Per-clip scores kept in every result, and the metrics computed from them after the sweep.

The kept scores must reproduce what BirdNET's own evaluation recorded (so any metric computed later is about
the same predictions); the metric functions must agree with scikit-learn, which BirdNET's evaluation uses;
operating points must be chosen on validation scores only.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score

from hpc_radr import operating_points as op
from hpc_radr.collect import collect
from hpc_radr.results import RunScores, run_scores


def _results(run_dir) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (run_dir / "results").glob("*.json")}


def test_kept_scores_reproduce_birdnets_recorded_test_metrics(trained_run):
    for run_id, record in _results(trained_run).items():
        scores = run_scores(record)
        assert scores is not None, run_id
        test = record["test"]
        assert len(scores.test) == test["n_positive"] + test["n_negative"]
        assert int(scores.test_positive.sum()) == test["n_positive"]
        assert op.average_precision(scores.test, scores.test_positive)[0] == pytest.approx(test["auprc"], abs=1e-12)
        recall, precision = op.at_threshold(scores.test, scores.test_positive, 0.5)
        assert recall[0] == pytest.approx(test["recall"], abs=1e-12), run_id
        assert precision[0] == pytest.approx(test["precision"], abs=1e-12), run_id
        counts = record["sample_counts"]["validation"]
        assert scores.validation_source == "held_out_split"
        assert len(scores.validation) == counts["positive"] + counts["negative"]
        assert int(scores.validation_positive.sum()) == counts["positive"]


def test_scores_survive_their_encoding_exactly():
    rng = np.random.default_rng(3)
    scores = RunScores(rng.random(101, dtype=np.float32), rng.random(101) < 0.2, rng.random(7, dtype=np.float32),
                       np.array([1, 0, 0, 1, 0, 0, 0], bool), "held_out_split")
    back = run_scores({"scores": json.loads(json.dumps(scores.as_record()))})
    assert np.array_equal(back.test, scores.test) and back.test.dtype == np.float32
    assert np.array_equal(back.test_positive, scores.test_positive)
    assert np.array_equal(back.validation, scores.validation)
    assert np.array_equal(back.validation_positive, scores.validation_positive)
    broken = scores.as_record() | {"test_positive": scores.as_record()["validation_positive"]}
    assert run_scores({"scores": broken}) is None  # lengths disagree: no metric from it
    assert run_scores({}) is None


@pytest.mark.parametrize("n", [8, 60, 400])
def test_metrics_agree_with_scikit_learn_with_ties_and_resample_weights(n):
    rng = np.random.default_rng(n)
    for _ in range(30):
        positive = rng.random(n) < 0.3
        positive[0] = True
        scores = np.round(rng.random(n) + 0.4 * positive, 1)  # rounded: many tied scores
        assert op.average_precision(scores, positive)[0] == pytest.approx(average_precision_score(positive, scores))
        weights = rng.multinomial(n, np.full(n, 1 / n), size=4)
        for row, counts in enumerate(weights):
            clips = np.repeat(np.arange(n), counts)
            expected = average_precision_score(positive[clips], scores[clips]) if positive[clips].any() else math.nan
            assert op.average_precision(scores, positive, weights)[row] == pytest.approx(expected, nan_ok=True)
            recall, precision = op.at_threshold(scores, positive, 0.6, weights)
            if positive[clips].any():
                assert recall[row] == pytest.approx(recall_score(positive[clips], scores[clips] >= 0.6))
            assert precision[row] == pytest.approx(
                precision_score(positive[clips], scores[clips] >= 0.6, zero_division=0))


def test_threshold_for_a_precision_target_is_the_most_recall_that_keeps_it():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([1, 1, 0, 1, 1, 0, 1], bool)
    # detecting >= 0.6: 4 of 5 positives, precision 4/5; >= 0.4: 5/7 < 0.8
    assert op.threshold_for_precision(scores, positive, 0.8) == 0.6
    assert op.threshold_for_precision(scores, positive, 1.0) == 0.9
    assert op.threshold_for_precision(scores, ~positive & False, 0.5) == math.inf  # no positive: unreachable
    # the most precision with recall >= 0.6 (3 of 5): >= 0.7 gives 3/4, >= 0.6 gives 4/5
    assert op.threshold_for_recall(scores, positive, 0.6) == 0.6
    assert op.at_threshold(scores, positive, math.inf) == (np.array([0.0]), np.array([0.0]))


def test_operating_points_are_chosen_on_validation_and_applied_to_the_test_set():
    validation = np.array([0.9, 0.8, 0.7, 0.3])
    validation_positive = np.array([1, 1, 0, 1], bool)  # precision >= 0.9 only down to 0.8
    test = np.array([0.85, 0.75, 0.72, 0.65, 0.2])
    test_positive = np.array([1, 0, 1, 1, 0], bool)
    row = op.operating_points(RunScores(test, test_positive, validation, validation_positive, "held_out_split"),
                              [0.9], [0.5])
    assert row["threshold_at_p0.9"] == 0.8
    assert row["recall_at_p0.9"] == pytest.approx(1 / 3)  # on the test set only 0.85 is at or above 0.8
    assert row["precision_at_p0.9"] == 1.0
    assert row["recall_at_p0.9_test_chosen"] == 1 / 3  # on the test set itself: >= 0.85 (1/1) is all that holds
    assert list(row) == op.columns([0.9], [0.5])


def test_collect_carries_the_operating_points_and_an_old_result_still_collects(trained_run, tmp_path):
    run_dir = shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    old = next(iter(sorted((run_dir / "results").glob("*.json"))))
    record = json.loads(old.read_text())
    del record["scores"]  # as the previous version wrote it
    old.write_text(json.dumps(record))
    table = collect(run_dir).table
    assert {"recall_at_p0.9", "precision_at_r0.5", "threshold_at_p0.9", "recall_at_p0.9_test_chosen"} <= set(table)
    kept = table[table["run_id"] != old.stem]
    assert kept["scores_kept"].all() and kept["recall_at_p0.9"].between(0, 1).all()
    older = table[table["run_id"] == old.stem]
    assert len(older) and (~older["scores_kept"].astype(bool)).all() and older["recall_at_p0.9"].isna().all()
    assert older["state"].eq("completed").all() and older["auprc"].notna().all()
