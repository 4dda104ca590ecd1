"""OTLP traces in, ECS ``apm.span`` events out.

:func:`decode_request` reads an ``ExportTraceServiceRequest`` in either OTLP/HTTP encoding:
binary protobuf, or the spec's JSON mapping (lowerCamelCase keys, integer enums, and trace and
span ids as *hex* strings instead of proto3 JSON's base64; unknown fields are ignored). A body
that cannot be decoded at all raises :class:`OtlpDecodeError` (the API answers 400).

:func:`spans_to_batch` turns every span into one event. A span that cannot be one (an id of
the wrong length, a missing id, no start time, an end before its start) is rejected on its own
and dead-lettered with its position and reason; the rest of the request is kept (the spec's
partial success). Event ids hash the trace and span ids, so a retried export stores nothing
twice. Personal data in attributes, names and messages is pseudonymised.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors._ecs import constant_strings, event_id, finish_table, url_fields
from collectors._jsonlog import canonical_json
from collectors.accesslog import ParsedBatch
from collectors.privacy import Pseudonymiser
from marketguard.errors import MarketGuardError
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA, DeadLetter, empty_events

__all__ = [
    "DATASET",
    "ATTRIBUTE_FIELDS",
    "OtlpDecodeError",
    "DecodedRequest",
    "decode_request",
    "decode_protobuf",
    "decode_json",
    "spans_to_batch",
    "count_spans",
]

DATASET = "apm.span"

#: Span attribute (current and older semantic conventions) -> ECS field.
#: ``_target`` is ``http.target``: path and query, split into ``url.*``.
ATTRIBUTE_FIELDS: dict[str, str] = {
    "http.request.method": "http.request.method", "http.method": "http.request.method",
    "http.response.status_code": "http.response.status_code",
    "http.status_code": "http.response.status_code",
    "url.full": "url.full", "http.url": "url.full",
    "url.path": "url.path", "url.query": "url.query", "http.target": "_target",
    "server.address": "url.domain", "http.host": "url.domain", "net.host.name": "url.domain",
    "user_agent.original": "user_agent.original", "http.user_agent": "user_agent.original",
    "client.address": "source.ip", "http.client_ip": "source.ip",
    "enduser.id": "user.id",
    "http.response.body.size": "http.response.body.bytes",
    "http.response_content_length": "http.response.body.bytes",
    "network.protocol.version": "http.version", "http.flavor": "http.version",
    "marketplace.seller_id": "marketplace.seller_id", "seller.id": "marketplace.seller_id",
}  # fmt: skip
_INT_FIELDS = frozenset({"http.response.status_code", "http.response.body.bytes"})
_INT_COLUMNS = _INT_FIELDS | {"event.duration"}
#: Columns that can carry personal data: pseudonymised column-wise before storage.
_PRIVATE_COLUMNS = frozenset({"span.name", "labels", "error.message", "error.type", "url.full", "url.original",
                              "url.path", "url.query", "user.id", "user_agent.original"})  # fmt: skip
_DATASET_COLUMN = EVENT_SCHEMA.get_field_index("event.dataset")
_MAX_NS = 2**63
_KINDS = {v.number: v.name.removeprefix("SPAN_KIND_").lower() for v in Span.SpanKind.DESCRIPTOR.values}
_OUTCOMES = {Status.STATUS_CODE_OK: "success", Status.STATUS_CODE_ERROR: "failure"}
_ID_KEYS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8,
            "parentSpanId": 8, "parent_span_id": 8}  # fmt: skip


class OtlpDecodeError(MarketGuardError):
    """The body is not an ``ExportTraceServiceRequest`` in the announced encoding."""

    def __init__(self, message: str, *, field: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.reason = message


@dataclass
class DecodedRequest:
    """A decoded export request and the spans whose hex ids could not be read.

    ``bad_ids`` maps a span's (resource, scope, span) position to the reason; those spans are
    rejected by :func:`spans_to_batch`, the rest of the request is kept.
    """

    message: ExportTraceServiceRequest
    bad_ids: dict[tuple[int, int, int], str] = field(default_factory=dict)


def decode_request(body: bytes, encoding: str) -> DecodedRequest:
    """Decode ``body`` as ``"protobuf"`` or ``"json"``; raise :class:`OtlpDecodeError` if it is not one."""
    if encoding == "protobuf":
        return DecodedRequest(decode_protobuf(body))
    return decode_json(body)


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse a binary protobuf ``ExportTraceServiceRequest``."""
    message = ExportTraceServiceRequest()
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise OtlpDecodeError(f"invalid protobuf ExportTraceServiceRequest: {exc}") from None
    return message


