"""HTML and PDF renderings: what a person sees, checked on the PNG pages and the PDF's text.

Pages are left under ``test-output/reports/`` to look at.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from _report_scenario import AUTHORITY_REF, OUTPUT, ReportWorld, open_sources

from marketguard.app.reports import (
    ReportSources,
    build_compliance_report,
    build_incident_report,
    render,
)
from marketguard.app.reports.demo import write_demo_reports
from marketguard.config import Settings
from marketguard.types import SEVERITY_ORDER, severity_rank

INCIDENT_HEADINGS = (
    "1. Summary", "2. Classification and priority", "3. Timeline", "4. Event rate around the incident",
    "5. Affected entities", "6. Rules fired and evidence", "7. Tickets and owners", "8. Containment and approvals",
    "9. Notifications", "10. GDPR Article 33", "11. Proof: audit trail",
)
COMPLIANCE_HEADINGS = (
    "1. Incidents", "2. Response times (MTTA / MTTR) by priority", "3. Seller SLA compliance and scores",
    "4. SLO attainment per service", "5. GDPR Article 33 clock adherence", "6. Audit-chain verification",
)


def pdf_pages(pdf: bytes, name: str) -> tuple[list[Path], str]:
    """Write the PDF under test-output/reports, convert it to PNG pages (60 dpi), extract its text."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.pdf"
    path.write_bytes(pdf)
    for old in OUTPUT.glob(f"{name}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(OUTPUT / name)], check=True, timeout=120)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True, timeout=60).stdout
    return sorted(OUTPUT.glob(f"{name}-*.png")), text


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_severity_colours_always_carry_their_name(report_world: ReportWorld, sources: ReportSources) -> None:
    for html in (render(build_incident_report(sources, report_world.enumeration), "html").decode(),  # type: ignore[arg-type]
                 render(build_compliance_report(sources, *report_world.period), "html").decode()):
        badges = re.findall(r'<span class="sev" style="background: (#[0-9a-f]{6})">([^<]*)</span>', html)
        assert badges and all(label in SEVERITY_ORDER for _, label in badges), badges
        assert all(png.startswith(b"\x89PNG") for png in images(html)) and images(html)
        assert "@page" in html and "counter(pages)" in html and "size: A4" in html


def test_incident_pdf_pages_show_every_section(report_world: ReportWorld, sources: ReportSources) -> None:
    report = build_incident_report(sources, report_world.enumeration)
    assert report is not None
    pages, text = pdf_pages(render(report, "pdf"), "incident-report")
    assert len(pages) > 1 and all(p.stat().st_size > 1000 for p in pages)
    flat = " ".join(text.split())
    missing = [h for h in INCIDENT_HEADINGS if h not in flat]
    assert missing == [], f"headings not in the PDF text: {missing}"
    assert report.incident_id in flat and AUTHORITY_REF in flat and "INTACT" in flat
    assert f"Page 1 of {len(pages)}" in flat and "HIGH" in flat  # page numbers; severity as a word


def test_compliance_pdf_pages_show_every_section(report_world: ReportWorld, sources: ReportSources) -> None:
    report = build_compliance_report(sources, *report_world.period)
    pages, text = pdf_pages(render(report, "pdf"), "compliance-report")
    flat = " ".join(text.split())
    assert pages and [h for h in COMPLIANCE_HEADINGS if h not in flat] == []
    assert all(s in flat for s in ("s-303", "checkout-availability", "MISSED", "INTACT", "notified on time"))


def test_unknown_format_is_refused(report_world: ReportWorld, sources: ReportSources) -> None:
    from marketguard.errors import MarketGuardError

    report = build_compliance_report(sources, *report_world.period)
    with pytest.raises(MarketGuardError, match="valid: json, html, pdf"):
        render(report, "docx")


def test_demo_reports_cover_the_most_severe_incident_and_the_data_period(world_copy: Settings) -> None:
    sources, store = open_sources(world_copy)
    try:
        incidents = list(sources.all_incidents())
    finally:
        store.close()
    top = max(severity_rank(i.severity) for i in incidents)
    candidates = [i for i in incidents if severity_rank(i.severity) == top]
    worst = max(candidates, key=lambda i: len(i.alert_ids))
    written = write_demo_reports(world_copy, world_copy.data_dir / "reports", formats=("json", "html"))
    names = sorted(p.name for p in written)
    earliest = min(i.first_seen for i in incidents)
    assert names[2:] == [f"incident-{worst.id}.html", f"incident-{worst.id}.json"]
    assert names[0].startswith(f"compliance-{earliest:%Y%m%d}-") and all(p.stat().st_size > 500 for p in written)
    data = json.loads((world_copy.data_dir / "reports" / f"incident-{worst.id}.json").read_text())
    assert data["classification"]["severity"] == worst.severity and data["summary"]["alerts"] == len(worst.alert_ids)
