"""Routes: ``GET /api/v1/incidents/{id}/report`` and ``GET /api/v1/reports/compliance``.

``format`` is ``json`` (default), ``html`` (one self-contained page) or ``pdf`` (A4, WeasyPrint).
Staff readers (analyst, oncall, auditor; admin always) may read them; a seller may not (403).
Reading an incident report is audited (``report.read`` on ``incident:<id>``, actor
``key:<name>``), after the report is built, so its proof shows the trail as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.app.reports import (
    MEDIA_TYPES,
    build_compliance_report,
    build_incident_report,
    record_report_read,
    render,
    sources_from_services,
)
from marketguard.app.reports.sources import ReportSources
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.cases.audit import actor_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["reports"])

Reader = Annotated[Principal, Depends(require_role(*READERS))]
ReportFormat = Annotated[Literal["json", "html", "pdf"], Query(alias="format", description="json (default), html or pdf.")]


def _sources(services: Services) -> ReportSources:
    if getattr(services, "audit", None) is None or getattr(services, "tickets", None) is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="tickets and the audit trail are not configured")
    return sources_from_services(services)


def _respond(data: bytes, fmt: str, filename: str) -> Response:
    headers = {"Content-Disposition": f'inline; filename="{filename}.{fmt}"'} if fmt != "json" else {}
    return Response(content=data, media_type=MEDIA_TYPES[fmt], headers=headers)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.get(
    "/incidents/{incident_id}/report", summary="An incident's report (json, html or pdf)",
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}}, 404: {"description": "No incident with this id."}},
)
async def incident_report(
    services: ServicesDep, principal: Reader, incident_id: Annotated[str, Path(max_length=128)],
    fmt: ReportFormat = "json",
) -> Response:
    """Summary, classification, timeline, entities, rules and evidence, tickets, GDPR clock and
    the audit proof of one incident (a merged id reports its survivor)."""
    sources = _sources(services)

    def build() -> bytes | None:
        report = build_incident_report(sources, incident_id)
        if report is None:
            return None
        data = render(report, fmt)
        record_report_read(sources.audit, report, actor=actor_of(principal), fmt=fmt)
        return data

    data = await run_in_threadpool(build)
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no incident with id {incident_id!r}")
    return _respond(data, fmt, f"incident-{incident_id}")


@router.get("/reports/compliance", summary="The compliance report of a period (json, html or pdf)",
            responses={200: {"content": {"text/html": {}, "application/pdf": {}}}})
async def compliance_report(
    services: ServicesDep, _: Reader,
    time_from: Annotated[datetime, Query(alias="from", description="Period start (ISO-8601, UTC if no offset).")],
    time_to: Annotated[datetime, Query(alias="to", description="Period end, inclusive.")],
    fmt: ReportFormat = "json",
) -> Response:
    """Incidents by type, severity and owner; MTTA/MTTR against targets; seller SLAs; SLOs;
    GDPR clock adherence; audit-chain verification."""
    start, end = _utc(time_from), _utc(time_to)
    if end < start:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="`to` is before `from`")
    sources = _sources(services)
    report = await run_in_threadpool(build_compliance_report, sources, start, end)
    data = await run_in_threadpool(render, report, fmt)
    return _respond(data, fmt, f"compliance-{start:%Y%m%d}-{end:%Y%m%d}")
