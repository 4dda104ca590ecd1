"""One OTLP span into the columns of an ``apm.span`` event (see :mod:`collectors.otlp`).

Spans come from the wire view (:mod:`collectors._otlp_view`): their attributes, events and
status are raw bytes, decoded once per distinct value in a request (:class:`Seen`), and a span's
labels JSON is the scope's, extended with the span's own attributes (:class:`Context`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import md5
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors._ecs import url_fields
from collectors._jsonlog import canonical_json
from collectors._otlp_table import SpanColumns

__all__ = ["ATTRIBUTE_FIELDS", "Context", "Rejected", "Seen", "add_span", "any_value", "context"]

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
_MAX_NS = 2**63
#: ``collectors._ecs.event_id("otlp", 0, trace_hex + span_hex)`` hashes this prefix and the ids:
#: ids of spans stored before must stay the same, or a retried export would be stored twice.
_ID_PREFIX = b"otlp\x1f0\x1f"
_KINDS = {v.number: v.name.removeprefix("SPAN_KIND_").lower() for v in Span.SpanKind.DESCRIPTOR.values}
_OUTCOMES = {Status.STATUS_CODE_OK: "success", Status.STATUS_CODE_ERROR: "failure"}


class Rejected(ValueError):
    """A span that cannot become an event; the message says why."""


@dataclass(frozen=True)
class Context:
    """What every span of one scope shares: its service, and its labels ready as JSON."""

    service: str | None
    labels: dict[str, Any]
    labels_json: str | None  # ``labels`` as stored, None when empty
    #: Labels JSON with a span's own, by the raw bytes of the attributes that became labels.
    with_own: dict[tuple[bytes, ...], str] = field(default_factory=dict)


def context(resource: dict[str, Any], scope: str) -> Context:
    """The context of one scope's spans from its resource's attributes and its scope name."""
    service = resource.get("service.name")
    labels = {k: v for k, v in resource.items() if k != "service.name"}
    if scope:
        labels["otel.scope.name"] = scope
    return Context(str(service) if service is not None else None, labels, _json(labels) if labels else None)


def _json(labels: dict[str, Any]) -> str:
    return json.dumps(labels, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Seen:
    """Attributes and statuses decoded so far in a request, by their raw bytes."""

    attributes: dict[bytes, _Attribute]
    statuses: dict[bytes, tuple[int, str]]


def add_span(columns: SpanColumns, span: Any, ctx: Context, bad_id: str | None, seen: Seen) -> None:
    """Append the event of ``span`` (a view span) to ``columns``, or raise :class:`Rejected`
    (nothing appended)."""
    trace, span_id, parent = _ids(span, bad_id)
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0:
        raise Rejected("missing startTimeUnixNano")
    if end == 0:
        raise Rejected("missing endTimeUnixNano (the span is not ended)")
    if end < start:
        raise Rejected(f"endTimeUnixNano {end} is before startTimeUnixNano {start}")
    if start >= _MAX_NS:
        raise Rejected(f"startTimeUnixNano {start} is out of range")
    status = span.status
    code, message = (seen.statuses.get(status) or _status(status, seen)) if status else (0, "")
    fields: dict[str, Any] = {}
    own: list[bytes] = []
    if span.attributes:
        _attributes(span.attributes, fields, own, seen.attributes)
    if span.events or code == Status.STATUS_CODE_ERROR:
        _errors(span.events, code, message, fields)
    labels = _labels(ctx, tuple(own), seen.attributes) if own else ctx.labels_json
    columns.micros.append(start // 1000)
    columns.ids.append(md5(_ID_PREFIX + (trace + span_id).encode(), usedforsecurity=False).hexdigest())
    columns.durations.append(end - start)
    columns.outcomes.append(_OUTCOMES.get(code, "unknown"))
    columns.traces.append(trace)
    columns.spans.append(span_id)
    columns.parents.append(parent)
    columns.names.append(span.name)
    columns.kinds.append(_KINDS.get(span.kind, "unspecified"))
    columns.services.append(ctx.service)
    if labels is not None:
        fields["labels"] = labels
    if fields:
        columns.add_sparse(fields)


def _labels(ctx: Context, own: tuple[bytes, ...], seen: dict[bytes, _Attribute]) -> str:
    """The scope's labels with the span's own (the attributes ``own`` set in that order)."""
    text = ctx.with_own.get(own)
    if text is None:
        extra = {}
        for raw in own:
            key, _, value, _ = seen[raw]
            extra[key] = value
        text = ctx.with_own[own] = _labels_json(ctx, extra)
    return text


def _labels_json(ctx: Context, extra: dict[str, Any]) -> str:
    """The JSON of ``{**ctx.labels, **extra}``."""
    if ctx.labels_json is None:
        return _json(extra)
    if ctx.labels.keys().isdisjoint(extra):  # the scope's JSON, extended
        return f"{ctx.labels_json[:-1]},{_json(extra)[1:]}"
    return _json({**ctx.labels, **extra})


def _status(raw: bytes, seen: Seen) -> tuple[int, str]:
    status = Status.FromString(raw)
    seen.statuses[raw] = decoded = (status.code, status.message)
    return decoded


def _ids(span: Any, bad_id: str | None) -> tuple[str, str, str | None]:
    if bad_id:
        raise Rejected(bad_id)
    trace, span_id = span.trace_id, span.span_id
    for name, value, size in (("traceId", trace, 16), ("spanId", span_id, 8)):
        if len(value) != size:
            if not value:
                raise Rejected(f"missing {name}")
            raise Rejected(f"{name} must be {size} bytes ({2 * size} hex digits), got {len(value)} bytes")
        if not any(value):
            raise Rejected(f"{name} is all zeroes (invalid per the W3C trace context)")
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        raise Rejected(f"parentSpanId must be empty or 8 bytes (16 hex digits), got {len(parent)} bytes")
    return trace.hex(), span_id.hex(), parent.hex() if parent else None


#: A decoded attribute: key, ECS field (None: a label), value as a label, value as the field.
_Attribute = tuple[str, str | None, Any, Any]


def _attribute(raw: bytes) -> _Attribute:
    kv = KeyValue.FromString(raw)
    value = any_value(kv.value)
    target = ATTRIBUTE_FIELDS.get(kv.key)
    if target in _INT_FIELDS:
        value = _as_int(value)
    if target is None or value is None:
        return kv.key, None, value, None
    return kv.key, target, value, value if isinstance(value, str) or target in _INT_FIELDS else canonical_json(value)


def _attributes(raws: Any, fields: dict[str, Any], labels: list[bytes], seen: dict[bytes, _Attribute]) -> None:
    """Mapped attributes into ``fields`` (ECS names), the others' raw bytes onto ``labels``;
    each distinct attribute is decoded once and remembered in ``seen``."""
    for raw in raws:
        entry = seen.get(raw)
        if entry is None:
            entry = seen[raw] = _attribute(raw)
        key, target, value, field_value = entry
        if target is None or target in fields:
            labels.append(raw)
        else:
            fields[target] = field_value
    if not fields:
        return
    target = fields.pop("_target", None)
    full = fields.get("url.full")
    if full or target:
        for name, value in url_fields(full or target).items():
            if value is not None:
                fields.setdefault(name, value)
    if "url.query" in fields and "url.path" in fields and "url.original" not in fields:
        fields["url.original"] = f"{fields['url.path']}?{fields['url.query']}"


def _errors(events: Any, code: int, message: str, fields: dict[str, Any]) -> None:
    for raw in events:
        event = Span.Event.FromString(raw)
        if event.name != "exception":
            continue
        attrs = {kv.key: any_value(kv.value) for kv in event.attributes}
        if "exception.type" in attrs:
            fields["error.type"] = str(attrs["exception.type"])
        if "exception.message" in attrs:
            fields["error.message"] = str(attrs["exception.message"])
        break
    if "error.message" not in fields and code == Status.STATUS_CODE_ERROR and message:
        fields["error.message"] = message


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain Python data (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)
