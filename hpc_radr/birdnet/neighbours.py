"""BirdNET 2.4's smote neighbours, exactly, without its (synthetic samples) x (training samples) distance sorts.

BirdNET's neighbours of anchor ``a`` are ``argsort(d)[1:6]`` with ``d = np.sqrt(np.sum((x - x[a]) ** 2, axis=1))``,
computed and fully sorted once per synthetic sample. Here each distinct anchor is searched once, and BirdNET's
formula runs only on the samples that can be among its nearest.

Why it is exact:

* **BirdNET's values.** Row ``j`` of ``d`` depends only on rows ``j`` and ``a`` (numpy sums each row of a
  C-contiguous array alone, in one order; the tests check it), so BirdNET's formula on the rows ``x[j] - x[a]`` of
  any set of pairs gives BirdNET's values for them.
* **Which samples.** If the values at sorted positions 1..5 each occur once in ``d``, every correct sort puts the
  same elements there (with ties, numpy's unstable sort decides, on the whole array). Given any ``T`` at or above
  the 6th smallest value of ``d``, sorted positions 0..5 and everything tied with them lie among the samples at
  BirdNET distance ``<= T``; BirdNET's formula on a superset of those gives their values, ranks and ties exactly.
  ``T`` is the 6th smallest of BirdNET's own distances to a few samples. When a tie touches positions 1..5
  (duplicate rows, tied distances), or the data lies outside the range the bounds cover (not float32/float64, not
  C-contiguous, non-finite, near overflow), the anchor falls back to BirdNET's full computation, and is counted.
* **The superset, without looking at every sample.** ``_Projection`` maps each sample to a point in 13
  dimensions (its coordinates on 12 principal axes, and the length of what the axes leave out) whose distances
  are never above the exact distances (Pythagoras and the triangle inequality). A k-d tree over those points
  (scipy's ``cKDTree``) gives, per anchor, 8 samples near it, whose BirdNET distances give ``T``, then every
  point within a radius that ``_Bounds.exact_within(T)`` (BirdNET's rounding, bounded) and a margin (this
  module's own rounding) make safe. On data with neighbourhoods, as embeddings have, that is a handful of samples
  per anchor. An anchor whose ball holds many (no neighbourhood the axes see) takes the matrix-product path
  instead (``_Bounds.dense_candidates``): one product with every sample bounds all its exact distances, and the
  candidates are the samples those bounds cannot place beyond ``T``.

Cost: a fixed-size fit of the axes, one pass over the data for the points, and per anchor a tree search plus
BirdNET's formula on its candidates, or one matrix-product row for the few without neighbours: close to linear in
the data where BirdNET's is quadratic (``benchmarks/results/data-scale``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

NEIGHBOURS = 5  # BirdNET's k in smote
_AXES = 12  # principal axes of the projection the tree searches
_FITTED_ON = 2_048  # rows (evenly spaced) the axes are fitted on: a fixed cost whatever the data's size
_FIRST_LOOK = 8  # samples nearest in the projection whose BirdNET distances give T (at least 6)
_CROWDED = 64  # a ball with more than max(this, samples / this) samples: the matrix-product path
_MARGIN = 1e-5  # relative to the data's scale: covers the rounding of the projection (below 1e-6 of it)
_BLOCK_ELEMENTS = 1 << 18  # rows x dimensions per block of the projection's float64 pass: 2 MB, reused
_PAIR_ELEMENTS = 1 << 18  # pairs x dimensions per batch of BirdNET's formula: 1 MB of float32
_DENSE_ROWS = 128  # anchors per matrix product with every sample: fewer passes over x, larger temporaries


def birdnet_neighbours(x: np.ndarray, anchor: int, k: int = NEIGHBOURS) -> np.ndarray:
    """BirdNET's own neighbour search for one anchor: distances to all samples, full sort."""
    distances = np.sqrt(np.sum((x - x[anchor]) ** 2, axis=1))
    return np.argsort(distances)[1 : k + 1]


