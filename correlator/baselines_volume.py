"""Volume signals: per-window counts of one action per entity, added to the stored baselines and
judged against the entity's own history and the season (:mod:`correlator.baselines_stats`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from correlator.baselines_frames import entity_keys, select
from correlator.baselines_signals import ACTION, VolumeSignal, signal_detection
from correlator.baselines_state import Baselines
from correlator.baselines_stats import judge_window
from marketguard.detections import Detection

__all__ = ["volume_detections"]


def volume_detections(
    signal: VolumeSignal, events: pd.DataFrame, baselines: Baselines, run: int
) -> list[Detection]:
    """Count the fresh events of ``events`` into ``baselines``; judge every window they touched.

    An episode alerts once: in the first window that alerts, and only in the ``run`` that
    recorded the alert first.
    """
    rows = events[select(events, {ACTION: signal.action})].copy()
    rows["entity"] = entity_keys(rows, signal.entity)
    rows = rows[rows["entity"].notna()]
    if rows.empty:
        return []
    hop = signal.hop_ns
    rows["bucket"] = rows["_t"] // hop
    added = rows.groupby(["entity", "bucket"]).size().rename("count").reset_index()
    fresh = rows[rows["_fresh"]].groupby(["entity", "bucket"]).size().rename("count")
    baselines.add(signal.id, fresh.reset_index())
    span = 2 * (signal.history + 1)
    first, last = int(added["bucket"].min()) - span, int(added["bucket"].max()) + 1
    stored = baselines.counts(signal.id, first, last)
    grid = stored.pivot_table(
        index="entity", columns="bucket", values="count", aggfunc="sum", fill_value=0
    )
    grid = grid.reindex(columns=range(first, last + 1), fill_value=0)
    totals = grid.sum(axis=0)
    pairs = grid + grid.shift(1, axis=1, fill_value=0)  # the window ending at each bucket
    out = []
    for entity, bucket in _touched(added):
        if pairs.at[entity, bucket] < signal.min_count:
            continue
        judged = judge_window(signal, grid, totals, entity, bucket)
        if not judged or judge_window(signal, grid, totals, entity, bucket - 1):
            continue  # quiet, or an episode that began in the previous (overlapping) window
        if baselines.alerted(signal.id, entity, bucket, run):
            ids = rows.loc[
                (rows["entity"] == entity) & rows["bucket"].between(bucket - 1, bucket), "event.id"
            ]
            out.append(_volume_detection(signal, entity, bucket, judged, tuple(ids)))
    return out


def _touched(added: pd.DataFrame) -> list[tuple[str, int]]:
    """Every (entity, window end bucket) whose window gained events: b and b + 1 per bucket b."""
    pairs = {
        (e, int(b) + k)
        for e, b in zip(added["entity"], added["bucket"], strict=True)
        for k in (0, 1)
    }
    return sorted(pairs)


def _volume_detection(
    signal: VolumeSignal, entity: str, bucket: int, evidence: dict[str, float], ids: tuple[str, ...]
) -> Detection:
    end = _from_ns((bucket + 1) * signal.hop_ns)
    group = tuple(zip(signal.entity, json.loads(entity), strict=True))
    return signal_detection(
        signal, "baseline_volume",
        timestamp=end, event_ids=ids, evidence=dict(group) | evidence, group=group,
        window_start=end - signal.window, window_end=end, value=evidence["count"],
    )  # fmt: skip


def _from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)

