"""The ticket changes every backend shares: each builds a change and hands it to the backend's
``_change`` (DuckDB: one transaction with its audit entry; Elasticsearch: a compare-and-swap
write carrying its audit record)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from marketguard.cases.ticket_json import to_json as _json
from marketguard.cases.ticket_json import utc as _utc
from marketguard.cases.tickets import (
    Comment,
    Link,
    StepFailure,
    Ticket,
    TicketError,
    apply_transition,
)
from marketguard.types import OPERATOR_QUEUES, OWNER_QUEUE_PATTERN, TicketStatus

__all__ = ["TicketChanges"]


class TicketChanges:
    """Workflow moves, assignment, comments, links, step failures and details, audited; a
    subclass provides ``_change(ticket_id, actor, action, details, change, now)``."""

    def _change(self, ticket_id: str, actor: str, action: str,
                details: Mapping[str, Any] | Callable[[Ticket], Mapping[str, Any]],
                change: Callable[[Ticket], Ticket | None], now: datetime | None) -> Ticket:
        raise NotImplementedError

    def set_status(self, ticket_id: str, status: TicketStatus, *, actor: str, reason: str | None = None,
                   now: datetime | None = None) -> Ticket:
        """Move along the workflow (TransitionError when not allowed); audited as ``ticket.status``."""
        moment = _utc(now) or datetime.now(UTC)
        return self._change(
            ticket_id, actor, "ticket.status", lambda t: {"from": t.status, "to": status, "reason": reason},
            lambda t: apply_transition(t, status, moment), moment,
        )

    def assign(self, ticket_id: str, assignee: str | None, *, actor: str, queue: str | None = None,
               now: datetime | None = None) -> Ticket:
        """Set or clear the assignee (and optionally the queue); audited as ``ticket.assign``."""
        moment = _utc(now) or datetime.now(UTC)
        if queue is not None and not re.match(OWNER_QUEUE_PATTERN, queue):
            raise TicketError(f"unknown queue {queue!r}: expected one of {', '.join(OPERATOR_QUEUES)} or seller:<id>")

        def change(t: Ticket) -> Ticket | None:
            if t.assignee == assignee and (queue is None or queue == t.queue):
                return None
            return replace(t, assignee=assignee, queue=queue or t.queue, updated=moment)

        return self._change(ticket_id, actor, "ticket.assign", {"assignee": assignee, "queue": queue}, change, moment)

    def comment(self, ticket_id: str, text: str, *, actor: str, internal: bool = False,
                now: datetime | None = None) -> Ticket:
        """Add a comment; audited as ``ticket.comment``."""
        moment = _utc(now) or datetime.now(UTC)
        if not text.strip():
            raise TicketError("a comment needs text")
        c = Comment(moment, actor, text, internal)
        return self._change(
            ticket_id, actor, "ticket.comment", {"internal": internal, "text": text},
            lambda t: replace(t, comments=(*t.comments, c), updated=moment), moment,
        )

    def link(self, ticket_id: str, links: tuple[Link, ...], *, actor: str, now: datetime | None = None) -> Ticket:
        """Add links not yet present; audited as ``ticket.link`` only when something was added."""
        moment = _utc(now) or datetime.now(UTC)

        def change(t: Ticket) -> Ticket | None:
            fresh = tuple(lk for lk in dict.fromkeys(links) if lk not in t.links)
            return replace(t, links=(*t.links, *fresh), updated=moment) if fresh else None

        return self._change(ticket_id, actor, "ticket.link", {"links": [asdict(lk) for lk in links]}, change, moment)

    def record_step_failure(self, ticket_id: str, failure: StepFailure, *, actor: str) -> Ticket:
        """Record a failed playbook step once per (playbook, step, error); ``ticket.step_failed``."""

        def change(t: Ticket) -> Ticket | None:
            same = any((f.playbook, f.step, f.error) == (failure.playbook, failure.step, failure.error) for f in t.failed_steps)
            return None if same else replace(t, failed_steps=(*t.failed_steps, failure), updated=_utc(failure.time) or t.updated)

        return self._change(ticket_id, actor, "ticket.step_failed", asdict(failure), change, failure.time)

    def update_details(self, ticket_id: str, details: Mapping[str, Any], *, actor: str,
                       now: datetime | None = None) -> Ticket:
        """Merge keys into ``details``; audited as ``ticket.details`` when something changed."""
        moment = _utc(now) or datetime.now(UTC)
        clean = json.loads(_json(dict(details)))

        def change(t: Ticket) -> Ticket | None:
            merged = {**t.details, **clean}
            return None if merged == dict(t.details) else replace(t, details=merged, updated=moment)

        return self._change(ticket_id, actor, "ticket.details", clean, change, moment)
