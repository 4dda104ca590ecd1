"""Alerts and incidents in the event store's DuckDB file.

Tables: ``alerts``, ``incidents``, ``incident_timeline``, ``alert_keys`` (the dedupe keys of
every recorded detection) and ``case_entities`` (one row per entity value of an alert or
incident: the index behind incident linking and the ``entity`` filter). Composite fields are
JSON text. One :meth:`DuckDBCaseStore.record` is one transaction, serialised by the case
store's own lock (nothing else writes these tables): the grouping logic
(:func:`marketguard.cases.grouping.plan`) reads through :class:`_View`, then its changes are
written, or nothing is.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from marketguard.cases import (
    Alert,
    CaseFilters,
    Incident,
    IncidentDetail,
    Page,
    RecordResult,
    TimelineEntry,
    decode_cursor,
    encode_cursor,
    parse_entity,
)
from marketguard.cases.alert_metrics import count_recorded
from marketguard.cases.grouping import (
    Changes,
    GroupingPolicy,
    Link,
    group_json,
    links_of,
    plan,
    utc,
)
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.errors import StoreError
from marketguard.metrics import METRICS, Metrics
from marketguard.store.duckdb import DuckDBStore
from marketguard.types import SEVERITY_ORDER, severity_rank

__all__ = ["DuckDBCaseStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert_keys (key VARCHAR PRIMARY KEY, alert_id VARCHAR, recorded TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS alerts (id VARCHAR, rule_id VARCHAR, rule_title VARCHAR,"
    " rule_level VARCHAR, rule_author VARCHAR, rule_license VARCHAR, tags VARCHAR, kind VARCHAR,"
    " type VARCHAR, group_key VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,"
    " window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, event_ids VARCHAR, event_count BIGINT,"
    " entities VARCHAR, count BIGINT, value DOUBLE, status VARCHAR, created TIMESTAMPTZ,"
    " updated TIMESTAMPTZ, incident_id VARCHAR, severity_rank INTEGER)",
    "CREATE TABLE IF NOT EXISTS incidents (id VARCHAR, title VARCHAR, type VARCHAR,"
    " severity VARCHAR, level VARCHAR, entities VARCHAR, links VARCHAR, alert_ids VARCHAR,"
    " rule_ids VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, status VARCHAR,"
    " created TIMESTAMPTZ, updated TIMESTAMPTZ, merged_into VARCHAR, severity_rank INTEGER)",
    "CREATE TABLE IF NOT EXISTS incident_timeline (incident_id VARCHAR, seq BIGINT,"
    " time TIMESTAMPTZ, kind VARCHAR, text VARCHAR, alert_id VARCHAR, recorded TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS case_entities (owner VARCHAR, id VARCHAR, field VARCHAR,"
    " value VARCHAR, link BOOLEAN)",
)

_ALERT_COLS = (
    "id", "rule_id", "rule_title", "rule_level", "rule_author", "rule_license", "tags", "kind",
    "type", "group_key", "first_seen", "last_seen", "window_start", "window_end", "event_ids",
    "event_count", "entities", "count", "value", "status", "created", "updated", "incident_id",
)
_INCIDENT_COLS = (
    "id", "title", "type", "severity", "level", "entities", "links", "alert_ids", "rule_ids",
    "first_seen", "last_seen", "status", "created", "updated", "merged_into",
)
_JSON_ALERT = ("tags", "group_key", "event_ids", "entities")
_JSON_INCIDENT = ("entities", "links", "alert_ids", "rule_ids")
_TIMES = ("first_seen", "last_seen", "window_start", "window_end", "created", "updated")


def _ts(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


@contextlib.contextmanager
def _registered(cur: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> Iterator[str]:
    """Expose ``rows`` to SQL under a fresh view name for the duration of the block."""
    name = "_rows_" + uuid.uuid4().hex[:12]
    cur.register(name, pa.Table.from_pylist(rows))
    try:
        yield name
    finally:
        cur.unregister(name)


def _insert(cur: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        with _registered(cur, rows) as view:
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}").fetchall()


def _delete(cur: duckdb.DuckDBPyConnection, table: str, ids: Sequence[str], extra: str = "") -> None:
    if ids:
        with _registered(cur, [{"id": i} for i in ids]) as view:
            cur.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {view}){extra}").fetchall()


# -- rows <-> models ----------------------------------------------------------------------------
def _alert_row(a: Alert) -> dict[str, Any]:
    row = {c: getattr(a, c) for c in _ALERT_COLS if c != "group_key"}
    row |= {"tags": json.dumps(list(a.tags)), "group_key": group_json(a.group),
            "event_ids": json.dumps(a.event_ids), "entities": json.dumps(a.entities),
            "severity_rank": severity_rank(a.rule_level)}
    return row


def _alert(row: tuple[Any, ...]) -> Alert:
    data = dict(zip(_ALERT_COLS, row, strict=True))
    for name in _JSON_ALERT:
        data[name] = json.loads(data[name])
    for name in _TIMES:
        data[name] = _ts(data[name])
    data["tags"] = tuple(data["tags"])
    data["group"] = tuple((k, v) for k, v in data.pop("group_key"))
    return Alert(**data)


def _incident_row(i: Incident) -> dict[str, Any]:
    row = {c: getattr(i, c) for c in _INCIDENT_COLS}
    row |= {"entities": json.dumps(i.entities), "links": json.dumps(sorted(i.links)),
            "alert_ids": json.dumps(i.alert_ids), "rule_ids": json.dumps(i.rule_ids),
            "severity_rank": severity_rank(i.severity)}
    return row


def _incident(row: tuple[Any, ...]) -> Incident:
    data = dict(zip(_INCIDENT_COLS, row, strict=True))
    for name in _JSON_INCIDENT:
        data[name] = json.loads(data[name])
    for name in ("first_seen", "last_seen", "created", "updated"):
        data[name] = _ts(data[name])
    data["links"] = {(k, v) for k, v in data["links"]}
    return Incident(**data)


def _entity_rows(owner: str, oid: str, entities: dict[str, list[str]], links: set[Link]) -> list[dict[str, Any]]:
    """Index rows: every shown entity value and every link (an incident's links are complete,
    its shown entities capped per field)."""
    pairs = {(f, v) for f, values in entities.items() for v in values} | links
    return [{"owner": owner, "id": oid, "field": f, "value": v, "link": (f, v) in links} for f, v in sorted(pairs)]


# -- the grouping logic's window on the database ----------------------------------------------------
class _View:
    """:class:`~marketguard.cases.grouping.CaseView` inside the record transaction."""

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur

    def seen(self, keys: Sequence[str]) -> set[str]:
        with _registered(self.cur, [{"key": k} for k in keys]) as view:
            rows = self.cur.execute(f"SELECT key FROM alert_keys WHERE key IN (SELECT key FROM {view})").fetchall()
        return {r[0] for r in rows}

    def open_alerts(self, pairs: set[tuple[str, str]], start: datetime, end: datetime) -> list[Alert]:
        rows = [{"rule_id": r, "group_key": g} for r, g in pairs]
        cols = ", ".join(f"a.{c}" for c in _ALERT_COLS)
        with _registered(self.cur, rows) as view:
            found = self.cur.execute(
                f"SELECT {cols} FROM alerts a JOIN {view} p ON a.rule_id = p.rule_id"
                " AND a.group_key = p.group_key WHERE a.status = 'open' AND a.last_seen >= ?"
                " AND a.first_seen <= ?", [start, end],
            ).fetchall()
        return [_alert(r) for r in found]

    def incidents_for(self, links: set[Link], start: datetime, end: datetime, ids: set[str]) -> list[Incident]:
        cols = ", ".join(_INCIDENT_COLS)
        rows = [{"field": f, "value": v} for f, v in links] or [{"field": "", "value": ""}]
        idrows = [{"id": i} for i in ids] or [{"id": ""}]
        with _registered(self.cur, rows) as lv, _registered(self.cur, idrows) as iv:
            found = self.cur.execute(
                f"SELECT {cols} FROM incidents WHERE id IN (SELECT id FROM {iv}) OR (status = 'open'"
                " AND last_seen >= ? AND first_seen <= ? AND id IN (SELECT e.id FROM case_entities e"
                f" JOIN {lv} l ON e.field = l.field AND e.value = l.value"
                " WHERE e.owner = 'incident' AND e.link))", [start, end],
            ).fetchall()
        return [_incident(r) for r in found]


class DuckDBCaseStore:
    """:class:`~marketguard.cases.CaseStore` in the tables of the store's DuckDB file."""

    def __init__(self, store: DuckDBStore, settings: Settings, *, metrics: Metrics = METRICS) -> None:
        self._store, self._metrics = store, metrics
        self._policy = GroupingPolicy.from_settings(settings)
        self._record_lock = threading.Lock()
        with store.lock:
            cur = store.cursor()
            try:
                for statement in _SCHEMA:
                    cur.execute(statement).fetchall()
                self._set_open_gauge(cur)
            finally:
                cur.close()

    # -- writes -----------------------------------------------------------------------------------
    def record(self, detections: Sequence[Detection], *, now: datetime | None = None) -> RecordResult:
        """Record detections as alerts and incidents in one transaction (idempotent).

        Calls are serialised by this store's own lock, not the event store's writer lock: no
        other code writes the case tables, and DuckDB transactions on different tables never
        conflict, so recording does not wait for ingest, tickets, audit or playbook writes.
        """
        if not detections:
            return RecordResult()
        now = now or datetime.now(UTC)
        with self._record_lock:
            cur = self._store.cursor()
            try:
                cur.execute("BEGIN TRANSACTION").fetchall()
                changes = plan(detections, _View(cur), self._policy, now)
                self._write(cur, changes, utc(now))
                cur.execute("COMMIT").fetchall()
                self._count(cur, changes)
                count_recorded(self._metrics, detections, changes)
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK").fetchall()
                if isinstance(exc, duckdb.Error):
                    raise StoreError(f"recording {len(detections)} detections failed: {exc}") from exc
                raise
            finally:
                cur.close()
        return changes.result()

    def _write(self, cur: duckdb.DuckDBPyConnection, changes: Changes, now: datetime) -> None:
        for absorbed, survivor in changes.merges:
            for table in ("alerts", "incident_timeline"):
                cur.execute(f"UPDATE {table} SET incident_id = ? WHERE incident_id = ?", [survivor, absorbed]).fetchall()
        alerts = list(changes.alerts.values())
        ids = [a.id for a in alerts]
        _delete(cur, "alerts", ids)
        _delete(cur, "case_entities", ids, " AND owner = 'alert'")
        _insert(cur, "alerts", [_alert_row(a) for a in alerts])
        _insert(cur, "case_entities", [
            r for a in alerts for r in _entity_rows("alert", a.id, a.entities, links_of(a.group, a.entities))
        ])
        incidents = list(changes.incidents.values())
        ids = [i.id for i in incidents]
        _delete(cur, "incidents", ids)
        _delete(cur, "case_entities", ids, " AND owner = 'incident'")
        _insert(cur, "incidents", [_incident_row(i) for i in incidents])
        _insert(cur, "case_entities", [
            r for i in incidents if i.status != "merged" for r in _entity_rows("incident", i.id, i.entities, i.links)
        ])
        seq = cur.execute("SELECT coalesce(max(seq), 0) FROM incident_timeline").fetchall()[0][0]
        _insert(cur, "incident_timeline", [
            {"incident_id": iid, "seq": seq + n, "time": e.time, "kind": e.kind, "text": e.text,
             "alert_id": e.alert_id, "recorded": e.recorded}
            for n, (iid, e) in enumerate(changes.timeline, start=1)
        ])
        _insert(cur, "alert_keys", [{"key": k, "alert_id": a, "recorded": now} for k, a in changes.keys])

    def _count(self, cur: duckdb.DuckDBPyConnection, changes: Changes) -> None:
        for aid in changes.new_alerts:
            self._metrics.alerts.labels(changes.alerts[aid].rule_level).inc()
        for iid in changes.new_incidents:
            self._metrics.incidents.labels(changes.incidents[iid].severity).inc()
        if changes.incidents:
            self._set_open_gauge(cur)

    def _set_open_gauge(self, cur: duckdb.DuckDBPyConnection) -> None:
        counts = dict(cur.execute("SELECT severity, count(*) FROM incidents WHERE status = 'open' GROUP BY 1").fetchall())
        for level in SEVERITY_ORDER:
            self._metrics.incidents_open.labels(level).set(counts.get(level, 0))

    # -- reads ------------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._store.read(sql, params, "case query")

    def _page(self, table: str, cols: Sequence[str], filters: CaseFilters | None, cursor: str | None, limit: int) -> tuple[list[tuple[Any, ...]], str | None]:
        where, params = _where(table, filters or CaseFilters(), cursor)
        limit = max(1, int(limit))
        rows = self._read(
            f"SELECT {', '.join(cols)} FROM {table} t WHERE {where}"
            f" ORDER BY last_seen DESC, id DESC LIMIT {limit + 1}", params,
        )
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = dict(zip(cols, rows[-1], strict=True))
            nxt = encode_cursor(utc(last["last_seen"]), last["id"])
        return rows, nxt

    def alerts(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Alert]:
        """Alerts, newest ``last_seen`` first (semantics in :mod:`marketguard.cases`)."""
        rows, nxt = self._page("alerts", _ALERT_COLS, filters, cursor, limit)
        return Page([_alert(r) for r in rows], nxt)

    def incidents(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Incident]:
        """Incidents, newest ``last_seen`` first; merged ones only when asked for by status."""
        rows, nxt = self._page("incidents", _INCIDENT_COLS, filters, cursor, limit)
        return Page([_incident(r) for r in rows], nxt)

    def incident(self, incident_id: str) -> IncidentDetail | None:
        """One incident with its alerts and timeline; a merged id resolves to its survivor."""
        cols = ", ".join(_INCIDENT_COLS)
        for _ in range(64):  # a merge chain is short; the bound only guards against a cycle
            rows = self._read(f"SELECT {cols} FROM incidents WHERE id = ?", [incident_id])
            if not rows:
                return None
            inc = _incident(rows[0])
            if inc.status != "merged" or not inc.merged_into:
                break
            incident_id = inc.merged_into
        acols = ", ".join(_ALERT_COLS)
        alerts = self._read(f"SELECT {acols} FROM alerts WHERE incident_id = ? ORDER BY first_seen, id", [inc.id])
        entries = self._read(
            "SELECT time, kind, text, alert_id, recorded FROM incident_timeline"
            " WHERE incident_id = ? ORDER BY time, seq", [inc.id],
        )
        timeline = [TimelineEntry(utc(t), k, x, a, _ts(r)) for t, k, x, a, r in entries]
        return IncidentDetail(inc, [_alert(r) for r in alerts], timeline)


