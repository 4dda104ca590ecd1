"""Tickets in Elasticsearch: ``<prefix>-tickets``, one document per ticket.

* **Idempotent open across instances**: a ticket's id is derived from its open key
  (``incident|queue|kind``), and it is created with ``op_type=create``; two instances opening
  the same key at once get one ticket, the slower one reads it back (``created=False``).
* **Optimistic concurrency**: every change reads the ticket with its version, applies the
  workflow (:mod:`marketguard.cases.tickets`) and writes with ``if_seq_no``/``if_primary_term``.
  A 409 means another writer changed it first: the change is re-applied to what they wrote
  (a now-forbidden transition is refused then, as it would have been in order).
* **Audit, never lost**: Elasticsearch has no transactions (DuckDB writes a change and its
  entry in one). Here the change is written with its audit record embedded (``pending_audit``:
  a key, actor, action, object, details and time) in the same compare-and-swap write; then the
  entry is appended (:meth:`~marketguard.cases.audit_elasticsearch.ElasticsearchAuditLog.append_once`,
  keyed, so it lands once however often it is retried) and the field cleared. A crash in
  between leaves the record on the ticket, and the next open or change of that ticket appends
  it first. A change refused by the workflow or lost to a conflict writes no record.

Composite fields (entities, links, comments, failed steps, details) are stored JSON text.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from marketguard.auth import Principal
from marketguard.cases import Page, decode_cursor, encode_cursor
from marketguard.cases.audit import canonical_json
from marketguard.cases.audit_elasticsearch import ElasticsearchAuditLog
from marketguard.cases.ticket_changes import TicketChanges
from marketguard.cases.ticket_json import from_json_fields, json_fields, open_key, utc
from marketguard.cases.tickets import (
    NewTicket,
    OpenResult,
    Ticket,
    TicketError,
    TicketFilters,
    TicketNotFound,
    redact_for_seller,
    visible_to,
)
from marketguard.store._es_docs import iso
from marketguard.store._es_records import EsRecords, parse_time
from marketguard.store.elasticsearch import ElasticsearchStore
from marketguard.types import PRIORITY_ORDER

__all__ = ["ElasticsearchTicketStore", "ticket_id_of", "PENDING"]

_PLAIN = ("id", "incident_id", "queue", "kind", "title", "priority", "severity", "impact", "status",
          "assignee", "reopened")
_TIMES = ("created", "updated", "ack_due", "resolve_due", "acknowledged_at", "resolved_at", "closed_at")
_SORT = [{"created": "desc"}, {"id": "desc"}]
#: The field holding a change's audit record until its entry is appended.
PENDING = "pending_audit"


def ticket_id_of(incident_id: str, queue: str, kind: str = "response") -> str:
    """The id of the ticket opened for (incident, queue, kind): ``T-`` + 16 hex digits."""
    return "T-" + hashlib.sha256(open_key(incident_id, queue, kind).encode()).hexdigest()[:16]


def _doc(t: Ticket, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(t, name) for name in _PLAIN}
    doc |= {name: iso(getattr(t, name)) if getattr(t, name) is not None else None for name in _TIMES}
    return doc | {"open_key": key} | json_fields(t)


def _ticket(src: Mapping[str, Any]) -> Ticket:
    data: dict[str, Any] = {name: src.get(name) for name in _PLAIN}
    data |= {name: parse_time(src.get(name)) for name in _TIMES}
    return Ticket(**(data | from_json_fields(src)))


def _pending(actor: str, action: str, object: str, details: Mapping[str, Any], now: datetime | None) -> str:
    """An audit record to embed in a ticket write (JSON text with a fresh key)."""
    return json.dumps({"key": uuid.uuid4().hex, "actor": actor, "action": action, "object": object,
                       "details": canonical_json(dict(details)), "time": iso(now or datetime.now(UTC))})


class ElasticsearchTicketStore(TicketChanges):
    """:class:`~marketguard.cases.tickets.TicketStore` in ``<prefix>-tickets`` (see the module docstring)."""

    def __init__(self, store: ElasticsearchStore, audit: ElasticsearchAuditLog) -> None:
        self._rec = EsRecords(store.client, store.names.index("tickets"), "ticket")
        self._audit = audit

    def _settle(self, ticket_id: str, record: str) -> None:
        """Append the embedded audit ``record`` (once, by its key), then clear it from the ticket."""
        r = json.loads(record)
        self._audit.append_once(r["key"], r["actor"], r["action"], r["object"], json.loads(r["details"]),
                                now=parse_time(r["time"]))

        def clear(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current.get(PENDING) != record:
                return None  # cleared already, or another change's record by now
            return {k: v for k, v in current.items() if k != PENDING}

        self._rec.swap(ticket_id, clear)

    # -- writes -----------------------------------------------------------------------------------
    def open(self, new: NewTicket, *, actor: str, now: datetime | None = None) -> OpenResult:
        """Open a ticket, idempotent per (incident, queue, kind); audited as ``ticket.open``."""
        moment = utc(now) or datetime.now(UTC)
        key = open_key(new.incident_id, new.queue, new.kind)
        tid = ticket_id_of(new.incident_id, new.queue, new.kind)
        found = self._rec.get(tid)
        if found is not None:
            if found[0].get(PENDING):
                self._settle(tid, found[0][PENDING])
            return OpenResult(_ticket(found[0]), created=False)
        t = Ticket(
            id=tid, incident_id=new.incident_id, queue=new.queue, kind=new.kind,
            title=new.title, priority=new.priority, severity=new.severity, impact=new.impact,
            status="new", assignee=new.assignee, created=moment, updated=moment,
            ack_due=new.ack_due.astimezone(UTC), resolve_due=new.resolve_due.astimezone(UTC),
            entities=dict(new.entities), links=tuple(dict.fromkeys(new.links)), details=dict(new.details),
        )
        record = _pending(actor, "ticket.open", f"ticket:{t.id}", {
            "incident_id": t.incident_id, "queue": t.queue, "kind": t.kind, "priority": t.priority,
            "severity": t.severity, "impact": t.impact, "ack_due": t.ack_due, "resolve_due": t.resolve_due,
        }, moment)
        if not self._rec.create(tid, _doc(t, key) | {PENDING: record}):  # another instance opened it a moment ago
            again = self._rec.get(tid)
            if again is None:
                raise TicketError(f"ticket {tid} was opened and removed concurrently")
            if again[0].get(PENDING):
                self._settle(tid, again[0][PENDING])
            return OpenResult(_ticket(again[0]), created=False)
        self._settle(tid, record)
        return OpenResult(t, created=True)

    def _change(self, ticket_id: str, actor: str, action: str,
                details: Mapping[str, Any] | Callable[[Ticket], Mapping[str, Any]],
                change: Callable[[Ticket], Ticket | None], now: datetime | None) -> Ticket:
        """Compare-and-swap the ticket with its audit record embedded (None from ``change``:
        nothing to do, no audit entry), then append the entry and clear the record. A record left
        by an earlier, interrupted change is appended first. ``details`` may be a function of the
        ticket before the change."""
        seen: dict[str, Any] = {}

        def step(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                raise TicketNotFound(f"no ticket with id {ticket_id!r}")
            if current.get(PENDING):  # an earlier change's entry first, so the chain keeps their order
                self._settle(ticket_id, current[PENDING])
            before = _ticket(current)
            after = change(before)
            seen.update(before=before, after=after, record=None)
            if after is None:
                return None
            what = details(before) if callable(details) else details
            seen["record"] = _pending(actor, action, f"ticket:{ticket_id}", what, now)
            return _doc(after, current["open_key"]) | {PENDING: seen["record"]}

        _, wrote = self._rec.swap(ticket_id, step)
        before, after = seen["before"], seen["after"]
        assert before is not None
        if not wrote or after is None:
            return before
        self._settle(ticket_id, seen["record"])
        return after

    # -- reads ------------------------------------------------------------------------------------
    def get(self, ticket_id: str, *, principal: Principal | None = None) -> Ticket | None:
        """One ticket; None when unknown or another seller's; redacted for a seller."""
        found = self._rec.get(ticket_id)
        if found is None:
            return None
        t = _ticket(found[0])
        if not visible_to(t, principal):
            return None
        return redact_for_seller(t) if principal is not None and principal.seller_id else t

    def find(self, incident_id: str, queue: str, kind: str = "response") -> Ticket | None:
        """The ticket opened for (incident, queue, kind), if any."""
        found = self._rec.get(ticket_id_of(incident_id, queue, kind))
        return _ticket(found[0]) if found else None

    def list(self, filters: TicketFilters | None = None, cursor: str | None = None, limit: int = 100,
             *, principal: Principal | None = None) -> Page[Ticket]:
        """Tickets newest first (created, id), filtered and seller-scoped."""
        limit = max(1, int(limit))
        query = {"bool": {"filter": _filters(filters or TicketFilters(), cursor, principal)}}
        items = [_ticket(s) for s in self._rec.search_all(query, _SORT, limit + 1)]
        nxt = None
        if len(items) > limit:
            items = items[:limit]
            nxt = encode_cursor(items[-1].created, items[-1].id)
        if principal is not None and principal.seller_id:
            items = [redact_for_seller(t) for t in items]
        return Page(items, nxt)


