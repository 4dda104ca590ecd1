"""An incident's story from its records: detection, alerts, then every audited response step.

The audit trail is the source of truth for what people and playbooks did (each entry is
wall-clock time and names its actor); the case store gives the detection (event time). The
entries that belong to an incident are those on ``incident:<id>``, on its tickets
(``ticket:<id>``) and on its containment actions (``action:<id>``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from marketguard.app.reports.model import ProofEntry, TimelineItem
from marketguard.cases import IncidentDetail
from marketguard.cases.audit import AuditEntry, AuditLog, entry_hash
from marketguard.cases.tickets import Ticket

__all__ = ["incident_entries", "proof_entries", "build_timeline", "describe"]


def incident_entries(audit: AuditLog, incident_id: str, ticket_ids: Iterable[str],
                     action_ids: Iterable[str]) -> list[AuditEntry]:
    """Every audit entry about the incident, its tickets and its containment actions, by seq."""
    objects = [f"incident:{incident_id}", *(f"ticket:{t}" for t in ticket_ids), *(f"action:{a}" for a in action_ids)]
    found: dict[int, AuditEntry] = {}
    for obj in dict.fromkeys(objects):
        for entry in audit.entries(object=obj):
            found[entry.seq] = entry
    return [found[s] for s in sorted(found)]


def proof_entries(entries: Sequence[AuditEntry]) -> list[ProofEntry]:
    """The entries as stored, each with whether its hash recomputes from its content."""
    return [
        ProofEntry(e.seq, e.time, e.actor, e.action, e.object, dict(e.details), e.prev_hash, e.hash,
                   entry_hash(e.seq, e.time, e.actor, e.action, e.object, e.details, e.prev_hash) == e.hash)
        for e in entries
    ]


def _get(d: Mapping[str, Any], key: str, default: str = "?") -> str:
    value = d.get(key)
    return default if value is None else str(value)


def _ticket(e: AuditEntry) -> tuple[str, str]:
    d, tid = e.details, e.object.split(":", 1)[-1]
    if e.action == "ticket.open":
        return "ticket", f"Ticket {tid} opened for {_get(d, 'queue')} ({_get(d, 'priority')}, {_get(d, 'kind')})"
    if e.action == "ticket.status":
        to = _get(d, "to")
        kind = {"acknowledged": "acknowledgement", "resolved": "resolution", "closed": "resolution"}.get(to, "ticket")
        reason = f": {d['reason']}" if d.get("reason") else ""
        return kind, f"Ticket {tid} {_get(d, 'from')} → {to}{reason}"
    if e.action == "ticket.assign":
        return "ticket", f"Ticket {tid} assigned to {_get(d, 'assignee', 'nobody')}"
    if e.action == "ticket.comment":
        return "ticket", f"Comment on {tid}{' (internal)' if d.get('internal') else ''}"
    if e.action == "ticket.step_failed":
        return "playbook", f"Failed step {_get(d, 'playbook')}/{_get(d, 'step')} recorded on {tid}"
    return "ticket", f"{e.action} on {tid}"


def _playbook(e: AuditEntry) -> tuple[str, str]:
    d = e.details
    name = f" ({d['name']})" if d.get("name") else ""
    step = f"{_get(d, 'playbook')} step {_get(d, 'step')} {_get(d, 'kind')}{name}"
    if e.action == "playbook.step":
        return "playbook", f"Playbook {step} done ({_get(d, 'attempts')} attempt(s))"
    if e.action == "playbook.step_failed":
        return "playbook", f"Playbook {step} FAILED after {_get(d, 'attempts')} attempt(s): {_get(d, 'error')}"
    if e.action == "playbook.report":
        return "playbook", f"Playbook {_get(d, 'playbook')} wrote its report"
    return "playbook", e.action


def _containment(e: AuditEntry) -> tuple[str, str]:
    d, verb = e.details, e.action.split(".", 1)[1]
    what = f"{_get(d, 'action')} {_get(d, 'target')}"
    text = {
        "request": f"Containment requested: {what} (awaits human approval)",
        "approve": f"Containment APPROVED: {what} — {_get(d, 'reason', '')}",
        "reject": f"Containment rejected: {what} — {_get(d, 'reason', '')}",
        "executed": f"Containment executed: {what}",
        "failed": f"Containment failed: {what}: {_get(d, 'result', '')}",
    }.get(verb, f"Containment {verb}: {what}")
    return "containment", text


def _notification(e: AuditEntry) -> tuple[str, str]:
    d = e.details
    outcome = "delivered" if e.action.endswith("delivered") else "FAILED"
    return "notification", f"Notification via {_get(d, 'notifier')} {outcome} ({_get(d, 'attempts')} attempt(s))"


def _gdpr(e: AuditEntry) -> tuple[str, str]:
    d, verb = e.details, e.action.split(".", 1)[1]
    text = {
        "clock_start": f"GDPR Art. 33 clock started; notify by {_get(d, 'deadline')}",
        "reminder": f"GDPR reminder ({_get(d, 'hours')} h after awareness)",
        "notified": f"Supervisory authority notified (reference {_get(d, 'authority_ref')})"
                    + (" — late" if d.get("late") else ""),
        "delay": "Reasons for delayed notification documented",
    }.get(verb, f"GDPR {verb}")
    return "gdpr", text


#: Audit actions kept in the proof but left out of the story (bookkeeping, not response steps).
_QUIET = ("ticket.details", "ticket.link")

_DESCRIBERS: dict[str, Callable[[AuditEntry], tuple[str, str]]] = {
    "ticket": _ticket, "playbook": _playbook, "containment": _containment,
    "notification": _notification, "gdpr": _gdpr,
}


def describe(entry: AuditEntry) -> TimelineItem:
    """The timeline line of one audit entry."""
    family = entry.action.split(".", 1)[0]
    describer = _DESCRIBERS.get(family)
    kind, text = describer(entry) if describer else ("audit", f"{entry.action} on {entry.object}")
    return TimelineItem(entry.time, kind, text, actor=entry.actor, audit_seq=entry.seq)


def build_timeline(detail: IncidentDetail, entries: Sequence[AuditEntry], tickets: Sequence[Ticket]) -> list[TimelineItem]:
    """Detection, alert and escalation lines, every audited response step, and resolution."""
    inc = detail.incident
    items = [
        TimelineItem(inc.first_seen, "detection", "First event of the incident", clock="event"),
        TimelineItem(inc.created, "detection", f"Incident recorded ({inc.type}, {inc.severity})", actor="system"),
    ]
    for t in detail.timeline:
        items.append(TimelineItem(t.time, {"alert": "alert", "escalated": "escalation"}.get(t.kind, t.kind),
                                  t.text, clock="event"))
    items.extend(describe(e) for e in entries if not e.action.endswith(".read") and e.action not in _QUIET)
    if tickets and all(t.resolved_at for t in tickets):
        done = max(t.resolved_at for t in tickets if t.resolved_at)
        items.append(TimelineItem(done, "resolution", f"All {len(tickets)} ticket(s) resolved"))
    return sorted(items, key=lambda i: (i.time, i.audit_seq is None and i.kind == "resolution", i.audit_seq or 0))
