"""JSON access logs: nginx ``log_format … escape=json`` objects and ECS-shaped JSON lines.

One normaliser serves both: a record's keys are flattened (``{"source": {"ip": …}}`` becomes
``source.ip``), renamed by the caller's ``field_map``, taken as-is when they are ECS fields of
the event schema, renamed when they are well-known nginx variables, and otherwise kept in
``labels``. Every string value is pseudonymised; values under secret-looking keys are replaced
whole.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from collectors._combined import CLF_TIME
from collectors._ecs import event_id, split_request, url_fields
from collectors.privacy import Pseudonymiser, luhn_valid
from marketguard.schema import EVENT_FIELDS, TIMESTAMP_FIELDS

__all__ = ["JsonRejected", "normalise_record", "canonical_json", "TIME_KEYS"]

#: nginx variables and common spellings -> ECS field ("_request"/"_traceparent" are split).
ALIASES: dict[str, str] = {
    "remote_addr": "source.ip", "client_ip": "source.ip", "clientip": "source.ip",
    "remote_user": "user.name", "user_id": "user.id",
    "request": "_request", "request_method": "http.request.method",
    "request_uri": "url.original", "uri": "url.path", "args": "url.query",
    "query_string": "url.query", "server_protocol": "http.version",
    "status": "http.response.status_code", "body_bytes_sent": "http.response.body.bytes",
    "http_referer": "http.request.referrer", "referer": "http.request.referrer",
    "referrer": "http.request.referrer", "http_user_agent": "user_agent.original",
    "user_agent": "user_agent.original", "request_time": "_request_time",
    "host": "url.domain", "http_host": "url.domain", "server_name": "url.domain",
    "service": "service.name", "service_name": "service.name",
    "upstream_name": "service.name", "proxy_host": "service.name",
    "http_x_request_id": "trace.id", "request_id": "trace.id", "trace_id": "trace.id",
    "traceparent": "_traceparent", "http_traceparent": "_traceparent",
    "seller_id": "marketplace.seller_id", "order_id": "marketplace.order_id",
}  # fmt: skip

#: Keys tried for the event time, best first.
TIME_KEYS = ("@timestamp", "timestamp", "time_iso8601", "time", "ts", "time_local", "msec")
_OURS = {"event.id", "event.dataset", "event.ingested", "log.file.path", "log.file.line"}
_SECRET_KEY = re.compile(
    r"(?i)(?:.*[_.-])?(?:access_token|refresh_token|id_token|client_secret|api_?key|apikey|"
    r"token|password|passwd|pwd|secret|session(?:_?id)?|sessid|sig|signature|authorization)"
)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


class JsonRejected(ValueError):
    """A JSON record cannot become an event; the message says why."""


def canonical_json(value: object) -> str:
    """Stable JSON text of a decoded value (the 'raw line' of a record sent over HTTP)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def normalise_record(
    record: object,
    *,
    raw: str,
    source: str,
    line_no: int,
    pseudonymiser: Pseudonymiser,
    field_map: dict[str, str] | None = None,
    original: str | None = None,
    scan: bool = True,
) -> dict[str, Any]:
    """Turn one decoded JSON record into an ECS row (field name -> Python value).

    ``original`` is the already pseudonymised raw text, if the caller has it. ``scan`` False
    (the raw text cannot hold personal data, per :func:`collectors.privacy.candidate_mask`)
    skips scanning string values; secret-named keys and PAN-like numbers are still replaced.
    """
    if not isinstance(record, dict):
        raise JsonRejected(f"expected a JSON object, got {_json_type(record)}")
    flat = {k: _private(k, v, pseudonymiser, scan) for k, v in _flatten(record).items()}
    row, labels, times = _map_keys(flat, field_map or {})
    row["@timestamp"] = _event_time(times)
    for name in list(row):
        row[name] = _coerce(name, row[name])
    _request_parts(row)
    row["event.id"] = event_id(source, line_no, raw)
    row["log.file.line"] = line_no
    given = row.get("event.original")
    if not isinstance(given, str):
        given = original if original is not None else pseudonymiser.text(raw)
    row["event.original"] = given
    if labels:
        row["labels"] = canonical_json(labels)
    return row


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.fullmatch(key.rsplit(".", 1)[-1]) is not None


