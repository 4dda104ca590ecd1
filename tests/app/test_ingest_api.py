"""POST /api/v1/logs and GET /metrics, through the ASGI app and through a real uvicorn server."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.ingest import IngestWriter
from marketguard.app.services import Services
from marketguard.config import load_settings
from marketguard.store.duckdb import DuckDBStore

if TYPE_CHECKING:  # the fixture's class lives in this directory's conftest
    from conftest import BlockingStore

URL = "/api/v1/logs"
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": f"2024-05-01T12:00:{i:02d}Z", "source": {"ip": f"203.0.113.{i}"},
            "url.original": f"/api/cart/{i}", "http.response.status_code": 200, **extra}  # fmt: skip


def ndjson(*items: object) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items).encode()


def combined(i: int) -> str:
    return f'198.51.100.{i} - - [01/May/2024:12:00:{i:02d} +0000] "GET /api/item/{i} HTTP/1.1" 200 99 "-" "curl/8"'


def post(client: TestClient, body: bytes, headers: dict[str, str], auth: dict[str, str], **kw: Any) -> httpx.Response:
    return client.post(URL, content=body, headers={**headers, **auth}, **kw)


# -- authentication ------------------------------------------------------------------------
def test_no_key_is_401(client: TestClient) -> None:
    r = client.post(URL, content=ndjson(event(1)), headers=NDJSON)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert "missing API key" in r.json()["detail"]


def test_wrong_role_is_403_and_unknown_key_401(client: TestClient, services: Services) -> None:
    analyst = services.keys.create("soc-1", "analyst")
    r = post(client, ndjson(event(1)), NDJSON, {"Authorization": f"Bearer {analyst}"})
    assert r.status_code == 403 and "analyst" in r.json()["detail"]
    r = post(client, ndjson(event(1)), NDJSON, {"Authorization": "Bearer mg_not-a-key"})
    assert r.status_code == 401


def test_revoked_key_is_401_and_admin_is_admitted(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    assert post(client, ndjson(event(1)), NDJSON, ingest_headers).status_code == 200
    services.keys.revoke("gateway-eu")
    r = post(client, ndjson(event(2)), NDJSON, ingest_headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    admin = services.keys.create("root", "admin")
    assert post(client, ndjson(event(3)), NDJSON, {"Authorization": f"Bearer {admin}"}).status_code == 200


# -- bodies ----------------------------------------------------------------------------------
def test_ndjson_with_precise_rejections_also_dead_lettered(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = ndjson(event(1), event(2), '{"@timestamp": ', {"url.original": "/x"}, "")
    r = post(client, body, NDJSON, ingest_headers)
    assert r.status_code == 200
    out = r.json()
    assert (out["accepted"], out["duplicates"]) == (2, 0)
    assert [x["index"] for x in out["rejected"]] == [3, 4, 5]
    reasons = [x["reason"] for x in out["rejected"]]
    assert reasons[0].startswith("invalid JSON: Expecting value at column")
    assert reasons[1].startswith("missing timestamp: expected one of")
    assert reasons[2] == "empty line"
    stored = services.store.dead_letters()
    assert sorted(d["line"] for d in stored) == [3, 4, 5]
    assert all(d["source"].startswith("http:gateway-eu:") for d in stored)
    assert services.store.count_events() == 2


def test_json_array_and_single_object(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    r = post(client, json.dumps([event(1), 5, event(2, **{"http.response.status_code": "abc"})]).encode(), JSON, ingest_headers)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert r.json()["rejected"] == [
        {"index": 2, "reason": "expected a JSON object, got a number"},
        {"index": 3, "reason": r.json()["rejected"][1]["reason"]},
    ]
    assert "http.response.status_code" in r.json()["rejected"][1]["reason"]
    r = post(client, json.dumps(event(7)).encode(), {"Content-Type": "application/json; charset=utf-8"}, ingest_headers)
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert services.store.count_events() == 2


def test_raw_lines_combined_and_jsonl(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = "\r\n".join([combined(1), combined(2), "garbage", combined(3)]).encode()
    r = post(client, body, TEXT, ingest_headers)
    assert r.status_code == 200 and r.json()["accepted"] == 3
    assert r.json()["rejected"][0]["index"] == 3
    assert r.json()["rejected"][0]["reason"].startswith("expected combined log format")
    nginx = {"time_iso8601": "2024-05-01T12:00:00+00:00", "remote_addr": "192.0.2.1", "request": "GET /a HTTP/1.1", "status": "200"}
    r = post(client, ndjson(nginx), TEXT, ingest_headers, params={"format": "nginx-json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    rows = services.store.sql('SELECT "source.ip", "url.original" FROM events WHERE "source.ip" = ?', ["192.0.2.1"])  # type: ignore[attr-defined]
    assert rows == [("192.0.2.1", "/a")]


def test_gzip_bodies_single_and_multi_member(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    gz = {**NDJSON, "Content-Encoding": "gzip"}
    r = post(client, gzip.compress(ndjson(event(1), event(2))), gz, ingest_headers)
    assert r.status_code == 200 and r.json()["accepted"] == 2
    two_members = gzip.compress(ndjson(event(3))) + gzip.compress(ndjson(event(4)))
    assert post(client, two_members, gz, ingest_headers).json()["accepted"] == 2
    assert services.store.count_events() == 4


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"\x1f\x8bnot really gzip", "invalid gzip body"),
     (gzip.compress(ndjson(*[event(i) for i in range(20)]))[:-6], "truncated gzip stream"),
     (gzip.compress(ndjson(*[event(i) for i in range(20)]))[:60], "truncated gzip stream")],
)
def test_bad_gzip_is_400_with_reason(client: TestClient, ingest_headers: dict[str, str], body: bytes, reason: str) -> None:
    r = post(client, body, {**NDJSON, "Content-Encoding": "gzip"}, ingest_headers)
    assert r.status_code == 400 and reason in r.json()["detail"]


def test_every_item_rejected_is_400_with_the_same_body(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    r = post(client, b"nope\nnope either\n", TEXT, ingest_headers)
    assert r.status_code == 400
    assert r.json()["accepted"] == 0 and [x["index"] for x in r.json()["rejected"]] == [1, 2]
    r = post(client, b"[1, 2", JSON, ingest_headers)
    assert r.status_code == 400 and r.json()["rejected"][0]["reason"].startswith("invalid JSON:")
    assert len(services.store.dead_letters()) == 3


def test_retried_request_stores_nothing_twice(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = ndjson(event(1), event(2), "bad")
    first = post(client, body, NDJSON, ingest_headers).json()
    again = post(client, body, NDJSON, ingest_headers).json()
    assert (first["accepted"], again["accepted"], again["duplicates"]) == (2, 0, 2)
    assert again["rejected"] == first["rejected"]
    assert services.store.count_events() == 2 and len(services.store.dead_letters()) == 1
    # the same events in a different request are a different batch: no collision
    other = post(client, ndjson(event(1), event(2)), NDJSON, ingest_headers).json()
    assert other["accepted"] == 2
    # X-Batch-Id names the batch: a re-compressed retry is still a retry
    batch = {**NDJSON, "X-Batch-Id": "gw-eu-000042"}
    assert post(client, ndjson(event(9)), batch, ingest_headers).json()["accepted"] == 1
    retry = post(client, gzip.compress(ndjson(event(9))), {**batch, "Content-Encoding": "gzip"}, ingest_headers)
    assert retry.json()["duplicates"] == 1


def test_body_over_the_limit_is_413_gzip_bomb_too(client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    limit = services.settings.max_body_bytes
    r = post(client, ndjson(*[event(i % 60) for i in range(limit // 50)]), NDJSON, ingest_headers)
    assert r.status_code == 413 and str(limit) in r.json()["detail"]
    bomb = gzip.compress(b" " * (5 * 1024 * 1024), 9)
    assert len(bomb) < limit
    r = post(client, bomb, {**NDJSON, "Content-Encoding": "gzip"}, ingest_headers)
    assert r.status_code == 413 and "after decoding" in r.json()["detail"]
    assert services.store.count_events() == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [({"Content-Type": "application/xml"}, "Content-Type"), ({}, "(none)"),
     ({**NDJSON, "Content-Encoding": "br"}, "Content-Encoding")],
)  # fmt: skip
def test_unsupported_media_is_415(client: TestClient, ingest_headers: dict[str, str], headers: dict[str, str], detail: str) -> None:
    r = post(client, ndjson(event(1)), headers, ingest_headers)
    assert r.status_code == 415 and detail in r.json()["detail"]


def test_malformed_requests_are_400(client: TestClient, ingest_headers: dict[str, str]) -> None:
    assert post(client, b"", NDJSON, ingest_headers).json()["detail"].startswith("empty request body")
    r = post(client, ndjson(event(1)), {**NDJSON, "X-Batch-Id": "a b"}, ingest_headers)
    assert r.status_code == 400 and "X-Batch-Id" in r.json()["detail"]
    r = post(client, ndjson(event(1)), NDJSON, ingest_headers, params={"format": "combined"})
    assert r.status_code == 400 and "text/plain" in r.json()["detail"]
    assert post(client, b"x", TEXT, ingest_headers, params={"format": "xml"}).status_code == 422


# -- overload and store failure --------------------------------------------------------------
@pytest.fixture
def blocked(services: Services, client: TestClient, tmp_path: Any, blocking_store: BlockingStore) -> Iterator[BlockingStore]:
    """Swap in a writer (queue of one batch) over a store whose appends wait for the test."""
    store = blocking_store
    services.ingest.stop()
    services.ingest = IngestWriter(store, load_settings(data_dir=tmp_path, ingest_queue_batches=1, ingest_retry_after_s=3))  # type: ignore[arg-type]
    services.ingest.start()
    yield store
    store.release.set()


def test_full_queue_is_429_with_retry_after(client: TestClient, services: Services, ingest_headers: dict[str, str], blocked: BlockingStore) -> None:
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, client, ndjson(event(1)), NDJSON, ingest_headers)
        assert blocked.entered.wait(5)  # batch 1 is being "written"
        second = pool.submit(post, client, ndjson(event(2)), NDJSON, ingest_headers)
        _until(lambda: services.ingest.queue_depth == 1)
        assert client.get("/healthz").status_code == 200  # waiting requests do not block the loop
        r = post(client, ndjson(event(3)), NDJSON, ingest_headers)
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert not first.done() and not second.done()  # not acknowledged before the commit
        blocked.release.set()
        assert first.result(5).status_code == 200 and second.result(5).status_code == 200


def test_store_failure_is_503(client: TestClient, ingest_headers: dict[str, str], blocked: BlockingStore) -> None:
    blocked.fail = True
    blocked.release.set()
    r = post(client, ndjson(event(1)), NDJSON, ingest_headers)
    assert r.status_code == 503 and "disk full" in r.json()["detail"]


def _until(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# -- metrics, OpenAPI -----------------------------------------------------------------------
def test_metrics_expose_ingested_events_by_source_and_dataset(client: TestClient, ingest_headers: dict[str, str]) -> None:
    assert post(client, ndjson(event(1), event(2)), NDJSON, ingest_headers).status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    line = next(x for x in r.text.splitlines() if x.startswith("marketguard_ingest_events_total{") and 'source="http:gateway-eu"' in x)
    assert 'dataset="api.access"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 2


def test_openapi_documents_the_endpoint(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/api/v1/logs"]["post"]
    assert op["summary"] and "acknowledged" in op["description"].lower()
    assert {"200", "400", "401", "403", "413", "415", "429", "503"} <= set(op["responses"])
    assert {"application/x-ndjson", "application/json", "text/plain"} <= set(op["requestBody"]["content"])


# -- a real server ----------------------------------------------------------------------------
def test_real_server_acknowledges_only_what_is_committed(services: Services) -> None:
    secret = services.keys.create("gateway-us", "ingest")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(services), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        r = httpx.post(base + URL, content=gzip.compress(ndjson(*[event(i) for i in range(50)])),
                       headers={**NDJSON, "Content-Encoding": "gzip", "Authorization": f"Bearer {secret}"})  # fmt: skip
        assert r.status_code == 200 and r.json()["accepted"] == 50
        assert "marketguard_ingest_events_total" in httpx.get(base + "/metrics").text
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()
    reopened = DuckDBStore(services.settings.duckdb_path)  # the lifespan closed the service's store
    try:
        assert reopened.count_events() == 50
    finally:
        reopened.close()
