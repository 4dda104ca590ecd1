"""``GET /api/v1/alerts``, ``/incidents`` and ``/incidents/{id}`` over real services and DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from collectors.privacy import Pseudonymiser
from correlator.rules import RuleSet
from marketguard.app.api import create_app
from marketguard.app.services import Services
from marketguard.auth import open_keys
from marketguard.cases import open_cases
from marketguard.cases.audit import open_audit
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import make_metrics
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROLES = ("admin", "analyst", "oncall", "auditor", "ingest", "seller:s1")


def ev(rule: str, event_id: str, at_s: float, ip: str, *, level: str = "high", user: str | None = None) -> Detection:
    evidence: dict[str, Any] = {"event.id": event_id, "source.ip": ip, "user.id": user}
    return Detection(rule, f"Rule {rule}", level, "tests", "Apache-2.0", "event",
                     T0 + timedelta(seconds=at_s), (event_id,), evidence)


class Api:
    """A TestClient over real services, with one key per role."""

    def __init__(self, client: TestClient, services: Services, keys: dict[str, str]) -> None:
        self.client, self.services, self.keys = client, services, keys

    def get(self, path: str, role: str = "analyst", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return self.client.get(path, params=params, headers=headers)

    def walk(self, path: str, limit: int, **params: Any) -> list[str]:
        ids: list[str] = []
        cursor = None
        for _ in range(200):  # a cursor that does not advance must fail, not hang
            body = self.get(path, limit=limit, **params, **({"cursor": cursor} if cursor else {})).json()
            ids.extend(item["id"] for item in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return ids
        raise AssertionError(f"pagination did not end; {len(ids)} items so far")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path, suppression_window_s=60, incident_window_s=600, escalation_rules=3)
    store = DuckDBStore(settings.duckdb_path)
    cases = open_cases(store, settings, metrics=make_metrics(CollectorRegistry()))
    keystore = open_keys(store)
    services = Services(settings, store, keystore, Pseudonymiser(b"k" * 32), RuleSet(), cases=cases,
                        audit=open_audit(store))
    keys = {role: keystore.create(role.replace(":", "-"), role) for role in ROLES}
    revoked = keystore.create("gone", "analyst")
    keystore.revoke("gone")
    keys["revoked"] = revoked
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        yield Api(client, services, keys)
    store.close()


def _populate(api: Api) -> None:
    """30 attackers hitting 3 rules, levels cycling; 10.0.0.1 and 10.0.0.2 share a user."""
    levels = ["low", "medium", "high"]
    detections = [ev(f"r{i % 3}", f"e{i}", i * 20, f"10.0.0.{i}", level=levels[i % 3]) for i in range(30)]
    detections += [ev("stuffing", "x1", 5, "10.0.0.1", user="u-shared", level="critical"),
                   ev("stuffing", "x2", 25, "10.0.0.2", user="u-shared", level="critical")]
    api.services.cases.record(detections)


def test_alerts_list_pages_and_filters(api: Api) -> None:
    _populate(api)
    body = api.get("/api/v1/alerts", limit=500).json()
    every = [a["id"] for a in body["items"]]
    assert len(every) == 32 and body["next_cursor"] is None
    last_seen = [a["last_seen"] for a in body["items"]]
    assert last_seen == sorted(last_seen, reverse=True)
    for limit in (1, 5, 32):
        assert api.walk("/api/v1/alerts", limit) == every
    assert len(api.walk("/api/v1/alerts", 4, severity="high")) == 12  # 10 high + 2 critical
    only = api.get("/api/v1/alerts", entity="source.ip=10.0.0.7").json()["items"]
    assert [a["group"] for a in only] == [{"source.ip": "10.0.0.7"}]
    assert {a["rule_id"] for a in api.get("/api/v1/alerts", entity="u-shared").json()["items"]} == {"stuffing"}
    assert len(api.get("/api/v1/alerts", rule_id="r1").json()["items"]) == 10
    ranged = api.get("/api/v1/alerts", **{"from": "2025-03-01T12:01:00Z", "to": "2025-03-01T12:02:00"}).json()
    assert {a["last_seen"] for a in ranged["items"]} == {
        (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z") for s in (60, 80, 100, 120)}
    assert api.get("/api/v1/alerts", status="closed").json() == {"items": [], "next_cursor": None}


def test_incidents_list_detail_and_merge(api: Api) -> None:
    _populate(api)
    incidents = api.get("/api/v1/incidents", limit=500).json()["items"]
    assert len(incidents) == 29  # 10.0.0.1 and 10.0.0.2 joined through u-shared
    assert api.walk("/api/v1/incidents", 3) == [i["id"] for i in incidents]
    [shared] = api.get("/api/v1/incidents", entity="user.id=u-shared").json()["items"]
    assert (shared["severity"], shared["title"], shared["type"]) == ("critical", "Rule stuffing", "security")
    assert len(shared["alert_ids"]) == 4 and shared["status"] == "open"
    assert [i["id"] for i in api.get("/api/v1/incidents", severity="critical").json()["items"]] == [shared["id"]]
    detail = api.get(f"/api/v1/incidents/{shared['id']}").json()
    assert sorted(a["id"] for a in detail["alerts"]) == sorted(shared["alert_ids"])
    assert {e["kind"] for e in detail["timeline"]} >= {"alert"}
    assert all(e["kind"] in ("alert", "escalated", "merged") for e in detail["timeline"])


def test_a_merged_incident_id_answers_with_the_survivor(api: Api) -> None:
    cases = api.services.cases
    first = cases.record([ev("r1", "a", 0, "1.1.1.1")], now=T0).new_incidents[0]
    second = cases.record([ev("r2", "b", 5, "2.2.2.2", user="u1")], now=T0 + timedelta(seconds=1)).new_incidents[0]
    cases.record([ev("r3", "c", 9, "1.1.1.1", user="u1")])
    detail = api.get(f"/api/v1/incidents/{second}").json()
    assert detail["id"] == first and len(detail["alerts"]) == 3
    assert any(e["kind"] == "merged" and second in e["text"] for e in detail["timeline"])
    merged = api.get("/api/v1/incidents", status="merged").json()["items"]
    assert [(i["id"], i["merged_into"]) for i in merged] == [(second, first)]
    assert [i["id"] for i in api.get("/api/v1/incidents").json()["items"]] == [first]


def test_unknown_incident_is_404_with_a_reason(api: Api) -> None:
    response = api.get("/api/v1/incidents/in-nope")
    assert response.status_code == 404
    assert "in-nope" in response.json()["detail"]


@pytest.mark.parametrize("params", [
    {"cursor": "garbage!"}, {"limit": 0}, {"limit": 501}, {"severity": "severe"},
    {"status": "pending"}, {"from": "yesterday"},
])
def test_bad_query_parameters_are_refused(api: Api, params: dict[str, Any]) -> None:
    response = api.get("/api/v1/alerts", **params)
    assert response.status_code in (400, 422)
    assert response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/incidents", "/api/v1/incidents/in-x"])
def test_authentication_and_roles(api: Api, path: str) -> None:
    assert api.get(path, role="").status_code == 401
    assert api.client.get(path, headers={"Authorization": "Bearer mg_wrong"}).status_code == 401
    assert api.get(path, role="revoked").status_code == 401
    assert api.get(path, role="ingest").status_code == 403
    assert api.get(path, role="seller:s1").status_code == 403
    for role in ("admin", "analyst", "oncall", "auditor"):
        assert api.get(path, role=role).status_code in (200, 404), role


def test_openapi_documents_the_responses(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    ok = spec["paths"]["/api/v1/alerts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/AlertPage")
    params = {p["name"] for p in spec["paths"]["/api/v1/incidents"]["get"]["parameters"]}
    assert {"from", "to", "severity", "status", "entity", "limit", "cursor"} <= params
    assert "404" in spec["paths"]["/api/v1/incidents/{incident_id}"]["get"]["responses"]
    assert {"AlertOut", "IncidentOut", "IncidentDetailOut", "TimelineEntryOut"} <= set(spec["components"]["schemas"])
