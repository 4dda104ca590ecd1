"""Render a report model three ways: JSON, HTML (Jinja2 templates) and PDF (WeasyPrint of the HTML).

The templates (``templates/*.html.j2``) are self-contained: the CSS is inline, charts are
``data:`` URIs, so the HTML can be mailed or archived as one file and WeasyPrint fetches
nothing. Print CSS: A4, page numbers, severity colours always beside the severity's name.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from marketguard.app.reports import charts
from marketguard.app.reports.model import ComplianceReport, IncidentReport, to_json
from marketguard.errors import MarketGuardError

__all__ = ["Format", "FORMATS", "MEDIA_TYPES", "render", "render_json", "render_html", "render_pdf", "write_report"]

Format = Literal["json", "html", "pdf"]
FORMATS: tuple[Format, ...] = ("json", "html", "pdf")
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json", "html": "text/html; charset=utf-8", "pdf": "application/pdf",
}


def _dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if value is None else value.strftime(fmt)


def _dur(seconds: float | None) -> str:
    """Seconds as a short human duration: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "—"
    s = abs(seconds)
    text = f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h" if s < 172800 else f"{s / 86400:.1f} d"
    return ("-" if seconds < 0 else "") + text


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _yesno(value: bool | None, yes: str = "met", no: str = "BREACHED", undecided: str = "pending") -> str:
    return undecided if value is None else (yes if value else no)


def _wbr(value: str | None, every: int = 16) -> Markup:
    """Long tokens (hashes, ids) with a break opportunity every ``every`` characters: cheaper to
    lay out than ``word-break: break-all`` and still fits narrow table cells."""
    text = str(value or "")
    return Markup("<wbr>").join(escape(text[i:i + every]) for i in range(0, len(text), every))


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("marketguard.app.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(dt=_dt, dur=_dur, pct=_pct, yesno=_yesno, wbr=_wbr)
    env.globals["severity_colours"] = charts.SEVERITY_COLOURS
    return env


_ENV: Environment | None = None


def _env() -> Environment:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


def _incident_context(r: IncidentReport) -> dict[str, Any]:
    s = r.summary
    return {"r": r, "chart": charts.event_rate_chart(r.event_rate, s.first_seen, s.last_seen)}


def _compliance_context(r: ComplianceReport) -> dict[str, Any]:
    return {"r": r, "charts": {
        "type": charts.breakdown_chart(r.by_type), "severity": charts.breakdown_chart(r.by_severity, severity=True),
        "owner": charts.breakdown_chart(r.by_owner), "response": charts.response_chart(r.response),
        "slo": charts.slo_chart(r.slos), "sellers": charts.seller_chart(r.sellers),
    }}


def render_json(report: IncidentReport | ComplianceReport) -> str:
    """The report as indented JSON."""
    return json.dumps(to_json(report), indent=2, ensure_ascii=False, default=str)


def render_html(report: IncidentReport | ComplianceReport) -> str:
    """The report as one self-contained HTML page."""
    if isinstance(report, IncidentReport):
        return _env().get_template("incident.html.j2").render(**_incident_context(report))
    return _env().get_template("compliance.html.j2").render(**_compliance_context(report))


def render_pdf(report: IncidentReport | ComplianceReport) -> bytes:
    """The HTML rendering printed to PDF by WeasyPrint (A4, numbered pages)."""
    from weasyprint import HTML

    return HTML(string=render_html(report)).write_pdf()  # type: ignore[no-any-return]


def render(report: IncidentReport | ComplianceReport, fmt: str) -> bytes:
    """The report in ``fmt`` (json, html or pdf) as bytes."""
    if fmt == "json":
        return render_json(report).encode()
    if fmt == "html":
        return render_html(report).encode()
    if fmt == "pdf":
        return render_pdf(report)
    raise MarketGuardError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")


def write_report(report: IncidentReport | ComplianceReport, fmt: str, out: Path) -> Path:
    """Render ``report`` in ``fmt`` into ``out`` (parent directories created); return ``out``."""
    data = render(report, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
