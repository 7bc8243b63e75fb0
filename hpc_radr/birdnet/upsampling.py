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
  Both are recreated here from the same seed and called with the same arguments in the same order, so each
  generator sees BirdNET's sequence of calls (the two never interleave on one generator). Anchors do not depend
  on neighbours, so all anchors are drawn first and their neighbours searched together.
* **Arithmetic.** Every value written is computed by BirdNET's own expression on the same rows (``x[a]``,
  ``np.mean(x[pair], axis=0)``, ``alpha * x[i] + (1 - alpha) * x[j]``, ``x[a] + weight * (x[n] - x[a])``),
  stacked with the same ``np.vstack`` and permuted by the same shuffle.
* **Neighbours.** BirdNET's neighbours of anchor ``a`` are ``argsort(d)[1:6]`` with
  ``d = np.sqrt(np.sum((x - x[a]) ** 2, axis=1))``. Row ``j`` of ``d`` depends only on rows ``j`` and ``a`` (numpy
  sums each row of a C-contiguous array alone, in one order; the tests check it), so BirdNET's formula on a subset
  of rows gives the same values. If the values at sorted positions 1..5 each occur
  once in ``d``, every correct sort puts the same elements there (with ties, numpy's unstable sort decides, on the
  whole array). So: float64 matrix products give every squared distance with a proven error bound; with the
  error bound of BirdNET's own float computation this gives an interval ``[lo_j, hi_j]`` that holds ``d_j``.
  With ``T`` the 6th smallest ``hi``, at least 6 elements have ``d <= T``, so all of sorted positions 0..5, and
  everything tied with them, lie in ``C = {j: lo_j <= T}``. BirdNET's formula on ``C`` then gives their values,
  ranks and ties exactly. When a tie touches positions 1..5 (duplicate rows, tied distances), or the data lies
  outside the range the bounds cover (not float32/float64, not C-contiguous, non-finite, near overflow), the
  anchor falls back to BirdNET's full computation; that is counted. Sorting ``d`` is deterministic, so each
  distinct anchor is searched once and its neighbours reused.

Binary classification only (``cfg.BINARY_CLASSIFICATION``, labels of shape (n, 1)): the only mode hpc-radr runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("repeat", "mean", "linear", "smote")
NEIGHBOURS = 5  # BirdNET's k in smote
_BLOCK_ELEMENTS = 1 << 21  # anchors x samples per matrix product: 16 MB of float64 per temporary


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
    size = 1 if mode in ("repeat", "smote") else 2
    anchors = [core.choice(minority, size=size) for _ in range(min_samples - len(minority))]
    stats.synthetic = len(anchors)

    x_new: list[np.ndarray] = []
    if mode == "repeat":
        x_new = [x[pick[0]] for pick in anchors]
    elif mode == "mean":
        x_new = [np.mean(x[pick], axis=0) for pick in anchors]
    elif mode == "linear":
        for pick in anchors:
            alpha = outer.uniform(0, 1)
            x_new.append(alpha * x[pick[0]] + (1 - alpha) * x[pick[1]])
    else:
        starts = [int(pick[0]) for pick in anchors]
        neighbours, fell_back = nearest_neighbours(x, sorted(set(starts)))
        stats.anchors, stats.fallback_anchors = len(neighbours), len(fell_back)
        stats.fallback_samples = sum(start in fell_back for start in starts)
        for start in starts:
            neighbour = outer.choice(neighbours[start])
            diff = x[neighbour] - x[start]
            weight = outer.uniform(0, 1)
            x_new.append(x[start] + weight * diff)
    y_new = [y[pick[0]] for pick in anchors]

    if len(x_new) > 0:
        x = np.vstack((x, np.array(x_new)))
        y = np.vstack((y, np.array(y_new)))
    indices = np.arange(len(x))
    outer.shuffle(indices)
    return x[indices], y[indices]


def birdnet_neighbours(x: np.ndarray, anchor: int, k: int = NEIGHBOURS) -> np.ndarray:
    """BirdNET's own neighbour search for one anchor: distances to all samples, full sort."""
    distances = np.sqrt(np.sum((x - x[anchor]) ** 2, axis=1))
    return np.argsort(distances)[1 : k + 1]


