"""GDPR Article 33: the 72-hour clock from awareness of a personal-data breach.

**Personal data involved** (:meth:`GdprClock.involves_personal_data`): one of the incident's
alerts carries a personal-data tag of the routing policy (``impact.personal_data_tags`` in
``playbooks/routing.yaml``: ``marketguard.personal_data``, ``attack.collection``,
``attack.t1530`` by default), or the incident has an entity of a kind listed in
``personal_entity_kinds`` (none by default: ``user.id`` is pseudonymised at ingest and an
attack *on* accounts is not by itself a breach *of* personal data).

**Awareness** is the incident's ``created`` time (when MarketGuard recorded it); the
**deadline** is awareness + 72 h. Starting the clock opens (idempotently) an
``operator:dpo`` ticket of kind ``gdpr_art33`` due at the deadline. :meth:`GdprClock.evaluate`
(run it on a schedule) raises each reminder point that has passed — by default 24 h, 48 h
and 66 h after awareness, plus the deadline itself — exactly once: a comment on the DPO
ticket, an audit entry and, if configured, a notification. The DPO records the
notification to the supervisory authority (time, authority reference) or documented reasons
for delay; both are stored with the clock, merged into the ticket's details and audited.
A notification after the deadline must carry reasons for the delay (Art. 33(1)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from marketguard.cases import IncidentDetail
from marketguard.cases.audit import AuditLog
from marketguard.cases.routing import TicketPolicy
from marketguard.cases.tickets import TicketStore
from marketguard.errors import MarketGuardError
from marketguard.metrics import METRICS, Metrics
from playbooks.notifiers.base import Notification
from playbooks.notifiers.dispatch import Dispatcher
from playbooks.state import ClockStore, GdprClockRecord

__all__ = ["GdprClock", "GdprError", "Reminder", "ARTICLE_33_WINDOW", "DEFAULT_REMINDER_HOURS", "DPO_QUEUE"]

ARTICLE_33_WINDOW = timedelta(hours=72)
DEFAULT_REMINDER_HOURS: tuple[float, ...] = (24.0, 48.0, 66.0)
DPO_QUEUE = "operator:dpo"
TICKET_KIND = "gdpr_art33"


class GdprError(MarketGuardError):
    """A GDPR record was refused (unknown clock, missing reasons for a late notification)."""


@dataclass(frozen=True)
class Reminder:
    """One reminder raised by :meth:`GdprClock.evaluate`."""

    incident_id: str
    hours: float
    deadline: datetime
    remaining: timedelta


def _now() -> datetime:
    return datetime.now(UTC)


class GdprClock:
    """Starts clocks, raises due reminders, records notifications and delays."""

    def __init__(
        self, clocks: ClockStore, tickets: TicketStore, policy: TicketPolicy, audit: AuditLog, *,
        dispatcher: Dispatcher | None = None, reminder_notifier: str | None = None,
        personal_entity_kinds: Sequence[str] = (), clock: Callable[[], datetime] = _now,
        metrics: Metrics = METRICS,
    ) -> None:
        self.clocks, self._tickets, self._policy, self._audit = clocks, tickets, policy, audit
        self._dispatcher, self._notifier = dispatcher, reminder_notifier
        self._kinds, self._clock, self._metrics = tuple(personal_entity_kinds), clock, metrics

    def involves_personal_data(self, detail: IncidentDetail) -> bool:
        """True when a personal-data tag or entity kind is present (see the module docstring)."""
        tags = [t for a in detail.alerts for t in a.tags]
        return self._policy.impact.personal_data(tags) or any(detail.incident.entities.get(k) for k in self._kinds)

    def start(self, detail: IncidentDetail, *, reminder_hours: Sequence[float] = DEFAULT_REMINDER_HOURS,
              actor: str = "system") -> GdprClockRecord:
        """Start the clock and open the DPO ticket; a second call returns the existing clock."""
        inc = detail.incident
        existing = self.clocks.get(inc.id)
        if existing is not None and existing.ticket_id:
            return existing
        aware = inc.created.astimezone(UTC)
        deadline = aware + ARTICLE_33_WINDOW
        plan = self._policy.plan(inc, detail.alerts, now=aware)[0]
        new = replace(
            plan, queue=DPO_QUEUE, kind=TICKET_KIND, title=f"GDPR Art. 33 notification due {deadline:%Y-%m-%d %H:%M} UTC: {inc.title}",
            priority="P1", ack_due=min(plan.ack_due, deadline), resolve_due=deadline,
            details={**plan.details, "gdpr": {"aware_at": aware.isoformat(), "deadline": deadline.isoformat(),
                                              "reminder_hours": list(reminder_hours)}},
        )
        ticket = self._tickets.open(new, actor=actor, now=aware).ticket
        record = GdprClockRecord(inc.id, aware, deadline, tuple(reminder_hours), ticket_id=ticket.id)
        if self.clocks.start(record):
            self._audit.append(actor=actor, action="gdpr.clock_start", object=f"incident:{inc.id}",
                               details={"aware_at": aware, "deadline": deadline, "ticket": ticket.id})
        else:
            self.clocks.update(replace(self.clocks.get(inc.id) or record, ticket_id=ticket.id))
        return self.clocks.get(inc.id) or record

    def due(self, now: datetime | None = None) -> list[Reminder]:
        """Reminder points (and the deadline) passed but not yet raised, on open clocks."""
        now = now or self._clock()
        out = []
        for c in self.clocks.open_clocks():
            for hours in (*c.reminder_hours, ARTICLE_33_WINDOW.total_seconds() / 3600):
                if hours not in c.fired and c.aware_at + timedelta(hours=hours) <= now:
                    out.append(Reminder(c.incident_id, hours, c.deadline, c.deadline - now))
        return out

    def evaluate(self, now: datetime | None = None) -> list[Reminder]:
        """Raise every due reminder once (comment, audit, metric, notification); return them."""
        now = now or self._clock()
        raised = []
        for r in self.due(now):
            if not self.clocks.fire(r.incident_id, r.hours, now):
                continue
            raised.append(r)
            self._remind(r)
        return raised

    def _remind(self, r: Reminder) -> None:
        clock = self.clocks.get(r.incident_id)
        left = r.remaining.total_seconds() / 3600
        text = (f"GDPR Art. 33 reminder ({r.hours:g} h after awareness): notification to the supervisory authority "
                + (f"due in {left:.1f} h, by {r.deadline.isoformat()}." if left > 0
                   else f"deadline {r.deadline.isoformat()} has passed: notify with reasons for the delay."))
        self._metrics.gdpr_reminders.inc()
        self._audit.append(actor="system", action="gdpr.reminder", object=f"incident:{r.incident_id}",
                           details={"hours": r.hours, "deadline": r.deadline})
        if clock and clock.ticket_id:
            self._tickets.comment(clock.ticket_id, text, actor="system", internal=True)
        if self._dispatcher and self._notifier:
            self._dispatcher.deliver(self._notifier, Notification(
                incident_id=r.incident_id, title="GDPR Art. 33 deadline approaching", text=text,
                severity="high" if left > 6 else "critical", incident_type="security",
                started=r.deadline - ARTICLE_33_WINDOW), actor="system")

    def record_notification(self, incident_id: str, *, notified_at: datetime, authority_ref: str,
                            actor: str, delay_reasons: str | None = None) -> GdprClockRecord:
        """Record the notification to the authority; a late one needs ``delay_reasons``."""
        clock = self._get(incident_id)
        if not authority_ref.strip():
            raise GdprError("the supervisory authority's reference is required")
        reasons = delay_reasons or clock.delay_reasons
        late = notified_at > clock.deadline
        if late and not (reasons or "").strip():
            raise GdprError(f"notified after the deadline {clock.deadline.isoformat()}: Art. 33(1) requires reasons for the delay")
        updated = replace(clock, notified_at=notified_at.astimezone(UTC), authority_ref=authority_ref, delay_reasons=reasons)
        self._save(updated, actor, "gdpr.notified",
                   f"Supervisory authority notified at {notified_at.isoformat()} (reference {authority_ref})"
                   + (f"; late, reasons: {reasons}" if late else "."),
                   {"notified_at": updated.notified_at, "authority_ref": authority_ref, "late": late, "delay_reasons": reasons})
        return updated

    def record_delay(self, incident_id: str, *, reasons: str, actor: str) -> GdprClockRecord:
        """Document reasons for delay (Art. 33(1)) before or without a notification."""
        if not reasons.strip():
            raise GdprError("reasons for the delay must not be empty")
        updated = replace(self._get(incident_id), delay_reasons=reasons)
        self._save(updated, actor, "gdpr.delay", f"Reasons for delayed notification documented: {reasons}",
                   {"delay_reasons": reasons})
        return updated

    def _get(self, incident_id: str) -> GdprClockRecord:
        clock = self.clocks.get(incident_id)
        if clock is None:
            raise GdprError(f"no GDPR clock for incident {incident_id!r}")
        return clock

    def _save(self, clock: GdprClockRecord, actor: str, action: str, text: str, details: dict[str, object]) -> None:
        self.clocks.update(clock)
        self._audit.append(actor=actor, action=action, object=f"incident:{clock.incident_id}", details=details)
        if clock.ticket_id:
            record = {"aware_at": clock.aware_at, "deadline": clock.deadline, **details}
            self._tickets.update_details(clock.ticket_id, {"gdpr": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}}, actor=actor)
            self._tickets.comment(clock.ticket_id, text, actor=actor, internal=True)