def _missing(name: str) -> dict[str, Any]:
    return {"bool": {"must_not": {"exists": {"field": name}}}}


def _filters(f: TicketFilters, cursor: str | None, principal: Principal | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if principal is not None and principal.seller_id:
        out.append({"term": {"queue": f"seller:{principal.seller_id}"}})
    for name in ("status", "queue", "assignee", "incident_id", "kind"):
        if getattr(f, name) is not None:
            out.append({"term": {name: getattr(f, name)}})
    if f.priority is not None:
        out.append({"terms": {"priority": list(PRIORITY_ORDER[: PRIORITY_ORDER.index(f.priority) + 1])}})
    if f.open_only:
        out.append({"bool": {"must_not": {"terms": {"status": ["resolved", "closed"]}}}})
    if f.overdue_at is not None:
        at = iso(f.overdue_at)
        unacked = {"bool": {"filter": [_missing("acknowledged_at"), {"range": {"ack_due": {"lt": at}}}]}}
        unresolved = {"bool": {"filter": [_missing("resolved_at"), {"range": {"resolve_due": {"lt": at}}}],
                               "must_not": {"term": {"status": "closed"}}}}
        out.append({"bool": {"should": [unacked, unresolved], "minimum_should_match": 1}})
    if cursor:
        moment, row_id = decode_cursor(cursor)
        out.append({"bool": {"should": [
            {"range": {"created": {"lt": iso(moment)}}},
            {"bool": {"filter": [{"term": {"created": iso(moment)}}, {"range": {"id": {"lt": row_id}}}]}},
        ], "minimum_should_match": 1}})
    return out
