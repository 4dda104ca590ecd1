"""MTTA and MTTR of incidents, observed where their tickets change state.

Incidents have no workflow of their own; their tickets do (:mod:`marketguard.cases.tickets`).
:class:`ObservedTicketStore` wraps any :class:`~marketguard.cases.tickets.TicketStore` (every
backend gets it from :func:`~marketguard.cases.tickets.open_tickets`, so all count the same)
and, after a status change committed, observes:

* ``marketguard_incident_acknowledge_seconds{severity}`` (MTTA): from the incident's
  ``created`` to the **first acknowledgement of any of its tickets** — the move that sets a
  ticket's ``acknowledged_at`` while no other ticket of the incident has one. A ticket's
  ``acknowledged_at`` is never cleared, so this happens once per incident.
* ``marketguard_incident_resolve_seconds{severity}`` (MTTR): from the incident's ``created`` to
  the **resolution of its last unresolved ticket** — the move that sets a ticket's
  ``resolved_at`` when every other ticket of the incident is resolved (or closed) and the
  incident was never fully resolved before. Once any of its tickets has been reopened the
  incident is not observed again (its first resolution was, or the reopen makes "first"
  unknowable from the tickets' state), so a reopen never counts twice.

Both decisions read only the stored tickets before and after the move, so a retried or
refused move (a :class:`~marketguard.cases.tickets.TransitionError`) and a restart count
nothing. ``severity`` is the incident's severity when observed; a merged incident's tickets
measure from the surviving incident's ``created``. Observation never fails a ticket write:
an error is logged and the move stands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from marketguard.auth import Principal
from marketguard.cases import CaseStore, Page
from marketguard.cases.tickets import (
    Link,
    NewTicket,
    OpenResult,
    StepFailure,
    Ticket,
    TicketFilters,
    TicketStore,
)
from marketguard.metrics import METRICS, Metrics
from marketguard.types import TicketStatus

__all__ = ["ObservedTicketStore", "first_acknowledgement", "incident_resolution"]

log = logging.getLogger(__name__)


def first_acknowledgement(before: Ticket, after: Ticket, siblings: Sequence[Ticket]) -> datetime | None:
    """The time of the incident's first acknowledgement if the move ``before -> after`` is it.

    ``siblings`` are the incident's other tickets (``after`` among them is ignored).
    """
    if before.acknowledged_at is not None or after.acknowledged_at is None:
        return None
    if any(s.acknowledged_at is not None for s in siblings if s.id != after.id):
        return None
    return after.acknowledged_at


def incident_resolution(before: Ticket, after: Ticket, siblings: Sequence[Ticket]) -> datetime | None:
    """The time the incident became resolved if the move ``before -> after`` first resolved it.

    ``siblings`` are the incident's other tickets (``after`` among them is ignored).
    """
    if before.resolved_at is not None or after.resolved_at is None:
        return None
    others = [s for s in siblings if s.id != after.id]
    if any(s.resolved_at is None for s in others) or any(t.reopened for t in [after, *others]):
        return None
    if _resolved_before(after, others):
        return None
    return after.resolved_at


def _resolved_before(current: Ticket, others: Sequence[Ticket]) -> bool:
    """True when, at some earlier resolution, every ticket that existed then was resolved
    (a ticket opened after the incident was resolved must not observe it a second time)."""
    tickets = [current, *others]
    for moment in (s.resolved_at for s in others if s.resolved_at is not None):
        existing = [t for t in tickets if t.created <= moment]
        if all(t.resolved_at is not None and t.resolved_at <= moment for t in existing):
            return True
    return False


class ObservedTicketStore:
    """A :class:`~marketguard.cases.tickets.TicketStore` that observes MTTA/MTTR (see the module)."""

    def __init__(self, inner: TicketStore, cases: CaseStore, *, metrics: Metrics = METRICS) -> None:
        self._inner, self._cases, self._metrics = inner, cases, metrics
        self._lock = threading.Lock()  # a move and the reads deciding its observation, together

    def set_status(self, ticket_id: str, status: TicketStatus, *, actor: str, reason: str | None = None,
                   now: datetime | None = None) -> Ticket:
        """Move the ticket (see :meth:`TicketStore.set_status`), then observe MTTA/MTTR."""
        with self._lock:
            before = self._inner.get(ticket_id)
            after = self._inner.set_status(ticket_id, status, actor=actor, reason=reason, now=now)
            if before is not None:
                try:
                    self._observe(before, after)
                except Exception:  # the move is committed; a metric must not undo it
                    log.exception("observing MTTA/MTTR for ticket %s failed", ticket_id)
        return after

    def _observe(self, before: Ticket, after: Ticket) -> None:
        acked = before.acknowledged_at is None and after.acknowledged_at is not None
        resolved = before.resolved_at is None and after.resolved_at is not None
        if not (acked or resolved):
            return
        siblings = self._tickets_of(after.incident_id)
        ack_at = first_acknowledgement(before, after, siblings) if acked else None
        resolved_at = incident_resolution(before, after, siblings) if resolved else None
        if ack_at is None and resolved_at is None:
            return
        detail = self._cases.incident(after.incident_id)
        if detail is None:
            log.warning("ticket %s names unknown incident %s: no MTTA/MTTR", after.id, after.incident_id)
            return
        created, severity = detail.incident.created, detail.incident.severity
        if ack_at is not None:
            self._metrics.incident_acknowledge.labels(severity).observe(_seconds(created, ack_at))
        if resolved_at is not None:
            self._metrics.incident_resolve.labels(severity).observe(_seconds(created, resolved_at))

    def _tickets_of(self, incident_id: str) -> list[Ticket]:
        out: list[Ticket] = []
        cursor = None
        while True:
            page = self._inner.list(TicketFilters(incident_id=incident_id), cursor, 500)
            out.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                return out

    # -- the rest of the protocol, unchanged ------------------------------------------------------
    def open(self, new: NewTicket, *, actor: str, now: datetime | None = None) -> OpenResult:
        """See :meth:`TicketStore.open`."""
        return self._inner.open(new, actor=actor, now=now)

    def get(self, ticket_id: str, *, principal: Principal | None = None) -> Ticket | None:
        """See :meth:`TicketStore.get`."""
        return self._inner.get(ticket_id, principal=principal)

    def find(self, incident_id: str, queue: str, kind: str = "response") -> Ticket | None:
        """See :meth:`TicketStore.find`."""
        return self._inner.find(incident_id, queue, kind)

    def list(self, filters: TicketFilters | None = None, cursor: str | None = None, limit: int = 100,
             *, principal: Principal | None = None) -> Page[Ticket]:
        """See :meth:`TicketStore.list`."""
        return self._inner.list(filters, cursor, limit, principal=principal)

    def assign(self, ticket_id: str, assignee: str | None, *, actor: str, queue: str | None = None,
               now: datetime | None = None) -> Ticket:
        """See :meth:`TicketStore.assign`."""
        return self._inner.assign(ticket_id, assignee, actor=actor, queue=queue, now=now)

    def comment(self, ticket_id: str, text: str, *, actor: str, internal: bool = False,
                now: datetime | None = None) -> Ticket:
        """See :meth:`TicketStore.comment`."""
        return self._inner.comment(ticket_id, text, actor=actor, internal=internal, now=now)

    def link(self, ticket_id: str, links: tuple[Link, ...], *, actor: str, now: datetime | None = None) -> Ticket:
        """See :meth:`TicketStore.link`."""
        return self._inner.link(ticket_id, links, actor=actor, now=now)

    def record_step_failure(self, ticket_id: str, failure: StepFailure, *, actor: str) -> Ticket:
        """See :meth:`TicketStore.record_step_failure`."""
        return self._inner.record_step_failure(ticket_id, failure, actor=actor)

    def update_details(self, ticket_id: str, details: Mapping[str, Any], *, actor: str,
                       now: datetime | None = None) -> Ticket:
        """See :meth:`TicketStore.update_details`."""
        return self._inner.update_details(ticket_id, details, actor=actor, now=now)

    def __getattr__(self, name: str) -> Any:
        """Anything a backend offers beyond the protocol (e.g. ``close``) passes through."""
        return getattr(self._inner, name)


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
