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

Spans are mapped from a wire view of the request (:mod:`collectors._otlp_view`), one span at
a time into columns (:mod:`collectors._otlp_span`, :class:`collectors._otlp_table.SpanColumns`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collectors._jsonlog import canonical_json
from collectors._otlp_span import ATTRIBUTE_FIELDS, Rejected, Seen, add_span, any_value, context
from collectors._otlp_table import SpanColumns
from collectors._otlp_view import parse_view
from collectors.accesslog import ParsedBatch
from collectors.privacy import Pseudonymiser
from marketguard.errors import MarketGuardError
from marketguard.schema import DeadLetter, empty_events

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

#: Columns that can carry personal data: pseudonymised column-wise before storage.
_PRIVATE_COLUMNS = frozenset({"span.name", "labels", "error.message", "error.type", "url.full", "url.original",
                              "url.path", "url.query", "user.id", "user_agent.original"})  # fmt: skip
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
    wire: bytes | None = None  # the protobuf body ``message`` was parsed from, if it was one


def decode_request(body: bytes, encoding: str) -> DecodedRequest:
    """Decode ``body`` as ``"protobuf"`` or ``"json"``; raise :class:`OtlpDecodeError` if it is not one."""
    if encoding == "protobuf":
        return DecodedRequest(decode_protobuf(body), wire=body)
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
    message = decoded.message
    view = parse_view(decoded.wire if decoded.wire is not None else message.SerializeToString())
    columns = SpanColumns(_PRIVATE_COLUMNS)
    seen = Seen({}, {})
    dead: list[DeadLetter] = []
    number = 0
    for i, (rs, rs_view) in enumerate(zip(message.resource_spans, view.resource_spans, strict=True)):
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for j, (ss, ss_view) in enumerate(zip(rs.scope_spans, rs_view.scope_spans, strict=True)):
            ctx = context(resource, ss.scope.name)
            for k, span in enumerate(ss_view.spans):
                number += 1
                try:
                    add_span(columns, span, ctx, decoded.bad_ids.get((i, j, k)) if decoded.bad_ids else None, seen)
                except Exception as exc:  # the hot path never raises: dead-letter and carry on
                    what = str(exc) if isinstance(exc, Rejected) else f"internal error: {type(exc).__name__}: {exc}"
                    reason = f"span resourceSpans[{i}].scopeSpans[{j}].spans[{k}]: {what}"
                    dead.append(DeadLetter(source, number, reason, _raw(ss.spans[k], pseudonymiser)))
    if not len(columns):
        return ParsedBatch(empty_events(), dead, number)
    return ParsedBatch(columns.to_table(DATASET, source, pseudonymiser, ingested), dead, number)


def _raw(span: Span, p: Pseudonymiser) -> str:
    """The span as OTLP/JSON with hex ids, pseudonymised, for the dead-letter store."""
    data = json_format.MessageToDict(span)
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in data:
            data[key] = base64.b64decode(data[key]).hex()
    return p.text(canonical_json(data))

