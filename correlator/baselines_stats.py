"""The statistics of volume signals: an entity's robust level over its own history (median +
3 × 1.4826 × MAD of its trailing windows, zeros included) and the season factor (the rest of
the population's current total over the median of its trailing totals, at least 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from correlator.baselines_signals import VolumeSignal

__all__ = ["pair_sums", "judge_window"]


def pair_sums(values: pd.Series, ends: list[int]) -> np.ndarray:
    """Per window end bucket b of ``ends``: the sum of ``values`` at b and b - 1 (a window)."""
    return np.array([values.get(b, 0) + values.get(b - 1, 0) for b in ends], dtype=np.float64)


def judge_window(
    signal: VolumeSignal, grid: pd.DataFrame, totals: pd.Series, entity: str, bucket: int
) -> dict[str, float] | None:
    """The evidence of a window that alerts, or None."""
    if entity not in grid.index:
        return None
    own_counts = grid.loc[entity]
    count = float(pair_sums(own_counts, [bucket])[0])
    if count < signal.min_count:
        return None
    past = [bucket - 2 * k for k in range(1, signal.history + 1)]
    history = pair_sums(own_counts, past)
    median = float(np.median(history))
    mad = float(np.median(np.abs(history - median)))
    own = median + 3 * 1.4826 * mad
    others = totals - own_counts  # the rest of the population: an attack must not lift its own bar
    past_totals = pair_sums(others, past)
    past_totals = past_totals[past_totals > 0]
    now_total = float(pair_sums(others, [bucket])[0])
    season = max(1.0, now_total / float(np.median(past_totals))) if len(past_totals) else 1.0
    expected = max(1.0, own) * season
    if count <= signal.factor * expected:
        return None
    return {
        "count": count, "baseline": round(own, 3), "baseline_median": median, "baseline_mad": mad,
        "season": round(season, 3), "expected": round(expected, 3), "factor": signal.factor,
        "min_count": float(signal.min_count),
    }  # fmt: skip

