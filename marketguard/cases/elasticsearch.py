"""Alerts and incidents in Elasticsearch, beside the event store.

Indices (``<prefix>-…``): ``alerts``, ``incidents``, ``timeline`` and ``alertkeys`` (the dedupe
keys of every recorded detection, as document ids). The grouping logic is shared
(:func:`marketguard.cases.grouping.plan`); this module answers its three look-ups and writes
what it decides. Entity filters use keyword arrays on each document (``entity_values``,
``entity_pairs``; incidents also ``link_keys``) instead of DuckDB's side table.

Writes are optimistic: a document read by the look-ups is written back with its
``if_seq_no``/``if_primary_term``, new documents with ``op_type=create``. A conflict (another
instance changed the same alert or incident) aborts the call with :class:`StoreError`, and
the caller records again (the dedupe keys, written last, make that safe for the detections
whose keys were not yet stored). Calls in one process are serialised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError

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
from marketguard.store._es_docs import iso
from marketguard.store.elasticsearch import ElasticsearchStore
from marketguard.types import SEVERITY_ORDER, severity_rank

__all__ = ["ElasticsearchCaseStore"]

#: The indices this store writes (``<prefix>-<kind>``; mappings in ``es_setup.RECORD_MAPPINGS``).
_KINDS = ("alerts", "incidents", "timeline", "alertkeys")
_TIMES = ("first_seen", "last_seen", "window_start", "window_end", "created", "updated")
_SEP = "\x1f"


def _t(value: datetime | None) -> str | None:
    return iso(utc(value)) if value is not None else None


def _p(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC) if value else None


def _entity_fields(entities: dict[str, list[str]], links: set[Link]) -> dict[str, Any]:
    pairs = {(f, v) for f, values in entities.items() for v in values} | links
    return {"entity_values": sorted({v for _, v in pairs}), "entity_pairs": sorted(f"{f}={v}" for f, v in pairs)}


def _alert_doc(a: Alert) -> dict[str, Any]:
    doc = {k: getattr(a, k) for k in ("id", "rule_id", "rule_title", "rule_level", "rule_author", "rule_license",
                                      "kind", "type", "event_count", "count", "value", "status", "incident_id")}
    doc |= {k: _t(getattr(a, k)) for k in _TIMES}
    doc |= {"tags": list(a.tags), "group_key": group_json(a.group), "event_ids": json.dumps(a.event_ids),
            "entities": json.dumps(a.entities), "severity_rank": severity_rank(a.rule_level)}
    return doc | _entity_fields(a.entities, links_of(a.group, a.entities))


def _alert(src: dict[str, Any]) -> Alert:
    data = {k: v for k, v in src.items() if k not in ("group_key", "severity_rank", "entity_values", "entity_pairs")}
    data |= {k: _p(src.get(k)) for k in _TIMES}
    data |= {"tags": tuple(src.get("tags") or ()), "event_ids": json.loads(src["event_ids"]),
             "entities": json.loads(src["entities"]), "group": tuple((k, v) for k, v in json.loads(src["group_key"]))}
    return Alert(**data)


def _incident_doc(i: Incident) -> dict[str, Any]:
    doc = {k: getattr(i, k) for k in ("id", "title", "type", "severity", "level", "status", "merged_into")}
    doc |= {k: _t(getattr(i, k)) for k in ("first_seen", "last_seen", "created", "updated")}
    doc |= {"entities": json.dumps(i.entities), "links": json.dumps(sorted(i.links)),
            "alert_ids": json.dumps(i.alert_ids), "rule_ids": json.dumps(i.rule_ids),
            "severity_rank": severity_rank(i.severity)}
    live = i.status != "merged"  # a merged incident is found by id only
    doc["link_keys"] = sorted(f"{f}{_SEP}{v}" for f, v in i.links) if live else []
    return doc | (_entity_fields(i.entities, i.links) if live else {"entity_values": [], "entity_pairs": []})


def _incident(src: dict[str, Any]) -> Incident:
    data = {k: src.get(k) for k in ("id", "title", "type", "severity", "level", "status", "merged_into")}
    data |= {k: _p(src.get(k)) for k in ("first_seen", "last_seen", "created", "updated")}
    data |= {"entities": json.loads(src["entities"]), "links": {(f, v) for f, v in json.loads(src["links"])},
             "alert_ids": json.loads(src["alert_ids"]), "rule_ids": json.loads(src["rule_ids"])}
    return Incident(**data)


class _View:
    """:class:`~marketguard.cases.grouping.CaseView` that remembers what it read (versions)."""

    def __init__(self, cases: ElasticsearchCaseStore) -> None:
        self.cases = cases
        self.versions: dict[tuple[str, str], tuple[int, int]] = {}

    def _hits(self, kind: str, query: dict[str, Any], size: int = 10_000) -> list[dict[str, Any]]:
        hits = self.cases._search(kind, {"query": query, "size": size, "seq_no_primary_term": True})
        for h in hits:
            self.versions[(kind, h["_id"])] = (h["_seq_no"], h["_primary_term"])
        return [h["_source"] for h in hits]

    def seen(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 5000):
            part = list(keys[i:i + 5000])
            found.update(s["key"] for s in self.cases._search("alertkeys", {"query": {"ids": {"values": part}}, "size": len(part)}))
        return found

    def open_alerts(self, pairs: set[tuple[str, str]], start: datetime, end: datetime) -> list[Alert]:
        out: list[Alert] = []
        items = sorted(pairs)
        for i in range(0, len(items), 500):
            which = [{"bool": {"filter": [{"term": {"rule_id": r}}, {"term": {"group_key": g}}]}} for r, g in items[i:i + 500]]
            query = {"bool": {"filter": [{"term": {"status": "open"}}, {"range": {"last_seen": {"gte": _t(start)}}},
                                         {"range": {"first_seen": {"lte": _t(end)}}}],
                              "should": which, "minimum_should_match": 1}}
            out.extend(_alert(s) for s in self._hits("alerts", query))
        return out

    def incidents_for(self, links: set[Link], start: datetime, end: datetime, ids: set[str]) -> list[Incident]:
        linked = {"bool": {"filter": [{"term": {"status": "open"}}, {"range": {"last_seen": {"gte": _t(start)}}},
                                      {"range": {"first_seen": {"lte": _t(end)}}},
                                      {"terms": {"link_keys": sorted(f"{f}{_SEP}{v}" for f, v in links)}}]}}
        query = {"bool": {"should": [linked, {"ids": {"values": sorted(ids)}}], "minimum_should_match": 1}}
        return [_incident(s) for s in self._hits("incidents", query)]


class ElasticsearchCaseStore:
    """:class:`~marketguard.cases.CaseStore` in indices beside an :class:`ElasticsearchStore`."""

    def __init__(self, store: ElasticsearchStore, settings: Settings, *, metrics: Metrics = METRICS) -> None:
        self._es, self._names, self._metrics = store.client, store.names, metrics
        self._policy = GroupingPolicy.from_settings(settings)
        self._lock = threading.Lock()
        self._set_open_gauge()

    def _index(self, kind: str) -> str:
        return self._names.index(kind)

    # -- writes -----------------------------------------------------------------------------------
    def record(self, detections: Sequence[Detection], *, now: datetime | None = None) -> RecordResult:
        """Record detections as alerts and incidents (idempotent; see the module docstring)."""
        if not detections:
            return RecordResult()
        now = utc(now or datetime.now(UTC))
        with self._lock:
            view = _View(self)
            changes = plan(detections, view, self._policy, now)
            self._write(changes, view, now)
            self._count(changes)
            count_recorded(self._metrics, detections, changes)
        return changes.result()

    def _write(self, changes: Changes, view: _View, now: datetime) -> None:
        for absorbed, survivor in changes.merges:
            for kind in ("alerts", "timeline"):
                for hit in self._search(kind, {"query": {"term": {"incident_id": absorbed}}, "size": 10_000}, raw=True):
                    if kind == "alerts" and hit["_id"] in changes.alerts:
                        continue  # written below in its final state
                    self._put(kind, hit["_id"], dict(hit["_source"], incident_id=survivor), None)
        for a in changes.alerts.values():
            self._put("alerts", a.id, _alert_doc(a), view.versions.get(("alerts", a.id)), new=a.id in changes.new_alerts)
        for i in changes.incidents.values():
            self._put("incidents", i.id, _incident_doc(i), view.versions.get(("incidents", i.id)),
                      new=i.id in changes.new_incidents)
        base = self._max_timeline_seq()
        for n, (iid, e) in enumerate(changes.timeline, start=1):
            doc = {"incident_id": iid, "seq": base + n, "time": _t(e.time), "kind": e.kind, "text": e.text,
                   "alert_id": e.alert_id, "recorded": _t(e.recorded)}
            self._put("timeline", f"{iid}-{base + n}", doc, None, new=True)
        for key, alert_id in changes.keys:
            self._put("alertkeys", key, {"key": key, "alert_id": alert_id, "recorded": _t(now)}, None, new=True)
        for kind in _KINDS:
            self._call(lambda k=kind: self._es.indices.refresh(index=self._index(k)))

    def _put(self, kind: str, doc_id: str, doc: dict[str, Any], version: tuple[int, int] | None, *, new: bool = False) -> None:
        kw: dict[str, Any] = {"op_type": "create"} if new else {}
        if version is not None and not new:
            kw |= {"if_seq_no": version[0], "if_primary_term": version[1]}
        try:
            self._es.index(index=self._index(kind), id=doc_id, document=doc, **kw)
        except ConflictError as exc:
            if kind == "alertkeys":
                return  # recorded by another instance meanwhile: the same key, the same outcome
            raise StoreError(f"{kind[:-1]} {doc_id} was changed concurrently; record again") from exc
        except (ApiError, TransportError) as exc:
            raise StoreError(f"writing {kind} {doc_id} failed: {exc}") from exc

    def _max_timeline_seq(self) -> int:
        resp = self._call(lambda: self._es.search(index=self._index("timeline"), size=0, aggs={"m": {"max": {"field": "seq"}}}))
        value = resp["aggregations"]["m"]["value"]
        return int(value) if value is not None else 0

    def _count(self, changes: Changes) -> None:
        for aid in changes.new_alerts:
            self._metrics.alerts.labels(changes.alerts[aid].rule_level).inc()
        for iid in changes.new_incidents:
            self._metrics.incidents.labels(changes.incidents[iid].severity).inc()
        if changes.incidents:
            self._set_open_gauge()

    def _set_open_gauge(self) -> None:
        resp = self._call(lambda: self._es.search(
            index=self._index("incidents"), size=0, query={"term": {"status": "open"}},
            aggs={"s": {"terms": {"field": "severity", "size": 10}}}))
        counts = {b["key"]: b["doc_count"] for b in resp["aggregations"]["s"]["buckets"]}
        for level in SEVERITY_ORDER:
            self._metrics.incidents_open.labels(level).set(counts.get(level, 0))

    # -- reads ------------------------------------------------------------------------------------
    def _search(self, kind: str, body: dict[str, Any], *, raw: bool = False) -> list[dict[str, Any]]:
        resp = self._call(lambda: self._es.search(index=self._index(kind), body=body))
        hits = resp["hits"]["hits"]
        return hits if raw or body.get("seq_no_primary_term") else [h["_source"] for h in hits]

    def _page(self, kind: str, filters: CaseFilters | None, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        limit = max(1, int(limit))
        body = {"query": {"bool": {"filter": _filters(kind, filters or CaseFilters(), cursor)}},
                "sort": [{"last_seen": "desc"}, {"id": "desc"}], "size": limit + 1}
        rows = self._search(kind, body)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(_p(rows[-1]["last_seen"]), rows[-1]["id"])  # type: ignore[arg-type]
        return rows, nxt

    def alerts(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Alert]:
        """Alerts, newest ``last_seen`` first (semantics in :mod:`marketguard.cases`)."""
        rows, nxt = self._page("alerts", filters, cursor, limit)
        return Page([_alert(r) for r in rows], nxt)

    def incidents(self, filters: CaseFilters | None = None, cursor: str | None = None, limit: int = 100) -> Page[Incident]:
        """Incidents, newest ``last_seen`` first; merged ones only when asked for by status."""
        rows, nxt = self._page("incidents", filters, cursor, limit)
        return Page([_incident(r) for r in rows], nxt)

    def incident(self, incident_id: str) -> IncidentDetail | None:
        """One incident with its alerts and timeline; a merged id resolves to its survivor."""
        inc = None
        for _ in range(64):  # a merge chain is short; the bound only guards against a cycle
            rows = self._search("incidents", {"query": {"term": {"id": incident_id}}, "size": 1})
            if not rows:
                return None
            inc = _incident(rows[0])
            if inc.status != "merged" or not inc.merged_into:
                break
            incident_id = inc.merged_into
        assert inc is not None
        alerts = self._search("alerts", {"query": {"term": {"incident_id": inc.id}}, "size": 10_000,
                                         "sort": [{"first_seen": "asc"}, {"id": "asc"}]})
        entries = self._search("timeline", {"query": {"term": {"incident_id": inc.id}}, "size": 10_000,
                                            "sort": [{"time": "asc"}, {"seq": "asc"}]})
        timeline = [TimelineEntry(_p(e["time"]), e["kind"], e["text"], e.get("alert_id"), _p(e.get("recorded")))  # type: ignore[arg-type]
                    for e in entries]
        return IncidentDetail(inc, [_alert(a) for a in alerts], timeline)

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch case request failed: {exc}") from exc


def _filters(kind: str, f: CaseFilters, cursor: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}
    if f.time_from is not None:
        seen["gte"] = _t(f.time_from)
    if f.time_to is not None:
        seen["lte"] = _t(f.time_to)
    if seen:
        out.append({"range": {"last_seen": seen}})
    if f.severity is not None:
        out.append({"range": {"severity_rank": {"gte": severity_rank(f.severity)}}})
    if f.status is not None:
        out.append({"term": {"status": f.status}})
    elif kind == "incidents":
        out.append({"bool": {"must_not": {"term": {"status": "merged"}}}})
    if f.entity:
        name, value = parse_entity(f.entity)
        out.append({"term": {"entity_pairs": f"{name}={value}"}} if name else {"term": {"entity_values": value}})
    if f.rule_id is not None and kind == "alerts":
        out.append({"term": {"rule_id": f.rule_id}})
    if f.type is not None and kind == "incidents":
        out.append({"term": {"type": f.type}})
    if cursor:
        moment, row_id = decode_cursor(cursor)
        out.append({"bool": {"should": [
            {"range": {"last_seen": {"lt": _t(moment)}}},
            {"bool": {"filter": [{"term": {"last_seen": _t(moment)}}, {"range": {"id": {"lt": row_id}}}]}},
        ], "minimum_should_match": 1}})
    return out
