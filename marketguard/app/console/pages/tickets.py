"""Tickets: the list, one ticket, and its actions (status, comment, assign) plus containment decisions.

Every action calls the JSON API's route function for the signed-in principal
(:func:`~marketguard.app.console.permissions.call_as`), so the console allows exactly what the
API allows: a seller sees only its own queue, and another seller's ticket is 404 like a missing one.
"""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from marketguard.app.api.routes import approvals, tickets
from marketguard.app.console.deps import CsrfSession, SessionDep, render, root_of, services_of
from marketguard.app.console.permissions import allows, call_as
from marketguard.cases.tickets import TRANSITIONS
from marketguard.types import PRIORITY_ORDER, TicketStatus

__all__ = ["router"]

router = APIRouter()

TicketId = Annotated[str, Path(max_length=128)]
ActionId = Annotated[str, Path(max_length=64)]
STATUSES: tuple[str, ...] = get_args(TicketStatus)
#: Flash messages by key (never text from the request, so nothing is reflected).
DONE = {
    "status": "Status changed.", "comment": "Comment added.", "assign": "Assignment saved.",
    "approve": "Containment approved.", "reject": "Containment rejected.",
}


def _invalid(exc: ValidationError) -> HTTPException:
    """A 422 naming what is wrong with the submitted form."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                        detail="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


def _back(request: Request, path: str, done: str) -> Response:
    return RedirectResponse(f"{root_of(request)}{path}?done={done}", status.HTTP_303_SEE_OTHER)


@router.get("/tickets")
async def ticket_list(
    request: Request, session: SessionDep,
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    priority: Annotated[str | None, Query(max_length=4)] = None,
    open_only: Annotated[str | None, Query(alias="open", max_length=8)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Tickets newest first (a seller: its own queue only), filtered by status, priority, open."""
    filters = {"status": status_ if status_ in STATUSES else None,
               "priority": priority if priority in PRIORITY_ORDER else None, "open": open_only == "1"}
    page = await call_as(session.principal, tickets.list_tickets, services_of(request), session.principal,
                         status_=filters["status"], priority=filters["priority"], open_only=filters["open"],
                         limit=50, cursor=cursor)
    return render(request, "tickets.html", page=page, filters=filters, statuses=STATUSES, priorities=PRIORITY_ORDER)


@router.get("/tickets/{ticket_id}")
async def ticket_detail(request: Request, session: SessionDep, ticket_id: TicketId,
                        done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    """One ticket with the forms its reader's role may use (404 for another seller's ticket)."""
    services, principal = services_of(request), session.principal
    ticket = await call_as(principal, tickets.get_ticket, services, principal, ticket_id)
    actions = (await call_as(principal, approvals.list_actions, services, principal, incident_id=ticket.incident_id)
               if allows(principal, approvals.list_actions) else [])
    return render(
        request, "ticket.html", ticket=ticket, actions=actions, done=DONE.get(done or ""),
        next_statuses=TRANSITIONS.get(ticket.status, ()), back=request.url.path,
        can_status=allows(principal, tickets.update_status), can_comment=allows(principal, tickets.add_comment),
        can_assign=allows(principal, tickets.assign), can_decide=allows(principal, approvals.approve),
        can_read_incident=principal.seller_id is None,
    )


@router.post("/tickets/{ticket_id}/status")
async def change_status(request: Request, session: CsrfSession, ticket_id: TicketId,
                        new_status: Annotated[str, Form(alias="status", max_length=16)] = "",
                        reason: Annotated[str | None, Form(max_length=2000)] = None) -> Response:
    """Move the ticket along its workflow (acknowledge, start, resolve, close, reopen)."""
    try:
        body = tickets.StatusIn(status=new_status, reason=reason or None)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _invalid(exc) from None
    await call_as(session.principal, tickets.update_status, services_of(request), session.principal, ticket_id, body)
    return _back(request, f"/tickets/{ticket_id}", "status")


@router.post("/tickets/{ticket_id}/comment")
async def add_comment(request: Request, session: CsrfSession, ticket_id: TicketId,
                      text: Annotated[str, Form(max_length=10_000)] = "",
                      internal: Annotated[str | None, Form(max_length=8)] = None) -> Response:
    """Comment on the ticket (``internal`` hides it from the seller; sellers cannot write one)."""
    try:
        body = tickets.CommentIn(text=text.strip(), internal=internal == "1")
    except ValidationError as exc:
        raise _invalid(exc) from None
    await call_as(session.principal, tickets.add_comment, services_of(request), session.principal, ticket_id, body)
    return _back(request, f"/tickets/{ticket_id}", "comment")


@router.post("/tickets/{ticket_id}/assign")
async def assign(request: Request, session: CsrfSession, ticket_id: TicketId,
                 assignee: Annotated[str, Form(max_length=256)] = "",
                 queue: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Set (empty: clear) the assignee, optionally moving the ticket to another owner queue."""
    try:
        body = tickets.AssignIn(assignee=assignee.strip() or None, queue=queue.strip() or None)
    except ValidationError as exc:
        raise _invalid(exc) from None
    await call_as(session.principal, tickets.assign, services_of(request), session.principal, ticket_id, body)
    return _back(request, f"/tickets/{ticket_id}", "assign")


@router.get("/approvals")
async def approval_list(request: Request, session: SessionDep,
                        done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    """Containment actions, pending first, with approve/reject forms for the roles that decide."""
    actions = await call_as(session.principal, approvals.list_actions, services_of(request), session.principal)
    actions.sort(key=lambda a: a.status != "pending")
    return render(request, "approvals.html", actions=actions, can_decide=allows(session.principal, approvals.approve),
                  back="/approvals", done=DONE.get(done or ""))


@router.post("/approvals/{action_id}/{decision}")
async def decide(request: Request, session: CsrfSession, action_id: ActionId,
                 decision: Annotated[str, Path(pattern="^(approve|reject)$")],
                 reason: Annotated[str, Form(max_length=2000)] = "",
                 back: Annotated[str, Form(max_length=256)] = "/approvals") -> Response:
    """Approve (and execute) or reject a pending containment action, with a reason."""
    try:
        body = approvals.Decision(reason=reason.strip())
    except ValidationError as exc:
        raise _invalid(exc) from None
    endpoint = approvals.approve if decision == "approve" else approvals.reject
    await call_as(session.principal, endpoint, services_of(request), session.principal, action_id, body)
    target = back if back.startswith("/") and "//" not in back and "\\" not in back else "/approvals"
    return _back(request, target.removeprefix(root_of(request)), decision)
