"""Paired bootstrap over test clips and seeds: intervals that include the test set's own sampling.

The t-intervals over seeds treat the test set as fixed; with 24 test positives one clip is 0.04 of recall, and
that uncertainty is not in them. Each resample here draws the test clips with replacement (multiplicities of
every clip) and, independently, the paired seeds with replacement; a comparison's value in a resample is the
mean over the drawn seeds of (metric of the remedy's run - metric of the reference run), both computed on the
same drawn clips. The interval is the 2.5 and 97.5 percentiles over resamples; the two-sided p-value is
2 x the smaller share of resamples on either side of 0 (with the usual +1, so it is never 0).

Every comparison uses the same resamples: the same clip multiplicities, and the same uniform numbers to draw
seed positions (mapped onto the k seeds a comparison has), so comparisons sharing a reference are correlated
as the data are. Thresholds chosen on validation data are part of each run and are not re-chosen: the seed
draw carries that variation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hpc_radr import operating_points as op
from hpc_radr.results import RunScores

DEFAULT_THRESHOLD = 0.5  # BirdNET's
_CHUNK_ELEMENTS = 4_000_000  # resamples x clips per step: bounds the float64 temporaries to about 32 MB each


@dataclass
class Bootstrap:
    """The resamples of one report, and the per-run metric values over them (computed once per run)."""

    clips: int
    resamples: int
    seed: int
    max_seeds: int
    precision_targets: list[float]
    recall_targets: list[float]
    _weights: np.ndarray = field(init=False, repr=False)
    _seed_draws: np.ndarray = field(init=False, repr=False)
    _values: dict[str, dict[str, np.ndarray]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._weights = np.zeros((self.resamples, self.clips), dtype=np.uint16)  # a clip drawn > 65535 times: no
        step = max(1, _CHUNK_ELEMENTS // max(self.clips, 1))
        for first in range(0, self.resamples, step):
            rows = min(step, self.resamples - first)
            picks = rng.integers(0, self.clips, size=(rows, self.clips)) + self.clips * np.arange(rows)[:, None]
            self._weights[first:first + rows] = np.bincount(picks.ravel(), minlength=rows * self.clips).reshape(
                rows, self.clips)
        self._seed_draws = rng.random((self.resamples, max(self.max_seeds, 1)))

    def metrics(self) -> list[str]:
        return ["auprc", *(f"recall_at_{op.precision_name(p)}" for p in self.precision_targets),
                *(f"precision_at_{op.recall_name(r)}" for r in self.recall_targets), "recall", "precision"]

    def run_values(self, run_id: str, scores: RunScores) -> dict[str, np.ndarray]:
        """Each metric of one run over every resample of the test clips."""
        if run_id not in self._values:
            self._values[run_id] = self._compute(scores)
        return self._values[run_id]

    def _compute(self, scores: RunScores) -> dict[str, np.ndarray]:
        test, truth = scores.test, scores.test_positive
        thresholds: dict[str, tuple[float, Callable]] = {"recall": (DEFAULT_THRESHOLD, _recall),
                                                          "precision": (DEFAULT_THRESHOLD, _precision)}
        for p in self.precision_targets:
            chosen = op.threshold_for_precision(scores.validation, scores.validation_positive, p)
            thresholds[f"recall_at_{op.precision_name(p)}"] = (chosen, _recall)
        for r in self.recall_targets:
            chosen = op.threshold_for_recall(scores.validation, scores.validation_positive, r)
            thresholds[f"precision_at_{op.recall_name(r)}"] = (chosen, _precision)
        values: dict[str, list[np.ndarray]] = {name: [] for name in self.metrics()}
        step = max(1, _CHUNK_ELEMENTS // max(self.clips, 1))
        for first in range(0, self.resamples, step):
            weights = self._weights[first:first + step]
            values["auprc"].append(op.average_precision(test, truth, weights))
            for name, (threshold, pick) in thresholds.items():
                values[name].append(pick(op.at_threshold(test, truth, threshold, weights)))
        return {name: np.concatenate(parts) for name, parts in values.items()}

    def paired(self, left: list[tuple[str, RunScores]], right: list[tuple[str, RunScores]], metric: str) -> dict:
        """Interval and p-value of mean(left - right) over paired seeds; lists hold (run_id, scores) per seed,
        in the same seed order."""
        if not left:
            return _undefined("no paired seeds with scores")
        differences = np.stack([self.run_values(a, sa)[metric] - self.run_values(b, sb)[metric]
                                for (a, sa), (b, sb) in zip(left, right, strict=True)], axis=1)  # (B, k)
        k = differences.shape[1]
        positions = np.minimum((self._seed_draws[:, :k] * k).astype(int), k - 1)
        draws = np.take_along_axis(differences, positions, axis=1)
        defined = ~np.isnan(draws).all(axis=1)  # a resample without positives leaves recall undefined
        means = np.nanmean(draws[defined], axis=1)
        if len(means) == 0:
            return _undefined("the metric is undefined in every resample")
        low, high = np.percentile(means, [2.5, 97.5])
        below, above = int(np.sum(means <= 0)), int(np.sum(means >= 0))
        p_value = min(1.0, 2 * (min(below, above) + 1) / (len(means) + 1))
        return {"boot_low": float(low), "boot_high": float(high), "p_value": p_value, "p_source": "bootstrap"}


def _recall(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return pair[0]


def _precision(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return pair[1]


def _undefined(why: str) -> dict:
    return {"boot_low": math.nan, "boot_high": math.nan, "p_value": math.nan, "p_source": why}
