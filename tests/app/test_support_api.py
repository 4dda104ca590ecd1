"""POST /api/v1/support-events: validation per item, dead letters, idempotent retries."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from marketguard.app.api.routes import support
from marketguard.app.services import Services
from marketguard.schema import EVENT_FIELDS
from marketguard.store import MatchWindow

URL = "/api/v1/support-events"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def support_client(services: Services) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(support.router)
    app.state.services = services
    with TestClient(app) as client:
        services.start()
        yield client
        services.ingest.stop()


def ticket(i: int, **extra: Any) -> dict[str, Any]:
    return {"ticket_id": f"T-{i}", "event": "created", "seller_id": "s-42", "category": "Delivery",
            "priority": "high", "timestamp": f"2024-05-01T12:00:{i:02d}Z", **extra}  # fmt: skip


def stored(services: Services) -> list[dict[str, Any]]:
    services.ingest.stop()
    table = services.store.query_events(MatchWindow(dataset="support.ticket"), columns=list(EVENT_FIELDS))
    return table.to_pylist()


def test_array_is_stored_as_support_ticket_events(support_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = [ticket(1), ticket(1, event="first_response", timestamp="2024-05-01T12:30:00+02:00"),
            ticket(1, event="resolved", timestamp="2024-05-01T15:00:00")]  # fmt: skip
    r = support_client.post(URL, json=body, headers=ingest_headers)
    assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    rows = stored(services)
    assert [r["ticket.event"] for r in rows] == ["first_response", "created", "resolved"]  # time order
    first = rows[1]
    assert first["event.dataset"] == "support.ticket" and first["ticket.id"] == "T-1"
    assert first["ticket.category"] == "delivery" and first["ticket.priority"] == "high"
    assert first["marketplace.seller_id"] == "s-42" and first["@timestamp"].isoformat() == "2024-05-01T12:00:01+00:00"
    assert rows[0]["@timestamp"].isoformat() == "2024-05-01T10:30:00+00:00"  # converted to UTC


def test_single_object_and_gzip(support_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = gzip.compress(json.dumps(ticket(2)).encode())
    r = support_client.post(URL, content=body, headers={**JSON, **ingest_headers, "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_invalid_items_rejected_with_precise_reasons(support_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = [ticket(1), ticket(2, event="reopened"), {"ticket_id": "T-3"}, ticket(4, priority="P9", colour="red"),
            ticket(5, timestamp="yesterday"), "not an object"]  # fmt: skip
    r = support_client.post(URL, json=body, headers=ingest_headers)
    assert r.status_code == 200
    out = r.json()
    assert out["accepted"] == 1
    reasons = {x["index"]: x["reason"] for x in out["rejected"]}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert "event: Input should be 'created', 'first_response' or 'resolved'" in reasons[2]
    assert "event: Field required" in reasons[3] and "seller_id: Field required" in reasons[3]
    assert "priority: Input should be 'low', 'normal', 'high' or 'urgent'" in reasons[4] and "colour: Extra inputs are not permitted" in reasons[4]
    assert "timestamp: Input should be a valid datetime" in reasons[5]
    assert reasons[6].startswith("invalid support event: ") and "valid dictionary" in reasons[6]
    assert len(stored(services)) == 1
    assert {d["line"] for d in services.store.dead_letters()} == {2, 3, 4, 5, 6}


def test_every_item_invalid_is_400(support_client: TestClient, ingest_headers: dict[str, str]) -> None:
    r = support_client.post(URL, json=[{"ticket_id": ""}], headers=ingest_headers)
    assert r.status_code == 400 and r.json()["accepted"] == 0 and "ticket_id" in r.json()["rejected"][0]["reason"]


def test_retry_stores_nothing_twice(support_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    for _ in range(2):
        r = support_client.post(URL, json=[ticket(1), ticket(2)], headers=ingest_headers)
    assert r.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert len(stored(services)) == 2


def test_personal_data_in_ticket_fields_is_pseudonymised(support_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    r = support_client.post(URL, json=ticket(1, ticket_id="jane@example.com"), headers=ingest_headers)
    assert r.status_code == 200
    (row,) = stored(services)
    assert row["ticket.id"].startswith("<email:")


@pytest.mark.parametrize(("body", "headers", "code", "detail"), [
    (b"{", JSON, 400, "invalid JSON"),
    (b"ticket", {"Content-Type": "text/plain"}, 415, "expected application/json"),
    (b"", JSON, 400, "empty request body"),
])  # fmt: skip
def test_malformed_requests(support_client: TestClient, ingest_headers: dict[str, str], body: bytes, headers: dict[str, str], code: int, detail: str) -> None:
    r = support_client.post(URL, content=body, headers={**headers, **ingest_headers})
    assert r.status_code == code and detail in r.json()["detail"]


def test_needs_an_ingest_key(support_client: TestClient, services: Services) -> None:
    assert support_client.post(URL, json=ticket(1)).status_code == 401
    analyst = services.keys.create("soc", "analyst")
    assert support_client.post(URL, json=ticket(1), headers={"Authorization": f"Bearer {analyst}"}).status_code == 403


def test_external_probe_results_posted_as_json_become_uptime_events(services):
    from fastapi.testclient import TestClient

    from marketguard.app.api import create_app
    from marketguard.store import MatchWindow

    key = services.keys.create("probe-eu", "ingest")
    body = [{"@timestamp": "2026-11-20T10:00:00Z", "event.dataset": "uptime.probe", "monitor.id": "checkout",
             "monitor.status": "down", "error.message": "timeout"}]
    with TestClient(create_app(services)) as client:
        resp = client.post("/api/v1/logs", json=body, headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["accepted"] == 1
        table = services.store.query_events(MatchWindow(dataset="uptime.probe"), columns=["monitor.id", "monitor.status"])
        assert table.to_pylist() == [{"monitor.id": "checkout", "monitor.status": "down"}]
