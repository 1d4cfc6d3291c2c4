"""Intervals for accuracy figures: how far they could move on other queries from the same source.

A bootstrap over queries: resample the queries with replacement, recompute the mean, and
read the percentile interval. Differences between two variants are resampled in pairs (the
same queries for both), which is what makes a small difference measurable at all.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def bootstrap_interval(values, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
                       ) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one per query) over query resamples.

    For a paired interval of a difference, pass the per-query differences.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("bootstrap_interval needs a non-empty vector of per-query values")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 8_000_000 // len(values))  # resamples per block: ~64 MB of indices at a time
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        means[start:start + count] = values[rng.integers(0, len(values), (count, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
