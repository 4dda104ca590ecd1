"""The incident report: one incident, computed from the case store, tickets, response state,
the audit trail and the events it cites.

Personal data stays as stored: the collectors pseudonymised it, and nothing here reverses or
looks up a pseudonym. Reading a report is a staff read of incident data, so callers record it
with :func:`record_report_read` (after building, so the proof shows the trail as it was).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from marketguard.app.reports.model import (
    AuditProof,
    Classification,
    ContainmentLine,
    EntityGroup,
    EvidenceEvent,
    GdprRecord,
    IncidentReport,
    NotificationLine,
    RatePoint,
    RuleFired,
    Summary,
    TicketLine,
    Verification,
)
from marketguard.app.reports.sources import ReportSources
from marketguard.app.reports.timeline import build_timeline, incident_entries, proof_entries
from marketguard.cases import Alert, IncidentDetail
from marketguard.cases.audit import AuditEntry, AuditLog
from marketguard.cases.tickets import Ticket, TicketFilters
from marketguard.detections import EVIDENCE_FIELDS
from marketguard.schema import EVENT_FIELDS
from marketguard.store import MatchWindow, Store
from playbooks.state import GdprClockRecord

__all__ = ["build_incident_report", "record_report_read", "gdpr_record", "ticket_line", "verification",
           "EVIDENCE_PER_RULE", "ENTITY_VALUES_SHOWN"]

#: Evidence events shown per rule (the alert keeps up to 100 ids; the count is always exact).
EVIDENCE_PER_RULE = 5
#: Values listed per entity field (the count is always exact).
ENTITY_VALUES_SHOWN = 20
_EVIDENCE_COLUMNS = [c for c in dict.fromkeys(
    ("@timestamp", "event.id", "event.dataset", *EVIDENCE_FIELDS, "monitor.id", "monitor.status",
     "ticket.id", "ticket.event", "span.name", "error.message")) if c in EVENT_FIELDS]
_MAX_POINTS = 240


def verification(result: Any) -> Verification:
    """A :class:`~marketguard.cases.audit.VerifyResult` as the report's plain record."""
    return Verification(result.ok, result.entries, result.first_broken_seq, result.reason, result.last_hash)


def ticket_line(t: Ticket, now: datetime) -> TicketLine:
    """A ticket's owner, clocks and whether its targets were met (None while undecided)."""
    ack_met = None if t.acknowledged_at is None and now <= t.ack_due else not t.ack_breached(now)
    resolve_met = None if t.resolved_at is None and now <= t.resolve_due else not t.resolve_breached(now)
    tta, ttr = t.time_to_acknowledge, t.time_to_resolve
    return TicketLine(
        t.id, t.queue, t.kind, t.title, t.priority, t.status, t.assignee, t.created, t.ack_due, t.resolve_due,
        t.acknowledged_at, t.resolved_at, tta.total_seconds() if tta else None, ttr.total_seconds() if ttr else None,
        ack_met, resolve_met, len(t.comments), [f"{f.playbook}/{f.step}: {f.error}" for f in t.failed_steps],
    )


def gdpr_record(clock: GdprClockRecord, now: datetime) -> GdprRecord:
    """An Article 33 clock with its state: notified on time or late, open, or overdue."""
    if clock.notified_at is not None:
        state, left = ("notified_on_time" if clock.notified_at <= clock.deadline else "notified_late"), None
    else:
        left = (clock.deadline - now).total_seconds() / 3600
        state = "open" if left >= 0 else "overdue"
    return GdprRecord(clock.incident_id, clock.aware_at, clock.deadline, list(clock.reminder_hours), list(clock.fired),
                      clock.ticket_id, clock.notified_at, clock.authority_ref, clock.delay_reasons, state, left)


def _evidence_window(alerts: Sequence[Alert]) -> MatchWindow:
    starts = [min(a.first_seen, a.window_start or a.first_seen) for a in alerts]
    ends = [max(a.last_seen, a.window_end or a.last_seen) for a in alerts]
    return MatchWindow(time_after=min(starts) - timedelta(microseconds=1), time_upto=max(ends))


def _evidence(store: Store, alerts: Sequence[Alert]) -> dict[str, EvidenceEvent]:
    """The stored events the alerts cite (the first :data:`EVIDENCE_PER_RULE` of each)."""
    wanted = {e for a in alerts for e in a.event_ids[:EVIDENCE_PER_RULE]}
    if not wanted:
        return {}
    found: dict[str, EvidenceEvent] = {}
    for batch in store.scan(_evidence_window(alerts), _EVIDENCE_COLUMNS):
        for row in batch.to_pylist():
            if row["event.id"] in wanted:
                fields = {k: v for k, v in row.items() if v is not None and k not in ("_seq", "event.id", "@timestamp")}
                found[row["event.id"]] = EvidenceEvent(row["event.id"], row["@timestamp"], fields)
    return found


def _rules(alerts: Sequence[Alert], evidence: dict[str, EvidenceEvent]) -> list[RuleFired]:
    out = []
    for a in alerts:
        cited = [evidence[e] for e in a.event_ids[:EVIDENCE_PER_RULE] if e in evidence]
        out.append(RuleFired(a.id, a.rule_id, a.rule_title, a.rule_level, a.kind, list(a.tags), a.rule_author,
                             a.rule_license, a.count, a.event_count, a.first_seen, a.last_seen, a.value,
                             dict(a.group), cited))
    return out


def _bucket(span: timedelta) -> timedelta:
    minutes = max(1, int(np.ceil(span.total_seconds() / 60 / _MAX_POINTS)))
    return timedelta(minutes=minutes)


