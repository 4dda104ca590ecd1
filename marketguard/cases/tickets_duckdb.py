"""Tickets in the ``tickets`` table of the store's DuckDB file.

One row per ticket; composite fields (entities, links, comments, failed steps, details) are
JSON text. ``open_key`` (``incident|queue|kind`` at creation) makes :meth:`open` idempotent
even after the ticket is moved to another queue. Every write is one transaction under the
store's writer lock that also appends its audit entry, so a change is never unaudited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from marketguard.auth import Principal
from marketguard.cases import Page, decode_cursor, encode_cursor
from marketguard.cases.audit_duckdb import DuckDBAuditLog
from marketguard.cases.ticket_changes import TicketChanges
from marketguard.cases.ticket_json import from_json_fields, json_fields, open_key, utc
from marketguard.cases.tickets import (
    NewTicket,
    OpenResult,
    Ticket,
    TicketFilters,
    TicketNotFound,
    redact_for_seller,
    visible_to,
)
from marketguard.errors import StoreError
from marketguard.store.duckdb import DuckDBStore
from marketguard.types import PRIORITY_ORDER

__all__ = ["DuckDBTicketStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tickets (id VARCHAR, open_key VARCHAR, incident_id VARCHAR,"
    " queue VARCHAR, kind VARCHAR, title VARCHAR, priority VARCHAR, severity VARCHAR,"
    " impact VARCHAR, status VARCHAR, assignee VARCHAR, created TIMESTAMPTZ, updated TIMESTAMPTZ,"
    " ack_due TIMESTAMPTZ, resolve_due TIMESTAMPTZ, acknowledged_at TIMESTAMPTZ,"
    " resolved_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, reopened INTEGER, entities VARCHAR,"
    " links VARCHAR, comments VARCHAR, failed_steps VARCHAR, details VARCHAR)"
)
_COLS = (
    "id", "incident_id", "queue", "kind", "title", "priority", "severity", "impact", "status",
    "assignee", "created", "updated", "ack_due", "resolve_due", "acknowledged_at", "resolved_at",
    "closed_at", "reopened", "entities", "links", "comments", "failed_steps", "details",
)
_TIMES = ("created", "updated", "ack_due", "resolve_due", "acknowledged_at", "resolved_at", "closed_at")
_SELECT = f"SELECT {', '.join(_COLS)} FROM tickets"


def _row(t: Ticket) -> list[Any]:
    data = {c: getattr(t, c) for c in _COLS} | json_fields(t)
    return [data[c] for c in _COLS]


def _ticket(row: tuple[Any, ...]) -> Ticket:
    data = dict(zip(_COLS, row, strict=True))
    for name in _TIMES:
        data[name] = utc(data[name])
    return Ticket(**(data | from_json_fields(data)))


class DuckDBTicketStore(TicketChanges):
    """:class:`~marketguard.cases.tickets.TicketStore` in the store's DuckDB file."""

    def __init__(self, store: DuckDBStore, audit: DuckDBAuditLog) -> None:
        self._store, self._audit = store, audit
        with store.lock:
            cur = store.cursor()
            try:
                cur.execute(_SCHEMA).fetchall()
            finally:
                cur.close()

    # -- transaction helper --------------------------------------------------------------------
    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.execute("BEGIN TRANSACTION").fetchall()
                result = fn(cur)
                cur.execute("COMMIT").fetchall()
                return result
            except BaseException as exc:
                cur.execute("ROLLBACK").fetchall()
                if isinstance(exc, duckdb.Error):
                    raise StoreError(f"ticket write failed: {exc}") from exc
                raise
            finally:
                cur.close()

    def _load(self, cur: duckdb.DuckDBPyConnection, ticket_id: str) -> Ticket:
        rows = cur.execute(f"{_SELECT} WHERE id = ?", [ticket_id]).fetchall()
        if not rows:
            raise TicketNotFound(f"no ticket with id {ticket_id!r}")
        return _ticket(rows[0])

    def _save(self, cur: duckdb.DuckDBPyConnection, t: Ticket) -> None:
        sets = ", ".join(f"{c} = ?" for c in _COLS[1:])
        cur.execute(f"UPDATE tickets SET {sets} WHERE id = ?", [*_row(t)[1:], t.id]).fetchall()

    def _change(self, ticket_id: str, actor: str, action: str,
                details: Mapping[str, Any] | Callable[[Ticket], Mapping[str, Any]],
                change: Callable[[Ticket], Ticket | None], now: datetime | None) -> Ticket:
        """Load, change (None = nothing to do, no audit entry), save and audit in one transaction.

        ``details`` may be a function of the ticket before the change."""

        def run(cur: duckdb.DuckDBPyConnection) -> Ticket:
            before = self._load(cur, ticket_id)
            after = change(before)
            if after is None:
                return before
            self._save(cur, after)
            what = details(before) if callable(details) else details
            self._audit.append_with(cur, actor, action, f"ticket:{ticket_id}", what, now=now)
            return after

        return self._write(run)  # type: ignore[no-any-return]

    # -- writes -----------------------------------------------------------------------------------
    def open(self, new: NewTicket, *, actor: str, now: datetime | None = None) -> OpenResult:
        """Open a ticket, idempotent per (incident, queue, kind); audited as ``ticket.open``."""
        moment = utc(now) or datetime.now(UTC)
        key = open_key(new.incident_id, new.queue, new.kind)

        def run(cur: duckdb.DuckDBPyConnection) -> OpenResult:
            found = cur.execute(f"{_SELECT} WHERE open_key = ?", [key]).fetchall()
            if found:
                return OpenResult(_ticket(found[0]), created=False)
            t = Ticket(
                id=f"T-{uuid.uuid4().hex[:16]}", incident_id=new.incident_id, queue=new.queue, kind=new.kind,
                title=new.title, priority=new.priority, severity=new.severity, impact=new.impact,
                status="new", assignee=new.assignee, created=moment, updated=moment,
                ack_due=new.ack_due.astimezone(UTC), resolve_due=new.resolve_due.astimezone(UTC),
                entities=dict(new.entities), links=tuple(dict.fromkeys(new.links)), details=dict(new.details),
            )
            cur.execute(f"INSERT INTO tickets (open_key, {', '.join(_COLS)}) VALUES ({', '.join('?' * (len(_COLS) + 1))})",
                        [key, *_row(t)]).fetchall()
            self._audit.append_with(cur, actor, "ticket.open", f"ticket:{t.id}", {
                "incident_id": t.incident_id, "queue": t.queue, "kind": t.kind, "priority": t.priority,
                "severity": t.severity, "impact": t.impact, "ack_due": t.ack_due, "resolve_due": t.resolve_due,
            }, now=moment)
            return OpenResult(t, created=True)

        return self._write(run)  # type: ignore[no-any-return]

    # -- reads ------------------------------------------------------------------------------------
    def _read(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._store.read(sql, params, "ticket query")

    def get(self, ticket_id: str, *, principal: Principal | None = None) -> Ticket | None:
        """One ticket; None when unknown or another seller's; redacted for a seller."""
        rows = self._read(f"{_SELECT} WHERE id = ?", [ticket_id])
        if not rows:
            return None
        t = _ticket(rows[0])
        if not visible_to(t, principal):
            return None
        return redact_for_seller(t) if principal is not None and principal.seller_id else t

    def find(self, incident_id: str, queue: str, kind: str = "response") -> Ticket | None:
        """The ticket opened for (incident, queue, kind), if any."""
        rows = self._read(f"{_SELECT} WHERE open_key = ?", [open_key(incident_id, queue, kind)])
        return _ticket(rows[0]) if rows else None

    def list(self, filters: TicketFilters | None = None, cursor: str | None = None, limit: int = 100,
             *, principal: Principal | None = None) -> Page[Ticket]:
        """Tickets newest first (created, id), filtered and seller-scoped."""
        where, params = _where(filters or TicketFilters(), cursor, principal)
        limit = max(1, int(limit))
        rows = self._read(f"{_SELECT} WHERE {where} ORDER BY created DESC, id DESC LIMIT {limit + 1}", params)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = _ticket(rows[-1])
            nxt = encode_cursor(last.created, last.id)
        items = [_ticket(r) for r in rows]
        if principal is not None and principal.seller_id:
            items = [redact_for_seller(t) for t in items]
        return Page(items, nxt)


def _where(f: TicketFilters, cursor: str | None, principal: Principal | None) -> tuple[str, list[Any]]:
    parts: list[str] = ["TRUE"]
    params: list[Any] = []

    def add(cond: str, *values: Any) -> None:
        parts.append(cond)
        params.extend(values)

    if principal is not None and principal.seller_id:
        add("queue = ?", f"seller:{principal.seller_id}")
    for name in ("status", "queue", "assignee", "incident_id", "kind"):
        if getattr(f, name) is not None:
            add(f"{name} = ?", getattr(f, name))
    if f.priority is not None:
        allowed = PRIORITY_ORDER[: PRIORITY_ORDER.index(f.priority) + 1]
        add(f"priority IN ({', '.join('?' * len(allowed))})", *allowed)
    if f.open_only:
        add("status NOT IN ('resolved', 'closed')")
    if f.overdue_at is not None:
        at = f.overdue_at.astimezone(UTC)
        add("((acknowledged_at IS NULL AND ack_due < ?) OR (resolved_at IS NULL AND status <> 'closed' AND resolve_due < ?))", at, at)
    if cursor:
        moment, row_id = decode_cursor(cursor)
        add("(created < ? OR (created = ? AND id < ?))", moment, moment, row_id)
    return " AND ".join(parts), params
