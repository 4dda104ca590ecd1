"""Routes: ``GET /api/v1/alerts``, ``GET /api/v1/incidents``, ``GET /api/v1/incidents/{id}``.

Readers (analyst, oncall, auditor; admin always) page through the newest ``last_seen``
first with an opaque cursor. Filters: ``from``/``to`` bound ``last_seen`` (ISO-8601, a time
without offset is UTC), ``severity`` is a minimum, ``entity`` is ``value`` or ``field=value``.
Reading one incident (its entities are personal data: IPs, user ids) writes an
``incident.read`` audit entry, as a staff read of one ticket writes ``ticket.read``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.app.api.routes.tickets import audit_of
from marketguard.auth import Principal
from marketguard.cases import Alert, CaseFilters, CaseQueryError, Incident, TimelineEntry
from marketguard.cases.audit import actor_of
from marketguard.types import Severity

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["cases"])

Reader = Annotated[Principal, Depends(require_role(*READERS))]
IncidentType = Literal["security", "fraud", "availability", "sla"]


# -- response models ------------------------------------------------------------------------------
class AlertOut(BaseModel):
    """An alert: one rule firing for one group key (repeats in the suppression window fold in)."""

    id: str
    rule_id: str
    rule_title: str
    rule_level: Severity
    rule_author: str | None
    rule_license: str | None
    tags: list[str]
    kind: str = Field(description='"event" for single-event rules, else the correlation type.')
    type: IncidentType
    group: dict[str, str | None] = Field(description="Group key: correlation group-by values, or the event's primary entity.")
    first_seen: datetime = Field(description="Event time of the first matched event.")
    last_seen: datetime = Field(description="Event time of the last matched event.")
    window_start: datetime | None
    window_end: datetime | None
    event_ids: list[str] = Field(description="Matched event ids (the first 100).")
    event_count: int = Field(description="Number of matched events.")
    entities: dict[str, list[str]] = Field(description="Entity field -> values seen.")
    count: int = Field(description="Detections folded into this alert.")
    value: float | None = Field(description="The correlation's measured value, if any.")
    status: Literal["open", "closed"]
    created: datetime
    updated: datetime
    incident_id: str | None

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        """The response form of an alert."""
        data = {k: getattr(a, k) for k in cls.model_fields if k not in ("group", "tags")}
        return cls(**data, group=dict(a.group), tags=list(a.tags))


class IncidentOut(BaseModel):
    """An incident: alerts sharing entities within the incident window."""

    id: str
    title: str = Field(description="Title of the most severe alert.")
    type: IncidentType
    severity: Severity = Field(description="Highest alert level, raised one step when enough distinct rules agree.")
    level: Severity = Field(description="Highest alert level.")
    entities: dict[str, list[str]]
    alert_ids: list[str]
    rule_ids: list[str]
    first_seen: datetime
    last_seen: datetime
    status: Literal["open", "closed", "merged"]
    created: datetime
    updated: datetime
    merged_into: str | None = Field(description="For a merged incident, the incident that absorbed it.")

    @classmethod
    def of(cls, i: Incident) -> IncidentOut:
        """The response form of an incident."""
        return cls(**{k: getattr(i, k) for k in cls.model_fields})


class TimelineEntryOut(BaseModel):
    """One timeline line: ``time`` is event time, ``recorded`` wall clock."""

    time: datetime
    kind: Literal["alert", "escalated", "merged"]
    text: str
    alert_id: str | None
    recorded: datetime | None

    @classmethod
    def of(cls, e: TimelineEntry) -> TimelineEntryOut:
        """The response form of a timeline entry."""
        return cls(**{k: getattr(e, k) for k in cls.model_fields})


class IncidentDetailOut(IncidentOut):
    """An incident with its alerts (oldest first) and its timeline."""

    alerts: list[AlertOut]
    timeline: list[TimelineEntryOut]


class AlertPage(BaseModel):
    """One page of alerts."""

    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class IncidentPage(BaseModel):
    """One page of incidents."""

    items: list[IncidentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


# -- query parameters -----------------------------------------------------------------------------
From = Annotated[datetime | None, Query(alias="from", description="Only items with last_seen at or after this time (ISO-8601).")]
To = Annotated[datetime | None, Query(alias="to", description="Only items with last_seen at or before this time (ISO-8601).")]
MinSeverity = Annotated[Severity | None, Query(description="Minimum severity: `high` returns high and critical.")]
Entity = Annotated[str | None, Query(max_length=512, description="An entity value in any entity field, or `field=value` (e.g. `source.ip=203.0.113.7`).")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _bad_query(exc: CaseQueryError) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc))


# -- routes ---------------------------------------------------------------------------------------
@router.get("/alerts", response_model=AlertPage, summary="List alerts, newest first")
async def list_alerts(
    services: ServicesDep, _: Reader, time_from: From = None, time_to: To = None,
    severity: MinSeverity = None, status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    entity: Entity = None, rule_id: Annotated[str | None, Query(max_length=256)] = None,
    limit: Limit = 100, cursor: Cursor = None,
) -> AlertPage:
    """Alerts sorted by last_seen (newest first), filtered, one page at a time."""
    filters = CaseFilters(_utc(time_from), _utc(time_to), severity, status_, entity, rule_id=rule_id)
    try:
        page = await run_in_threadpool(services.cases.alerts, filters, cursor, limit)
    except CaseQueryError as exc:
        raise _bad_query(exc) from None
    return AlertPage(items=[AlertOut.of(a) for a in page.items], next_cursor=page.next_cursor)


@router.get("/incidents", response_model=IncidentPage, summary="List incidents, newest first")
async def list_incidents(
    services: ServicesDep, _: Reader, time_from: From = None, time_to: To = None,
    severity: MinSeverity = None,
    status_: Annotated[Literal["open", "closed", "merged"] | None, Query(alias="status", description="Default: every status but merged.")] = None,
    entity: Entity = None, type_: Annotated[IncidentType | None, Query(alias="type")] = None,
    limit: Limit = 100, cursor: Cursor = None,
) -> IncidentPage:
    """Incidents sorted by last_seen (newest first), filtered, one page at a time."""
    filters = CaseFilters(_utc(time_from), _utc(time_to), severity, status_, entity, type=type_)
    try:
        page = await run_in_threadpool(services.cases.incidents, filters, cursor, limit)
    except CaseQueryError as exc:
        raise _bad_query(exc) from None
    return IncidentPage(items=[IncidentOut.of(i) for i in page.items], next_cursor=page.next_cursor)


@router.get(
    "/incidents/{incident_id}", response_model=IncidentDetailOut,
    summary="One incident with its alerts and timeline",
    responses={404: {"description": "No incident with this id."}},
)
async def get_incident(
    services: ServicesDep, principal: Reader, incident_id: Annotated[str, Path(max_length=128)],
) -> IncidentDetailOut:
    """The incident, its alerts and timeline; a merged incident's id answers with the survivor.
    The read (entities: IPs, user ids) writes an ``incident.read`` audit entry, like a ticket read."""
    detail = await run_in_threadpool(services.cases.incident, incident_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no incident with id {incident_id!r}")
    await run_in_threadpool(
        audit_of(services).append, actor_of(principal), "incident.read", f"incident:{detail.incident.id}",
        {"fields": sorted(detail.incident.entities), "role": principal.role},
    )
    base = IncidentOut.of(detail.incident).model_dump()
    return IncidentDetailOut(
        **base, alerts=[AlertOut.of(a) for a in detail.alerts],
        timeline=[TimelineEntryOut.of(e) for e in detail.timeline],
    )
