"""Burn-rate arithmetic on per-minute good/total arrays, vectorised with cumulative sums.

A *burn rate* is the observed error ratio divided by the error budget ratio
(``1 - objective``): 1.0 spends exactly the whole budget over the SLO period, 14.4 spends
2 % of a 30-day budget in one hour.
"""

from __future__ import annotations

import numpy as np

__all__ = ["budget_ratio", "trailing_sums", "burn_rates"]


def budget_ratio(objective_percent: float) -> float:
    """The error budget as a ratio: 99.9 -> 0.001 (rounded so that 1 - 0.999 is exactly 0.001)."""
    return round(1.0 - objective_percent / 100.0, 12)


def trailing_sums(values: np.ndarray, minutes: int) -> np.ndarray:
    """``out[i]`` = sum of ``values[i - minutes + 1 .. i]`` (fewer at the start), in O(n)."""
    cum = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    ends = np.arange(1, len(values) + 1)
    return cum[ends] - cum[np.maximum(ends - minutes, 0)]


def burn_rates(bad: np.ndarray, total: np.ndarray, budget: float) -> np.ndarray:
    """Element-wise burn rate ``(bad / total) / budget``; 0 where there is no traffic."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(total > 0, (bad / np.where(total > 0, total, 1.0)) / budget, 0.0)
    return rate