def nearest_neighbours(x: np.ndarray, anchors: list[int], k: int = NEIGHBOURS,
                       ) -> tuple[dict[int, np.ndarray], set[int]]:
    """``birdnet_neighbours(x, a, k)`` for each anchor, and the anchors that needed BirdNET's full computation:
    the others come from BirdNET's formula on the candidates the bounds leave (see the module)."""
    bounds = _Bounds.of(x)
    if bounds is None:
        return {a: birdnet_neighbours(x, a, k) for a in anchors}, set(anchors)
    if not anchors:
        return {}, set()
    kept = min(len(x), k + 1)  # sorted positions 0..k, position 0 being (normally) the anchor itself
    rows = np.asarray(anchors, dtype=np.intp)
    # numpy's BLAS spreads every product over all cores; on 2 cores (here) one thread spends a third less CPU
    # in about the same time for the small products, and 0.67x the CPU in 1.25x the time for the large ones
    with threadpool_limits(limits=1, user_api="blas"):
        projection = _Projection.of(bounds)
        if projection is None:
            anchor_of, sample_of = bounds.dense_candidates(rows, np.full(len(rows), np.inf), kept)
            distance = _birdnet_distances(x, anchor_of, sample_of)
        else:
            anchor_of, sample_of, distance = projection.candidates(x, bounds, rows, kept)
    order = np.lexsort((distance, anchor_of))
    anchor_of, sample_of, distance = anchor_of[order], sample_of[order], distance[order]
    starts = np.flatnonzero(np.r_[True, anchor_of[1:] != anchor_of[:-1]])
    ends = np.r_[starts[1:], len(anchor_of)]
    # sorted positions 0..kept of each anchor (a missing last one counts as larger): positions 1..kept-1 must each
    # hold a value found once, strictly above its predecessor and successor
    positions = starts[:, None] + np.arange(kept + 1)
    ranked = np.where(positions < ends[:, None], distance[np.minimum(positions, len(distance) - 1)], np.inf)
    untied = np.all(ranked[:, 1:] > ranked[:, :-1], axis=1)
    found: dict[int, np.ndarray] = {}
    fell_back: set[int] = set()
    for start, anchor, ok in zip(starts, anchor_of[starts].tolist(), untied, strict=True):
        if ok:
            found[anchor] = sample_of[start + 1:start + kept]
        else:
            found[anchor] = _full_sort(x, anchor, k)
            fell_back.add(anchor)
    return found, fell_back


def _full_sort(x: np.ndarray, anchor: int, k: int) -> np.ndarray:
    """``birdnet_neighbours``, its distances computed a block of rows at a time: the same array, so the same
    sort, without its (samples x dim) temporary."""
    distances = _birdnet_distances(x, np.full(len(x), anchor), np.arange(len(x)))
    return np.argsort(distances)[1 : k + 1]


