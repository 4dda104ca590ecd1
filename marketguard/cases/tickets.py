"""Tickets: who must do what by when, opened from incidents.

An incident says what happened; a ticket gives one owner queue (``operator:secops``,
``operator:sre``, ``operator:payments``, ``operator:dpo`` or ``seller:<id>``) a piece of work
with a priority (P1–P4), due times from that priority's SLAs, a status, an assignee, comments,
links (incident, alerts, evidence) and the playbook steps that failed on it. The priority,
routing and SLA decisions are in :mod:`marketguard.cases.routing`; this module holds the
model, the workflow and the :class:`TicketStore` protocol.

Workflow (:data:`TRANSITIONS`)::

    new -> acknowledged -> in_progress -> resolved -> closed
    new -> in_progress | resolved     acknowledged -> resolved
    resolved | closed -> acknowledged            (reopen)

Anything else is refused with :class:`TransitionError` naming the allowed targets.
``acknowledged_at`` is set by the first move out of ``new``; ``resolved_at`` by every move
into ``resolved`` (cleared by a reopen); time to acknowledge/resolve are measured from
``created``.

Idempotency: :meth:`TicketStore.open` is keyed on ``(incident_id, queue, kind)``; opening the
same key again returns the existing ticket unchanged (``created=False``) and writes nothing,
so a playbook run twice changes nothing the second time.

Every write takes an ``actor`` (see :mod:`marketguard.cases.audit` for the convention) and
writes one audit entry in the same transaction: ``ticket.open``, ``ticket.status``,
``ticket.assign``, ``ticket.comment``, ``ticket.link``, ``ticket.step_failed``.

Seller scoping: a ``principal`` whose role is ``seller:<id>`` sees only tickets of queue
``seller:<id>`` (others are "not found", never "forbidden") and sees them through
:func:`redact_for_seller`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from marketguard.auth import Principal
from marketguard.cases import CaseStore, Page
from marketguard.cases.audit import AuditLog
from marketguard.errors import ConfigError, MarketGuardError
from marketguard.metrics import METRICS, Metrics
from marketguard.store import Store
from marketguard.types import Priority, TicketStatus

__all__ = [
    "Ticket", "Comment", "Link", "StepFailure", "NewTicket", "OpenResult", "TicketFilters",
    "TicketStore", "TicketError", "TicketNotFound", "TransitionError", "TRANSITIONS",
    "check_transition", "apply_transition", "redact_for_seller", "visible_to", "open_tickets", "TICKET_STORES",
    "LinkKind", "SELLER_VISIBLE_ENTITIES",
]

LinkKind = Literal["incident", "alert", "evidence", "event", "url"]

#: status -> statuses it may move to.
TRANSITIONS: Mapping[str, tuple[TicketStatus, ...]] = {
    "new": ("acknowledged", "in_progress", "resolved"),
    "acknowledged": ("in_progress", "resolved"),
    "in_progress": ("resolved",),
    "resolved": ("closed", "acknowledged"),
    "closed": ("acknowledged",),
}

#: Entity fields a seller may see on their own ticket (the rest is other parties' data).
SELLER_VISIBLE_ENTITIES: tuple[str, ...] = ("marketplace.seller_id", "service.name")


class TicketError(MarketGuardError):
    """A ticket operation was refused; the message says why."""


class TicketNotFound(TicketError):
    """No ticket with this id (or none the caller may see)."""


class TransitionError(TicketError):
    """A status change the workflow does not allow; names the current and allowed statuses."""

    def __init__(self, ticket_id: str, current: str, target: str) -> None:
        allowed = ", ".join(TRANSITIONS.get(current, ())) or "none"
        super().__init__(f"ticket {ticket_id}: cannot move from {current!r} to {target!r} (allowed: {allowed})")
        self.current, self.target = current, target


@dataclass(frozen=True)
class Comment:
    """A comment; ``internal`` ones are never shown to sellers."""

    time: datetime
    author: str
    text: str
    internal: bool = False


@dataclass(frozen=True)
class Link:
    """A reference from a ticket to an incident, alert, evidence item, event or URL."""

    kind: str  # LinkKind
    ref: str
    note: str | None = None


@dataclass(frozen=True)
class StepFailure:
    """A playbook step that failed after its retries; recorded so it never silently disappears."""

    time: datetime
    playbook: str
    step: str
    error: str
    attempts: int


@dataclass(frozen=True)
class NewTicket:
    """What :meth:`TicketStore.open` needs; build one with
    :meth:`marketguard.cases.routing.TicketPolicy.new_ticket` to get priority and due times."""

    incident_id: str
    queue: str
    title: str
    priority: Priority
    ack_due: datetime
    resolve_due: datetime
    kind: str = "response"
    severity: str | None = None
    impact: str | None = None
    assignee: str | None = None
    entities: Mapping[str, list[str]] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ticket:
    """A ticket as stored. Times are UTC; ``details`` is free JSON (e.g. the GDPR deadline)."""

    id: str
    incident_id: str
    queue: str
    kind: str
    title: str
    priority: Priority
    severity: str | None
    impact: str | None
    status: TicketStatus
    assignee: str | None
    created: datetime
    updated: datetime
    ack_due: datetime
    resolve_due: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopened: int = 0
    entities: Mapping[str, list[str]] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    comments: tuple[Comment, ...] = ()
    failed_steps: tuple[StepFailure, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seller_id(self) -> str | None:
        """The seller owning a ``seller:<id>`` queue, else None."""
        return self.queue.split(":", 1)[1] if self.queue.startswith("seller:") else None

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        """From creation to first acknowledgement, None while unacknowledged."""
        return self.acknowledged_at - self.created if self.acknowledged_at else None

    @property
    def time_to_resolve(self) -> timedelta | None:
        """From creation to the (latest) resolution, None while unresolved."""
        return self.resolved_at - self.created if self.resolved_at else None

    def ack_breached(self, now: datetime) -> bool:
        """True when the response SLA passed without acknowledgement."""
        return (self.acknowledged_at or now) > self.ack_due

    def resolve_breached(self, now: datetime) -> bool:
        """True when the resolution SLA passed without resolution."""
        return (self.resolved_at or now) > self.resolve_due


@dataclass(frozen=True)
class OpenResult:
    """The ticket for a key and whether this call created it."""

    ticket: Ticket
    created: bool


@dataclass(frozen=True)
class TicketFilters:
    """Filters of the ticket list (all optional, combined with AND).

    ``priority`` is a *maximum urgency*: ``P2`` returns P1 and P2. ``open_only`` hides
    resolved and closed tickets. ``overdue`` keeps tickets past an unmet due time at ``now``.
    """

    status: TicketStatus | None = None
    priority: Priority | None = None
    queue: str | None = None
    assignee: str | None = None
    incident_id: str | None = None
    kind: str | None = None
    open_only: bool = False
    overdue_at: datetime | None = None


class TicketStore(Protocol):
    """Where tickets live; one implementation per store dialect.

    Lists are sorted by ``created`` descending then ``id`` descending with an opaque cursor
    (:func:`marketguard.cases.encode_cursor`). Every write raises :class:`TicketNotFound` for an
    unknown id and writes an audit entry with ``actor``.
    """

    def open(self, new: NewTicket, *, actor: str, now: datetime | None = None) -> OpenResult:
        """Open a ticket, idempotent per ``(incident_id, queue, kind)``."""
        ...

    def get(self, ticket_id: str, *, principal: Principal | None = None) -> Ticket | None:
        """One ticket; None when unknown or not visible to ``principal`` (redacted for sellers)."""
        ...

    def find(self, incident_id: str, queue: str, kind: str = "response") -> Ticket | None:
        """The ticket opened for this key, if any (no scoping: for playbooks)."""
        ...

    def list(self, filters: TicketFilters | None = None, cursor: str | None = None, limit: int = 100,
             *, principal: Principal | None = None) -> Page[Ticket]:
        """Tickets newest first; a seller principal sees only its own queue, redacted.

        Raises :class:`marketguard.cases.CaseQueryError` on a bad cursor.
        """
        ...

    def set_status(self, ticket_id: str, status: TicketStatus, *, actor: str, reason: str | None = None,
                   now: datetime | None = None) -> Ticket:
        """Move along the workflow; raises :class:`TransitionError` for a move it does not allow."""
        ...

    def assign(self, ticket_id: str, assignee: str | None, *, actor: str, queue: str | None = None,
               now: datetime | None = None) -> Ticket:
        """Set (or clear, with None) the assignee; optionally move the ticket to another queue."""
        ...

    def comment(self, ticket_id: str, text: str, *, actor: str, internal: bool = False,
                now: datetime | None = None) -> Ticket:
        """Add a comment (``internal`` ones are hidden from sellers)."""
        ...

    def link(self, ticket_id: str, links: tuple[Link, ...], *, actor: str, now: datetime | None = None) -> Ticket:
        """Add links (already present ones are skipped, so re-runs change nothing)."""
        ...

    def record_step_failure(self, ticket_id: str, failure: StepFailure, *, actor: str) -> Ticket:
        """Record a playbook step that failed after its retries (same playbook+step+error once)."""
        ...

    def update_details(self, ticket_id: str, details: Mapping[str, Any], *, actor: str,
                       now: datetime | None = None) -> Ticket:
        """Merge keys into ``details`` (e.g. the GDPR notification record); audited."""
        ...


# -- pure workflow and visibility ------------------------------------------------------------------
def check_transition(ticket: Ticket, target: str) -> None:
    """Refuse a status change the workflow does not allow (:class:`TransitionError`)."""
    if target not in TRANSITIONS.get(ticket.status, ()):
        raise TransitionError(ticket.id, ticket.status, target)


def apply_transition(ticket: Ticket, target: TicketStatus, now: datetime) -> Ticket:
    """The ticket after a (checked) move to ``target`` at ``now``, with its timestamps."""
    check_transition(ticket, target)
    reopen = ticket.status in ("resolved", "closed") and target not in ("resolved", "closed")
    return replace(
        ticket, status=target, updated=now,
        acknowledged_at=ticket.acknowledged_at or now,
        resolved_at=now if target == "resolved" else (None if reopen else ticket.resolved_at),
        closed_at=now if target == "closed" else (None if reopen else ticket.closed_at),
        reopened=ticket.reopened + (1 if reopen else 0),
    )


def visible_to(ticket: Ticket, principal: Principal | None) -> bool:
    """Staff (and no principal: internal callers) see every ticket; a seller only its own."""
    if principal is None or principal.seller_id is None:
        return True
    return ticket.seller_id == principal.seller_id


def redact_for_seller(ticket: Ticket) -> Ticket:
    """The seller's view: no internal comments, no entities but :data:`SELLER_VISIBLE_ENTITIES`
    (only the seller's own id), no alert/evidence/event links, no failed steps or details."""
    own = ticket.seller_id
    entities = {k: v for k, v in ticket.entities.items() if k in SELLER_VISIBLE_ENTITIES}
    if "marketplace.seller_id" in entities:
        entities["marketplace.seller_id"] = [v for v in entities["marketplace.seller_id"] if v == own]
    return replace(
        ticket, entities=entities, comments=tuple(c for c in ticket.comments if not c.internal),
        links=tuple(lk for lk in ticket.links if lk.kind == "url"), failed_steps=(), details={},
        assignee=ticket.assignee if (ticket.assignee or "").startswith("seller:") else None,
    )


# -- choosing a backend -------------------------------------------------------------------------
def _duckdb_tickets(store: Store, audit: AuditLog) -> TicketStore:
    from marketguard.cases.tickets_duckdb import DuckDBTicketStore

    return DuckDBTicketStore(store, audit)  # type: ignore[arg-type]


def _elasticsearch_tickets(store: Store, audit: AuditLog) -> TicketStore:
    from marketguard.cases.tickets_elasticsearch import ElasticsearchTicketStore

    return ElasticsearchTicketStore(store, audit)  # type: ignore[arg-type]


#: Store dialect -> ticket-store factory.
TICKET_STORES: dict[str, Callable[[Store, AuditLog], TicketStore]] = {
    "duckdb": _duckdb_tickets, "elasticsearch": _elasticsearch_tickets,
}


def open_tickets(store: Store, audit: AuditLog, *, cases: CaseStore | None = None,
                 metrics: Metrics = METRICS) -> TicketStore:
    """The ticket store that lives beside ``store`` (chosen by its dialect), auditing to ``audit``.

    Given the incidents' ``cases``, status changes also observe the incidents' MTTA and MTTR
    (:mod:`marketguard.cases.ticket_metrics`), the same for every backend.
    """
    try:
        factory = TICKET_STORES[store.dialect]
    except KeyError:
        raise ConfigError(
            f"no ticket store for the {store.dialect!r} store; valid: {', '.join(sorted(TICKET_STORES))}"
        ) from None
    tickets = factory(store, audit)
    if cases is None:
        return tickets
    from marketguard.cases.ticket_metrics import ObservedTicketStore

    return ObservedTicketStore(tickets, cases, metrics=metrics)
