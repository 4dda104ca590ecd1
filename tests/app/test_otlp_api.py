"""POST /v1/traces: the real OpenTelemetry SDK exporter against a real uvicorn server, the
official OTLP JSON example, and the spec's answers to malformed input and partial success."""

from __future__ import annotations

import gzip
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from marketguard.app.api.routes import health
from marketguard.app.api.routes import otlp as otlp_routes
from marketguard.app.bench_otlp import fresh_body, otlp_templates
from marketguard.app.services import Services
from marketguard.schema import EVENT_FIELDS
from marketguard.store import MatchWindow

URL = "/v1/traces"
PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
EXAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "otlp" / "examples" / "trace.json"


def app_for(services: Services) -> FastAPI:
    app = FastAPI()
    app.include_router(health.router)
    app.include_router(otlp_routes.router)
    app.state.services = services
    return app


@pytest.fixture
def otlp_client(services: Services) -> Iterator[TestClient]:
    with TestClient(app_for(services)) as client:
        services.start()
        yield client
        services.ingest.stop()


def spans(services: Services) -> list[dict[str, Any]]:
    services.ingest.stop()  # flushes what was acknowledged
    table = services.store.query_events(MatchWindow(), columns=list(EVENT_FIELDS))
    return [r for r in table.to_pylist() if r["event.dataset"] == "apm.span"]


def rpc_status(r: httpx.Response) -> status_pb2.Status:
    message = status_pb2.Status()
    if r.headers["content-type"].startswith("application/x-protobuf"):
        message.ParseFromString(r.content)
    else:
        from google.protobuf import json_format

        json_format.Parse(r.text, message)
    return message


# -- the real SDK exporter against a real server ---------------------------------------------
@pytest.fixture
def server(services: Services) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app_for(services), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    services.start()
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def _export(base: str, key: str, compression: Compression) -> None:
    exporter = OTLPSpanExporter(endpoint=base + URL, headers={"Authorization": f"Bearer {key}"}, compression=compression, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.checkout", "1.0")
    with tracer.start_as_current_span("POST /api/checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("url.path", "/api/checkout")
        root.set_attribute("http.route", "/api/checkout")
        root.set_attribute("http.response.status_code", 502)
        root.set_attribute("customer.email", "jane@example.com")
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
            child.record_exception(ValueError("card declined for jane@example.com"))
            child.set_status(Status(StatusCode.ERROR, "payment failed"))
        root.set_status(Status(StatusCode.ERROR))
    provider.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_real_sdk_exporter_protobuf(services: Services, server: str, compression: Compression) -> None:
    key = services.keys.create("otel-collector", "ingest")
    _export(server, key, compression)
    rows = {r["span.name"]: r for r in spans(services)}
    assert set(rows) == {"POST /api/checkout", "charge card"}
    root, child = rows["POST /api/checkout"], rows["charge card"]
    assert root["trace.id"] == child["trace.id"] and len(root["trace.id"]) == 32
    assert child["parent.id"] == root["span.id"] and root["parent.id"] is None
    assert root["service.name"] == "checkout" and root["span.kind"] == "server" and child["span.kind"] == "client"
    assert root["http.request.method"] == "POST" and root["url.path"] == "/api/checkout"
    assert root["http.response.status_code"] == 502 and root["event.outcome"] == "failure"
    assert child["error.type"] == "ValueError" and "jane@example.com" not in child["error.message"]
    assert "<email:" in child["error.message"]
    labels = json.loads(root["labels"])
    assert labels["http.route"] == "/api/checkout" and labels["otel.scope.name"] == "shop.checkout"
    assert labels["customer.email"].startswith("<email:") and labels["deployment.environment"] == "test"
    assert root["event.duration"] >= child["event.duration"] > 0


@pytest.mark.slow
def test_real_sdk_exporter_wrong_key_fails(services: Services, server: str) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("y"):
        pass
    exporter = OTLPSpanExporter(endpoint=server + URL, headers={"Authorization": "Bearer mg_nope"}, timeout=5)
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
    assert spans(services) == []


# -- JSON: the official example -------------------------------------------------------------
def test_official_json_example(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    r = otlp_client.post(URL, content=EXAMPLE.read_bytes(), headers={**JSON, **ingest_headers})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == {}  # full success: partial_success left unset
    (row,) = spans(services)
    assert row["trace.id"] == "5b8efff798038103d269b633813fc60c" and row["span.id"] == "eee19b7ec3c1b174"
    assert row["parent.id"] == "eee19b7ec3c1b173" and row["span.kind"] == "server"
    assert row["service.name"] == "my.service" and row["event.duration"] == 1_000_000_000
    assert row["@timestamp"].isoformat() == "2018-12-13T14:51:00+00:00"


def test_retried_export_stores_nothing_twice(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = gzip.compress(EXAMPLE.read_bytes())
    for _ in range(2):
        r = otlp_client.post(URL, content=body, headers={**JSON, **ingest_headers, "Content-Encoding": "gzip"})
        assert r.status_code == 200
    assert len(spans(services)) == 1


def _json_request(*span_list: dict[str, Any]) -> bytes:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                                          "scopeSpans": [{"spans": list(span_list)}]}]}).encode()  # fmt: skip