def event_rate(store: Store, detail: IncidentDetail, evidence: dict[str, EvidenceEvent]) -> list[RatePoint]:
    """Events per bucket around the incident (its datasets), and how many of them alerts cite."""
    inc = detail.incident
    pad = max(timedelta(minutes=15), (inc.last_seen - inc.first_seen) / 4)
    start, end = inc.first_seen - pad, inc.last_seen + pad
    step = _bucket(end - start)
    start = pd.Timestamp(start).floor(f"{int(step.total_seconds() // 60)}min").to_pydatetime()
    n = int(np.ceil((end - start) / step)) + 1
    datasets = {e.fields.get("event.dataset") for e in evidence.values()} - {None}
    cited = {e for a in detail.alerts for e in a.event_ids}
    totals, hits = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    window = MatchWindow(time_after=start - timedelta(microseconds=1), time_upto=start + step * n)
    for batch in store.scan(window, ["@timestamp", "event.id", "event.dataset"]):
        frame = batch.to_pandas()
        if datasets:
            frame = frame[frame["event.dataset"].isin(datasets)]
        if frame.empty:
            continue
        times = pd.to_datetime(frame["@timestamp"], utc=True)
        pos = ((times - pd.Timestamp(start)) // pd.Timedelta(step)).to_numpy(dtype=np.int64)
        keep = (pos >= 0) & (pos < n)
        totals += np.bincount(pos[keep], minlength=n)[:n]
        hits += np.bincount(pos[keep & frame["event.id"].isin(cited).to_numpy()], minlength=n)[:n]
    return [RatePoint(start + step * i, int(totals[i]), int(hits[i])) for i in range(n)]


def _notifications(entries: Iterable[AuditEntry]) -> list[NotificationLine]:
    out = []
    for e in entries:
        if e.action in ("notification.delivered", "notification.failed"):
            d = e.details
            out.append(NotificationLine(e.time, str(d.get("notifier")), e.action.split(".", 1)[1], d.get("event"),
                                        d.get("attempts"), d.get("status"), d.get("error"), e.seq))
    return out


def _summary(detail: IncidentDetail, tickets: Sequence[Ticket], entity_count: int) -> Summary:
    inc, alerts = detail.incident, detail.alerts
    events = sum(a.event_count for a in alerts)
    text = (f"{inc.type.capitalize()} incident of severity {inc.severity}: {len(alerts)} alert(s) from "
            f"{len(set(inc.rule_ids))} rule(s) over {events} event(s), {entity_count} distinct entit"
            f"{'y' if entity_count == 1 else 'ies'}, between {inc.first_seen:%Y-%m-%d %H:%M:%S} and "
            f"{inc.last_seen:%Y-%m-%d %H:%M:%S} UTC; {len(tickets)} ticket(s); status {inc.status}.")
    return Summary(inc.title, inc.status, inc.first_seen, inc.last_seen, inc.created,
                   (inc.last_seen - inc.first_seen).total_seconds(), len(alerts), len(set(inc.rule_ids)),
                   sum(a.count for a in alerts), events, entity_count, len(tickets), text)


def build_incident_report(sources: ReportSources, incident_id: str, *, now: datetime | None = None) -> IncidentReport | None:
    """The report of one incident (a merged id reports its survivor); None when unknown."""
    now = now or datetime.now(UTC)
    detail = sources.cases.incident(incident_id)
    if detail is None:
        return None
    inc = detail.incident
    tickets = sorted(sources.all_tickets(TicketFilters(incident_id=inc.id)), key=lambda t: (t.created, t.id))
    actions = sorted(sources.actions.list(incident_id=inc.id), key=lambda a: a.requested_at) if sources.actions else []
    entries = incident_entries(sources.audit, inc.id, [t.id for t in tickets], [a.id for a in actions])
    tags = sorted({t for a in detail.alerts for t in a.tags})
    impact = sources.policy.impact.of(inc, tags)
    owners = sorted({t.queue for t in tickets}) or sorted({r.queue for r in sources.policy.route(inc, tags)})
    clock = sources.clocks.get(inc.id) if sources.clocks else None
    entities = [EntityGroup(f, len(v), sorted(v)[:ENTITY_VALUES_SHOWN]) for f, v in sorted(inc.entities.items()) if v]
    evidence = _evidence(sources.store, detail.alerts)
    return IncidentReport(
        incident_id=inc.id, generated_at=now,
        summary=_summary(detail, tickets, sum(g.count for g in entities)),
        classification=Classification(inc.type, inc.severity, inc.level, impact,
                                      sources.policy.priority_of(inc.severity, impact),
                                      sources.policy.impact.personal_data(tags) or clock is not None, tags, owners),
        timeline=build_timeline(detail, entries, tickets),
        entities=entities,
        rules=_rules(detail.alerts, evidence),
        tickets=[ticket_line(t, now) for t in tickets],
        containment=[ContainmentLine(a.id, a.action, a.target, a.status, a.requested_by, a.requested_at,
                                     a.decided_by, a.decided_at, a.reason, a.result) for a in actions],
        notifications=_notifications(entries),
        gdpr=gdpr_record(clock, now) if clock else None,
        proof=AuditProof(proof_entries(entries), verification(sources.audit.verify())),
        event_rate=event_rate(sources.store, detail, evidence),
    )


def record_report_read(audit: AuditLog, report: IncidentReport, *, actor: str, fmt: str) -> None:
    """Audit that staff read the incident's report (``report.read`` on ``incident:<id>``)."""
    audit.append(actor, "report.read", f"incident:{report.incident_id}",
                 {"format": fmt, "proof_entries": len(report.proof.entries)})
