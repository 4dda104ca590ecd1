"""The report models: plain dataclasses computed from the stores, rendered three ways.

:func:`marketguard.app.reports.incident.build_incident_report` and
:func:`marketguard.app.reports.compliance.build_compliance_report` fill them;
:mod:`marketguard.app.reports.render` turns one into JSON, HTML or PDF. Everything a renderer
shows is here, so the three formats always agree. Times are UTC; durations are seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "Verification", "AuditProof", "ProofEntry", "TimelineItem", "EntityGroup", "EvidenceEvent",
    "RuleFired", "TicketLine", "ContainmentLine", "NotificationLine", "GdprRecord", "RatePoint",
    "Classification", "Summary", "IncidentReport", "Breakdown", "ResponseTimes", "SellerLine",
    "SloLine", "GdprAdherence", "ComplianceReport", "to_json", "REPORT_VERSION",
]

#: Bumped when the JSON shape changes incompatibly.
REPORT_VERSION = 1


@dataclass(frozen=True)
class Verification:
    """The audit chain check: ``ok``, entries checked, the first broken entry and why."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = None


@dataclass(frozen=True)
class ProofEntry:
    """One audit entry as stored, and whether its hash recomputes from its content."""

    seq: int
    time: datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    hash_ok: bool


@dataclass(frozen=True)
class AuditProof:
    """The incident's (or period's) audit entries and the whole chain's verification."""

    entries: list[ProofEntry]
    chain: Verification


@dataclass(frozen=True)
class TimelineItem:
    """One moment of the response. ``clock`` is ``event`` (event time) or ``recorded`` (wall clock)."""

    time: datetime
    kind: str
    text: str
    actor: str | None = None
    clock: str = "recorded"
    audit_seq: int | None = None


@dataclass(frozen=True)
class EntityGroup:
    """The values of one entity field (pseudonymised where personal)."""

    field: str
    count: int
    values: list[str]


@dataclass(frozen=True)
class EvidenceEvent:
    """One stored event an alert cites, with the fields people read."""

    event_id: str
    timestamp: datetime | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class RuleFired:
    """One alert: the rule, how often and when it fired, and its evidence events."""

    alert_id: str
    rule_id: str
    title: str
    level: str
    kind: str
    tags: list[str]
    author: str | None
    license: str | None
    detections: int
    event_count: int
    first_seen: datetime
    last_seen: datetime
    value: float | None
    group: dict[str, str | None]
    evidence: list[EvidenceEvent]


@dataclass(frozen=True)
class TicketLine:
    """A ticket of the incident: owner, priority, clocks and whether they were met."""

    id: str
    queue: str
    kind: str
    title: str
    priority: str
    status: str
    assignee: str | None
    created: datetime
    ack_due: datetime
    resolve_due: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    time_to_acknowledge_s: float | None
    time_to_resolve_s: float | None
    ack_met: bool | None
    resolve_met: bool | None
    comments: int
    failed_steps: list[str]


@dataclass(frozen=True)
class ContainmentLine:
    """A containment request and the human decision on it."""

    id: str
    action: str
    target: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    result: str | None


@dataclass(frozen=True)
class NotificationLine:
    """One delivery attempt series of a notifier, as the audit trail recorded it."""

    time: datetime
    notifier: str
    outcome: str
    event: str | None
    attempts: int | None
    status: int | None
    error: str | None
    audit_seq: int


@dataclass(frozen=True)
class GdprRecord:
    """The Article 33 clock of a personal-data breach and what was done about it."""

    incident_id: str
    aware_at: datetime
    deadline: datetime
    reminder_hours: list[float]
    reminders_raised: list[float]
    ticket_id: str | None
    notified_at: datetime | None
    authority_ref: str | None
    delay_reasons: str | None
    state: str  # notified_on_time | notified_late | open | overdue
    hours_left: float | None


@dataclass(frozen=True)
class RatePoint:
    """Events per minute around the incident: all of the involved datasets, and the cited ones."""

    minute: datetime
    events: int
    evidence: int


