"""Ratio signals: per entity over a trailing window, the count of ``other`` events against the
count of ``base`` events (declined authorisations, clicks without an impression)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from correlator.baselines_frames import entity_keys, select
from correlator.baselines_signals import RatioSignal, signal_detection, window_ns
from marketguard.detections import Detection

__all__ = ["ratio_detections"]


def ratio_detections(signal: RatioSignal, events: pd.DataFrame, fresh: set[str]) -> list[Detection]:
    """One detection per episode of ``signal`` in ``events`` whose first alerting event is
    ``fresh`` (an episode: alerting events of one entity no more than a window apart)."""
    base, other = select(events, signal.base), select(events, signal.other)
    frame = events[base | other].copy()
    frame["entity"] = entity_keys(frame, signal.entity)
    frame = frame[frame["entity"].notna()]
    if frame.empty:
        return []
    frame["_base"], frame["_other"] = base[frame.index], other[frame.index]
    frame = frame.sort_values(["entity", "_t", "event.id"], kind="stable").reset_index(drop=True)
    code = pd.factorize(frame["entity"])[0].astype(np.int64)
    span = window_ns(signal.window)
    key = code * (4 * span + frame["_t"].max() - frame["_t"].min() + 1) + (
        frame["_t"] - frame["_t"].min()
    )
    key = key.to_numpy()
    start = np.searchsorted(key, key - span, side="left")
    cb = np.concatenate([[0], np.cumsum(frame["_base"].to_numpy())])
    co = np.concatenate([[0], np.cumsum(frame["_other"].to_numpy())])
    n_base = cb[1:] - cb[start]
    n_other = co[1:] - co[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(n_base > 0, n_other / np.maximum(n_base, 1), np.nan)
    ok = (n_base >= signal.min_count) & (
        ratio >= signal.threshold if signal.op == "gte" else ratio <= signal.threshold
    )
    out = []
    last_ok: dict[int, int] = {}
    for i in np.flatnonzero(ok):
        prev = last_ok.get(int(code[i]))
        last_ok[int(code[i])] = int(frame["_t"].iat[i])
        if prev is not None and frame["_t"].iat[i] - prev <= span:
            continue  # the same episode
        if frame["event.id"].iat[i] in fresh:
            evidence = {"count": float(n_base[i]), "other_count": float(n_other[i]),
                        "ratio": round(float(ratio[i]), 4), "threshold": signal.threshold,
                        "min_count": float(signal.min_count)}  # fmt: skip
            out.append(_ratio_detection(signal, frame, int(start[i]), i, evidence))
    return out


def _ratio_detection(
    signal: RatioSignal, frame: pd.DataFrame, lo: int, hi: int, evidence: dict[str, float]
) -> Detection:
    group = tuple(zip(signal.entity, json.loads(frame["entity"].iat[hi]), strict=True))
    end = frame["@timestamp"].iat[hi].to_pydatetime()
    return signal_detection(
        signal, "baseline_ratio",
        timestamp=end, event_ids=tuple(frame["event.id"].iloc[lo : hi + 1]),
        evidence=dict(group) | evidence, group=group, window_start=end - signal.window,
        window_end=end, value=evidence["ratio"],
    )  # fmt: skip