def decode_json(body: bytes) -> DecodedRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, unknown fields ignored)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise OtlpDecodeError(f"invalid JSON: {getattr(exc, 'msg', exc)}{where}") from None
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"expected a JSON object (ExportTraceServiceRequest), got {type(value).__name__}")
    bad_ids = _hex_ids_to_base64(value)
    message = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"invalid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return DecodedRequest(message, bad_ids)


def _hex_ids_to_base64(request: dict[str, Any]) -> dict[tuple[int, int, int], str]:
    """Rewrite hex span/link ids in place as proto3 JSON's base64; collect unreadable ones."""
    bad: dict[tuple[int, int, int], str] = {}
    for i, rs in enumerate(_items(request, "resourceSpans", "resource_spans")):
        for j, ss in enumerate(_items(rs, "scopeSpans", "scope_spans")):
            for k, span in enumerate(_items(ss, "spans")):
                reason = _convert_ids(span)
                for link in _items(span, "links"):
                    if _convert_ids(link):
                        link.clear()  # an unreadable link is dropped, not the span
                if reason:
                    bad[(i, j, k)] = reason
    return bad


def _items(obj: object, *keys: str) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        return []
    for key in keys:
        value = obj.get(key)
        if isinstance(value, list):
            return [x for x in value if isinstance(x, dict)]
    return []


def _convert_ids(obj: dict[str, Any]) -> str | None:
    reason = None
    for key in _ID_KEYS:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            reason = reason or f"{key} is not hex: {value[:40]!r}"
            raw = b""
        obj[key] = base64.b64encode(raw).decode()
    return reason


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in a request."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def spans_to_batch(
    decoded: DecodedRequest, *, source: str, pseudonymiser: Pseudonymiser,
    ingested: datetime | None = None,
) -> ParsedBatch:  # fmt: skip
    """Turn every span into an ``apm.span`` event; dead-letter the invalid ones.

    Dead letters are numbered by the span's 1-based position in the request and their reason
    names its (resource, scope, span) indices. Built column-wise, with personal data
    pseudonymised per column (the RE2 pre-filter skips the clean rows).
    """
    rows: list[dict[str, Any]] = []
    dead: list[DeadLetter] = []
    number = 0
    for i, rs in enumerate(decoded.message.resource_spans):
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for j, ss in enumerate(rs.scope_spans):
            context = _context(resource, ss.scope.name)
            for k, span in enumerate(ss.spans):
                number += 1
                try:
                    rows.append(_row(span, context, decoded.bad_ids.get((i, j, k))))
                except Exception as exc:  # the hot path never raises: dead-letter and carry on
                    what = str(exc) if isinstance(exc, _Rejected) else f"internal error: {type(exc).__name__}: {exc}"
                    reason = f"span resourceSpans[{i}].scopeSpans[{j}].spans[{k}]: {what}"
                    dead.append(DeadLetter(source, number, reason, _raw(span, pseudonymiser)))
    if not rows:
        return ParsedBatch(empty_events(), dead, number)
    return ParsedBatch(_table(rows, source, pseudonymiser, ingested), dead, number)


def _table(rows: list[dict[str, Any]], source: str, p: Pseudonymiser, ingested: datetime | None) -> pa.Table:
    n = len(rows)
    columns: dict[str, pa.Array] = {}
    names = {name for row in rows for name in row}
    for name in names:
        values = [row.get(name) for row in rows]
        if name == "@timestamp":
            columns[name] = pa.array(values, pa.int64()).cast(EVENT_FIELDS[name])
        elif name in _INT_COLUMNS:
            columns[name] = pa.array(values, EVENT_FIELDS[name])
        elif name in _PRIVATE_COLUMNS:
            columns[name] = p.column(pa.array(values, pa.string()))
        else:
            columns[name] = pa.array(values, pa.string())
    table = finish_table(columns, n, source=source, ingested=ingested)
    return table.set_column(_DATASET_COLUMN, EVENT_SCHEMA.field(_DATASET_COLUMN), constant_strings(DATASET, n))