def _where(table: str, f: CaseFilters, cursor: str | None) -> tuple[str, list[Any]]:
    """SQL conditions and parameters for the filters and the cursor."""
    parts: list[str] = ["TRUE"]
    params: list[Any] = []

    def add(cond: str, *values: Any) -> None:
        parts.append(cond)
        params.extend(values)

    if f.time_from is not None:
        add("last_seen >= ?", utc(f.time_from))
    if f.time_to is not None:
        add("last_seen <= ?", utc(f.time_to))
    if f.severity is not None:
        add("severity_rank >= ?", severity_rank(f.severity))
    if f.status is not None:
        add("status = ?", f.status)
    elif table == "incidents":
        add("status <> 'merged'")
    if f.entity:
        name, value = parse_entity(f.entity)
        owner = "alert" if table == "alerts" else "incident"
        cond = "EXISTS (SELECT 1 FROM case_entities e WHERE e.owner = ? AND e.id = t.id AND e.value = ?"
        add(cond + (" AND e.field = ?)" if name else ")"), owner, value, *([name] if name else []))
    if f.rule_id is not None and table == "alerts":
        add("rule_id = ?", f.rule_id)
    if f.type is not None and table == "incidents":
        add("type = ?", f.type)
    if cursor:
        moment, row_id = decode_cursor(cursor)
        add("(last_seen < ? OR (last_seen = ? AND id < ?))", moment, moment, row_id)
    return " AND ".join(parts), params
