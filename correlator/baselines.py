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
"""

from __future__ import annotations

import functools
import json
import logging as _logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marketguard.detections import Detection
from marketguard.schema import EVENT_FIELDS
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

_ACTION = "event.action"
_NS = 1_000_000_000


@dataclass(frozen=True)
class VolumeSignal:
    """Events of one action per entity, judged against the entity's own history."""

    id: str
    title: str
    family: str
    action: str
    entity: tuple[str, ...]
    window: timedelta = timedelta(minutes=10)
    history: int = 12
    factor: float = 5.0
    min_count: int = 20
    level: str = "high"

    @property
    def hop_ns(self) -> int:
        return int(self.window.total_seconds() * _NS) // 2


@dataclass(frozen=True)
class RatioSignal:
    """``count(other) / count(base)`` per entity over a trailing window, with a minimum base."""

    id: str
    title: str
    family: str
    base: dict[str, str]
    other: dict[str, str]
    entity: tuple[str, ...]
    op: str  # "gte" or "lte"
    threshold: float
    min_count: int
    window: timedelta = timedelta(hours=1)
    level: str = "medium"


@dataclass(frozen=True)
class NoveltySignal:
    """A ``success`` event from an attribute value new to the entity, after ``min_failures``."""

    id: str
    title: str
    family: str
    entity: str
    attributes: tuple[str, ...]
    success: str
    failure: str
    min_failures: int = 3
    window: timedelta = timedelta(minutes=30)
    level: str = "high"


class Baselines(Protocol):
    """Where per-window counts live between runs (:mod:`correlator.baselines_duckdb`,
    :mod:`correlator.baselines_elasticsearch`)."""

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        """Add ``counts`` (columns entity, bucket, count) to the stored counts."""
        ...

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        """Stored counts (entity, bucket, count) of buckets ``first..last`` inclusive."""
        ...

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        """Record an alert for an entity's window; False if an earlier run already recorded it
        (a replay of the same ``run`` — same ingest window start — may record it again)."""
        ...

    def counted(self) -> int:
        """The ingest sequence number up to which events have been counted (0: none)."""
        ...

    def set_counted(self, seq: int) -> None:
        """Remember that events up to ``seq`` have been counted."""
        ...

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        """Merge first-seen times (entity, attribute, value, first_seen in ns): the minimum wins."""
        ...

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        """First-seen times (entity, attribute, value, first_seen) of the given entities."""
        ...


@dataclass
class InMemoryBaselines:
    """A :class:`Baselines` in a dict, for unit tests and one-shot hunts."""

    data: dict[tuple[str, str, int], int] = field(default_factory=dict)
    fired: dict[tuple[str, str, int], int] = field(default_factory=dict)
    seen: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    seq: int = 0

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        for entity, bucket, count in counts[["entity", "bucket", "count"]].itertuples(index=False):
            key = (signal, str(entity), int(bucket))
            self.data[key] = self.data.get(key, 0) + int(count)

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        rows = [
            (e, b, c) for (s, e, b), c in self.data.items() if s == signal and first <= b <= last
        ]
        return pd.DataFrame(rows, columns=["entity", "bucket", "count"])

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        return self.fired.setdefault((signal, entity, bucket), run) == run

    def counted(self) -> int:
        return self.seq

    def set_counted(self, seq: int) -> None:
        self.seq = max(self.seq, seq)

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        for entity, attribute, value, first in seen.itertuples(index=False):
            key = (signal, str(entity), str(attribute), str(value))
            self.seen[key] = min(self.seen.get(key, int(first)), int(first))

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        wanted = set(entities)
        rows = [
            (e, a, v, t) for (s, e, a, v), t in self.seen.items() if s == signal and e in wanted
        ]
        return pd.DataFrame(rows, columns=["entity", "attribute", "value", "first_seen"])


_CLICKS_AS = VolumeSignal(
    id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c01",
    title="Click Fraud - Click Volume of an Autonomous System on a Campaign Far Above Its Baseline",
    family="click", action="ad_click", entity=("source.as.number", "marketplace.ad.campaign_id"),
    min_count=25,
)  # fmt: skip
_CLICKS_DEVICE = VolumeSignal(
    id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c02",
    title="Click Fraud - Click Volume of a Device on a Campaign Far Above Its Baseline",
    family="click", action="ad_click", entity=("user_agent.device.id", "marketplace.ad.campaign_id"),
)  # fmt: skip
FRAUD_VOLUME_SIGNALS: tuple[VolumeSignal, ...] = (_CLICKS_AS, _CLICKS_DEVICE)

