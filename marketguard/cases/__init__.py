"""Alerts and incidents: what the correlator's detections become once recorded.

A :class:`~marketguard.detections.Detection` is recorded as an **alert** (one per rule and
group key; repeats inside the suppression window increment it) and every alert joins an
**incident** with the alerts it shares an entity with. The grouping rules are pure logic in
:mod:`marketguard.cases.grouping`, shared by every backend; a backend (one module, e.g.
:mod:`marketguard.cases.duckdb`) only loads and writes state. :func:`open_cases` picks the
backend that lives beside the event store, by the store's dialect.

Query semantics shared by every backend:

* Lists are sorted by ``last_seen`` descending, then ``id`` descending; the cursor encodes the
  last row's sort key, so rows inserted while a client pages do not shift its pages. (A row
  whose ``last_seen`` moves forward while a client pages may be seen on a later walk only.)
* ``time_from``/``time_to`` bound ``last_seen`` (both inclusive).
* ``severity`` is a *minimum*: ``high`` returns high and critical.
* ``entity`` is ``value`` (any entity field) or ``field=value`` (one of
  :data:`~marketguard.schema.ENTITY_FIELDS`).
* Incidents with status ``merged`` are listed only when ``status="merged"`` is asked for;
  :meth:`CaseStore.incident` resolves a merged id to the incident that absorbed it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.errors import ConfigError, MarketGuardError
from marketguard.metrics import METRICS, Metrics
from marketguard.schema import ENTITY_FIELDS
from marketguard.store import Store
from marketguard.types import Severity

__all__ = [
    "Alert", "Incident", "TimelineEntry", "IncidentDetail", "CaseFilters", "Page",
    "RecordResult", "CaseStore", "CaseQueryError", "open_cases", "CASE_STORES",
    "AlertStatus", "IncidentStatus", "IncidentType", "encode_cursor", "decode_cursor",
    "parse_entity",
]

AlertStatus = Literal["open", "closed"]
IncidentStatus = Literal["open", "closed", "merged"]
IncidentType = Literal["security", "fraud", "availability", "sla"]
TimelineKind = Literal["alert", "escalated", "merged"]

T = TypeVar("T")


class CaseQueryError(MarketGuardError):
    """A case query was refused (malformed cursor or filter); the message says why."""


@dataclass
class Alert:
    """A rule that fired for one group key; repeats inside the suppression window increment it.

    ``group`` is the correlation's group-by key, or for single-event rules the event's primary
    entity (see :func:`marketguard.cases.grouping.group_key`). ``event_ids`` keeps the first
    :data:`~marketguard.cases.grouping.MAX_EVENT_IDS` matched ids; ``event_count`` counts all.
    ``count`` is the number of detections folded into the alert. Times are event time except
    ``created``/``updated`` (wall clock).
    """

    id: str
    rule_id: str
    rule_title: str
    rule_level: str
    rule_author: str | None
    rule_license: str | None
    tags: tuple[str, ...]
    kind: str
    type: str
    group: tuple[tuple[str, str | None], ...]
    first_seen: datetime
    last_seen: datetime
    window_start: datetime | None
    window_end: datetime | None
    event_ids: list[str]
    event_count: int
    entities: dict[str, list[str]]
    count: int
    value: float | None
    status: str
    created: datetime
    updated: datetime
    incident_id: str | None = None


@dataclass
class TimelineEntry:
    """One line of an incident's story: ``time`` is event time, ``recorded`` wall clock."""

    time: datetime
    kind: str  # TimelineKind
    text: str
    alert_id: str | None = None
    recorded: datetime | None = None


@dataclass
class Incident:
    """Alerts that share entities within the incident window.

    ``level`` is the highest alert level; ``severity`` is ``level`` raised one step when at
    least ``settings.escalation_rules`` distinct rules agree. ``links`` are the
    ``(field, value)`` pairs that can pull further alerts in (see
    :func:`marketguard.cases.grouping.links_of`).
    """

    id: str
    title: str
    type: str
    severity: str
    level: str
    entities: dict[str, list[str]]
    links: set[tuple[str, str]]
    alert_ids: list[str]
    rule_ids: list[str]
    first_seen: datetime
    last_seen: datetime
    status: str
    created: datetime
    updated: datetime
    merged_into: str | None = None