def _span(i: int, **extra: Any) -> dict[str, Any]:
    return {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": f"s{i}", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000", **extra}  # fmt: skip


def test_partial_success_json(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    body = _json_request(_span(1), _span(2, traceId="abcd"), _span(3, endTimeUnixNano="1"), _span(4, spanId="zz"))
    r = otlp_client.post(URL, content=body, headers={**JSON, **ingest_headers})
    assert r.status_code == 200
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"  # int64 -> decimal string in proto3 JSON
    assert "traceId must be 16 bytes" in partial["errorMessage"] and "before startTimeUnixNano" in partial["errorMessage"]
    assert "spanId is not hex" in partial["errorMessage"]
    assert [r["span.name"] for r in spans(services)] == ["s1"]
    dead = services.store.dead_letters()
    assert len(dead) == 3 and {d["line"] for d in dead} == {2, 3, 4}


def test_partial_success_protobuf(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    from google.protobuf import json_format

    from collectors.otlp import decode_json

    message = decode_json(_json_request(_span(1), _span(2, startTimeUnixNano="0"))).message
    r = otlp_client.post(URL, content=message.SerializeToString(), headers={**PROTO, **ingest_headers})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1
    assert "missing startTimeUnixNano" in answer.partial_success.error_message
    assert json_format.MessageToDict(answer)  # a real ExportTraceServiceResponse


def test_empty_request_is_success(otlp_client: TestClient, ingest_headers: dict[str, str]) -> None:
    r = otlp_client.post(URL, content=b"{}", headers={**JSON, **ingest_headers})
    assert r.status_code == 200 and r.json() == {}
    empty = ExportTraceServiceRequest().SerializeToString()
    assert empty == b""  # an empty protobuf message is an empty body
    r = otlp_client.post(URL, content=empty, headers={**PROTO, **ingest_headers})
    assert r.status_code == 200 and r.content == b""


# -- failures per the spec --------------------------------------------------------------------
@pytest.mark.parametrize(("body", "headers", "fragment"), [
    (b"\x0a\xff\xff\xff", PROTO, "invalid protobuf"),
    (b"{not json", JSON, "invalid JSON"),
    (b"[1, 2]", JSON, "expected a JSON object"),
    (b'{"resourceSpans": "nope"}', JSON, "invalid OTLP/JSON"),
], ids=["protobuf", "json-syntax", "json-array", "json-shape"])  # fmt: skip
def test_malformed_body_is_400_with_status(otlp_client: TestClient, ingest_headers: dict[str, str], body: bytes, headers: dict[str, str], fragment: str) -> None:
    r = otlp_client.post(URL, content=body, headers={**headers, **ingest_headers})
    assert r.status_code == 400 and r.headers["content-type"] == headers["Content-Type"]
    rpc = rpc_status(r)
    assert fragment in rpc.message and rpc.code == 3  # INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert rpc.details[0].Unpack(bad) and fragment in bad.field_violations[0].description


def test_unsupported_media_type_is_415(otlp_client: TestClient, ingest_headers: dict[str, str]) -> None:
    r = otlp_client.post(URL, content=b"x", headers={"Content-Type": "text/plain", **ingest_headers})
    assert r.status_code == 415 and "application/x-protobuf" in rpc_status(r).message
    r = otlp_client.post(URL, content=b"x", headers={**PROTO, "Content-Encoding": "br", **ingest_headers})
    assert r.status_code == 415 and r.headers["content-type"] == "application/x-protobuf"


def test_auth_errors_are_status_bodies(otlp_client: TestClient, services: Services) -> None:
    r = otlp_client.post(URL, content=EXAMPLE.read_bytes(), headers=JSON)
    assert r.status_code == 401 and "missing API key" in rpc_status(r).message
    analyst = services.keys.create("soc", "analyst")
    r = otlp_client.post(URL, content=b"", headers={**PROTO, "Authorization": f"Bearer {analyst}"})
    assert r.status_code == 403 and rpc_status(r).code == 7


def test_oversized_body_is_413(otlp_client: TestClient, ingest_headers: dict[str, str]) -> None:
    bomb = gzip.compress(b" " * (200 * 1024))  # the fixture limits bodies to 64 KiB
    r = otlp_client.post(URL, content=bomb, headers={**JSON, **ingest_headers, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "exceeds" in rpc_status(r).message


def test_metrics_count_received_and_rejected(otlp_client: TestClient, ingest_headers: dict[str, str]) -> None:
    from marketguard.metrics import METRICS

    before = METRICS.spans_received.labels(sender="otlp:gateway-eu")._value.get()
    otlp_client.post(URL, content=_json_request(_span(7), _span(8, traceId="")), headers={**JSON, **ingest_headers})
    assert METRICS.spans_received.labels(sender="otlp:gateway-eu")._value.get() == before + 2
    assert METRICS.spans_rejected.labels(reason="missing_traceid")._value.get() >= 1



@pytest.fixture
def blocked(services: Services, otlp_client: TestClient, tmp_path: Path, blocking_store: Any) -> Iterator[Any]:
    """A writer (queue of one batch) over a store whose appends wait for the test."""
    from marketguard.app.ingest import IngestWriter
    from marketguard.config import load_settings

    services.ingest.stop()
    services.ingest = IngestWriter(blocking_store, load_settings(data_dir=tmp_path, ingest_queue_batches=1, ingest_retry_after_s=2))
    services.ingest.start()
    yield blocking_store
    blocking_store.release.set()


def test_overload_is_429_with_retry_after(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str], blocked: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def send() -> httpx.Response:
        return otlp_client.post(URL, content=EXAMPLE.read_bytes(), headers={**JSON, **ingest_headers})

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(send)
        assert blocked.entered.wait(5)
        second = pool.submit(send)
        deadline = time.monotonic() + 5
        while services.ingest.queue_depth < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        r = send()
        assert r.status_code == 429 and r.headers["Retry-After"] == "2" and rpc_status(r).code == 8
        blocked.release.set()
        assert first.result(5).status_code == 200 and second.result(5).status_code == 200


def test_store_failure_is_503(otlp_client: TestClient, ingest_headers: dict[str, str], blocked: Any) -> None:
    blocked.fail = True
    blocked.release.set()
    r = otlp_client.post(URL, content=EXAMPLE.read_bytes(), headers={**PROTO, **ingest_headers, "Content-Type": "application/json"})
    assert r.status_code == 503 and "disk full" in rpc_status(r).message and rpc_status(r).code == 14


def test_role_matrix_of_the_new_ingest_routes(services: Services) -> None:
    from marketguard.app.api.routes import support

    app = app_for(services)
    app.include_router(support.router)
    keys = {r: services.keys.create(r.replace(":", "-"), r) for r in ("admin", "analyst", "oncall", "auditor", "ingest", "seller:A")}
    with TestClient(app) as client:
        services.start()
        for path in (URL, "/api/v1/support-events"):
            for role, key in [*keys.items(), (None, None)]:
                headers = {**JSON, **({"Authorization": f"Bearer {key}"} if key else {})}
                got = client.post(path, content=b"{}", headers=headers).status_code
                expected = {401} if role is None else ({200, 400} if role in ("admin", "ingest") else {403})
                assert got in expected, (path, role, got)
        services.ingest.stop()


def test_bench_exports_are_new_recent_spans(otlp_client: TestClient, services: Services, ingest_headers: dict[str, str]) -> None:
    """`marketguard bench --only otlp` counts the spans of each export answered 200: every body
    it sends from one template must be new spans (no duplicate counted) stamped with the time."""
    rng = random.Random(1)
    template = otlp_templates(rng, spans=40, traces=4, count=1)[0]
    before = time.time_ns()
    for _ in range(2):
        r = otlp_client.post(URL, content=fresh_body(rng, template), headers={**PROTO, **ingest_headers})
        assert r.status_code == 200 and ExportTraceServiceResponse.FromString(r.content) == ExportTraceServiceResponse()
    stored = spans(services)
    assert len(stored) == 80 and len({r["trace.id"] for r in stored}) == 8 and len({r["event.id"] for r in stored}) == 80
    assert all(r["@timestamp"].timestamp() * 1e9 >= before - 5_000_000 - 1_000 for r in stored)
    assert {r["event.duration"] for r in stored} == {5_000_000}
