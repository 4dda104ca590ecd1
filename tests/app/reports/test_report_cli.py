"""``marketguard incidents list`` and ``marketguard report incident|compliance`` on a data directory."""

from __future__ import annotations

import json
from pathlib import Path

from _report_scenario import ReportWorld, open_sources
from typer.testing import CliRunner

from marketguard.app.cli import app
from marketguard.config import Settings

runner = CliRunner()


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(settings.data_dir)], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def test_incidents_list_finds_the_ids(report_world: ReportWorld, world_copy: Settings) -> None:
    code, out = cli(world_copy, "incidents", "list", "--output", "json")
    assert code == 0
    listed = json.loads(out)
    sources, store = open_sources(world_copy)
    try:
        stored = list(sources.all_incidents())
    finally:
        store.close()
    assert [i["id"] for i in listed] == [i.id for i in stored]
    assert report_world.enumeration in [i["id"] for i in listed]
    code, out = cli(world_copy, "incidents", "list", "-o", "json", "--severity", "critical", "--type", "security")
    critical = json.loads(out)
    assert code == 0 and critical and {(i["severity"], i["type"]) for i in critical} == {("critical", "security")}
    code, out = cli(world_copy, "incidents", "list")
    assert code == 0 and report_world.enumeration in out and "Enumeration of Order or Seller IDs" in out


def test_report_incident_writes_each_format_and_audits_the_read(report_world: ReportWorld, world_copy: Settings, tmp_path: Path) -> None:
    for fmt in ("json", "html"):
        out = tmp_path / f"r.{fmt}"
        code, _ = cli(world_copy, "report", "incident", report_world.enumeration, "--format", fmt, "--out", str(out), "--as", "cli:auditor")
        assert code == 0 and out.stat().st_size > 1000
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["incident_id"] == report_world.enumeration and data["proof"]["chain"]["ok"] is True
    assert f"Incident report {report_world.enumeration}" in (tmp_path / "r.html").read_text()
    sources, store = open_sources(world_copy)
    try:
        reads = [e for e in sources.audit.entries(object=f"incident:{report_world.enumeration}") if e.action == "report.read"]
    finally:
        store.close()
    assert [(e.actor, e.details["format"]) for e in reads] == [("cli:auditor", "json"), ("cli:auditor", "html")]
    code, out = cli(world_copy, "report", "incident", report_world.enumeration)  # json on stdout by default
    assert code == 0 and json.loads(out)["kind"] == "incident"


def test_report_incident_refuses_unknown_ids_and_pdf_to_stdout(report_world: ReportWorld, world_copy: Settings) -> None:
    code, _ = cli(world_copy, "report", "incident", "in-nope", "--format", "json")
    assert code == 1
    code, _ = cli(world_copy, "report", "incident", report_world.enumeration, "--format", "pdf")
    assert code == 2


def test_report_compliance_over_a_period(report_world: ReportWorld, world_copy: Settings, tmp_path: Path) -> None:
    start, end = report_world.period
    out = tmp_path / "c.json"
    code, _ = cli(world_copy, "report", "compliance", "--from", start.date().isoformat(), "--to", end.date().isoformat(), "--out", str(out))
    assert code == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "compliance" and data["period_to"].startswith(f"{end.date().isoformat()}T23:59:59.999999")
    sources, store = open_sources(world_copy)
    try:
        assert data["incidents"] == len(list(sources.all_incidents()))
    finally:
        store.close()
    code, _ = cli(world_copy, "report", "compliance", "--from", "last week", "--to", "2026-12-01", "--out", str(out))
    assert code == 2
