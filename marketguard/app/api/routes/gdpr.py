"""Routes: the GDPR Article 33 clocks — ``GET /api/v1/gdpr/clocks``, ``GET /api/v1/gdpr/clocks/{incident_id}``,
``POST /api/v1/gdpr/clocks/{incident_id}/notification`` and ``.../delay``.

Staff readers see the clocks (deadline, time left, reminders raised). The DPO records the
notification to the supervisory authority (time and the authority's reference) or the
documented reasons for delay; both are attached to the DPO ticket and audited. Recording
needs ``oncall`` or ``analyst`` (``admin`` always).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.cases.audit import actor_of
from playbooks.gdpr import GdprClock, GdprError
from playbooks.state import GdprClockRecord

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/gdpr", tags=["gdpr"])

Reader = Annotated[Principal, Depends(require_role(*READERS))]
Recorder = Annotated[Principal, Depends(require_role("oncall", "analyst"))]
IncidentId = Annotated[str, Path(max_length=64)]


class ClockOut(BaseModel):
    """One Article 33 clock."""

    incident_id: str
    aware_at: datetime
    deadline: datetime
    seconds_left: float = Field(description="Until the deadline at the time of the request (negative when passed).")
    reminder_hours: list[float]
    reminders_raised: list[float]
    ticket_id: str | None
    notified_at: datetime | None
    authority_ref: str | None
    delay_reasons: str | None

    @classmethod
    def of(cls, c: GdprClockRecord) -> ClockOut:
        """The response form of a clock."""
        return cls(incident_id=c.incident_id, aware_at=c.aware_at, deadline=c.deadline,
                   seconds_left=(c.deadline - datetime.now(UTC)).total_seconds(), reminder_hours=list(c.reminder_hours),
                   reminders_raised=list(c.fired), ticket_id=c.ticket_id, notified_at=c.notified_at,
                   authority_ref=c.authority_ref, delay_reasons=c.delay_reasons)


class NotificationIn(BaseModel):
    """The notification made to the supervisory authority."""

    notified_at: datetime
    authority_ref: str = Field(min_length=1, max_length=200)
    delay_reasons: str | None = Field(None, max_length=4000, description="Required when notified after the deadline.")


class DelayIn(BaseModel):
    """Documented reasons for not (yet) notifying within 72 hours."""

    reasons: str = Field(min_length=3, max_length=4000)


def _gdpr(services: Services) -> GdprClock:
    found = getattr(services, "gdpr", None) or services.extras.get("gdpr")
    if found is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="the GDPR clock is not configured")
    return found  # type: ignore[no-any-return]


def _clock(gdpr: GdprClock, incident_id: str) -> GdprClockRecord:
    clock = gdpr.clocks.get(incident_id)
    if clock is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no GDPR clock for incident {incident_id!r}")
    return clock


@router.get("/clocks", response_model=list[ClockOut], summary="Open Article 33 clocks, earliest deadline first")
async def open_clocks(services: ServicesDep, _: Reader) -> list[ClockOut]:
    """Clocks whose notification is not yet recorded."""
    return [ClockOut.of(c) for c in await run_in_threadpool(_gdpr(services).clocks.open_clocks)]


@router.get("/clocks/{incident_id}", response_model=ClockOut, summary="One incident's Article 33 clock")
async def get_clock(services: ServicesDep, _: Reader, incident_id: IncidentId) -> ClockOut:
    """The clock of an incident (404 when none was started)."""
    return ClockOut.of(await run_in_threadpool(_clock, _gdpr(services), incident_id))


@router.post("/clocks/{incident_id}/notification", response_model=ClockOut, summary="Record the authority notification")
async def record_notification(services: ServicesDep, principal: Recorder, incident_id: IncidentId,
                              body: Annotated[NotificationIn, Body()]) -> ClockOut:
    """Record when and under which reference the authority was notified (late needs reasons: 422)."""
    gdpr = _gdpr(services)
    _clock(gdpr, incident_id)
    moment = body.notified_at if body.notified_at.tzinfo else body.notified_at.replace(tzinfo=UTC)
    try:
        done = await run_in_threadpool(lambda: gdpr.record_notification(
            incident_id, notified_at=moment, authority_ref=body.authority_ref, actor=actor_of(principal),
            delay_reasons=body.delay_reasons))
    except GdprError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return ClockOut.of(done)


@router.post("/clocks/{incident_id}/delay", response_model=ClockOut, summary="Document reasons for delay")
async def record_delay(services: ServicesDep, principal: Recorder, incident_id: IncidentId,
                       body: Annotated[DelayIn, Body()]) -> ClockOut:
    """Attach documented reasons for delay to the clock and the DPO ticket."""
    gdpr = _gdpr(services)
    _clock(gdpr, incident_id)
    done = await run_in_threadpool(lambda: gdpr.record_delay(incident_id, reasons=body.reasons, actor=actor_of(principal)))
    return ClockOut.of(done)
