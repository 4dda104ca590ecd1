"""The compliance report over a period, computed from the stores and the SLO / SLA specs.

Period semantics (``[start, end]``, UTC):

* **incidents**: those active in the period (``last_seen >= start`` and ``first_seen <= end``),
  merged ones excluded; an incident counts once per owner queue it has tickets in (``unowned``
  without tickets);
* **response times**: tickets *created* in the period, per priority; MTTA / MTTR are means
  over the acknowledged / resolved ones, against the routing policy's SLA of that priority;
  a target is *breached* when it passed unmet (also while still open), *met* when done in time;
* **seller SLAs**: every ``seller_sla`` spec evaluated at ``end`` with its window set to the
  period (:func:`correlator.seller_sla.evaluate_seller_sla`);
* **SLOs**: every ``slo`` spec's good/total events in ``[start, end)`` against its objective;
* **GDPR**: the Article 33 clocks of the period's incidents, judged at ``now``;
* **audit**: the entries written in the period, verified as a range linked to the entry before
  it, and the whole chain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from correlator.seller_sla import evaluate_seller_sla, load_seller_slas, seller_sla_events
from correlator.slo import load_slos, slo_series
from marketguard.app.reports.incident import gdpr_record, verification
from marketguard.app.reports.model import (
    Breakdown,
    ComplianceReport,
    GdprAdherence,
    ResponseTimes,
    SellerLine,
    SloLine,
    Verification,
)
from marketguard.app.reports.sources import ReportSources
from marketguard.cases import CaseFilters, Incident
from marketguard.cases.routing import TicketPolicy
from marketguard.cases.tickets import Ticket
from marketguard.types import PRIORITY_ORDER, SEVERITY_ORDER

__all__ = ["build_compliance_report", "response_times", "slo_lines", "seller_lines"]


def _existing(dirs: Sequence[Path]) -> list[Path]:
    return [d for d in dirs if d.exists()]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def response_times(tickets: Sequence[Ticket], policy: TicketPolicy, now: datetime) -> list[ResponseTimes]:
    """MTTA / MTTR and target compliance per priority (every priority, even without tickets)."""
    out = []
    for p in PRIORITY_ORDER:
        mine = [t for t in tickets if t.priority == p]
        tta = [t.time_to_acknowledge.total_seconds() for t in mine if t.time_to_acknowledge is not None]
        ttr = [t.time_to_resolve.total_seconds() for t in mine if t.time_to_resolve is not None]
        sla = policy.sla[p]
        out.append(ResponseTimes(
            priority=p, tickets=len(mine), acknowledged=len(tta), resolved=len(ttr), mtta_s=_mean(tta),
            mttr_s=_mean(ttr), ack_target_s=sla.ack.total_seconds(), resolve_target_s=sla.resolve.total_seconds(),
            ack_met=sum(1 for t in mine if t.acknowledged_at is not None and not t.ack_breached(now)),
            ack_breached=sum(1 for t in mine if t.ack_breached(now)),
            resolve_met=sum(1 for t in mine if t.resolved_at is not None and not t.resolve_breached(now)),
            resolve_breached=sum(1 for t in mine if t.resolve_breached(now)),
        ))
    return out


def seller_lines(sources: ReportSources, start: datetime, end: datetime) -> list[SellerLine]:
    """Every seller of every seller SLA spec, evaluated over the period."""
    out = []
    for spec in load_seller_slas(_existing(sources.rules_dirs)):
        period = spec.model_copy(update={"window": end - start})
        report = evaluate_seller_sla(period, seller_sla_events(sources.store, period, end), end)
        for sid, c in sorted(report.sellers.items()):
            out.append(SellerLine(spec.id, sid, c.tickets, c.compliance.get("first_response"),
                                  c.compliance.get("resolution"), c.score, sum(c.breached.values())))
    return out


def slo_lines(sources: ReportSources, start: datetime, end: datetime) -> list[SloLine]:
    """Every SLO's attainment over ``[start, end)`` against its objective."""
    out = []
    for spec in load_slos(_existing(sources.rules_dirs)):
        counts = slo_series(sources.store, spec, start, end)
        good, total = int(counts["good"].sum()), int(counts["total"].sum())
        budget = 1.0 - spec.objective / 100.0
        attainment = good / total if total else None
        remaining = 1.0 - (total - good) / (budget * total) if total else 1.0
        out.append(SloLine(spec.id, spec.title, spec.service, spec.objective, good, total, attainment, remaining,
                           None if attainment is None else attainment * 100.0 >= spec.objective))
    return out


def _breakdown(dimension: str, values: list[str], order: Sequence[str] = ()) -> Breakdown:
    counts = Counter(values)
    rank = {v: i for i, v in enumerate(order)}
    keys = sorted(counts, key=lambda k: (-rank.get(k, -1), -counts[k], k)) if order else sorted(counts, key=lambda k: (-counts[k], k))
    return Breakdown(dimension, {k: counts[k] for k in keys})


def _in_period(sources: ReportSources, start: datetime, end: datetime) -> list[Incident]:
    return [i for i in sources.all_incidents(CaseFilters(time_from=start)) if i.first_seen <= end]


def _audit(sources: ReportSources, start: datetime, end: datetime) -> tuple[int, Verification]:
    seqs = [e.seq for e in sources.audit.entries() if start <= e.time <= end]
    if not seqs:
        return 0, Verification(True, 0)
    return len(seqs), verification(sources.audit.verify(min(seqs), max(seqs)))


def build_compliance_report(sources: ReportSources, start: datetime, end: datetime, *,
                            now: datetime | None = None) -> ComplianceReport:
    """The compliance report of ``[start, end]`` (see the module docstring for what counts)."""
    now = now or datetime.now(UTC)
    incidents = _in_period(sources, start, end)
    ids = {i.id for i in incidents}
    all_tickets = list(sources.all_tickets())
    owners: dict[str, set[str]] = {}
    for t in all_tickets:
        if t.incident_id in ids:
            owners.setdefault(t.incident_id, set()).add(t.queue)
    created = [t for t in all_tickets if start <= t.created <= end]
    clocks = [c for c in (sources.clocks.get(i) for i in sorted(ids)) if c is not None] if sources.clocks else []
    records = [gdpr_record(c, now) for c in clocks]
    states = Counter(r.state for r in records)
    entries, period_check = _audit(sources, start, end)
    return ComplianceReport(
        period_from=start, period_to=end, generated_at=now, incidents=len(incidents),
        by_type=_breakdown("type", [i.type for i in incidents]),
        by_severity=_breakdown("severity", [i.severity for i in incidents], SEVERITY_ORDER),
        by_owner=_breakdown("owner", [q for i in incidents for q in sorted(owners.get(i.id, {"unowned"}))]),
        response=response_times(created, sources.policy, now),
        sellers=seller_lines(sources, start, end),
        slos=slo_lines(sources, start, end),
        gdpr=GdprAdherence(records, states["notified_on_time"], states["notified_late"], states["open"], states["overdue"]),
        audit_entries=entries, audit_period=period_check, audit_chain=verification(sources.audit.verify()),
    )
