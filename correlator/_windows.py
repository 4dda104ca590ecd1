"""Vectorised sliding-window arithmetic for the correlation engine (private).

Input arrays describe events sorted by (group code, time in ns, rule position). A *window* ``q``
is the trailing, closed interval ``[time[q] - span, time[q]]`` of one group, ending at one of that
group's distinct event times; it covers the half-open index range ``[start[q], end[q])`` of the
sorted arrays. Windows are ordered like the events, so ``start`` and ``end`` never decrease with
``q`` even across groups: every measure below is a handful of ``searchsorted``/prefix-sum passes
over all groups at once, never a Python loop over events (percentiles excepted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Windows",
    "trailing_windows",
    "event_counts",
    "distinct_counts",
    "numeric_sums",
    "percentiles",
    "rules_present",
    "ordered_prefix",
    "holds",
    "first_of_episodes",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_OPS: dict[str, Callable[[FloatArray, float], BoolArray]] = {
    "gt": np.greater,
    "gte": np.greater_equal,
    "lt": np.less,
    "lte": np.less_equal,
    "eq": np.equal,
    "neq": np.not_equal,
}


@dataclass(frozen=True)
class Windows:
    """The trailing windows of every group, one per distinct (group, event time)."""

    group: IntArray  # group code of each window
    time: IntArray  # window end (ns), an event time
    start: IntArray  # first event index inside the window
    end: IntArray  # one past the last event index inside the window

    def __len__(self) -> int:
        return len(self.time)


def _lex_searchsorted(keys_a: IntArray, keys_b: IntArray, q_a: IntArray, q_b: IntArray) -> IntArray:
    """Index of the first pair ``>= (q_a, q_b)`` in pairs sorted by (a, b); queries sorted too."""
    m = len(q_a)
    a = np.concatenate([q_a, keys_a])
    b = np.concatenate([q_b, keys_b])
    data_last = np.concatenate([np.zeros(m, np.int8), np.ones(len(keys_a), np.int8)])
    order = np.lexsort((data_last, b, a))  # stable: a query sorts before equal data
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    return position[:m] - np.arange(m)  # minus the queries that sort before each query


def trailing_windows(group: IntArray, time: IntArray, span: int) -> Windows:
    """Windows ``[t - span, t]`` (bounds inclusive) ending at each distinct event time per group."""
    n = len(time)
    last = np.ones(n, dtype=bool)
    last[:-1] = (group[1:] != group[:-1]) | (time[1:] != time[:-1])
    end = (np.flatnonzero(last) + 1).astype(np.int64)
    g, t = group[last], time[last]
    start = _lex_searchsorted(group, time, g, t - span)
    return Windows(g, t, start, end)


def event_counts(w: Windows) -> FloatArray:
    """Number of events in each window."""
    return (w.end - w.start).astype(np.float64)


def distinct_counts(w: Windows, prev: IntArray, valid: BoolArray) -> FloatArray:
    """Distinct values per window.

    ``prev[j]`` is the index of the previous event of the same group with the same value (-1 if
    none); event ``j`` adds one to exactly the windows that contain it but not ``prev[j]``.
    """
    j = np.flatnonzero(valid)
    first_containing = np.searchsorted(w.end, j, side="right")
    past_containing = np.searchsorted(w.start, j, side="right")
    without_prev = np.searchsorted(w.start, prev[j], side="right")
    lo = np.maximum(first_containing, without_prev)
    keep = lo < past_containing
    m = len(w)
    diff = np.bincount(lo[keep], minlength=m + 1) - np.bincount(
        past_containing[keep], minlength=m + 1
    )
    return np.cumsum(diff[:m]).astype(np.float64)


def numeric_sums(w: Windows, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(sum, count) of the non-NaN ``values`` in each window."""
    valid = ~np.isnan(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(valid, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(valid)])
    return sums[w.end] - sums[w.start], (counts[w.end] - counts[w.start]).astype(np.float64)


def percentiles(w: Windows, values: FloatArray, q: float) -> FloatArray:
    """Linear-interpolated ``q``-th percentile of non-NaN ``values`` per window (NaN if none)."""
    valid = ~np.isnan(values)
    compact = values[valid]
    counts = np.concatenate([[0], np.cumsum(valid)])
    lo, hi = counts[w.start], counts[w.end]
    out = np.full(len(w), np.nan)
    for i in np.flatnonzero(hi > lo):  # no cheap vectorised sliding percentile; fine at our sizes
        out[i] = np.percentile(compact[lo[i] : hi[i]], q)
    return out


def rules_present(w: Windows, rule_pos: IntArray, n_rules: int) -> FloatArray:
    """Number of distinct referenced rules (positions ``0..n_rules-1``) seen in each window."""
    idx = np.arange(len(rule_pos))
    seen = np.zeros(len(w), dtype=np.float64)
    for pos in range(n_rules):
        latest = np.maximum.accumulate(np.where(rule_pos == pos, idx, -1))
        seen += latest[w.end - 1] >= w.start
    return seen


def ordered_prefix(w: Windows, rule_pos: IntArray, n_rules: int) -> FloatArray:
    """Length of the longest prefix of the rule sequence matched in order inside each window.

    ``chain[i][p]`` is the latest index at which a chain rule0 <= rule1 <= … <= rule_i completed
    by event ``p`` can start; a window holds the prefix up to ``i`` when that start is inside it.
    Events are sorted by rule position within equal times, so simultaneous events count as ordered.
    """
    idx = np.arange(len(rule_pos))
    chain = np.maximum.accumulate(np.where(rule_pos == 0, idx, -1))
    length = np.zeros(len(w), dtype=np.float64)
    for pos in range(n_rules):
        if pos:
            chain = np.maximum.accumulate(np.where(rule_pos == pos, chain, -1))
        length += chain[w.end - 1] >= w.start
    return length


def holds(measure: FloatArray, op: str, threshold: float) -> BoolArray:
    """Where ``measure op threshold`` holds; an undefined (NaN) measure never holds."""
    with np.errstate(invalid="ignore"):
        result: BoolArray = _OPS[op](measure, threshold) & ~np.isnan(measure)
    return result


def first_of_episodes(w: Windows, ok: BoolArray, span: int) -> IntArray:
    """Windows that open an episode: the condition holds and held at no window end of the same
    group in the preceding ``span`` (``[t - span, t)``)."""
    q = np.flatnonzero(ok)
    g, t = w.group[q], w.time[q]
    fire = np.ones(len(q), dtype=bool)
    fire[1:] = (g[1:] != g[:-1]) | (t[1:] - t[:-1] > span)
    return q[fire].astype(np.int64)
