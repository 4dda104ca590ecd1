"""``/api/v1/tickets`` and ``/api/v1/audit/verify`` over real services and a DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.api.routes import audit as audit_routes
from marketguard.app.api.routes import tickets as ticket_routes
from marketguard.app.services import Services
from marketguard.cases.audit import open_audit
from marketguard.cases.tickets import Link, NewTicket, StepFailure, open_tickets

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROLES = ("admin", "analyst", "oncall", "auditor", "ingest", "seller:A", "seller:B")
SECRET_IP = "203.0.113.77"


def mount(app: FastAPI) -> FastAPI:
    """Include the ticket and audit routers unless the app factory already does."""
    have = {c.path for c in iter_route_contexts(app.routes)}
    for router in (ticket_routes.router, audit_routes.router):
        if not any(r.path in have for r in router.routes):  # type: ignore[attr-defined]
            app.include_router(router)
    return app


def wire(services: Services) -> None:
    """Ticket store and audit log on the services' store (the lead wires them in build_services)."""
    services.audit = open_audit(services.store)  # type: ignore[attr-defined]
    services.tickets = open_tickets(services.store, services.audit)  # type: ignore[attr-defined]


class Api:
    """A TestClient with one key per role and seeded tickets."""

    def __init__(self, client: TestClient, services: Services) -> None:
        self.client, self.services = client, services
        self.keys = {r: services.keys.create(r.replace(":", "-"), r) for r in ROLES}
        t = services.tickets  # type: ignore[attr-defined]
        ents = {"source.ip": [SECRET_IP], "user.id": ["u-42"], "marketplace.seller_id": ["A", "B"], "service.name": ["returns"]}
        self.a = t.open(NewTicket("I-1", "seller:A", "Late deliveries", "P3", T0, T0 + timedelta(days=3), entities=ents,
                                  links=(Link("alert", "A-1"),)), actor="playbook:sla", now=T0).ticket.id
        self.b = t.open(NewTicket("I-1", "seller:B", "Late deliveries", "P3", T0, T0 + timedelta(days=3), entities=ents),
                        actor="playbook:sla", now=T0).ticket.id
        self.ops = t.open(NewTicket("I-2", "operator:secops", "Credential stuffing", "P1", T0, T0 + timedelta(hours=4),
                                    entities={"source.ip": [SECRET_IP]}), actor="playbook:cs", now=T0).ticket.id
        t.comment(self.a, "customer IP 203.0.113.77 also hit seller B", actor="key:analyst", internal=True)
        t.record_step_failure(self.a, StepFailure(T0, "sla", "notify", "HTTP 500", 3), actor="playbook:sla")

    def call(self, method: str, path: str, role: str | None = "analyst", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    wire(services)
    with TestClient(mount(create_app(services, manage_lifecycle=False))) as client:
        yield Api(client, services)


def test_list_and_filter(api: Api) -> None:
    body = api.call("GET", "/api/v1/tickets").json()
    assert {t["id"] for t in body["items"]} == {api.a, api.b, api.ops} and body["next_cursor"] is None
    assert "entities" not in body["items"][0]  # lists carry no personal data
    assert [t["id"] for t in api.call("GET", "/api/v1/tickets", params={"priority": "P1"}).json()["items"]] == [api.ops]
    assert [t["id"] for t in api.call("GET", "/api/v1/tickets", params={"queue": "seller:B"}).json()["items"]] == [api.b]
    first = api.call("GET", "/api/v1/tickets", params={"limit": 2}).json()
    rest = api.call("GET", "/api/v1/tickets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert api.call("GET", "/api/v1/tickets", params={"cursor": "junk!"}).status_code == 400
    assert api.call("GET", "/api/v1/tickets", params={"priority": "P9"}).status_code == 422
    overdue = api.call("GET", "/api/v1/tickets", params={"overdue": "true"}).json()["items"]
    assert {t["id"] for t in overdue} == {api.a, api.b, api.ops}  # all due in 2025


def test_get_is_audited_for_staff(api: Api) -> None:
    body = api.call("GET", f"/api/v1/tickets/{api.a}", role="auditor").json()
    assert body["entities"]["source.ip"] == [SECRET_IP] and body["failed_steps"][0]["error"] == "HTTP 500"
    assert body["comments"][0]["internal"] is True
    reads = [e for e in api.services.audit.entries() if e.action == "ticket.read"]  # type: ignore[attr-defined]
    assert [(e.actor, e.object) for e in reads] == [("key:auditor", f"ticket:{api.a}")]
    assert api.call("GET", "/api/v1/tickets/T-nope").status_code == 404


def test_workflow_over_http(api: Api) -> None:
    url = f"/api/v1/tickets/{api.ops}"
    acked = api.call("PATCH", url, role="oncall", json={"status": "acknowledged"})
    assert acked.status_code == 200 and acked.json()["time_to_acknowledge_s"] is not None
    refused = api.call("PATCH", url, role="oncall", json={"status": "closed"})
    assert refused.status_code == 409
    assert refused.json()["detail"].endswith("cannot move from 'acknowledged' to 'closed' (allowed: in_progress, resolved)")
    assert api.call("PATCH", url, json={"status": "paused"}).status_code == 422
    commented = api.call("POST", f"{url}/comments", json={"text": "blocking at WAF", "internal": True})
    assert commented.status_code == 201 and commented.json()["comments"][-1]["author"] == "key:analyst"
    assigned = api.call("POST", f"{url}/assign", role="oncall", json={"assignee": "carol", "queue": "operator:sre"})
    assert (assigned.json()["assignee"], assigned.json()["queue"]) == ("carol", "operator:sre")
    assert api.call("POST", f"{url}/assign", json={"assignee": "x", "queue": "operator:legal"}).status_code == 422
    resolved = api.call("PATCH", url, json={"status": "resolved", "reason": "done"}).json()
    assert resolved["status"] == "resolved" and resolved["time_to_resolve_s"] > 0
    assert api.call("PATCH", url, role="auditor", json={"status": "closed"}).status_code == 403
    actions = [(e.actor, e.action) for e in api.services.audit.entries(object=f"ticket:{api.ops}")]  # type: ignore[attr-defined]
    assert actions[1:] == [("key:oncall", "ticket.status"), ("key:analyst", "ticket.comment"),
                           ("key:oncall", "ticket.assign"), ("key:analyst", "ticket.status")]


def test_seller_view_is_own_and_redacted(api: Api) -> None:
    mine = api.call("GET", "/api/v1/tickets", role="seller:A").json()["items"]
    assert [t["id"] for t in mine] == [api.a]
    body = api.call("GET", f"/api/v1/tickets/{api.a}", role="seller:A").json()
    assert body["entities"] == {"marketplace.seller_id": ["A"], "service.name": ["returns"]}
    assert body["comments"] == [] and body["links"] == [] and body["failed_steps"] == [] and body["details"] == {}
    assert SECRET_IP not in str(body) and "u-42" not in str(body)
    for other in (api.b, api.ops, "T-nope"):
        missing = api.call("GET", f"/api/v1/tickets/{other}", role="seller:A")
        assert missing.status_code == 404 and missing.json() == {"detail": f"no ticket with id {other!r}"}
        assert api.call("PATCH", f"/api/v1/tickets/{other}", role="seller:A", json={"status": "acknowledged"}).status_code == 404
        assert api.call("POST", f"/api/v1/tickets/{other}/comments", role="seller:A", json={"text": "x"}).status_code == 404
    said = api.call("POST", f"/api/v1/tickets/{api.a}/comments", role="seller:A", json={"text": "refunded", "internal": True})
    assert said.status_code == 201 and said.json()["comments"] == [
        {**said.json()["comments"][0], "text": "refunded", "internal": False}]
    assert SECRET_IP not in said.text
    assert api.call("PATCH", f"/api/v1/tickets/{api.a}", role="seller:A", json={"status": "acknowledged"}).status_code == 200
    assert api.call("POST", f"/api/v1/tickets/{api.a}/assign", role="seller:A", json={"assignee": "me"}).status_code == 403
    assert [t["id"] for t in api.call("GET", "/api/v1/tickets", role="seller:A", params={"queue": "seller:B"}).json()["items"]] == []


def test_audit_verify_endpoint_names_a_tampered_entry(api: Api) -> None:
    ok = api.call("GET", "/api/v1/audit/verify", role="auditor").json()
    assert ok["ok"] is True and ok["entries"] >= 5 and ok["first_broken_seq"] is None
    assert api.call("GET", "/api/v1/audit/verify", role="analyst").status_code == 403
    assert api.call("GET", "/api/v1/audit/verify", role=None).status_code == 401
    with api.services.store.lock:  # type: ignore[attr-defined]
        cur = api.services.store.cursor()  # type: ignore[attr-defined]
        cur.execute("UPDATE audit_log SET actor = 'key:mallory' WHERE seq = 2").fetchall()
        cur.close()
    broken = api.call("GET", "/api/v1/audit/verify", role="admin").json()
    assert (broken["ok"], broken["first_broken_seq"]) == (False, 2)
    assert "entry 2" in broken["reason"]
    assert api.call("GET", "/api/v1/audit/verify", role="auditor", params={"from_seq": 3}).json()["ok"] is True
    assert api.call("GET", "/api/v1/audit/verify", role="auditor", params={"from_seq": 3, "to_seq": 2}).status_code == 400


