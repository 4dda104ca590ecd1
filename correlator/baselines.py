"""Behavioural baselines for fraud signals Sigma cannot express: volume against an entity's own
history, ratios between two kinds of events, and values never seen before for an account.

**Volume signals** (:class:`VolumeSignal`) count one event action per entity (e.g. ad clicks
per autonomous system and campaign) in windows that hop by half a window, so a burst no longer
than half a window always lies whole in one of them. A window alerts when

* ``count >= min_count``, and
* ``count > factor × max(1, own) × season``, where ``own`` is the entity's robust level over
  its trailing ``history`` windows (median + 3 × 1.4826 × MAD, zeros included) and ``season``
  is the rest of the population's current total over the median of its trailing totals (at
  least 1; the entity itself is left out, so an attack cannot raise its own bar).

``season`` is what keeps a sale day quiet: when every buyer clicks four times as much, every
entity's expectation rises four-fold. Per-window counts are persisted through a
:class:`Baselines` store and updated incrementally: each run adds the counts of the events it
is given that were not counted before, then judges the windows those events touched against
the stored history.

**Ratio signals** (:class:`RatioSignal`) compare, per entity over a trailing window, the count
of ``other`` events with the count of ``base`` events: a high share of declined authorisations,
or clicks with (almost) no ad impression before them. They need no history; the window is
re-read from the store.

**Novelty signals** (:class:`NoveltySignal`) keep, per account, the countries and autonomous
systems it has been active from (first-seen times, persisted). A successful login from a value
the account had never used before, preceded by ``min_failures`` failed logins within
``window``, alerts: the account takeover that follows password guessing. Sigma cannot say
"never seen before"; failed logins alone (typos) or a new country alone (travel) do not alert.

All three produce :class:`~marketguard.detections.Detection` objects (tagged
``marketguard.type.fraud`` and ``marketguard.fraud.<family>``) whose evidence holds the numbers
that triggered them.

Modules: the signals (:mod:`correlator.baselines_signals`), their state
(:mod:`correlator.baselines_state`), the relevance filter and event frames
(:mod:`correlator.baselines_relevance`, :mod:`correlator.baselines_frames`), one module per
kind (:mod:`correlator.baselines_volume` with :mod:`correlator.baselines_stats`,
:mod:`correlator.baselines_ratio`, :mod:`correlator.baselines_novelty`); this one runs them.
"""

from __future__ import annotations

import logging as _logging
from collections.abc import Sequence

import pandas as pd

from correlator.baselines_frames import read_events, select
from correlator.baselines_novelty import novelty_detections
from correlator.baselines_ratio import ratio_detections
from correlator.baselines_relevance import Relevance, signal_fields
from correlator.baselines_signals import (
    ACTION,
    FRAUD_NOVELTY_SIGNALS,
    FRAUD_RATIO_SIGNALS,
    FRAUD_VOLUME_SIGNALS,
    NoveltySignal,
    RatioSignal,
    VolumeSignal,
)
from correlator.baselines_state import Baselines, InMemoryBaselines
from correlator.baselines_volume import volume_detections
from marketguard.detections import Detection
from marketguard.store import MatchWindow, Store

log = _logging.getLogger(__name__)

__all__ = [
    "open_baselines",
    "BASELINE_STORES",
    "VolumeSignal",
    "RatioSignal",
    "NoveltySignal",
    "Baselines",
    "InMemoryBaselines",
    "FRAUD_VOLUME_SIGNALS",
    "FRAUD_RATIO_SIGNALS",
    "FRAUD_NOVELTY_SIGNALS",
    "run_baselines",
]


def run_baselines(
    store: Store,
    baselines: Baselines,
    window: MatchWindow,
    *,
    volume: Sequence[VolumeSignal] = FRAUD_VOLUME_SIGNALS,
    ratios: Sequence[RatioSignal] = FRAUD_RATIO_SIGNALS,
    novelty: Sequence[NoveltySignal] = FRAUD_NOVELTY_SIGNALS,
) -> list[Detection]:
    """Update the baselines with the events in ``window`` and return the detections they raise.

    Counting is exactly-once: events at or below :meth:`Baselines.counted` are judged but not
    counted again, so replaying an ingest window after a crash (before its detections were
    recorded) gives the same detections again, and they are deduplicated downstream.
    """
    upto = window.seq_upto if window.seq_upto is not None else store.max_seq()
    window = MatchWindow(
        seq_after=window.seq_after, seq_upto=upto, time_after=window.time_after,
        time_upto=window.time_upto, dataset=window.dataset,
    )  # fmt: skip
    fields = signal_fields(volume, ratios, novelty)
    keep = Relevance(volume, ratios, novelty)
    new = read_events(store, window, fields, keep)
    if new.empty:
        return []  # nothing any signal counts, learns or judges: no state to update
    new["_fresh"] = new["_seq"] > baselines.counted()
    run = int(window.seq_after or 0)
    out: list[Detection] = []
    for signal in volume:
        out += volume_detections(signal, new, baselines, run)
    if ratios or novelty:
        span = max(s.window for s in [*ratios, *novelty])
        lo, hi = new["@timestamp"].min(), new["@timestamp"].max()
        # Ratios and novelty only alert on a new event they select: without one, the trailing
        # window is not read (novelty still learns from ``new``).
        judged = _judged(new, ratios, novelty)
        context = read_events(store, MatchWindow(time_after=lo - span, time_upto=hi), fields, keep) if judged else new.iloc[0:0]
        fresh = set(new["event.id"])
        for ratio in ratios:
            out += ratio_detections(ratio, context, fresh)
        for signal in novelty:
            out += novelty_detections(signal, new, context, fresh, baselines)
    baselines.set_counted(upto)
    return out


def _judged(new: pd.DataFrame, ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]) -> bool:
    """Whether a new event is one a ratio (base or other) or a novelty signal (success) judges."""
    specs = [spec for r in ratios for spec in (r.base, r.other)] + [{ACTION: n.success} for n in novelty]
    return any(bool(select(new, spec).any()) for spec in specs)


def _duckdb_baselines(store: Store) -> Baselines:
    from correlator.baselines_duckdb import DuckDBBaselines

    return DuckDBBaselines(store)  # type: ignore[arg-type]


def _elasticsearch_baselines(store: Store) -> Baselines:
    from correlator.baselines_elasticsearch import ElasticsearchBaselines

    return ElasticsearchBaselines(store)  # type: ignore[arg-type]


#: Store dialect -> baseline-state factory (baselines live beside the events).
BASELINE_STORES = {"duckdb": _duckdb_baselines, "elasticsearch": _elasticsearch_baselines}


def open_baselines(store: Store) -> Baselines | None:
    """The persisted baselines beside ``store``; None (baselines off) for a store without one."""
    factory = BASELINE_STORES.get(store.dialect)
    if factory is None:
        log.warning("no baseline store for the %r store: behavioural baselines are off", store.dialect)
        return None
    return factory(store)
