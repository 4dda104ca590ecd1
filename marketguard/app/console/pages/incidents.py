"""Incidents: the filtered list, and one incident with its timeline, alerts and evidence events."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.routes import approvals, cases, reports, tickets
from marketguard.app.console.deps import SessionDep, record, render, services_of
from marketguard.app.console.evidence import EVIDENCE_COLUMNS, evidence_events
from marketguard.app.console.permissions import allows, call_as
from marketguard.types import SEVERITY_ORDER

__all__ = ["router", "STATUSES", "TYPES"]

router = APIRouter()

STATUSES = ("open", "closed", "merged")
TYPES = get_args(cases.IncidentType)


def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    """A filter value if it is one of ``allowed``; anything else means no filter."""
    return value if value in allowed else None


@router.get("/incidents")
async def incident_list(
    request: Request, session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    severity: Annotated[str | None, Query(max_length=16)] = None,
    type: Annotated[str | None, Query(max_length=16)] = None,  # noqa: A002 - the filter's name
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Incidents, newest first, filtered by status, minimum severity and type (as the API filters)."""
    filters = {"status": _choice(status, STATUSES), "severity": _choice(severity, SEVERITY_ORDER),
               "type": _choice(type, TYPES)}
    page = await call_as(session.principal, cases.list_incidents, services_of(request), session.principal,
                         severity=filters["severity"], status_=filters["status"], type_=filters["type"],
                         limit=50, cursor=cursor)
    return render(request, "incidents.html", page=page, filters=filters, statuses=STATUSES,
                  severities=SEVERITY_ORDER, types=TYPES)


@router.get("/incidents/{incident_id}")
async def incident_detail(request: Request, session: SessionDep,
                          incident_id: Annotated[str, Path(max_length=128)]) -> Response:
    """One incident: summary, timeline, alerts, evidence events, its tickets and containment actions."""
    services, principal = services_of(request), session.principal
    detail = await call_as(principal, cases.get_incident, services, principal, incident_id)
    events = await run_in_threadpool(evidence_events, services.store, detail.alerts)
    if events:  # a staff read of evidence (pseudonymised personal data) is audited
        await run_in_threadpool(record, services, principal, "incident.evidence.read", f"incident:{detail.id}",
                                {"events": len(events), "role": principal.role})
    ticket_page = (await call_as(principal, tickets.list_tickets, services, principal, incident_id=detail.id, limit=100)
                   if allows(principal, tickets.list_tickets) else None)
    actions = (await call_as(principal, approvals.list_actions, services, principal, incident_id=detail.id)
               if allows(principal, approvals.list_actions) else [])
    return render(request, "incident.html", incident=detail, events=events, columns=EVIDENCE_COLUMNS,
                  tickets=ticket_page.items if ticket_page else [], actions=actions,
                  can_decide=allows(principal, approvals.approve), back=request.url.path)


@router.get("/incidents/{incident_id}/report")
async def incident_report(request: Request, session: SessionDep,
                          incident_id: Annotated[str, Path(max_length=128)],
                          fmt: Annotated[Literal["html", "pdf"], Query(alias="format")] = "html") -> Response:
    """The incident's report for a signed-in user: the API's report route, called as that user
    (same roles, same 404, same ``report.read`` audit entry) — a browser has no bearer key."""
    return await call_as(session.principal, reports.incident_report, services_of(request), session.principal,
                         incident_id, fmt)
