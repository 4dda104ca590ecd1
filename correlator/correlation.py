"""Evaluate Sigma correlation rules over rule matches with sliding windows, for every backend.

The engine never relies on a backend's tumbling buckets: it receives the events that matched the
referenced rules and computes the windows itself, so DuckDB and Elasticsearch give the same hits.

Semantics (Sigma correlation specification v2.1):

* **Window.** Any closed interval ``[t - timespan, t]``: events exactly ``timespan`` apart are in
  one window. The engine evaluates, per group, the *trailing* window ending at each distinct
  event time. Every set of events that fits in a timespan lies in one of these windows, so for
  the monotone measures (counts, distinct counts, sums of non-negative values, temporal) no
  satisfying window is missed; avg/percentile/median/lt conditions are judged on the trailing
  window as of each event.
* **Group.** Events with equal group-by values form a group. An alias resolves, per event, to
  the field its ``_rule`` maps the alias to. A missing field or an unmapped rule gives null;
  nulls group together as their own value (``None`` in :attr:`CorrelationHit.group`). Values
  are compared as text (``200`` and ``"200"`` are one value).
* **Measures.** event_count: events (an event matching several referenced rules counts once);
  value_count: distinct non-null values; value_sum/avg/percentile/median: over the numeric
  values of the field (non-numeric and null ignored; a window without any is never a hit);
  percentile is linear-interpolated (median = 50th). temporal: number of distinct referenced
  rules matched in the window; temporal_ordered: length of the longest prefix of ``rules``
  matched in that order (simultaneous events count as ordered). Temporal rules without a
  condition need all their rules (``gte len(rules)``, as pySigma sets it).
* **lt/lte/eq/neq.** Absence is invisible in matches: a window only exists where an event is, so
  "fewer than N" means "an event whose trailing timespan held fewer than N". Never raises.
* **One hit per episode.** A hit is reported at a window where the condition holds when it held
  at no window end of the same group in the preceding timespan. A burst, or an attack sustained
  for hours, is one hit (made of the events of its first satisfying window); the group can hit
  again once the condition has been false for a whole timespan. The rule only looks back, so a
  hit never changes when later events arrive, and depends only on events in ``[end - 2 ×
  timespan, end]``: re-evaluating an overlapping range that starts at least
  :func:`required_lookback` before ``since`` gives exactly the same hits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from correlator import _windows as win
from correlator.rules import CorrelationRule
from marketguard.errors import RuleError

__all__ = ["CorrelationHit", "evaluate", "required_lookback", "hits_to_matches"]

log = logging.getLogger(__name__)

_TYPES = frozenset(
    {"event_count", "value_count", "temporal", "temporal_ordered"}
    | {"value_sum", "value_avg", "value_percentile", "value_median"}
)
_VALUE_TYPES = frozenset(
    {"value_count", "value_sum", "value_avg", "value_percentile", "value_median"}
)
_TEMPORAL = frozenset({"temporal", "temporal_ordered"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CorrelationHit:
    """One correlation match: a group whose window satisfied the rule's condition."""

    rule_id: str
    group: tuple[tuple[str, str | None], ...]  # (group-by name, value) in group_by order
    window_start: datetime  # UTC; time of the first event in the hit
    window_end: datetime  # UTC; time of the last event in the hit
    event_ids: tuple[str, ...]  # the events making up the hit, in time order
    value: float  # count, distinct count, sum, avg, percentile, median or rules seen


@dataclass(frozen=True)
class _Events:
    """Matches of one rule as sorted arrays (see :mod:`correlator._windows`)."""

    group: np.ndarray
    time: np.ndarray
    rule_pos: np.ndarray
    event_id: np.ndarray
    labels: list[tuple[tuple[str, str | None], ...]]  # group code -> group tuple
    values: pd.Series | None  # value field per event, in sorted order


def required_lookback(rule: CorrelationRule) -> timedelta:
    """How far before ``since`` the matches must reach for ``evaluate`` to be exact."""
    return 2 * rule.timespan


def evaluate(
    rule: CorrelationRule, matches: pd.DataFrame, *, since: datetime | None = None
) -> list[CorrelationHit]:
    """Return the hits of ``rule`` over ``matches``, sorted by (window_end, group).

    ``matches`` holds one row per event that matched one of ``rule.rules``: ``_rule``,
    ``@timestamp``, ``event.id`` and the fields named by group-by, value field and aliases, in
    any order. With ``since``, only hits ending after it are returned. Raises
    :class:`RuleError` only for a rule the engine cannot evaluate; bad data never raises.
    """
    _validate(rule)
    events = _prepare(rule, matches)
    if events is None:
        return []
    span = _to_ns(rule.timespan)
    windows = win.trailing_windows(events.group, events.time, span)
    measure = _measure(rule, events, windows)
    threshold = float(rule.count) if rule.count is not None else float(len(_unique(rule.rules)))
    fired = win.first_of_episodes(windows, win.holds(measure, rule.op or "gte", threshold), span)
    if since is not None:
        fired = fired[windows.time[fired] > _datetime_ns(since)]
    hits = [_hit(rule, events, windows, int(q), float(measure[q])) for q in fired]
    return sorted(hits, key=lambda h: (h.window_end, _group_key(h.group)))


