"""``report``: write what the playbook did as an internal ticket comment (and optionally send it)."""

from __future__ import annotations

from typing import Any, Literal

from playbooks.model import StepSpec
from playbooks.notifiers.base import Notification
from playbooks.steps.base import Step, StepContext

__all__ = ["ReportStep", "ReportSpec"]


class ReportSpec(StepSpec):
    """Optionally a notifier to send the report through."""

    kind: Literal["report"]
    notifier: str | None = None


class ReportStep(Step):
    """Summarises the incident and the run so far (enrichment, tickets, actions, GDPR clock)."""

    kind = "report"
    Spec = ReportSpec

    def run(self, spec: ReportSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"report": text}``."""
        text = build_report(ctx)
        for tid in ctx.ticket_ids():
            ctx.deps.tickets.comment(tid, text, actor=ctx.actor, internal=True, now=ctx.now)
        ctx.deps.audit.append(actor=ctx.actor, action="playbook.report", object=f"incident:{ctx.detail.incident.id}",
                              details={"playbook": ctx.playbook.id, "chars": len(text)})
        if spec.notifier:
            inc = ctx.detail.incident
            ctx.deps.dispatcher.deliver(spec.notifier, Notification(
                incident_id=inc.id, title=f"Report: {inc.title}", text=text, severity=inc.severity,
                incident_type=inc.type, started=inc.first_seen, link=ctx.link()), actor=ctx.actor)
        return {"report": text}


def build_report(ctx: StepContext) -> str:
    """A short plain-text report of the incident and the playbook's outputs so far."""
    inc, facts = ctx.detail.incident, ctx.facts
    lines = [f"Playbook {ctx.playbook.id}: {ctx.playbook.title}",
             f"Incident {inc.id} ({inc.type}, {inc.severity}): {inc.title}",
             f"Seen {inc.first_seen.isoformat()} to {inc.last_seen.isoformat()}; {len(inc.alert_ids)} alert(s), rules {', '.join(inc.rule_ids)}"]
    if enrichment := facts.get("enrichment"):
        lines.append(f"Enrichment: {enrichment['events']} event(s) of the entities in the last "
                     f"{enrichment['lookback_minutes']} min; related incidents: {', '.join(enrichment['related_incidents']) or 'none'}")
    if facts.get("ticket_ids"):
        lines.append(f"Tickets: {', '.join(facts['ticket_ids'])}")
    if facts.get("notified"):
        lines.append(f"Notified: {', '.join(facts['notified'])}")
    if facts.get("pending_actions"):
        lines.append(f"Containment awaiting approval: {', '.join(facts['pending_actions'])}")
    if (gdpr := facts.get("gdpr")) and gdpr.get("started"):
        lines.append(f"GDPR Art. 33 deadline: {gdpr['deadline']} (DPO ticket {gdpr['ticket_id']})")
    return "\n".join(lines)
