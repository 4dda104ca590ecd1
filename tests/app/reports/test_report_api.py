"""``GET /api/v1/incidents/{id}/report`` and ``GET /api/v1/reports/compliance`` on the real app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from _report_scenario import ReportWorld
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.services import Services, build_services

ROLES = ("auditor", "analyst", "oncall", "ingest", "seller:s-303")


@dataclass
class Api:
    client: TestClient
    services: Services
    keys: dict[str, str]

    def get(self, path: str, role: str | None, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return self.client.get(path, headers=headers, params=params)


@pytest.fixture(scope="module")
def api(report_world: ReportWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app over a private copy of the history (reads are audited), one per module."""
    services = build_services(report_world.copy_to(tmp_path_factory.mktemp("api") / "data"), with_engine=False)
    keys = {role: services.keys.create(role.replace(":", "-") + "-key", role) for role in ROLES}
    try:
        with TestClient(create_app(services, manage_lifecycle=False)) as client:
            yield Api(client, services, keys)
    finally:
        services.close()


def test_staff_read_the_incident_report_in_each_format(report_world: ReportWorld, api: Api) -> None:
    path = f"/api/v1/incidents/{report_world.enumeration}/report"
    as_json = api.get(path, "auditor")
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    body = as_json.json()
    assert body["incident_id"] == report_world.enumeration and body["proof"]["chain"]["ok"] is True
    html = api.get(path, "analyst", format="html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert f"Incident report {report_world.enumeration}" in html.text
    pdf = api.get(f"/api/v1/incidents/{report_world.stuffing}/report", "oncall", format="pdf")  # the shorter one
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "inline" in pdf.headers["content-disposition"]
    reads = [e for e in api.services.audit.entries(object=f"incident:{report_world.enumeration}") if e.action == "report.read"]
    assert [(e.actor, e.details["format"]) for e in reads] == [("key:auditor-key", "json"), ("key:analyst-key", "html")]
    pdf_reads = [e for e in api.services.audit.entries(object=f"incident:{report_world.stuffing}") if e.action == "report.read"]
    assert [(e.actor, e.details["format"]) for e in pdf_reads] == [("key:oncall-key", "pdf")]


def test_sellers_and_ingest_keys_get_no_report(report_world: ReportWorld, api: Api) -> None:
    path = f"/api/v1/incidents/{report_world.enumeration}/report"
    for role in ("seller:s-303", "ingest"):
        refused = api.get(path, role)
        assert refused.status_code == 403 and report_world.enumeration not in refused.text
        assert api.get("/api/v1/reports/compliance", role, **{"from": "2026-01-01", "to": "2026-12-31"}).status_code == 403
    assert api.get(path, None).status_code == 401
    readers = {e.actor for e in api.services.audit.entries() if e.action == "report.read"}
    assert not readers & {"key:seller-s-303-key", "key:ingest-key"}


def test_unknown_incident_and_bad_format(api: Api) -> None:
    assert api.get("/api/v1/incidents/in-nope/report", "auditor").status_code == 404
    assert api.get("/api/v1/incidents/in-nope/report", "auditor", format="docx").status_code == 422


def test_compliance_report_over_the_api(report_world: ReportWorld, api: Api) -> None:
    start, end = report_world.period
    got = api.get("/api/v1/reports/compliance", "auditor", **{"from": start.isoformat(), "to": end.isoformat()})
    assert got.status_code == 200
    body = got.json()
    assert body["kind"] == "compliance" and body["incidents"] == len(list(api.services.cases.incidents(None, None, 500).items))
    backwards = api.get("/api/v1/reports/compliance", "auditor", **{"from": end.isoformat(), "to": start.isoformat()})
    assert backwards.status_code == 400
