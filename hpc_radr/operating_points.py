"""Metrics from a run's per-clip scores: average precision, and operating points chosen on validation data.

A clip counts as detected when its score is at or above the threshold (BirdNET's rule). Thresholds are the
distinct scores, so every achievable operating point is considered. Conventions follow scikit-learn, which
BirdNET's own evaluation uses: average precision is sum over thresholds (high to low) of (recall gain) x
precision; precision with nothing detected is 0. Every function also takes clip weights of shape (B, n), the
multiplicities of B bootstrap resamples, and then returns B values: one sort serves every resample.

An operating point for a target is chosen on one set of scores (the validation split) and then *applied* to
another (the test set): what a field team does, who must fix a threshold before seeing new recordings. The same
choice made on the test set itself is optimistic and is reported only beside it, for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpc_radr.results import RunScores


@dataclass(frozen=True)
class Ranked:
    """Scores sorted high to low, grouped by distinct value: ``ends[g]`` is the last sorted position of group g."""

    order: np.ndarray
    positive: np.ndarray
    thresholds: np.ndarray
    ends: np.ndarray


def rank(scores: np.ndarray, positive: np.ndarray) -> Ranked:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ordered = np.asarray(scores, dtype=np.float64)[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    return Ranked(order, np.asarray(positive, dtype=bool)[order], ordered[ends], ends)


def _weights(ranked: Ranked, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.ones((1, len(ranked.order)))
    return np.atleast_2d(weights)[:, ranked.order].astype(np.float64)


def detections(ranked: Ranked, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(true, false) positives at each threshold, high to low: each (B, thresholds)."""
    w = _weights(ranked, weights)
    true = np.cumsum(w * ranked.positive, axis=1)[:, ranked.ends]
    false = np.cumsum(w * ~ranked.positive, axis=1)[:, ranked.ends]
    return true, false


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.full(np.shape(numerator), empty, dtype=np.float64),
                     where=denominator > 0)


def average_precision(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's average_precision_score, per row of ``weights``; NaN where no positive has weight."""
    ranked = rank(scores, positive)
    true, false = detections(ranked, weights)
    total = true[:, -1:]
    recall = _ratio(true, np.broadcast_to(total, true.shape), math.nan)
    precision = _ratio(true, true + false, 0.0)
    gains = np.diff(np.concatenate([np.zeros((len(true), 1)), recall], axis=1), axis=1)
    return np.where(total[:, 0] > 0, np.sum(gains * precision, axis=1), math.nan)


def at_threshold(scores: np.ndarray, positive: np.ndarray, threshold: float,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of detecting score >= threshold, per row of ``weights``."""
    w = np.ones((1, len(scores))) if weights is None else np.atleast_2d(weights).astype(np.float64)
    detected = np.asarray(scores, dtype=np.float64) >= threshold
    positive = np.asarray(positive, dtype=bool)
    hits = w @ (detected & positive)
    return _ratio(hits, w @ positive, math.nan), _ratio(hits, w @ detected, 0.0)


def threshold_for_precision(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The threshold with the most recall at precision >= target (the highest such threshold on ties);
    +inf (nothing detected) when no threshold reaches the target."""
    ranked = rank(scores, positive)
    true, false = (counts[0] for counts in detections(ranked))
    allowed = _ratio(true, true + false, 0.0) >= target
    if not allowed.any():
        return math.inf
    best = np.flatnonzero(allowed & (true == true[allowed].max()))[0]
    return float(ranked.thresholds[best])


def threshold_for_recall(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The threshold with the most precision at recall >= target (the highest such threshold on ties);
    +inf when there is no positive to recall."""
    ranked = rank(scores, positive)
    true, false = (counts[0] for counts in detections(ranked))
    if true[-1] == 0:
        return math.inf
    allowed = true / true[-1] >= target - 1e-12
    precision = _ratio(true, true + false, 0.0)
    best = np.flatnonzero(allowed & (precision == precision[allowed].max()))[0]
    return float(ranked.thresholds[best])


def precision_name(target: float) -> str:
    return f"p{target:g}"


def recall_name(target: float) -> str:
    return f"r{target:g}"


def columns(precision_targets: list[float], recall_targets: list[float]) -> list[str]:
    """The names ``operating_points`` returns, in its order."""
    names = []
    for target in precision_targets:
        name = precision_name(target)
        names += [f"recall_at_{name}", f"precision_at_{name}", f"threshold_at_{name}", f"recall_at_{name}_test_chosen"]
    for target in recall_targets:
        name = recall_name(target)
        names += [f"precision_at_{name}", f"recall_at_{name}", f"threshold_at_{name}",
                  f"precision_at_{name}_test_chosen"]
    return names


def operating_points(scores: RunScores, precision_targets: list[float], recall_targets: list[float]) -> dict:
    """Per target, chosen on the validation scores and applied to the test scores, plus the optimistic value
    chosen on the test set itself. Columns (for p = 0.9): ``recall_at_p0.9`` (test recall at the validation
    threshold), ``precision_at_p0.9`` (the precision that threshold gave on the test set), ``threshold_at_p0.9``,
    ``recall_at_p0.9_test_chosen``; likewise ``precision_at_r0.5`` etc. for recall targets."""
    row: dict[str, float] = {}
    test, truth = scores.test, scores.test_positive
    for target in precision_targets:
        name = precision_name(target)
        chosen = threshold_for_precision(scores.validation, scores.validation_positive, target)
        recall, precision = at_threshold(test, truth, chosen)
        optimistic = at_threshold(test, truth, threshold_for_precision(test, truth, target))[0]
        row |= {f"recall_at_{name}": float(recall[0]), f"precision_at_{name}": float(precision[0]),
                f"threshold_at_{name}": _shown(chosen), f"recall_at_{name}_test_chosen": float(optimistic[0])}
    for target in recall_targets:
        name = recall_name(target)
        chosen = threshold_for_recall(scores.validation, scores.validation_positive, target)
        recall, precision = at_threshold(test, truth, chosen)
        optimistic = at_threshold(test, truth, threshold_for_recall(test, truth, target))[1]
        row |= {f"precision_at_{name}": float(precision[0]), f"recall_at_{name}": float(recall[0]),
                f"threshold_at_{name}": _shown(chosen), f"precision_at_{name}_test_chosen": float(optimistic[0])}
    return row


def _shown(threshold: float) -> float:
    """NaN for "no threshold reached the target" (nothing detected): JSON has no infinity."""
    return threshold if math.isfinite(threshold) else math.nan