def _private(key: str, value: Any, p: Pseudonymiser, scan: bool = True) -> Any:
    """Pseudonymise one value: secrets whole, PAN-like numbers, personal data inside strings."""
    if isinstance(value, bool) or value is None:
        return value
    if _secret_key(key) and value != "":
        return p.token("secret", value if isinstance(value, str) else canonical_json(value))
    if isinstance(value, int) and 13 <= len(str(abs(value))) <= 19 and luhn_valid(str(abs(value))):
        return p.token("card", str(abs(value)))
    if not scan:
        return value
    if isinstance(value, str):
        return p.text(value)
    if isinstance(value, list | dict):
        return json.loads(p.text(canonical_json(value)))
    return value


def _map_keys(
    flat: dict[str, Any], field_map: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    row: dict[str, Any] = {}
    labels: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for key, value in flat.items():
        target = field_map.get(key) or (key if key in EVENT_FIELDS else ALIASES.get(key))
        if target == "@timestamp" or (target is None and key in TIME_KEYS):
            times.setdefault(key, value)
        elif target in _OURS:
            continue
        elif target is None:
            labels[key[7:] if key.startswith("labels.") else key] = value
        elif isinstance(value, str) and value in ("", "-") or value is None:
            continue
        elif target in row:
            labels[key] = value
        else:
            row[target] = value
    return row, labels, times


def _event_time(times: dict[str, Any]) -> datetime:
    if not times:
        raise JsonRejected(f"missing timestamp: expected one of {', '.join(TIME_KEYS)}")
    ordered = sorted(times, key=lambda k: TIME_KEYS.index(k) if k in TIME_KEYS else -1)
    key = ordered[0]
    try:
        return parse_time(times[key])
    except (ValueError, OverflowError, OSError):
        raise JsonRejected(f"invalid timestamp in {key!r}: {str(times[key])[:60]!r}") from None


def parse_time(value: Any) -> datetime:
    """Parse ISO 8601, Apache/nginx ``time_local`` or epoch (s/ms/µs/ns) into aware UTC."""
    if isinstance(value, str) and re.fullmatch(r"\d{9,19}(?:\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        scale = next(
            s for s, limit in ((1e9, 1e17), (1e6, 1e14), (1e3, 1e11), (1, 0)) if abs(value) >= limit
        )
        return datetime.fromtimestamp(value / scale, tz=UTC)
    if not isinstance(value, str):
        raise ValueError("not a string or number")
    text = value.strip()
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        ts = datetime.strptime(text, CLF_TIME)
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)


def _coerce(name: str, value: Any) -> Any:
    """Convert a value to the Python type of its schema column or reject the record."""
    typ = EVENT_FIELDS.get(name)
    if typ is None or name.startswith("_"):
        return value
    try:
        if name in TIMESTAMP_FIELDS:
            return value if isinstance(value, datetime) else parse_time(value)
        if pa.types.is_integer(typ):
            return _as_int(value)
        if pa.types.is_floating(typ):
            return float(value)
    except (ValueError, TypeError, OverflowError, OSError):
        raise JsonRejected(f"field {name!r}: expected {typ}, got {str(value)[:60]!r}") from None
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return canonical_json(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    if isinstance(value, str) and not re.fullmatch(r"[+-]?\d{1,19}", value.strip()):
        raise ValueError("not an integer")
    result = int(value)
    if abs(result) >= 2**63:
        raise OverflowError("out of range")
    return result


def _request_parts(row: dict[str, Any]) -> None:
    request = row.pop("_request", None)
    if request is not None:
        method, target, version = split_request(str(request))
        row.setdefault("http.request.method", method)
        row.setdefault("url.original", target)
        row.setdefault("http.version", version)
    seconds = row.pop("_request_time", None)
    if seconds is not None and "event.duration" not in row:
        try:
            row["event.duration"] = round(float(seconds) * 1e9)
        except (TypeError, ValueError, OverflowError):
            raise JsonRejected(
                f"field 'request_time': expected seconds, got {str(seconds)[:40]!r}"
            ) from None
    parent = row.pop("_traceparent", None)
    if parent is not None and "trace.id" not in row:
        match = _TRACEPARENT.fullmatch(str(parent).strip())
        row["trace.id"] = match.group(1) if match else str(parent)
    if isinstance(row.get("http.version"), str) and row["http.version"].startswith("HTTP/"):
        row["http.version"] = row["http.version"][5:]
    if "url.original" not in row and row.get("url.path"):
        query = row.get("url.query")
        row["url.original"] = row["url.path"] + (f"?{query}" if query else "")
    target = row.get("url.original") or row.get("url.full")
    for name, value in url_fields(target).items():
        row.setdefault(name, value)


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for typ, label in names.items():
        if isinstance(value, typ):
            return label
    return "a number" if isinstance(value, int | float) else type(value).__name__
