"""Reports for ``marketguard demo``: the most severe incident and the compliance report of the
demo's period, written as HTML and PDF after the service has stopped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from marketguard.app.reports.compliance import build_compliance_report
from marketguard.app.reports.incident import build_incident_report, record_report_read
from marketguard.app.reports.render import write_report
from marketguard.app.reports.sources import ReportSources, sources_from_store
from marketguard.cases import Incident
from marketguard.config import Settings
from marketguard.store import open_store
from marketguard.types import severity_rank

__all__ = ["write_demo_reports", "most_severe", "data_period"]


def most_severe(sources: ReportSources) -> Incident | None:
    """The most severe incident; ties go to the one with more alerts, then the earliest."""
    incidents = list(sources.all_incidents())
    if not incidents:
        return None
    return min(incidents, key=lambda i: (-severity_rank(i.severity), -len(i.alert_ids), i.first_seen, i.id))


def data_period(sources: ReportSources, now: datetime) -> tuple[datetime, datetime]:
    """From midnight of the earliest incident's first event to ``now``."""
    firsts = [i.first_seen for i in sources.all_incidents()]
    start = min(firsts, default=now)
    return start.replace(hour=0, minute=0, second=0, microsecond=0), now


def write_demo_reports(settings: Settings, out_dir: Path, *, formats: tuple[str, ...] = ("html", "pdf")) -> list[Path]:
    """Write the most severe incident's report and the period's compliance report into
    ``out_dir`` in each of ``formats``; return the files written (opens the store itself)."""
    store = open_store(settings)
    try:
        sources = sources_from_store(store, settings)
        now = datetime.now(UTC)
        written: list[Path] = []
        worst = most_severe(sources)
        report = build_incident_report(sources, worst.id, now=now) if worst else None
        if report is not None:
            written += [write_report(report, f, out_dir / f"incident-{report.incident_id}.{f}") for f in formats]
            record_report_read(sources.audit, report, actor="system:demo", fmt=",".join(formats))
        start, end = data_period(sources, now)
        compliance = build_compliance_report(sources, start, end, now=now)
        written += [write_report(compliance, f, out_dir / f"compliance-{start:%Y%m%d}-{end:%Y%m%d}.{f}") for f in formats]
        return written
    finally:
        store.close()
