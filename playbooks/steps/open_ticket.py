"""``open_ticket``: open the incident's ticket in a fixed owner queue, or wherever routing says.

Priority and due times always come from the routing policy (severity × impact matrix, SLAs);
the ticket store is idempotent per (incident, queue, kind), so re-runs open nothing new.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, model_validator

from marketguard.cases.tickets import Link
from marketguard.types import OwnerQueue
from playbooks.model import StepSpec
from playbooks.steps.base import Step, StepContext, render

__all__ = ["OpenTicketStep", "OpenTicketSpec"]


class OpenTicketSpec(StepSpec):
    """Either ``queue`` (one owner) or ``routing: true`` (every owner routing.yaml names)."""

    kind: Literal["open_ticket"]
    queue: OwnerQueue | None = None
    routing: bool = False
    title: str | None = Field(None, description="Title template (${title}, ${severity}...); default the incident title.")
    ticket_kind: str = Field("response", pattern=r"^[a-z_]{2,32}$")

    @model_validator(mode="after")
    def _one_owner(self) -> OpenTicketSpec:
        if (self.queue is None) == (not self.routing):
            raise ValueError("give exactly one of 'queue' (an owner queue) or 'routing: true'")
        return self


class OpenTicketStep(Step):
    """Opens tickets with priority and SLA due times from the routing policy."""

    kind = "open_ticket"
    Spec = OpenTicketSpec

    def run(self, spec: OpenTicketSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"ticket_ids": [...]}``."""
        detail = ctx.detail
        plans = ctx.deps.policy.plan(detail.incident, detail.alerts, now=ctx.now)
        if spec.queue is not None:
            plans = [replace(plans[0], queue=spec.queue, kind=spec.ticket_kind)]
        title = render(spec.title, ctx) if spec.title else None
        enrichment = ctx.facts.get("enrichment", {})
        ids = []
        for new in plans:
            details = {**new.details, "playbook": ctx.playbook.id}
            if enrichment:
                details["enrichment"] = enrichment
            links = new.links + tuple(Link("event", e) for e in enrichment.get("event_ids", [])[:20])
            result = ctx.deps.tickets.open(
                replace(new, title=title or new.title, details=details, links=links), actor=ctx.actor, now=ctx.now)
            ids.append(result.ticket.id)
        return {"ticket_ids": ids}