def _birdnet_distances(x: np.ndarray, anchors: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """BirdNET's formula, row by row, for the pairs (anchors[i], samples[i]), in batches."""
    found = np.empty(len(anchors), dtype=x.dtype)
    step = max(1, _PAIR_ELEMENTS // x.shape[1])
    for i in range(0, len(anchors), step):
        differences = np.subtract(x[samples[i:i + step]], x[anchors[i:i + step]])
        found[i:i + step] = np.sqrt(np.sum(np.square(differences, out=differences), axis=1))
    return found


@dataclass(frozen=True)
class _Projection:
    """Each sample as a point whose distances to the others are lower bounds of its exact distances, in a tree.

    With ``B`` orthonormal axes and ``c`` a sample minus a fixed centre, the point is ``(B^T c, |c - B B^T c|)``:
    for two samples, the exact squared distance is the squared distance of their coordinates on the axes plus
    that of their remainders (orthogonal to the axes), and the remainders' distance is at least the difference of
    their lengths. In float64 the coordinates are off by about ``dim x 1.1e-16`` of the largest centred norm
    (``scale``), the remainder's length (from ``|c|^2 - |B^T c|^2``) by at most ``sqrt(4 dim x 1.1e-16)``
    (below 1e-6) of it, the axes from orthonormal by at most 1e-12 (checked): ``_MARGIN x scale`` covers all
    three, and ``_MARGIN`` relative the tree's own rounding. Deterministic: the axes come from a fixed seed, not
    from ``default_rng`` (BirdNET's generators are the only ones a call creates)."""

    points: np.ndarray  # (samples, axes + 1)
    slack: float
    tree: cKDTree

    @classmethod
    def of(cls, bounds: _Bounds) -> _Projection | None:
        x = bounds.x
        n, dim = x.shape
        sample = x[np.linspace(0, n - 1, min(n, _FITTED_ON)).astype(np.intp)].astype(np.float64)
        centre = sample.mean(axis=0)
        axes = _principal_axes(sample - centre, min(_AXES, dim, len(sample)))
        if np.abs(axes.T @ axes - np.eye(axes.shape[1])).max() > 1e-12:
            return None
        points, scale, first = np.empty((n, axes.shape[1] + 1)), 0.0, 0
        for wide in _wide_blocks(x):
            centred = np.subtract(wide, centre, out=wide)
            on_axes = centred @ axes
            lengths = np.einsum("ij,ij->i", centred, centred)
            points[first:first + len(wide), :-1] = on_axes
            left_out = lengths - np.einsum("ij,ij->i", on_axes, on_axes)
            points[first:first + len(wide), -1] = np.sqrt(np.maximum(left_out, 0.0))
            scale = max(scale, float(np.sqrt(lengths.max())))
            first += len(wide)
        return cls(points, _MARGIN * scale + float(np.finfo(np.float64).tiny), cKDTree(points, leafsize=40))

    def candidates(self, x: np.ndarray, bounds: _Bounds, rows: np.ndarray, kept: int,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (anchor, sample) holding each anchor's sorted positions 0..kept-1 and their ties, each pair once,
        with BirdNET's distance."""
        n = len(self.points)
        look = min(n, _FIRST_LOOK)
        _, nearest = self.tree.query(self.points[rows], k=look, eps=2.0)  # approximate is enough: T from any
        nearest = np.reshape(nearest, (len(rows), look))
        known = _birdnet_distances(x, np.repeat(rows, look), nearest.ravel()).reshape(len(rows), look)
        limit = np.partition(known, kept - 1, axis=1)[:, kept - 1].astype(np.float64)
        radius = bounds.exact_within(limit) * (1 + _MARGIN) + self.slack
        # counted first: a crowded ball can hold every sample, too many to list for each anchor
        counts = np.asarray(self.tree.query_ball_point(self.points[rows], radius, return_length=True))
        sparse = counts <= max(_CROWDED, n // _CROWDED)
        balls = self.tree.query_ball_point(self.points[rows[sparse]], radius[sparse], return_sorted=False)
        ball_samples = np.fromiter(chain.from_iterable(balls), dtype=np.intp, count=int(counts[sparse].sum()))
        ball_anchors = np.repeat(rows[sparse], counts[sparse])
        first_anchors, first_samples = np.repeat(rows[sparse], look), nearest[sparse].ravel()
        new = ~np.isin(ball_anchors * n + ball_samples, first_anchors * n + first_samples)
        anchors = [first_anchors, ball_anchors[new]]
        samples = [first_samples, ball_samples[new]]
        distances = [known[sparse].ravel(), _birdnet_distances(x, anchors[1], samples[1])]
        if not sparse.all():
            dense = bounds.dense_candidates(rows[~sparse], limit[~sparse], kept)
            anchors.append(dense[0])
            samples.append(dense[1])
            distances.append(_birdnet_distances(x, *dense))
        return np.concatenate(anchors), np.concatenate(samples), np.concatenate(distances)


def _principal_axes(centred: np.ndarray, count: int) -> np.ndarray:
    """``count`` orthonormal axes close to the leading principal axes of ``centred`` (randomized subspace
    iteration: how close changes only the speed)."""
    sketch = np.random.Generator(np.random.PCG64(0)).standard_normal((centred.shape[1], count + 8))
    basis = np.linalg.qr(centred @ sketch)[0]
    for _ in range(2):
        basis = np.linalg.qr(centred @ np.linalg.qr(centred.T @ basis)[0])[0]
    return np.linalg.svd(basis.T @ centred, full_matrices=False)[2][:count].T


@dataclass(frozen=True)
class _Bounds:
    """What matrix products prove about distances, with the rounding of every step bounded.

    ``u`` is ``x``'s unit roundoff, ``gamma(n) = n u / (1 - n u)``, ``tiny`` its smallest normal number, ``s``
    the exact squared distance of rows ``a`` and ``j``, ``n`` their squared norms (float64, rounded to ``x``'s
    dtype for the products' pass). The product ``a.j`` computed in ``x``'s dtype (any summation order, FMA or
    not) is within ``gamma(dim) |a| |j| <= gamma(dim) (n_a + n_j) / 2`` of the exact one (Higham), plus ``dim``
    tiny for products that underflow; rounding ``n_j`` and the sum ``n_j - 2 a.j`` adds at most
    ``3 u (n_a + n_j)``. So ``n_a + (n_j - 2 a.j)``, computed so, is within ``gamma(dim + 3) (n_a + n_j)`` plus
    ``2 dim`` tiny of ``s``. BirdNET's ``sqrt(sum((x_j - x_a) ** 2))`` rounds each difference and square once,
    each term at most ``dim - 1`` times in any summation tree, and the root once: its sum lies within
    ``gamma(dim + 2) s`` of ``s``, plus ``dim`` tiny for squares that underflow. Each bound is used twice over,
    which also covers the float64 rounding of this arithmetic. Valid without overflow: float32 or float64,
    finite, ``|x| <= sqrt(max / (8 dim))``; and C-contiguous, so that numpy sums each row of BirdNET's temporary
    as it sums the same row of a subset."""

    x: np.ndarray
    norms: np.ndarray  # squared, float64
    largest: float  # the largest squared norm
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
        low, high = float(x.min()), float(x.max())  # NaN if any is NaN
        if not (np.isfinite(low) and np.isfinite(high)) or max(-low, high) > np.sqrt(float(info.max) / (8 * dim)):
            return None
        norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        unit, tiny = float(info.eps) / 2, float(info.tiny)
        return cls(x, norms, float(norms.max()), 2 * _gamma(dim + 3, unit), 4 * dim * tiny,
                   _gamma(dim + 2, unit), dim * tiny, unit)

    def birdnet_within(self, squared: np.ndarray) -> np.ndarray:
        """An upper bound on BirdNET's distance of a pair whose exact squared distance is at most ``squared``."""
        return np.sqrt(squared * (1 + 2 * self.relative) + self.absolute) * (1 + 2 * self.rounding)

    def exact_within(self, limit: np.ndarray) -> np.ndarray:
        """An upper bound on the exact distance of a pair whose BirdNET distance is at most ``limit``."""
        shrink = 1 - 2 * self.rounding
        return np.sqrt(((limit / shrink) ** 2 + self.absolute) / (1 - 2 * self.relative)) * (1 + 2 * self.rounding)

    def dense_candidates(self, rows: np.ndarray, limit: np.ndarray, kept: int) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (anchor, sample) holding each anchor's sorted positions 0..kept-1 and their ties, from one
        matrix product with every sample; ``limit``: a known upper bound on each anchor's kept-th distance.

        Per anchor, ``r_j = n_j - 2 a.j`` puts ``s_j`` within ``slack`` of ``n_a + r_j``: the kept-th smallest
        ``r`` bounds the kept-th distance (``T``), and the samples with ``n_a + r_j - slack`` at most the exact
        squared distance that ``T`` allows are the candidates."""
        low_norms = self.norms.astype(self.x.dtype)
        found_rows, found_columns = [], []
        for first in range(0, len(rows), _DENSE_ROWS):
            block = rows[first:first + _DENSE_ROWS]
            reduced = (self.x[block] * -2) @ self.x.T  # within the bound on -2 a.j: scaling by 2 is exact
            reduced += low_norms  # r, in x's dtype
            slack = self.gram_relative * (self.norms[block] + self.largest) + self.gram_absolute
            kth = np.partition(reduced, kept - 1, axis=1)[:, kept - 1].astype(np.float64)
            reach = np.minimum(limit[first:first + len(block)],
                               self.birdnet_within(np.maximum(self.norms[block] + kth + slack, 0.0)))
            threshold = self.exact_within(reach) ** 2 - self.norms[block] + slack
            threshold = np.nextafter(threshold.astype(self.x.dtype), np.inf)  # rounded up: never fewer candidates
            row, column = np.nonzero(reduced <= threshold[:, None])
            found_rows.append(block[row])
            found_columns.append(column)
        return np.concatenate(found_rows), np.concatenate(found_columns)


def _wide_blocks(x: np.ndarray) -> Iterator[np.ndarray]:
    """``x`` in float64, a block of rows at a time (a whole copy costs more in fresh memory than the work)."""
    step = max(1, _BLOCK_ELEMENTS // max(x.shape[1], 1))
    for first in range(0, len(x), step):
        yield x[first:first + step].astype(np.float64)


def _gamma(n: int, unit: float) -> float:
    return n * unit / (1 - n * unit)
