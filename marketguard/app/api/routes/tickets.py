"""Routes under ``/api/v1/tickets``: list, get, change status, comment, assign.

Roles (``admin`` always): staff readers (analyst, oncall, auditor) and sellers read; analyst
and oncall write. A ``seller:<id>`` key sees only tickets of queue ``seller:<id>``, redacted of
other parties' data (see :func:`marketguard.cases.tickets.redact_for_seller`); it may also
comment on them (never internally) and move them along the workflow, but not reassign them.
Another seller's ticket answers 404 exactly like a missing one, so existence never leaks.
A staff read of one ticket (entities: IPs, user ids) writes a ``ticket.read`` audit entry.

The containment approval endpoint (``POST /api/v1/actions/{id}/approve``) lives in its own
router; it can reuse :func:`visible_ticket` and :func:`tickets_of` from here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.cases import CaseQueryError
from marketguard.cases.audit import AuditLog, actor_of
from marketguard.cases.tickets import (
    Ticket,
    TicketError,
    TicketFilters,
    TicketNotFound,
    TicketStore,
    TransitionError,
    redact_for_seller,
)
from marketguard.types import OwnerQueue, Priority, TicketStatus

__all__ = ["router", "tickets_of", "audit_of", "visible_ticket", "TicketOut", "TicketSummaryOut"]

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

TicketReader = Annotated[Principal, Depends(require_role(*READERS, "seller"))]
TicketWorker = Annotated[Principal, Depends(require_role("analyst", "oncall", "seller"))]
TicketAssigner = Annotated[Principal, Depends(require_role("analyst", "oncall"))]
TicketId = Annotated[str, Path(max_length=128)]


def tickets_of(services: Services) -> TicketStore:
    """The ticket store wired into the services (503 when this install has none)."""
    store = getattr(services, "tickets", None)
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="tickets are not configured")
    return store  # type: ignore[no-any-return]


def audit_of(services: Services) -> AuditLog:
    """The audit log wired into the services (503 when this install has none)."""
    log = getattr(services, "audit", None)
    if log is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="the audit trail is not configured")
    return log  # type: ignore[no-any-return]


def _not_found(ticket_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no ticket with id {ticket_id!r}")


async def visible_ticket(services: Services, principal: Principal, ticket_id: str) -> Ticket:
    """The ticket as ``principal`` may see it, or 404 (also for another seller's ticket)."""
    ticket = await run_in_threadpool(lambda: tickets_of(services).get(ticket_id, principal=principal))
    if ticket is None:
        raise _not_found(ticket_id)
    return ticket


# -- response models ------------------------------------------------------------------------------
class CommentOut(BaseModel):
    """A comment (internal ones are never shown to sellers)."""

    time: datetime
    author: str
    text: str
    internal: bool


class LinkOut(BaseModel):
    """A link to an incident, alert, evidence item, event or URL."""

    kind: str
    ref: str
    note: str | None


class StepFailureOut(BaseModel):
    """A playbook step that failed after its retries."""

    time: datetime
    playbook: str
    step: str
    error: str
    attempts: int


class TicketSummaryOut(BaseModel):
    """A ticket in a list: no entities, comments or links (those are in the single read)."""

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
    ack_due: datetime = Field(description="Response SLA: acknowledge by.")
    resolve_due: datetime = Field(description="Resolution SLA: resolve by.")
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopened: int
    time_to_acknowledge_s: float | None
    time_to_resolve_s: float | None

    @classmethod
    def of(cls, t: Ticket) -> Self:
        """The response form of a ticket."""
        tta, ttr = t.time_to_acknowledge, t.time_to_resolve
        data = {k: getattr(t, k) for k in TicketSummaryOut.model_fields if not k.endswith("_s")}
        data |= {"time_to_acknowledge_s": tta.total_seconds() if tta else None,
                 "time_to_resolve_s": ttr.total_seconds() if ttr else None}
        return cls(**data, **cls._extra(t))

    @classmethod
    def _extra(cls, t: Ticket) -> dict[str, Any]:
        return {}


class TicketOut(TicketSummaryOut):
    """One ticket with its entities, links, comments and failed playbook steps."""

    entities: dict[str, list[str]]
    links: list[LinkOut]
    comments: list[CommentOut]
    failed_steps: list[StepFailureOut]
    details: dict[str, Any]

    @classmethod
    def _extra(cls, t: Ticket) -> dict[str, Any]:
        return {
            "entities": dict(t.entities), "details": dict(t.details),
            "links": [LinkOut(kind=lk.kind, ref=lk.ref, note=lk.note) for lk in t.links],
            "comments": [CommentOut(time=c.time, author=c.author, text=c.text, internal=c.internal) for c in t.comments],
            "failed_steps": [StepFailureOut(**vars(f)) for f in t.failed_steps],
        }


class TicketPage(BaseModel):
    """One page of tickets."""

    items: list[TicketSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class StatusIn(BaseModel):
    """A workflow move: new → acknowledged → in_progress → resolved → closed; resolved/closed → acknowledged reopens."""

    status: TicketStatus
    reason: str | None = Field(None, max_length=2000)


class CommentIn(BaseModel):
    """A comment; ``internal`` hides it from the seller (sellers cannot write internal ones)."""

    text: str = Field(min_length=1, max_length=10_000)
    internal: bool = False


class AssignIn(BaseModel):
    """Set (or clear with null) the assignee; optionally move the ticket to another queue."""

    assignee: str | None = Field(max_length=256)
    queue: OwnerQueue | None = None


# -- routes ---------------------------------------------------------------------------------------
@router.get("", response_model=TicketPage, summary="List tickets, newest first")
async def list_tickets(
    services: ServicesDep, principal: TicketReader,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    priority: Annotated[Priority | None, Query(description="Maximum urgency: P2 returns P1 and P2.")] = None,
    queue: Annotated[str | None, Query(max_length=128)] = None,
    assignee: Annotated[str | None, Query(max_length=256)] = None,
    incident_id: Annotated[str | None, Query(max_length=128)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    open_only: Annotated[bool, Query(alias="open", description="Hide resolved and closed tickets.")] = False,
    overdue: Annotated[bool, Query(description="Only tickets past an unmet response or resolution due time.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> TicketPage:
    """Tickets sorted by creation (newest first); a seller sees only its own queue."""
    filters = TicketFilters(status_, priority, queue, assignee, incident_id, kind, open_only,
                            datetime.now(UTC) if overdue else None)
    store = tickets_of(services)
    try:
        page = await run_in_threadpool(lambda: store.list(filters, cursor, limit, principal=principal))
    except CaseQueryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return TicketPage(items=[TicketSummaryOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{ticket_id}", response_model=TicketOut, summary="One ticket",
            responses={404: {"description": "No ticket with this id visible to the caller."}})
async def get_ticket(services: ServicesDep, principal: TicketReader, ticket_id: TicketId) -> TicketOut:
    """The ticket with entities, links and comments (redacted for a seller); staff reads are audited."""
    ticket = await visible_ticket(services, principal, ticket_id)
    if principal.seller_id is None:
        await run_in_threadpool(
            audit_of(services).append, actor_of(principal), "ticket.read", f"ticket:{ticket_id}",
            {"fields": sorted(ticket.entities), "role": principal.role},
        )
    return TicketOut.of(ticket)


async def _write(services: Services, principal: Principal, ticket_id: str, call: Any) -> TicketOut:
    await visible_ticket(services, principal, ticket_id)
    try:
        ticket = await run_in_threadpool(call)
    except TicketNotFound:
        raise _not_found(ticket_id) from None
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except TicketError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from None
    if principal.seller_id is not None:
        ticket = redact_for_seller(ticket)
    return TicketOut.of(ticket)


@router.patch("/{ticket_id}", response_model=TicketOut, summary="Move a ticket along its workflow",
              responses={404: {"description": "No such ticket."}, 409: {"description": "Transition not allowed."}})
async def update_status(services: ServicesDep, principal: TicketWorker, ticket_id: TicketId,
                        body: Annotated[StatusIn, Body()]) -> TicketOut:
    """Change the status; a refused transition answers 409 naming the allowed ones."""
    store = tickets_of(services)
    return await _write(services, principal, ticket_id, lambda: store.set_status(
        ticket_id, body.status, actor=actor_of(principal), reason=body.reason))


@router.post("/{ticket_id}/comments", response_model=TicketOut, status_code=status.HTTP_201_CREATED,
             summary="Comment on a ticket", responses={404: {"description": "No such ticket."}})
async def add_comment(services: ServicesDep, principal: TicketWorker, ticket_id: TicketId,
                      body: Annotated[CommentIn, Body()]) -> TicketOut:
    """Add a comment; a seller's comment is never internal."""
    store = tickets_of(services)
    internal = body.internal and principal.seller_id is None
    return await _write(services, principal, ticket_id, lambda: store.comment(
        ticket_id, body.text, actor=actor_of(principal), internal=internal))


@router.post("/{ticket_id}/assign", response_model=TicketOut, summary="Assign a ticket",
             responses={404: {"description": "No such ticket."}})
async def assign(services: ServicesDep, principal: TicketAssigner, ticket_id: TicketId,
                 body: Annotated[AssignIn, Body()]) -> TicketOut:
    """Set or clear the assignee, optionally moving the ticket to another owner queue."""
    store = tickets_of(services)
    return await _write(services, principal, ticket_id, lambda: store.assign(
        ticket_id, body.assignee, actor=actor_of(principal), queue=body.queue))
