"""BirdNET-Analyzer 2.4's binary ``model.upsampling``, bit for bit, without its quadratic smote (pure numpy).

BirdNET's smote computes, for every synthetic sample, the distance from its anchor positive to every training
sample and sorts all of them: (synthetic samples) x (training samples) x 1024, 173-214 s at 11,000. Its other
modes call ``np.where`` over the labels once per synthetic sample. This module returns the same arrays (values,
dtype, order) and draws the same random numbers, for every mode, ratio and seed.

Why it is exact:

* **Random numbers.** BirdNET's ``upsampling`` and the ``upsample_core`` it calls each create their own
  ``np.random.default_rng(cfg.RANDOM_SEED)``; nothing else reads them and no global generator is used. The core
  generator draws only the anchors (``choice(minority, size)``, once per synthetic sample); the outer one draws,
  per sample, ``uniform`` (linear) or ``choice(neighbours)`` then ``uniform`` (smote), then shuffles the result.
  Both are recreated here from the same seed, so each generator sees BirdNET's sequence of draws (the two never
  interleave on one generator). Where BirdNET draws one value per call, one call here draws them all
  (``choice(minority, size=(count, size))``, ``uniform(0, 1, size=count)``): numpy's generators fill an array
  from the same stream, value after value, as repeated calls do (the tests compare the generators' final states
  too). Smote's draws alternate between two kinds, so they stay one call each; ``choice`` of an array draws
  ``integers(len(array))``, which is called directly. Anchors do not depend on neighbours, so all anchors are
  drawn first and their neighbours searched together (``hpc_radr.birdnet.neighbours``: BirdNET's own
  neighbours, without its quadratic search).
* **Arithmetic.** Every value written is computed by BirdNET's own expression on the same rows (``x[a]``,
  ``np.mean(x[pair], axis=0)``, ``alpha * x[i] + (1 - alpha) * x[j]``, ``x[a] + weight * (x[n] - x[a])``),
  elementwise, for all samples at once; a Python float meets an array as that array's dtype, so the drawn
  weights are cast to it first, as numpy casts BirdNET's. The result holds BirdNET's ``np.vstack`` of the
  training and synthetic rows, permuted by the same shuffle, written straight into place.

Binary classification only (``cfg.BINARY_CLASSIFICATION``, labels of shape (n, 1)): the only mode hpc-radr runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpc_radr.birdnet.neighbours import nearest_neighbours

MODES = ("repeat", "mean", "linear", "smote")
_ROWS_PER_BLOCK = 1_024  # synthetic rows computed at a time: their temporaries stay small


@dataclass
class UpsamplingStats:
    """What one call did: synthetic samples added; for smote, the distinct anchors searched, and how many of them
    (and of the samples drawn from them) needed BirdNET's full distance sort because of ties."""

    synthetic: int = 0
    anchors: int = 0
    fallback_anchors: int = 0
    fallback_samples: int = 0


def upsampling(x: np.ndarray, y: np.ndarray, ratio: float = 0.5, mode: str = "repeat", *, seed: int,
               stats: UpsamplingStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BirdNET 2.4's binary ``model.upsampling(x, y, ratio, mode)`` with ``cfg.RANDOM_SEED = seed``: the same
    arrays; ``stats`` (if given) is filled in. An unknown mode is an error (BirdNET's would only shuffle)."""
    if mode not in MODES:
        raise ValueError(f"unknown upsampling mode {mode!r}; BirdNET's are {', '.join(MODES)}")
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"binary labels of shape (n, 1) expected, got {y.shape}")
    stats = stats if stats is not None else UpsamplingStats()
    outer = np.random.default_rng(seed)  # BirdNET's upsampling(): blends, neighbour choice, shuffle
    core = np.random.default_rng(seed)  # BirdNET's upsample_core(): the anchors

    # BirdNET's arithmetic, on scalars of the same dtype (its size-1 arrays fail in numpy 2.4)
    minority_count = y.sum(axis=0)[0]
    others = len(y) - minority_count
    min_samples = int(max(minority_count, others) * ratio)
    minority = np.where(y == (1 if minority_count < others else 0))[0]
    count = max(0, min_samples - len(minority))
    stats.synthetic = count
    if count == 0:
        indices = np.arange(len(x))
        outer.shuffle(indices)
        return x[indices], y[indices]

    picks = core.choice(minority, size=(count, 1 if mode in ("repeat", "smote") else 2))
    rows: Callable[[slice], np.ndarray]
    if mode == "repeat":
        rows = lambda part: x[picks[part, 0]]  # noqa: E731
    elif mode == "mean":
        rows = lambda part: np.mean(x[picks[part]], axis=1)  # noqa: E731
    elif mode == "linear":
        alpha = outer.uniform(0, 1, size=count)
        first, second = alpha.astype(x.dtype)[:, None], (1 - alpha).astype(x.dtype)[:, None]
        rows = lambda part: first[part] * x[picks[part, 0]] + second[part] * x[picks[part, 1]]  # noqa: E731
    else:
        rows = _smote(x, picks[:, 0], outer, stats)
    indices = np.arange(len(x) + count)
    outer.shuffle(indices)
    return _stacked_in_order(x, rows, count, indices), _stacked_in_order(y, lambda part: y[picks[part, 0]], count,
                                                                         indices)


def _smote(x: np.ndarray, starts: np.ndarray, outer: np.random.Generator,
           stats: UpsamplingStats) -> Callable[[slice], np.ndarray]:
    """BirdNET's smote draws for anchors ``starts``, in its order, and its rows ``x[a] + weight * (x[n] - x[a])``."""
    neighbours, fell_back = nearest_neighbours(x, sorted(set(starts.tolist())))
    stats.anchors, stats.fallback_anchors = len(neighbours), len(fell_back)
    stats.fallback_samples = int(np.isin(starts, list(fell_back)).sum())
    chosen, weights = np.empty(len(starts), dtype=np.intp), np.empty(len(starts))
    for i, start in enumerate(starts.tolist()):
        near = neighbours[start]
        chosen[i] = near[outer.integers(len(near))]  # = outer.choice(near), without choice's checks
        weights[i] = outer.uniform(0, 1)
    cast = weights.astype(x.dtype)[:, None]

    def rows(part: slice) -> np.ndarray:
        base = x[starts[part]]
        found = x[chosen[part]]  # in place: x[n] - x[a], times the weight, plus x[a]
        found -= base
        found *= cast[part]
        found += base
        return found

    return rows


def _stacked_in_order(old: np.ndarray, rows: Callable[[slice], np.ndarray], count: int,
                      indices: np.ndarray) -> np.ndarray:
    """``np.vstack((old, new))[indices]`` for the ``count`` new rows that ``rows(part)`` computes, each row
    written once into its place, a block at a time (no stacked copy, no array of all new rows)."""
    out = np.empty((len(indices), *old.shape[1:]), dtype=np.result_type(old, rows(slice(0, 0))))
    place = np.empty_like(indices)
    place[indices] = np.arange(len(indices))
    out[place[:len(old)]] = old
    for first in range(0, count, _ROWS_PER_BLOCK):
        part = slice(first, min(first + _ROWS_PER_BLOCK, count))
        out[place[len(old) + part.start:len(old) + part.stop]] = rows(part)
    return out
