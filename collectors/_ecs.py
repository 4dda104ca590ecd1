"""Shared helpers that turn parsed access-log fields into rows of the ECS event schema.

The combined-format fast path does the same work in SQL (see ``_combined.py``); these Python
versions serve the per-line fallback and the JSON formats, and a test checks both agree.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA

__all__ = [
    "DATASET",
    "event_id",
    "escape_control",
    "split_request",
    "url_fields",
    "rows_to_table",
    "finish_table",
    "constant_strings",
]

DATASET = "api.access"
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_EXTENSION = 15  # bytes; a longer "extension" is not one (and the fast path agrees)


def event_id(source: str, line: int, raw: str) -> str:
    """Deterministic event id: MD5 hex of source, line number and raw line (an id, not a MAC).

    Must stay identical to the SQL expression in ``_combined.py``.
    """
    data = f"{source}\x1f{line}\x1f{raw}".encode("utf-8", "surrogatepass")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def escape_control(s: str) -> str:
    r"""Escape control characters the way Apache >= 2.0.46 logs them (``\x04``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", s)


def split_request(request: str) -> tuple[str | None, str | None, str | None]:
    """Split a request line into (method, target, HTTP version without 'HTTP/').

    ``-`` (no request line) gives all None. Anything that is not ``METHOD TARGET [HTTP/x]``
    (a binary probe, a TLS handshake sent to a plain port) keeps the whole, printable-escaped
    request as target and no method, so detections still see it.
    """
    req = escape_control(request)
    if req in ("", "-"):
        return None, None, None
    parts = req.split(" ")
    if len(parts) >= 3 and parts[-1].startswith("HTTP/") and _METHOD.fullmatch(parts[0]):
        return parts[0], " ".join(parts[1:-1]), parts[-1][5:]
    if len(parts) == 2 and _METHOD.fullmatch(parts[0]) and parts[1][:1] in ("/", "*"):
        return parts[0], parts[1], None
    return None, req, None


def url_fields(target: str | None) -> dict[str, Any]:
    """ECS ``url.*`` fields of a request target (origin, absolute or authority form)."""
    if not target:
        return {}
    out: dict[str, Any] = {"url.original": target}
    if target.startswith("/"):
        path, sep, query = target.partition("?")
        out["url.path"] = path
        out["url.query"] = query or None
    elif re.match(r"(?i)[a-z][a-z0-9+.-]*://", target):
        try:
            parts = urlsplit(target)
            out["url.full"] = target
            out["url.domain"] = parts.hostname
            out["url.path"] = parts.path or None
            out["url.query"] = parts.query or None
        except ValueError:
            pass
    elif re.fullmatch(r"[A-Za-z0-9.-]+:\d{1,5}", target):  # CONNECT host:port
        out["url.domain"] = target.rsplit(":", 1)[0]
    out["url.extension"] = _extension(out.get("url.path"))
    return out


def _extension(path: str | None) -> str | None:
    if not path:
        return None
    segment = path.rsplit("/", 1)[-1]
    if "." not in segment:
        return None
    ext = segment.rsplit(".", 1)[1]
    return ext.lower() if 0 < len(ext.encode()) <= _MAX_EXTENSION else None


def constant_strings(value: str, n: int) -> pa.Array:
    """An n-row string array holding ``value`` in every row, built without Python objects."""
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)]
    )


def _constant_timestamp(ts: datetime, n: int) -> pa.Array:
    micros = int(ts.timestamp() * 1_000_000)
    values = np.full(n, micros, dtype=np.int64)
    return pa.Array.from_buffers(EVENT_FIELDS["@timestamp"], n, [None, pa.py_buffer(values)])


def rows_to_table(
    rows: list[dict[str, Any]], *, source: str, ingested: datetime | None = None
) -> pa.Table:
    """Build an EVENT_SCHEMA table from row dicts keyed by ECS field name (missing -> null)."""
    present = {name for row in rows for name in row}
    columns = {
        name: pa.array([row.get(name) for row in rows], type=typ)
        for name, typ in EVENT_FIELDS.items()
        if name in present
    }
    return finish_table(columns, len(rows), source=source, ingested=ingested)


def finish_table(
    columns: dict[str, pa.Array], n: int, *, source: str, ingested: datetime | None = None
) -> pa.Table:
    """Complete parsed columns with the constant fields and nulls, in EVENT_SCHEMA order."""
    now = ingested or datetime.now(UTC)
    constants = {
        "event.dataset": constant_strings(DATASET, n),
        "event.ingested": _constant_timestamp(now, n),
        "log.file.path": constant_strings(source, n),
    }
    arrays = []
    for name, typ in EVENT_FIELDS.items():
        col = columns.get(name)
        if col is None:
            col = constants.get(name)
        if col is None:
            col = pa.nulls(n, typ)
        elif col.type != typ:
            col = col.cast(typ)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
