"""OTLP decoding and span -> apm.span mapping (collectors.otlp), without HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collectors._ecs import event_id
from collectors.otlp import (
    OtlpDecodeError,
    decode_json,
    decode_protobuf,
    decode_request,
    spans_to_batch,
)
from collectors.privacy import Pseudonymiser
from marketguard.schema import EVENT_SCHEMA

EXAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "otlp" / "examples" / "trace.json"
P = Pseudonymiser(b"test-key")
START = 1_700_000_000_000_000_000


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def request(*spans: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> bytes:
    res = resource if resource is not None else [attr("service.name", "checkout")]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": res},
                                          "scopeSpans": [{"scope": {"name": "lib"}, "spans": list(spans)}]}]}).encode()  # fmt: skip


def span(i: int = 1, **extra: Any) -> dict[str, Any]:
    return {"traceId": f"{i:032X}", "spanId": f"{i:016x}", "name": f"span {i}", "kind": 3,
            "startTimeUnixNano": str(START), "endTimeUnixNano": str(START + 250_000_000), **extra}  # fmt: skip


def rows(body: bytes, encoding: str = "json") -> tuple[list[dict[str, Any]], list[Any]]:
    batch = spans_to_batch(decode_request(body, encoding), source="test", pseudonymiser=P)
    assert batch.events.schema == EVENT_SCHEMA
    return batch.events.to_pylist(), batch.dead_letters


def test_official_example_maps_every_field() -> None:
    (row,), dead = rows(EXAMPLE.read_bytes())
    assert not dead
    assert row["event.dataset"] == "apm.span" and row["trace.id"] == "5b8efff798038103d269b633813fc60c"
    assert row["span.id"] == "eee19b7ec3c1b174" and row["parent.id"] == "eee19b7ec3c1b173"
    assert row["span.kind"] == "server" and row["event.outcome"] == "unknown"
    assert row["event.duration"] == 1_000_000_000 and row["service.name"] == "my.service"
    assert json.loads(row["labels"]) == {"my.span.attr": "some value", "otel.scope.name": "my.library"}


def test_protobuf_and_json_give_the_same_events() -> None:
    body = request(span(1, parentSpanId="00000000000000aa", status={"code": 2, "message": "boom"}))
    proto = decode_json(body).message.SerializeToString()
    from_json, _ = rows(body)
    from_proto, _ = rows(proto, "protobuf")
    strip = [{k: v for k, v in r.items() if k != "event.ingested"} for r in (*from_json, *from_proto)]
    assert strip[0] == strip[1] and strip[0]["parent.id"] == "00000000000000aa"


def test_event_id_is_deterministic_per_trace_and_span() -> None:
    a, _ = rows(request(span(1), span(2)))
    b, _ = rows(request(span(2), span(1)))
    assert {r["event.id"] for r in a} == {r["event.id"] for r in b} and len({r["event.id"] for r in a}) == 2


@pytest.mark.parametrize(("code", "outcome"), [(0, "unknown"), (1, "success"), (2, "failure")])
def test_status_code_to_outcome(code: int, outcome: str) -> None:
    (row,), _ = rows(request(span(status={"code": code})))
    assert row["event.outcome"] == outcome


def test_http_attributes_current_and_old_conventions() -> None:
    new = span(1, attributes=[attr("http.request.method", "GET"), attr("http.response.status_code", 503),
                              attr("url.full", "https://shop.example/api/cart?id=7"), attr("http.route", "/api/cart"),
                              attr("user_agent.original", "curl/8"), attr("client.address", "203.0.113.9")])  # fmt: skip
    old = span(2, attributes=[attr("http.method", "POST"), attr("http.status_code", "201"),
                              attr("http.target", "/api/order?x=1"), attr("http.host", "shop.example")])  # fmt: skip
    (a, b), _ = rows(request(new, old))
    assert (a["http.request.method"], a["http.response.status_code"], a["url.domain"]) == ("GET", 503, "shop.example")
    assert (a["url.path"], a["url.query"], a["url.full"]) == ("/api/cart", "id=7", "https://shop.example/api/cart?id=7")
    assert a["source.ip"] == "203.0.113.9" and json.loads(a["labels"])["http.route"] == "/api/cart"
    assert (b["http.request.method"], b["http.response.status_code"]) == ("POST", 201)
    assert (b["url.path"], b["url.query"], b["url.original"], b["url.domain"]) == ("/api/order", "x=1", "/api/order?x=1", "shop.example")


def test_exception_event_and_status_message_become_error_fields() -> None:
    exc = {"name": "exception", "timeUnixNano": str(START), "attributes": [
        attr("exception.type", "TimeoutError"), attr("exception.message", "upstream timeout for bob@example.org")]}  # fmt: skip
    (a, b), _ = rows(request(span(1, events=[exc], status={"code": 2}), span(2, status={"code": 2, "message": "db down"})))
    assert a["error.type"] == "TimeoutError" and "bob@example.org" not in a["error.message"]
    assert a["error.message"].startswith("upstream timeout for <email:")
    assert b["error.message"] == "db down" and b["error.type"] is None


def test_personal_data_in_attributes_and_names_is_pseudonymised() -> None:
    s = span(1, name="GET /u/jane@example.com", attributes=[attr("user.email", "jane@example.com"), attr("api_key", "s3cr3t"),
                                                            attr("url.full", "https://x.example/cb?token=abc123")])  # fmt: skip
    (row,), _ = rows(request(s, resource=[attr("service.name", "api"), attr("owner", "ops@example.com")]))
    text = json.dumps(row, default=str)
    assert "jane@example.com" not in text and "s3cr3t" not in text and "abc123" not in text and "ops@example.com" not in text


@pytest.mark.parametrize(("bad", "reason"), [
    ({"traceId": "abcd"}, "traceId must be 16 bytes"),
    ({"traceId": ""}, "missing traceId"),
    ({"traceId": "0" * 32}, "traceId is all zeroes"),
    ({"spanId": "123"}, "spanId is not hex"),
    ({"spanId": "00" * 9}, "spanId must be 8 bytes"),
    ({"parentSpanId": "abcd"}, "parentSpanId must be empty or 8 bytes"),
    ({"startTimeUnixNano": "0"}, "missing startTimeUnixNano"),
    ({"endTimeUnixNano": "0"}, "missing endTimeUnixNano"),
    ({"endTimeUnixNano": str(START - 1)}, "is before startTimeUnixNano"),
], ids=lambda v: str(v)[:30])  # fmt: skip
def test_invalid_spans_are_rejected_individually(bad: dict[str, Any], reason: str) -> None:
    good, dead = rows(request(span(1), span(2, **bad), span(3)))
    assert [r["span.name"] for r in good] == ["span 1", "span 3"]
    (letter,) = dead
    assert letter.line == 2 and reason in letter.reason and "resourceSpans[0].scopeSpans[0].spans[1]" in letter.reason


def test_unknown_json_fields_are_ignored_and_bad_links_dropped() -> None:
    s = span(1, futureField={"x": 1}, links=[{"traceId": "zz", "spanId": "01"}])
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [s]}], "newThing": 1}], "extra": True}).encode()
    (row,), dead = rows(body)
    assert not dead and row["service.name"] is None


@pytest.mark.parametrize(("body", "encoding", "fragment"), [
    (b"\xff\xff", "protobuf", "invalid protobuf"),
    (b"{", "json", "invalid JSON"),
    (b'"x"', "json", "expected a JSON object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [1]}]}]}]}', "json", "invalid OTLP/JSON"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "json", "invalid OTLP/JSON"),
])  # fmt: skip
def test_undecodable_bodies_raise(body: bytes, encoding: str, fragment: str) -> None:
    with pytest.raises(OtlpDecodeError, match=fragment):
        decode_request(body, encoding)


def test_empty_protobuf_is_an_empty_request() -> None:
    assert decode_protobuf(b"") == ExportTraceServiceRequest()
    batch = spans_to_batch(decode_request(b"", "protobuf"), source="t", pseudonymiser=P)
    assert batch.events.num_rows == 0 and batch.lines_read == 0


def test_event_id_hashes_the_trace_and_span_ids_as_before() -> None:
    """Ids must not change between versions, or a span exported again after an upgrade would be
    stored twice."""
    (row,), _ = rows(request(span(7)))
    assert row["event.id"] == event_id("otlp", 0, row["trace.id"] + row["span.id"])


def pb_span(i: int, *attrs: tuple[str, Any], code: int = 0, message: str = "") -> Span:
    s = Span(trace_id=i.to_bytes(16, "big"), span_id=i.to_bytes(8, "big"), name=f"span {i}",
             start_time_unix_nano=START, end_time_unix_nano=START + i)  # fmt: skip
    for key, value in attrs:
        v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        s.attributes.append(KeyValue(key=key, value=v))
    s.status.code, s.status.message = code, message
    return s


def pb_request(*scopes: tuple[str, list[Span]], resource: tuple[tuple[str, str], ...] = ()) -> bytes:
    rs = ResourceSpans(scope_spans=[ScopeSpans(scope=InstrumentationScope(name=n), spans=s) for n, s in scopes])
    for key, value in (("service.name", "shop"), *resource):
        rs.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()


def test_attributes_repeated_across_spans_map_per_span() -> None:
    """Spans sharing attributes (decoded once per request) still map each on their own."""
    status, route = ("http.response.status_code", 503), ("http.route", "/cart")
    body = pb_request(
        ("a", [pb_span(1, status, route), pb_span(2, status, ("http.status_code", 200), route),
               pb_span(3, ("host.name", "web-9"), route, code=2, message="db down"), pb_span(4)]),
        ("b", [pb_span(5, status, route, code=2, message="db down")]),
        resource=(("host.name", "web-1"), ("team", "cart")),
    )  # fmt: skip
    got, dead = rows(body, "protobuf")
    assert not dead
    assert [r["http.response.status_code"] for r in got] == [503, 503, None, None, 503]
    assert [json.loads(r["labels"]) for r in got] == [
        {"host.name": "web-1", "team": "cart", "otel.scope.name": "a", "http.route": "/cart"},
        {"host.name": "web-1", "team": "cart", "otel.scope.name": "a", "http.status_code": 200, "http.route": "/cart"},
        {"host.name": "web-9", "team": "cart", "otel.scope.name": "a", "http.route": "/cart"},  # the span's own wins
        {"host.name": "web-1", "team": "cart", "otel.scope.name": "a"},
        {"host.name": "web-1", "team": "cart", "otel.scope.name": "b", "http.route": "/cart"},
    ]  # fmt: skip
    assert [r["event.outcome"] for r in got] == ["unknown", "unknown", "failure", "unknown", "failure"]
    assert [r["error.message"] for r in got] == [None, None, "db down", None, "db down"]
    assert [r["event.duration"] for r in got] == [1, 2, 3, 4, 5]


def test_rejected_span_is_dead_lettered_whole_from_protobuf() -> None:
    bad = pb_span(2, ("http.route", "/x"))
    bad.span_id = b"\x01\x02"
    _, (letter,) = rows(pb_request(("a", [pb_span(1), bad])), "protobuf")
    raw = json.loads(letter.raw)
    assert raw["spanId"] == "0102" and [a["value"] for a in raw["attributes"]] == [{"stringValue": "/x"}]
    assert raw["status"] == {} and raw["name"] == "span 2"
