"""``gdpr_clock``: start the Article 33 72-hour clock with its ``operator:dpo`` ticket."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from playbooks.model import StepSpec
from playbooks.steps.base import Step, StepContext, StepError

__all__ = ["GdprClockStep", "GdprClockSpec"]


class GdprClockSpec(StepSpec):
    """Reminder points (hours after awareness, each inside the 72 h) and the personal-data check."""

    kind: Literal["gdpr_clock"]
    reminder_hours: list[float] = Field(default_factory=lambda: [24.0, 48.0, 66.0])
    require_personal_data: bool = Field(True, description="Start only when the incident involves personal data (see playbooks.gdpr).")

    @field_validator("reminder_hours")
    @classmethod
    def _inside(cls, value: list[float]) -> list[float]:
        if any(not 0 < h < 72 for h in value):
            raise ValueError("reminder hours must lie strictly between 0 and 72")
        return sorted(set(value))


class GdprClockStep(Step):
    """Starts the clock (idempotent per incident)."""

    kind = "gdpr_clock"
    Spec = GdprClockSpec

    def run(self, spec: GdprClockSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"gdpr": {"deadline", "ticket_id"}}`` (or ``started: false``)."""
        clock = ctx.deps.gdpr
        if clock is None:
            raise StepError("the GDPR clock is not configured", permanent=True)
        if spec.require_personal_data and not clock.involves_personal_data(ctx.detail):
            return {"gdpr": {"started": False, "reason": "no personal data involved"}}
        record = clock.start(ctx.detail, reminder_hours=spec.reminder_hours, actor=ctx.actor)
        return {"gdpr": {"started": True, "deadline": record.deadline.isoformat(), "ticket_id": record.ticket_id}}
