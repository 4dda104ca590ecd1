"""Through the HTTP API of real services (``build_services``): ticket moves show MTTA/MTTR of
the incident in ``/metrics``, a fraud alert shows in ``marketguard_fraud_alerts_total``, and a
staff read of one incident writes an ``incident.read`` audit entry like a ticket read.

``/metrics`` serves the process-wide registry, so values are read as the change a step makes;
the expected seconds come from the times the API itself reports (ticket ``acknowledged_at`` /
``resolved_at`` − incident ``created``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from marketguard.app.api import create_app
from marketguard.app.services import Services
from marketguard.detections import Detection

ROLES = ("analyst", "oncall", "auditor", "admin", "seller:s1")


def sample(client: TestClient, name: str, **labels: str) -> float:
    """One sample of the service's /metrics text (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Api:
    def __init__(self, client: TestClient, services: Services) -> None:
        self.client, self.services = client, services
        self.keys = {r: services.keys.create(r.replace(":", "-"), r) for r in ROLES}

    def call(self, method: str, path: str, role: str = "analyst", **kw: Any) -> Any:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {self.keys[role]}"}, **kw)

    def fraud_incident(self, ip: str) -> dict[str, Any]:
        """Record one card-testing detection; return the incident as the API shows it."""
        hit = Detection("card-testing-ip", "Card testing from one address", "high", "tests", None, "event",
                        datetime.now(UTC), (f"ev-{ip}",), {"event.id": f"ev-{ip}", "source.ip": ip},
                        tags=("marketguard.type.fraud", "marketguard.fraud.card_testing"))
        [iid] = self.services.cases.record([hit]).new_incidents
        incident: dict[str, Any] = self.call("GET", f"/api/v1/incidents/{iid}").json()
        return incident


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        yield Api(client, services)


def test_ticket_moves_over_http_show_mtta_and_mttr_in_metrics(api: Api) -> None:
    before_fraud = sample(api.client, "marketguard_fraud_alerts_total", family="card_testing", severity="high")
    incident = api.fraud_incident("198.51.100.21")
    assert sample(api.client, "marketguard_fraud_alerts_total", family="card_testing", severity="high") == before_fraud + 1
    severity, created = incident["severity"], _time(incident["created"])
    detail = api.services.cases.incident(incident["id"])
    plans = api.services.ticket_policy.plan(detail.incident, detail.alerts, now=datetime.now(UTC))
    ids = [api.services.tickets.open(p, actor="playbook:card-testing").ticket.id for p in plans]
    assert len(ids) == 2, "fraud with a family routes to payments and secops"

    ack_count = sample(api.client, "marketguard_incident_acknowledge_seconds_count", severity=severity)
    ack_sum = sample(api.client, "marketguard_incident_acknowledge_seconds_sum", severity=severity)
    acked = api.call("PATCH", f"/api/v1/tickets/{ids[0]}", role="oncall", json={"status": "acknowledged"})
    assert acked.status_code == 200, acked.text
    mtta = (_time(acked.json()["acknowledged_at"]) - created).total_seconds()
    assert sample(api.client, "marketguard_incident_acknowledge_seconds_count", severity=severity) == ack_count + 1
    assert sample(api.client, "marketguard_incident_acknowledge_seconds_sum", severity=severity) == pytest.approx(ack_sum + mtta)
    again = api.call("PATCH", f"/api/v1/tickets/{ids[0]}", role="oncall", json={"status": "acknowledged"})
    assert again.status_code == 409
    assert sample(api.client, "marketguard_incident_acknowledge_seconds_count", severity=severity) == ack_count + 1

    res_count = sample(api.client, "marketguard_incident_resolve_seconds_count", severity=severity)
    res_sum = sample(api.client, "marketguard_incident_resolve_seconds_sum", severity=severity)
    for ticket in ids:
        last = api.call("PATCH", f"/api/v1/tickets/{ticket}", json={"status": "resolved"})
        assert last.status_code == 200, last.text
    mttr = (_time(last.json()["resolved_at"]) - created).total_seconds()
    assert sample(api.client, "marketguard_incident_resolve_seconds_count", severity=severity) == res_count + 1
    assert sample(api.client, "marketguard_incident_resolve_seconds_sum", severity=severity) == pytest.approx(res_sum + mttr)
    assert sample(api.client, "marketguard_incident_acknowledge_seconds_count", severity=severity) == ack_count + 1


def test_staff_reads_of_one_incident_are_audited(api: Api) -> None:
    incident = api.fraud_incident("198.51.100.22")  # one analyst read
    for role in ("oncall", "auditor"):
        assert api.call("GET", f"/api/v1/incidents/{incident['id']}", role=role).status_code == 200
    assert api.call("GET", "/api/v1/incidents/I-missing").status_code == 404
    assert api.call("GET", f"/api/v1/incidents/{incident['id']}", role="seller:s1").status_code == 403
    assert api.call("GET", "/api/v1/incidents").status_code == 200  # lists carry no read entry, as for tickets
    reads = [e for e in api.services.audit.entries() if e.action == "incident.read"]
    assert [(e.actor, e.object) for e in reads] == [
        (f"key:{role}", f"incident:{incident['id']}") for role in ("analyst", "oncall", "auditor")]
    assert reads[0].details == {"fields": sorted(incident["entities"]), "role": "analyst"}
    assert api.services.audit.verify().ok