def hits_to_matches(rule_id: str, hits: list[CorrelationHit]) -> pd.DataFrame:
    """Turn hits into match rows (time = window end) so a correlation can reference another."""
    rows = []
    for hit in hits:
        row: dict[str, object] = dict(hit.group)
        row.update(
            {
                "_rule": rule_id,
                "@timestamp": pd.Timestamp(hit.window_end),
                "event.id": f"{rule_id}@{hit.window_end.isoformat()}:{hit.group!r}",
            }
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["_rule", "@timestamp", "event.id"])
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], utc=True)
    return frame


def _validate(rule: CorrelationRule) -> None:
    def fail(reason: str) -> RuleError:
        return RuleError(rule.file, f"correlation '{rule.title}' ({rule.id}): {reason}")

    if rule.type not in _TYPES:
        raise fail(f"unknown type '{rule.type}', expected one of {', '.join(sorted(_TYPES))}")
    if (rule.op or "gte") not in ("gt", "gte", "lt", "lte", "eq", "neq"):
        raise fail(f"unknown condition operator '{rule.op}'")
    if rule.count is None and rule.type not in _TEMPORAL:
        raise fail("condition needs a threshold")
    if rule.type in _VALUE_TYPES and not rule.value_field:
        raise fail(f"{rule.type} needs condition.field")
    if rule.type == "value_percentile" and not (
        rule.percentile is not None and 0 <= rule.percentile <= 100
    ):
        raise fail(
            f"value_percentile needs condition.percentile in 0..100, got {rule.percentile!r}"
        )
    if rule.timespan <= timedelta(0):
        raise fail("timespan must be positive")


def _prepare(rule: CorrelationRule, matches: pd.DataFrame) -> _Events | None:
    """Keep usable rows of the referenced rules, resolve groups and sort; None when empty."""
    if "_rule" not in matches.columns or "@timestamp" not in matches.columns:
        log.warning("correlation %s: matches lack _rule or @timestamp", rule.id)
        return None
    order = {rid: pos for pos, rid in enumerate(_unique(rule.rules))}
    codes, names = pd.factorize(matches["_rule"])
    positions = np.array([order.get(name, -1) for name in names] + [-1], dtype=np.int64)[codes]
    frame = matches.assign(_pos=positions)[positions >= 0]
    stamps = pd.to_datetime(frame["@timestamp"], utc=True, errors="coerce", format="ISO8601")
    if bad := int(stamps.isna().sum()):
        log.warning("correlation %s: %d matches without a usable @timestamp ignored", rule.id, bad)
    usable = frame.assign(_t=stamps.array)[stamps.notna().to_numpy()]
    frame = _drop_repeats(usable, by_rule=rule.type in _TEMPORAL)
    if frame.empty:
        return None
    group, labels = _group_codes(rule, frame)
    time = frame["_t"].dt.as_unit("ns").astype("int64").to_numpy()
    rule_pos = frame["_pos"].to_numpy()
    ids = frame["event.id"] if "event.id" in frame.columns else pd.Series("", index=frame.index)
    event_id = ids.to_numpy(dtype=object, na_value="")
    idx = _sort_order(group, time, rule_pos, event_id)
    values = _field(rule, frame, rule.value_field) if rule.value_field else None
    return _Events(
        group=group[idx],
        time=time[idx],
        rule_pos=rule_pos[idx],
        event_id=event_id[idx],
        labels=labels,
        values=None if values is None else values.iloc[idx].reset_index(drop=True),
    )


def _sort_order(
    group: np.ndarray, time: np.ndarray, rule_pos: np.ndarray, event_id: np.ndarray
) -> np.ndarray:
    """Order by (group, time, rule position, event id), whatever the input order."""
    idx = np.lexsort((rule_pos, time, group))
    g, t, r = group[idx], time[idx], rule_pos[idx]
    tied = np.zeros(len(idx), dtype=bool)
    tied[1:] = (g[1:] == g[:-1]) & (t[1:] == t[:-1]) & (r[1:] == r[:-1])
    tied[:-1] |= tied[1:]
    if not tied.any():
        return idx
    rank = np.zeros(len(idx), dtype=np.int64)
    tied_ids = pd.Series(event_id[idx][tied], dtype=object).astype(str)
    rank[tied] = pd.factorize(tied_ids, sort=True)[0]
    return idx[np.lexsort((rank, r, t, g))]