FRAUD_RATIO_SIGNALS: tuple[RatioSignal, ...] = (
    RatioSignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c03",
        title="Click Fraud - Clicks Without Preceding Ad Impressions",
        family="click", base={_ACTION: "ad_click"}, other={_ACTION: "ad_impression"},
        entity=("source.ip", "marketplace.ad.campaign_id"), op="lte", threshold=0.2, min_count=8,
    ),
    RatioSignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c04",
        title="Card Testing - High Share of Declined Authorisations From One Address",
        family="card_testing", base={_ACTION: "payment_authorization"},
        other={_ACTION: "payment_authorization", "marketplace.payment.result": "declined"},
        entity=("source.ip",), op="gte", threshold=0.6, min_count=10, level="high",
    ),
)  # fmt: skip


FRAUD_NOVELTY_SIGNALS: tuple[NoveltySignal, ...] = (
    NoveltySignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c05",
        title="Account Takeover - Failed Logins Then Success From a New Country or Network",
        family="account_takeover", entity="user.id",
        attributes=("client.geo.country_iso_code", "source.as.number"),
        success="login_success", failure="login_failed",
    ),
)  # fmt: skip


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
    fields = _fields(volume, ratios, novelty)
    keep = _Relevance(volume, ratios, novelty)
    new = _events(store, window, fields, keep)
    if new.empty:
        return []  # nothing any signal counts, learns or judges: no state to update
    new["_fresh"] = new["_seq"] > baselines.counted()
    run = int(window.seq_after or 0)
    out: list[Detection] = []
    for signal in volume:
        out += _volume(signal, new, baselines, run)
    if ratios or novelty:
        span = max(s.window for s in [*ratios, *novelty])
        lo, hi = new["@timestamp"].min(), new["@timestamp"].max()
        # Ratios and novelty only alert on a new event they select: without one, the trailing
        # window is not read (novelty still learns from ``new``).
        judged = _judged(new, ratios, novelty)
        context = _events(store, MatchWindow(time_after=lo - span, time_upto=hi), fields, keep) if judged else new.iloc[0:0]
        fresh = set(new["event.id"])
        for ratio in ratios:
            out += _ratio(ratio, context, fresh)
        for signal in novelty:
            out += _novelty(signal, new, context, fresh, baselines)
    baselines.set_counted(upto)
    return out


# -- reading events ---------------------------------------------------------------------------
def _fields(
    volume: Sequence[VolumeSignal], ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]
) -> list[str]:
    names = {_ACTION}
    for v in volume:
        names.update(v.entity)
    for r in ratios:
        names.update(r.entity, r.base, r.other)
    for n in novelty:
        names.update((n.entity, *n.attributes))
    return sorted(names)


class _Relevance:
    """Which stored events a set of signals can use, decided in Arrow before any per-row work.

    A superset: an event is kept when one of the signals' ``field: value`` selectors may hold
    for it (a schema column equal to the value ignoring case; for a field kept in ``labels``,
    the value occurring in the labels text), or when it names a novelty signal's entity (it
    teaches that entity's attributes). The signals' own selection still decides.
    """

    def __init__(
        self, volume: Sequence[VolumeSignal], ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]
    ) -> None:
        pairs = {(_ACTION, v.action) for v in volume}
        pairs |= {(n, val) for r in ratios for spec in (r.base, r.other) for n, val in spec.items()}
        pairs |= {(_ACTION, val) for n in novelty for val in (n.success, n.failure)}
        self.pairs = sorted(pairs)
        self.present = sorted({n.entity for n in novelty})

    def mask(self, table: pa.Table) -> pa.ChunkedArray | None:
        """True for the rows to keep; None when every row must be kept."""
        conditions = []
        for name, value in self.pairs:
            if name in EVENT_FIELDS:
                column = pc.cast(table.column(name), pa.string())
                conditions.append(pc.equal(pc.utf8_lower(column), value.lower()))
            elif value.isascii() and value.isprintable() and not set(value) & {'"', "\\"}:
                conditions.append(pc.match_substring(table.column("labels"), value, ignore_case=True))
            else:
                return None  # JSON may escape the value: no safe test on the labels text
        for name in self.present:
            if name not in EVENT_FIELDS:
                return None
            conditions.append(pc.is_valid(table.column(name)))
        if not conditions:
            return None
        return pc.fill_null(functools.reduce(pc.or_kleene, conditions), False)


def _judged(new: pd.DataFrame, ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]) -> bool:
    """Whether a new event is one a ratio (base or other) or a novelty signal (success) judges."""
    specs = [spec for r in ratios for spec in (r.base, r.other)] + [{_ACTION: n.success} for n in novelty]
    return any(bool(_select(new, spec).any()) for spec in specs)


