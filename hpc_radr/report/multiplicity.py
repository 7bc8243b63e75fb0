"""Adjusting p-values for the number of comparisons the verdicts make.

13 remedies x 2 datasets x several metrics judged at 5 % each would call some remedies effective by chance.
Holm's step-down method controls the family-wise error (the chance of any false verdict); Benjamini-Hochberg
controls the false discovery rate (the expected share of false verdicts among those made), which is less
strict. Both return adjusted p-values: a comparison is significant when its adjusted value is at most alpha.
NaN p-values (comparisons that could not be made) are left out of the family and stay NaN.
"""

from __future__ import annotations

import numpy as np

CORRECTIONS = {"holm": "Holm's step-down method (family-wise error)",
               "bh": "Benjamini-Hochberg (false discovery rate)"}


def holm(p_values: np.ndarray) -> np.ndarray:
    """min(1, max over the j smallest of (m - j + 1) p_(j)): the i-th smallest is compared with alpha / (m - i + 1)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    made = np.flatnonzero(~np.isnan(p))
    order = made[np.argsort(p[made], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    made = ~np.isnan(p)
    if made.any():
        adjusted[made] = false_discovery_control(p[made], method="bh")
    return adjusted


def adjust(p_values: np.ndarray, method: str) -> np.ndarray:
    return {"holm": holm, "bh": benjamini_hochberg}[method](p_values)
