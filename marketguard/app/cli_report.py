"""``marketguard report``: incident and compliance reports as JSON, HTML or PDF.

Reads the data directory of a stopped service (DuckDB allows one writing process). Without
``--format`` the format follows ``--out``'s extension (``.pdf``, ``.html``/``.htm``, else JSON);
without ``--out`` JSON and HTML go to stdout (PDF needs a file). Reading an incident report is
a staff read of incident data and is audited (``report.read``, actor ``cli:<os user>``).
"""

from __future__ import annotations

import getpass
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from marketguard.app.cli_common import DataDirOpt, data_store, err, fail, settings_for
from marketguard.app.cli_incidents import parse_time
from marketguard.app.reports import (
    build_compliance_report,
    build_incident_report,
    record_report_read,
    render,
    sources_from_store,
)
from marketguard.app.reports.model import ComplianceReport, IncidentReport

__all__ = ["report_app", "pick_format"]

report_app = typer.Typer(help="Reports: an incident for auditors, compliance over a period.", no_args_is_help=True)


class Fmt(StrEnum):
    json = "json"
    html = "html"
    pdf = "pdf"


FormatOpt = Annotated[Fmt | None, typer.Option("--format", "-f", help="json, html or pdf (default: from --out's extension, else json).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout; pdf needs a file).")]


def pick_format(fmt: Fmt | None, out: Path | None) -> str:
    """The explicit format, else the one ``out``'s extension names, else json."""
    if fmt is not None:
        return fmt.value
    suffix = out.suffix.lower() if out else ""
    return {".pdf": "pdf", ".html": "html", ".htm": "html"}.get(suffix, "json")


def _emit(report: IncidentReport | ComplianceReport, fmt: str, out: Path | None) -> None:
    if out is None and fmt == "pdf":
        fail("a PDF needs --out FILE")
    data = render(report, fmt)
    if out is None:
        sys.stdout.write(data.decode())
        if not data.endswith(b"\n"):
            sys.stdout.write("\n")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    err.print(f"wrote {fmt} report to {out} ({len(data):,} bytes)", highlight=False)


@report_app.command("incident")
def incident(
    incident_id: Annotated[str, typer.Argument(help="Incident id (see `marketguard incidents list`).", show_default=False)],
    fmt: FormatOpt = None,
    out: OutOpt = None,
    actor: Annotated[str | None, typer.Option("--as", help="Audit actor (default cli:<os user>).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One incident: summary, classification, timeline, entities, rules and evidence, tickets,
    GDPR clock and the audit-trail proof (exit 1 when the incident is unknown)."""
    chosen = pick_format(fmt, out)
    settings = settings_for(data_dir)
    with data_store(settings) as store:
        sources = sources_from_store(store, settings)
        report = build_incident_report(sources, incident_id)
        if report is None:
            fail(f"no incident with id {incident_id!r} (see `marketguard incidents list`)", 1)
            return
        record_report_read(sources.audit, report, actor=actor or f"cli:{getpass.getuser()}", fmt=chosen)
    _emit(report, chosen, out)


@report_app.command("compliance")
def compliance(
    time_from: Annotated[str, typer.Option("--from", help="Period start, ISO-8601 (UTC if no offset).", show_default=False)],
    time_to: Annotated[str, typer.Option("--to", help="Period end, inclusive (a bare date includes that day).", show_default=False)],
    fmt: FormatOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A period: incidents by type, severity and owner; MTTA/MTTR by priority against targets;
    seller SLA compliance and scores; SLO attainment; GDPR clock adherence; audit-chain check."""
    start, end = parse_time(time_from, "--from"), parse_time(time_to, "--to", end_of_day=True)
    assert start is not None and end is not None
    if end < start:
        fail(f"--to {time_to} is before --from {time_from}")
    chosen = pick_format(fmt, out)
    settings = settings_for(data_dir)
    with data_store(settings) as store:
        report = build_compliance_report(sources_from_store(store, settings), start, end)
    _emit(report, chosen, out)
