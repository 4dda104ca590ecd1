"""``assign``: assign the incident's tickets to a person, rota or team."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from playbooks.model import StepSpec
from playbooks.steps.base import Step, StepContext, StepError

__all__ = ["AssignStep", "AssignSpec"]


class AssignSpec(StepSpec):
    """Who gets the tickets (e.g. ``oncall:secops``, a person's handle)."""

    kind: Literal["assign"]
    assignee: str = Field(min_length=1, max_length=128)


class AssignStep(Step):
    """Sets the assignee of every ticket opened before it (or of the incident)."""

    kind = "assign"
    Spec = AssignSpec

    def run(self, spec: AssignSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"assigned": [ticket ids]}``."""
        ids = ctx.ticket_ids()
        if not ids:
            raise StepError("no ticket to assign: put an open_ticket step before assign", permanent=True)
        for tid in ids:
            ctx.deps.tickets.assign(tid, spec.assignee, actor=ctx.actor, now=ctx.now)
        return {"assigned": ids, "assignee": spec.assignee}