def nearest_neighbours(x: np.ndarray, anchors: list[int], k: int = NEIGHBOURS,
                       ) -> tuple[dict[int, np.ndarray], set[int]]:
    """``birdnet_neighbours(x, a, k)`` for each anchor, and the anchors that needed it: the others come from
    matrix products and BirdNET's formula on the few candidates the error bounds leave (see the module)."""
    found: dict[int, np.ndarray] = {}
    fell_back: set[int] = set()
    bounds = _Bounds.of(x)
    if bounds is None:
        return {a: birdnet_neighbours(x, a, k) for a in anchors}, set(anchors)
    kept = min(len(x), k + 1)  # sorted positions 0..k, position 0 being (normally) the anchor itself
    block = max(1, _BLOCK_ELEMENTS // len(x))
    for first in range(0, len(anchors), block):
        rows = anchors[first:first + block]
        lo, hi = bounds.distance_intervals(rows)
        limit = np.partition(hi, kept - 1, axis=1)[:, kept - 1]
        for row, anchor in enumerate(rows):
            candidates = np.flatnonzero(lo[row] <= limit[row])
            exact = np.sqrt(np.sum((x[candidates] - x[anchor]) ** 2, axis=1))  # BirdNET's formula
            order = np.argsort(exact)
            ranked = exact[order[:kept + 1]]
            # positions 1..kept-1 must each hold a value found once: strictly above its predecessor and successor
            if np.all(ranked[1:] > ranked[:-1]):
                found[anchor] = candidates[order[1:kept]]
            else:
                found[anchor] = birdnet_neighbours(x, anchor, k)
                fell_back.add(anchor)
    return found, fell_back


@dataclass(frozen=True)
class _Bounds:
    """Intervals that provably hold BirdNET's float distances, from float64 matrix products.

    For float64 rows ``w`` (exact copies of ``x``), ``|w_a|^2 + |w_j|^2 - 2 w_a.w_j`` is the exact squared
    distance ``s`` up to ``4 gamma64(dim + 2) (|w_a|^2 + |w_j|^2)`` (Higham's dot-product bound: any summation
    order, FMA or not) plus ``4 dim`` x float64's smallest normal number (underflow). BirdNET's
    ``sqrt(sum((x_j - x_a) ** 2))`` in ``x``'s dtype rounds each difference and square once, each term at most
    ``dim - 1`` times in any summation tree, and the root once: its sum lies within ``gamma(dim + 2) s`` of ``s``,
    plus ``dim`` x the smallest normal number for squares that underflow; ``gamma(n) = n u / (1 - n u)``, ``u``
    the dtype's unit roundoff. Each bound is used twice over, which also covers the rounding of this arithmetic.
    Valid without overflow: float32 or float64, finite, ``|x| <= sqrt(max / (8 dim))``; and C-contiguous, so that
    numpy sums each row of BirdNET's temporary as it sums the same row of a subset."""

    wide: np.ndarray
    norms: np.ndarray
    gram_relative: float
    gram_absolute: float
    relative: float
    absolute: float
    rounding: float

    @classmethod
    def of(cls, x: np.ndarray) -> _Bounds | None:
        if x.ndim != 2 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous or len(x) == 0:
            return None
        info, dim = np.finfo(x.dtype), x.shape[1]
        if not np.isfinite(x).all() or np.abs(x).max(initial=0.0) > np.sqrt(float(info.max) / (8 * max(dim, 1))):
            return None
        wide, double = x.astype(np.float64), np.finfo(np.float64)
        unit = float(info.eps) / 2
        return cls(wide, np.einsum("ij,ij->i", wide, wide), 4 * _gamma(dim + 2, float(double.eps) / 2),
                   4 * dim * float(double.tiny), _gamma(dim + 2, unit), dim * float(info.tiny), unit)

    def distance_intervals(self, anchors: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (anchors, samples): lo <= BirdNET's distance <= hi, with a small safety factor."""
        norm_sums = self.norms[anchors, None] + self.norms[None, :]
        squared = norm_sums - 2 * (self.wide[anchors] @ self.wide.T)
        slack = self.gram_relative * norm_sums + self.gram_absolute
        low = np.maximum(squared - slack, 0.0) * (1 - 2 * self.relative) - self.absolute
        high = (squared + slack) * (1 + 2 * self.relative) + self.absolute
        shrink, grow = 1 - 2 * self.rounding, 1 + 2 * self.rounding
        return np.sqrt(np.maximum(low, 0.0)) * shrink, np.sqrt(np.maximum(high, 0.0)) * grow


def _gamma(n: int, unit: float) -> float:
    return n * unit / (1 - n * unit)
