"""``notify``: send a rendered message through a configured notifier (see notifiers.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from playbooks.model import StepSpec
from playbooks.notifiers.base import Notification, NotificationEvent
from playbooks.steps.base import Step, StepContext, StepError, render

__all__ = ["NotifyStep", "NotifySpec"]


class NotifySpec(StepSpec):
    """Notifier name, message template (``${title}``, ``${severity}``...) and event."""

    kind: Literal["notify"]
    notifier: str = Field(min_length=1)
    template: str = Field(min_length=1)
    event: NotificationEvent = "trigger"


class NotifyStep(Step):
    """Delivers through the dispatcher, which retries and records; a final failure fails the step."""

    kind = "notify"
    Spec = NotifySpec

    def run(self, spec: NotifySpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"notified": {notifier: attempts}}``."""
        inc = ctx.detail.incident
        message = Notification(
            incident_id=inc.id, title=inc.title, text=render(spec.template, ctx), severity=inc.severity,
            incident_type=inc.type, started=inc.first_seen, event=spec.event, link=ctx.link(),
            details={"playbook": ctx.playbook.id, "rules": list(inc.rule_ids), "tickets": ctx.facts.get("ticket_ids", [])},
        )
        result = ctx.deps.dispatcher.deliver(spec.notifier, message, actor=ctx.actor)
        if not result.ok:
            # the dispatcher already retried with backoff: do not multiply attempts
            raise StepError(f"delivery via {spec.notifier} failed after {result.attempts} attempts: {result.error}", permanent=True)
        return {"notified": {spec.notifier: result.attempts}}