def _events(store: Store, window: MatchWindow, fields: list[str], keep: _Relevance | None = None) -> pd.DataFrame:
    """``_seq``, ``event.id``, ``@timestamp`` and ``fields`` (schema columns or labels keys) of
    the window's events (only those ``keep`` finds relevant)."""
    schema = [f for f in fields if f in EVENT_FIELDS]
    columns = ["event.id", "@timestamp", "labels", *schema]
    batches = list(store.scan(window, columns))
    table = pa.Table.from_batches(batches) if batches else None
    if table is not None and keep is not None and (mask := keep.mask(table)) is not None:
        table = table.filter(mask)
    if table is not None and table.num_rows:
        frame = table.to_pandas()
    else:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in ["_seq", *columns]})
    frame = frame.sort_values(["@timestamp", "event.id"], kind="stable").reset_index(drop=True)
    labels = [json.loads(x) if isinstance(x, str) else {} for x in frame.pop("labels")]
    for name in fields:
        if name not in EVENT_FIELDS:
            frame[name] = [lab.get(name) for lab in labels]
    for name in fields:
        frame[name] = frame[name].map(_text, na_action="ignore").astype(object)
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], utc=True)
    frame["_t"] = frame["@timestamp"].dt.as_unit("ns").astype("int64")
    return frame


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _entity(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    """One text key per row (JSON list of the entity's field values); rows lacking one are NaN."""
    present = frame[list(names)].notna().all(axis=1).to_numpy()
    columns = [frame[n].to_numpy(dtype=object) for n in names]
    keys = [
        json.dumps(list(vals)) if ok else None for ok, *vals in zip(present, *columns, strict=True)
    ]
    return pd.Series(keys, index=frame.index, dtype=object)


def _select(frame: pd.DataFrame, spec: dict[str, str]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for name, value in spec.items():
        mask &= frame[name].str.lower() == value.lower()
    return mask.fillna(False).astype(bool)


# -- volume -----------------------------------------------------------------------------------
def _volume(
    signal: VolumeSignal, events: pd.DataFrame, baselines: Baselines, run: int
) -> list[Detection]:
    rows = events[_select(events, {_ACTION: signal.action})].copy()
    rows["entity"] = _entity(rows, signal.entity)
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
        judged = _judge(signal, grid, totals, entity, bucket)
        if not judged or _judge(signal, grid, totals, entity, bucket - 1):
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


def _pair_sums(values: pd.Series, ends: list[int]) -> np.ndarray:
    return np.array([values.get(b, 0) + values.get(b - 1, 0) for b in ends], dtype=np.float64)


def _judge(
    signal: VolumeSignal, grid: pd.DataFrame, totals: pd.Series, entity: str, bucket: int
) -> dict[str, float] | None:
    """The evidence of a window that alerts, or None."""
    if entity not in grid.index:
        return None
    own_counts = grid.loc[entity]
    count = float(_pair_sums(own_counts, [bucket])[0])
    if count < signal.min_count:
        return None
    past = [bucket - 2 * k for k in range(1, signal.history + 1)]
    history = _pair_sums(own_counts, past)
    median = float(np.median(history))
    mad = float(np.median(np.abs(history - median)))
    own = median + 3 * 1.4826 * mad
    others = totals - own_counts  # the rest of the population: an attack must not lift its own bar
    past_totals = _pair_sums(others, past)
    past_totals = past_totals[past_totals > 0]
    now_total = float(_pair_sums(others, [bucket])[0])
    season = max(1.0, now_total / float(np.median(past_totals))) if len(past_totals) else 1.0
    expected = max(1.0, own) * season
    if count <= signal.factor * expected:
        return None
    return {
        "count": count, "baseline": round(own, 3), "baseline_median": median, "baseline_mad": mad,
        "season": round(season, 3), "expected": round(expected, 3), "factor": signal.factor,
        "min_count": float(signal.min_count),
    }  # fmt: skip


def _volume_detection(
    signal: VolumeSignal, entity: str, bucket: int, evidence: dict[str, float], ids: tuple[str, ...]
) -> Detection:
    end = _from_ns((bucket + 1) * signal.hop_ns)
    group = tuple(zip(signal.entity, json.loads(entity), strict=True))
    return Detection(
        rule_id=signal.id, rule_title=signal.title, rule_level=signal.level,
        rule_author="MarketGuard", rule_license="Apache-2.0", kind="baseline_volume",
        timestamp=end, event_ids=ids, evidence=dict(group) | evidence, group=group,
        window_start=end - signal.window, window_end=end, value=evidence["count"],
        tags=("marketguard.type.fraud", f"marketguard.fraud.{signal.family}"),
    )  # fmt: skip


# -- ratios -----------------------------------------------------------------------------------
def _ratio(signal: RatioSignal, events: pd.DataFrame, fresh: set[str]) -> list[Detection]:
    base, other = _select(events, signal.base), _select(events, signal.other)
    frame = events[base | other].copy()
    frame["entity"] = _entity(frame, signal.entity)
    frame = frame[frame["entity"].notna()]
    if frame.empty:
        return []
    frame["_base"], frame["_other"] = base[frame.index], other[frame.index]
    frame = frame.sort_values(["entity", "_t", "event.id"], kind="stable").reset_index(drop=True)
    code = pd.factorize(frame["entity"])[0].astype(np.int64)
    span = int(signal.window.total_seconds() * _NS)
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
    return Detection(
        rule_id=signal.id, rule_title=signal.title, rule_level=signal.level,
        rule_author="MarketGuard", rule_license="Apache-2.0", kind="baseline_ratio",
        timestamp=end, event_ids=tuple(frame["event.id"].iloc[lo : hi + 1]),
        evidence=dict(group) | evidence, group=group, window_start=end - signal.window,
        window_end=end, value=evidence["ratio"],
        tags=("marketguard.type.fraud", f"marketguard.fraud.{signal.family}"),
    )  # fmt: skip


# -- novelty ----------------------------------------------------------------------------------
def _novelty(
    signal: NoveltySignal, new: pd.DataFrame, context: pd.DataFrame, fresh: set[str],
    baselines: Baselines,
) -> list[Detection]:  # fmt: skip
    """Learn the entity/attribute values of the new events, then judge their successes."""
    failure = _select(context, {_ACTION: signal.failure})
    learnable = new[
        new["_fresh"] & new[signal.entity].notna() & ~_select(new, {_ACTION: signal.failure})
    ]
    seen = pd.concat(
        [
            learnable.loc[learnable[a].notna(), [signal.entity, a, "_t"]]
            .set_axis(["entity", "value", "first_seen"], axis=1)
            .assign(attribute=a)
            for a in signal.attributes
        ]
    )
    seen = seen.groupby(["entity", "attribute", "value"], as_index=False)["first_seen"].min()
    baselines.learn(signal.id, seen[["entity", "attribute", "value", "first_seen"]])
    wins = context[_select(context, {_ACTION: signal.success}) & context["event.id"].isin(fresh)]
    wins = wins[wins[signal.entity].notna()]
    if wins.empty:
        return []
    known = baselines.known(signal.id, sorted(set(wins[signal.entity])))
    history = known.groupby("entity")["first_seen"].min()
    wins = wins[wins[signal.entity].map(history).lt(wins["_t"]).fillna(False).astype(bool)]
    fails = context[failure & context[signal.entity].isin(set(wins[signal.entity]))]
    times = {e: np.sort(g.to_numpy()) for e, g in fails.groupby(signal.entity)["_t"]}
    span = int(signal.window.total_seconds() * _NS)
    known_by = {e: g for e, g in known.groupby("entity")}
    fails_by = {e: g for e, g in fails.groupby(signal.entity)}
    out = []
    for _, win in wins.iterrows():
        t = times.get(win[signal.entity], np.empty(0, np.int64))
        n = np.searchsorted(t, win["_t"], side="right") - np.searchsorted(t, win["_t"] - span)
        if n >= signal.min_failures:
            entity = win[signal.entity]
            out += _judge_success(signal, win, known_by[entity], fails_by[entity], span)
    return out


def _judge_success(
    signal: NoveltySignal, win: pd.Series, known: pd.DataFrame, fails: pd.DataFrame, span: int
) -> list[Detection]:
    entity, t = win[signal.entity], int(win["_t"])
    mine = known[(known["entity"] == entity) & (known["first_seen"] < t)]
    if mine.empty:
        return []  # no history: a new account, nothing to compare with
    new_values = {
        a: win[a] for a in signal.attributes
        if pd.notna(win[a]) and not ((mine["attribute"] == a) & (mine["value"] == win[a])).any()
    }  # fmt: skip
    before = fails[(fails[signal.entity] == entity) & fails["_t"].between(t - span, t)]
    if not new_values or len(before) < signal.min_failures:
        return []
    evidence = {
        signal.entity: entity, "failures": float(len(before)), "min_failures": float(signal.min_failures),
        "new": new_values,
        "known": {a: sorted(set(mine.loc[mine["attribute"] == a, "value"])) for a in signal.attributes},
    }  # fmt: skip
    end = win["@timestamp"].to_pydatetime()
    return [
        Detection(
            rule_id=signal.id, rule_title=signal.title, rule_level=signal.level,
            rule_author="MarketGuard", rule_license="Apache-2.0", kind="baseline_novelty",
            timestamp=end, event_ids=(*before["event.id"], win["event.id"]), evidence=evidence,
            group=((signal.entity, entity),), window_start=end - signal.window, window_end=end,
            value=float(len(before)),
            tags=("marketguard.type.fraud", f"marketguard.fraud.{signal.family}"),
        )
    ]  # fmt: skip


def _from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


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