class _Rejected(ValueError):
    """A span that cannot become an event; the message says why."""


@dataclass(frozen=True)
class _Context:
    service: str | None
    labels: dict[str, Any]


def _context(resource: dict[str, Any], scope: str) -> _Context:
    service = resource.get("service.name")
    labels = {k: v for k, v in resource.items() if k != "service.name"}
    if scope:
        labels["otel.scope.name"] = scope
    return _Context(str(service) if service is not None else None, labels)


def _row(span: Span, ctx: _Context, bad_id: str | None) -> dict[str, Any]:
    trace, span_id, parent = _ids(span, bad_id)
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0:
        raise _Rejected("missing startTimeUnixNano")
    if end == 0:
        raise _Rejected("missing endTimeUnixNano (the span is not ended)")
    if end < start:
        raise _Rejected(f"endTimeUnixNano {end} is before startTimeUnixNano {start}")
    if start >= _MAX_NS:
        raise _Rejected(f"startTimeUnixNano {start} is out of range")
    row: dict[str, Any] = {
        "@timestamp": start // 1000,
        "event.id": event_id("otlp", 0, trace + span_id),
        "event.duration": end - start,
        "event.outcome": _OUTCOMES.get(span.status.code, "unknown"),
        "trace.id": trace, "span.id": span_id, "parent.id": parent,
        "span.name": span.name, "span.kind": _KINDS.get(span.kind, "unspecified"),
        "service.name": ctx.service,
    }  # fmt: skip
    labels = dict(ctx.labels)
    _attributes(span.attributes, row, labels)
    _errors(span, row)
    if labels:
        row["labels"] = json.dumps(labels, separators=(",", ":"), ensure_ascii=False, default=str)
    return row


def _ids(span: Span, bad_id: str | None) -> tuple[str, str, str | None]:
    if bad_id:
        raise _Rejected(bad_id)
    for name, value, size in (("traceId", span.trace_id, 16), ("spanId", span.span_id, 8)):
        if not value:
            raise _Rejected(f"missing {name}")
        if len(value) != size:
            raise _Rejected(f"{name} must be {size} bytes ({2 * size} hex digits), got {len(value)} bytes")
        if not any(value):
            raise _Rejected(f"{name} is all zeroes (invalid per the W3C trace context)")
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        raise _Rejected(f"parentSpanId must be empty or 8 bytes (16 hex digits), got {len(parent)} bytes")
    return span.trace_id.hex(), span.span_id.hex(), parent.hex() if parent else None


def _attributes(attrs: Any, row: dict[str, Any], labels: dict[str, Any]) -> None:
    for kv in attrs:
        value = _value(kv.value)
        target = ATTRIBUTE_FIELDS.get(kv.key)
        if target in _INT_FIELDS:
            value = _as_int(value)
        if target is None or value is None or target in row:
            labels[kv.key] = value
        else:
            row[target] = value if isinstance(value, str) or target in _INT_FIELDS else canonical_json(value)
    target = row.pop("_target", None)
    full = row.get("url.full")
    if full or target:
        for name, value in url_fields(full or target).items():
            if value is not None:
                row.setdefault(name, value)
    if "url.query" in row and "url.path" in row and "url.original" not in row:
        row["url.original"] = f"{row['url.path']}?{row['url.query']}"


def _errors(span: Span, row: dict[str, Any]) -> None:
    for event in span.events:
        if event.name != "exception":
            continue
        attrs = {kv.key: _value(kv.value) for kv in event.attributes}
        if "exception.type" in attrs:
            row["error.type"] = str(attrs["exception.type"])
        if "exception.message" in attrs:
            row["error.message"] = str(attrs["exception.message"])
        break
    if "error.message" not in row and span.status.code == Status.STATUS_CODE_ERROR and span.status.message:
        row["error.message"] = span.status.message


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain Python data (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _raw(span: Span, p: Pseudonymiser) -> str:
    """The span as OTLP/JSON with hex ids, pseudonymised, for the dead-letter store."""
    data = json_format.MessageToDict(span)
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in data:
            data[key] = base64.b64decode(data[key]).hex()
    return p.text(canonical_json(data))

