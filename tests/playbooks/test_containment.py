"""Containment needs a human: pending → approve → webhook once; reject → never; roles via the real API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _response_fixtures import Receiver, Response
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.api.routes import approvals
from marketguard.app.services import Services, build_services
from marketguard.config import load_settings
from playbooks.containment import Containment, ContainmentError
from playbooks.notifiers import ActionWebhook
from playbooks.retry import Backoff
from playbooks.state_duckdb import DuckDBActionStore


def _contain(response: Response) -> Containment:
    return response.responders.containment  # type: ignore[no-any-return]


def test_pending_then_approved_calls_webhook_once(response: Response) -> None:
    c = _contain(response)
    pending = c.request("in-1", "block_ip", "203.0.113.7", requested_by="playbook:credential-stuffing")
    assert pending.status == "pending" and response.receiver.requests == []
    assert c.request("in-1", "block_ip", "203.0.113.7", requested_by="playbook:credential-stuffing").id == pending.id
    done = c.approve(pending.id, actor="key:alice", reason="confirmed botnet IP")
    assert (done.status, done.decided_by, done.result) == ("executed", "key:alice", "ok")
    assert len(response.receiver.requests) == 1
    req = response.receiver.requests[0]
    assert req.path == "/contain" and req.headers["idempotency-key"] == pending.id
    assert req.json() | {} == {"action_id": pending.id, "action": "block_ip", "target": "203.0.113.7",
                               "target_field": "source.ip", "incident_id": "in-1",
                               "requested_by": "playbook:credential-stuffing", "approved_by": "key:alice",
                               "reason": "confirmed botnet IP"}
    with pytest.raises(ContainmentError, match="already executed"):
        c.approve(pending.id, actor="key:bob", reason="again")
    assert len(response.receiver.requests) == 1
    actions = [(e.actor, e.action) for e in response.world.audit.entries()]
    assert actions == [("playbook:credential-stuffing", "containment.request"), ("key:alice", "containment.approve"),
                       ("key:alice", "containment.executed")]


def test_rejected_action_never_calls_webhook(response: Response) -> None:
    c = _contain(response)
    pending = c.request("in-2", "suspend_seller_api_key", "s-9", requested_by="playbook:click-fraud")
    assert c.reject(pending.id, actor="key:bob", reason="seller is a known partner").status == "rejected"
    with pytest.raises(ContainmentError, match="already rejected"):
        c.approve(pending.id, actor="key:alice", reason="changed my mind")
    assert response.receiver.requests == []
    assert [e.action for e in response.world.audit.entries()][-1] == "containment.reject"


def test_webhook_failure_after_retries_is_recorded(response: Response) -> None:
    response.receiver.statuses = [502, 502, 502]
    c = _contain(response)
    pending = c.request("in-3", "force_password_reset", "u-7", requested_by="playbook:card-testing")
    done = c.approve(pending.id, actor="key:alice", reason="account used for card testing")
    assert done.status == "failed" and "502" in (done.result or "") and len(response.receiver.requests) == 3
    last = response.world.audit.entries()[-1]
    assert last.action == "containment.failed" and last.details["attempts"] == 3


def test_reason_is_required(response: Response) -> None:
    pending = _contain(response).request("in-4", "block_ip", "192.0.2.1", requested_by="playbook:x")
    with pytest.raises(ContainmentError, match="reason is required"):
        _contain(response).approve(pending.id, actor="key:alice", reason="  ")


# -- through the real API ----------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[TestClient, Services, Containment]]:
    rules = tmp_path / "rules"
    rules.mkdir()
    services = build_services(load_settings(data_dir=tmp_path / "data", rules_dirs=[rules]), with_engine=False)
    containment = Containment(DuckDBActionStore(services.store), _audit(services),
                              ActionWebhook(url=f"{receiver.url}/contain"), retry=Backoff(attempts=1))
    services.extras["containment"] = containment
    app = create_app(services, manage_lifecycle=False)
    if approvals.router not in [getattr(r, "router", None) for r in app.routes]:
        app.include_router(approvals.router)
    with TestClient(app) as client:
        yield client, services, containment
    services.close()


def _audit(services: Services) -> object:
    from marketguard.cases.audit import open_audit

    return getattr(services, "audit", None) or open_audit(services.store)


def _key(services: Services, role: str) -> dict[str, str]:
    name = f"{role.replace(':', '-')}-{len(services.keys.list())}"
    return {"Authorization": f"Bearer {services.keys.create(name, role)}"}


def test_api_roles_approve_and_reject(api: tuple[TestClient, Services, Containment], receiver: Receiver) -> None:
    client, services, c = api
    first = c.request("in-9", "block_ip", "203.0.113.7", requested_by="playbook:credential-stuffing")
    second = c.request("in-9", "force_password_reset", "u-1", requested_by="playbook:credential-stuffing")
    listed = client.get("/api/v1/approvals?status=pending", headers=_key(services, "auditor"))
    assert listed.status_code == 200 and {a["id"] for a in listed.json()} == {first.id, second.id}
    body = {"reason": "confirmed attack"}
    for role in ("analyst", "auditor", "ingest", "seller:s-1"):
        r = client.post(f"/api/v1/approvals/{first.id}/approve", json=body, headers=_key(services, role))
        assert r.status_code == 403, role
    assert client.post(f"/api/v1/approvals/{first.id}/approve", json=body).status_code == 401
    assert receiver.requests == []
    oncall = _key(services, "oncall")
    assert client.post(f"/api/v1/approvals/{first.id}/approve", json={"reason": ""}, headers=oncall).status_code == 422
    ok = client.post(f"/api/v1/approvals/{first.id}/approve", json=body, headers=oncall)
    assert ok.status_code == 200 and ok.json()["status"] == "executed" and len(receiver.requests) == 1
    assert client.post(f"/api/v1/approvals/{first.id}/approve", json=body, headers=oncall).status_code == 409
    admin = _key(services, "admin")
    rejected = client.post(f"/api/v1/approvals/{second.id}/reject", json={"reason": "false positive"}, headers=admin)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected" and len(receiver.requests) == 1
    assert client.post("/api/v1/approvals/act-nope/approve", json=body, headers=oncall).status_code == 404


def test_cli_lists_and_approves(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from marketguard.app.cli_approvals import approvals_app
    from marketguard.cases.audit import open_audit
    from marketguard.store import open_store

    settings = load_settings(data_dir=tmp_path / "data", rules_dirs=[tmp_path])
    store = open_store(settings)
    pending = Containment(DuckDBActionStore(store), open_audit(store), None).request(  # type: ignore[arg-type]
        "in-5", "block_ip", "198.51.100.3", requested_by="playbook:injection-attacks")
    store.close()
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "notifiers.yaml").write_text("containment:\n  url: ${HOOK}\n")
    monkeypatch.setenv("HOOK", f"{receiver.url}/contain")
    args = ["--data-dir", str(tmp_path / "data"), "--playbooks", str(tmp_path / "pb")]
    cli = CliRunner()
    listed = cli.invoke(approvals_app, ["list", "--json", *args])
    assert listed.exit_code == 0, listed.output
    assert '"' + pending.id + '"' in listed.output
    done = cli.invoke(approvals_app, ["approve", pending.id, "--reason", "exploit attempts confirmed", "--as", "cli:alice", "--json", *args])
    assert done.exit_code == 0, done.output
    assert '"status": "executed"' in done.output and len(receiver.requests) == 1
    again = cli.invoke(approvals_app, ["reject", pending.id, "--reason", "too late", *args])
    assert again.exit_code == 2 and len(receiver.requests) == 1