@dataclass
class IncidentDetail:
    """An incident with its alerts (oldest first) and timeline."""

    incident: Incident
    alerts: list[Alert]
    timeline: list[TimelineEntry]


@dataclass(frozen=True)
class CaseFilters:
    """Filters of the alert and incident lists (see the module docstring for semantics)."""

    time_from: datetime | None = None
    time_to: datetime | None = None
    severity: Severity | None = None
    status: str | None = None
    entity: str | None = None
    rule_id: str | None = None  # alerts only
    type: str | None = None  # incidents only


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next page (None on the last page)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class RecordResult:
    """Ids touched by one :meth:`CaseStore.record` call (all empty when nothing was new)."""

    new_alerts: tuple[str, ...] = ()
    updated_alerts: tuple[str, ...] = ()
    new_incidents: tuple[str, ...] = ()
    updated_incidents: tuple[str, ...] = ()
    merged_incidents: tuple[str, ...] = ()


class CaseStore(Protocol):
    """Where alerts and incidents live; one implementation per store dialect."""

    def record(self, detections: Sequence[Detection], *, now: datetime | None = None) -> RecordResult:
        """Record detections idempotently: a detection already recorded changes nothing."""
        ...

    def alerts(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Alert]:
        """Alerts, newest ``last_seen`` first. Raises CaseQueryError on a bad cursor."""
        ...

    def incidents(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Incident]:
        """Incidents, newest ``last_seen`` first. Raises CaseQueryError on a bad cursor."""
        ...

    def incident(self, incident_id: str) -> IncidentDetail | None:
        """One incident with its alerts and timeline (a merged id resolves to its survivor)."""
        ...


# -- helpers shared by the backends -------------------------------------------------------------
def encode_cursor(last_seen: datetime, row_id: str) -> str:
    """The opaque cursor after a row: its sort key, base64url-encoded JSON."""
    raw = json.dumps([last_seen.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The sort key a cursor encodes. Raises CaseQueryError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or not isinstance(row_id, str):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise CaseQueryError(f"invalid cursor {cursor[:64]!r}: pass next_cursor from a previous page") from None
    return moment, row_id


def parse_entity(entity: str) -> tuple[str | None, str]:
    """Split an entity filter into (field or None, value): ``field=value`` or a bare value."""
    name, sep, value = entity.partition("=")
    if sep and name in ENTITY_FIELDS:
        return name, value
    return None, entity


# -- choosing a backend -------------------------------------------------------------------------
def _duckdb_cases(store: Store, settings: Settings, metrics: Metrics) -> CaseStore:
    from marketguard.cases.duckdb import DuckDBCaseStore

    return DuckDBCaseStore(store, settings, metrics=metrics)  # type: ignore[arg-type]


def _elasticsearch_cases(store: Store, settings: Settings, metrics: Metrics) -> CaseStore:
    from marketguard.cases.elasticsearch import ElasticsearchCaseStore

    return ElasticsearchCaseStore(store, settings, metrics=metrics)  # type: ignore[arg-type]


#: Store dialect -> case-store factory.
CASE_STORES: dict[str, Callable[[Store, Settings, Metrics], CaseStore]] = {
    "duckdb": _duckdb_cases,
    "elasticsearch": _elasticsearch_cases,
}


def open_cases(store: Store, settings: Settings, *, metrics: Metrics = METRICS) -> CaseStore:
    """The case store that lives beside ``store`` (chosen by its dialect)."""
    try:
        factory = CASE_STORES[store.dialect]
    except KeyError:
        raise ConfigError(
            f"no case store for the {store.dialect!r} store; valid: {', '.join(sorted(CASE_STORES))}"
        ) from None
    return factory(store, settings, metrics)