@dataclass(frozen=True)
class Classification:
    """What kind of incident, how bad, how urgent, and who owns it."""

    type: str
    severity: str
    level: str
    impact: str
    priority: str
    personal_data: bool
    tags: list[str]
    owners: list[str]


@dataclass(frozen=True)
class Summary:
    """The incident in a few numbers."""

    title: str
    status: str
    first_seen: datetime
    last_seen: datetime
    created: datetime
    duration_s: float
    alerts: int
    rules: int
    detections: int
    events: int
    entities: int
    tickets: int
    text: str


@dataclass(frozen=True)
class IncidentReport:
    """Everything an auditor reads about one incident."""

    incident_id: str
    generated_at: datetime
    summary: Summary
    classification: Classification
    timeline: list[TimelineItem]
    entities: list[EntityGroup]
    rules: list[RuleFired]
    tickets: list[TicketLine]
    containment: list[ContainmentLine]
    notifications: list[NotificationLine]
    gdpr: GdprRecord | None
    proof: AuditProof
    event_rate: list[RatePoint]
    kind: str = "incident"
    version: int = REPORT_VERSION


@dataclass(frozen=True)
class Breakdown:
    """Counts by one dimension, largest first."""

    dimension: str
    counts: dict[str, int]


@dataclass(frozen=True)
class ResponseTimes:
    """Tickets of one priority: mean time to acknowledge / resolve against the targets."""

    priority: str
    tickets: int
    acknowledged: int
    resolved: int
    mtta_s: float | None
    mttr_s: float | None
    ack_target_s: float
    resolve_target_s: float
    ack_met: int
    ack_breached: int
    resolve_met: int
    resolve_breached: int

    @property
    def ack_compliance(self) -> float | None:
        """Share of decided acknowledgements that met the target."""
        decided = self.ack_met + self.ack_breached
        return self.ack_met / decided if decided else None

    @property
    def resolve_compliance(self) -> float | None:
        """Share of decided resolutions that met the target."""
        decided = self.resolve_met + self.resolve_breached
        return self.resolve_met / decided if decided else None


@dataclass(frozen=True)
class SellerLine:
    """One seller under one support SLA over the period."""

    sla_id: str
    seller_id: str
    tickets: int
    first_response: float | None
    resolution: float | None
    score: float | None
    breaches: int


@dataclass(frozen=True)
class SloLine:
    """One SLO over the period: attainment against the objective."""

    slo_id: str
    title: str
    service: str
    objective: float
    good: int
    total: int
    attainment: float | None
    budget_remaining: float
    met: bool | None


@dataclass(frozen=True)
class GdprAdherence:
    """Article 33 clocks started in the period and how they ended."""

    clocks: list[GdprRecord]
    on_time: int
    late: int
    open: int
    overdue: int

    @property
    def adherence(self) -> float | None:
        """Share of decided clocks (notified or overdue) notified within 72 hours."""
        decided = self.on_time + self.late + self.overdue
        return self.on_time / decided if decided else None


@dataclass(frozen=True)
class ComplianceReport:
    """The period's incidents, response times, seller SLAs, SLOs, GDPR clocks and audit chain."""

    period_from: datetime
    period_to: datetime
    generated_at: datetime
    incidents: int
    by_type: Breakdown
    by_severity: Breakdown
    by_owner: Breakdown
    response: list[ResponseTimes]
    sellers: list[SellerLine]
    slos: list[SloLine]
    gdpr: GdprAdherence
    audit_entries: int
    audit_period: Verification
    audit_chain: Verification
    kind: str = "compliance"
    version: int = REPORT_VERSION
    extras: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("ack_compliance", "resolve_compliance", "adherence"):
            if hasattr(type(value), name):
                out[name] = getattr(value, name)
        return out
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(report: IncidentReport | ComplianceReport) -> dict[str, Any]:
    """The report as plain JSON data (ISO times, seconds, computed rates included)."""
    return _plain(report)  # type: ignore[no-any-return]