def _drop_repeats(frame: pd.DataFrame, *, by_rule: bool) -> pd.DataFrame:
    """One row per event (per event and rule for temporal types); rows without id all stay."""
    if "event.id" not in frame.columns:
        return frame
    keys = ["event.id", "_pos"] if by_rule else ["event.id"]
    frame = frame.sort_values("_pos", kind="stable")
    dup = (
        frame.duplicated(subset=keys, keep="first").to_numpy()
        & frame["event.id"].notna().to_numpy()
    )
    return frame[~dup]


def _field(rule: CorrelationRule, frame: pd.DataFrame, name: str) -> pd.Series:
    """Per-event value of a field or alias (resolved through each event's rule); null if absent."""
    mapping = rule.aliases.get(name)
    if not mapping:
        if name in frame.columns:
            return frame[name].astype(object)
        return pd.Series(None, index=frame.index, dtype=object)
    out = np.full(len(frame), None, dtype=object)
    rules = frame["_rule"].to_numpy()
    for rule_id, column in mapping.items():
        if column in frame.columns:
            rows = rules == rule_id
            out[rows] = frame[column].to_numpy(dtype=object)[rows]
    return pd.Series(out, index=frame.index, dtype=object)


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Integer code per value, compared as text; nulls share the last code (label None)."""
    raw, uniques = pd.factorize(values, use_na_sentinel=True)
    text_codes, text = pd.factorize(pd.Series([_label(u) for u in uniques], dtype=object))
    mapping = np.append(text_codes, len(text)).astype(np.int64)
    labels: list[str | None] = [str(t) for t in text]
    return mapping[raw], labels + [None]


def _group_codes(
    rule: CorrelationRule, frame: pd.DataFrame
) -> tuple[np.ndarray, list[tuple[tuple[str, str | None], ...]]]:
    """Group code per row and the group tuple of each code."""
    code = np.zeros(len(frame), dtype=np.int64)
    fields: list[tuple[str, np.ndarray, list[str | None]]] = []
    for name in rule.group_by:
        codes, labels = _codes(_field(rule, frame, name))
        code, _ = pd.factorize(code * len(labels) + codes)
        fields.append((name, codes, labels))
    code = code.astype(np.int64)
    first = np.unique(code, return_index=True)[1]
    groups = [tuple((name, labels[codes[row]]) for name, codes, labels in fields) for row in first]
    return code, groups


def _measure(rule: CorrelationRule, ev: _Events, w: win.Windows) -> np.ndarray:
    """The measured quantity of every window."""
    n_rules = len(_unique(rule.rules))
    if rule.type == "event_count":
        return win.event_counts(w)
    if rule.type == "temporal":
        return win.rules_present(w, ev.rule_pos, n_rules)
    if rule.type == "temporal_ordered":
        return win.ordered_prefix(w, ev.rule_pos, n_rules)
    assert ev.values is not None
    if rule.type == "value_count":
        return _distinct(ev, w)
    numbers = pd.to_numeric(ev.values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if rule.type in ("value_percentile", "value_median"):
        q = 50.0 if rule.type == "value_median" else float(rule.percentile or 0)
        return win.percentiles(w, numbers, q)
    sums, counts = win.numeric_sums(w, numbers)
    if rule.type == "value_sum":
        return np.where(counts > 0, sums, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _distinct(ev: _Events, w: win.Windows) -> np.ndarray:
    assert ev.values is not None
    codes, labels = _codes(ev.values)
    valid = codes != len(labels) - 1
    idx = np.arange(len(codes))
    order = np.lexsort((idx, codes, ev.group))
    prev = np.full(len(codes), -1, dtype=np.int64)
    same = (ev.group[order][1:] == ev.group[order][:-1]) & (codes[order][1:] == codes[order][:-1])
    prev[order[1:][same]] = order[:-1][same]
    return win.distinct_counts(w, prev, valid)


def _hit(
    rule: CorrelationRule, ev: _Events, w: win.Windows, q: int, value: float
) -> CorrelationHit:
    s, e = int(w.start[q]), int(w.end[q])
    return CorrelationHit(
        rule_id=rule.id,
        group=ev.labels[int(w.group[q])],
        window_start=_from_ns(int(ev.time[s])),
        window_end=_from_ns(int(w.time[q])),
        event_ids=tuple(str(i) for i in ev.event_id[s:e]),
        value=value,
    )


def _unique(items: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(items))


def _group_key(group: tuple[tuple[str, str | None], ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for _, value in group)


def _to_ns(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _datetime_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _to_ns(moment - _EPOCH)


def _from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)
