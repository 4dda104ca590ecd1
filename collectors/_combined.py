"""Apache/nginx *combined* and *common* log format: the precise per-line path.

Most lines are parsed by the vectorised structural parser in ``_fastpath.py``. The lines it does
not accept — escaped quotes, a user name with spaces, a binary or non-origin-form request, a
quote-wrapped line of unusual shape — come here: :func:`scan_line`, a small hand-written
scanner, either parses them into the same fields or says exactly what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from collectors._ecs import event_id, split_request, url_fields

__all__ = ["CLF_TIME", "CombinedRejected", "event_ids", "looks_combined", "scan_line"]

CLF_TIME = "%d/%b/%Y:%H:%M:%S %z"

#: Event ids for a batch relation ``batch(line_no BIGINT, raw VARCHAR)``; $1 = source.
#: Must stay identical to :func:`collectors._ecs.event_id`.
ID_SQL = "SELECT md5($1 || chr(31) || line_no::VARCHAR || chr(31) || raw) AS id FROM batch"


def event_ids(
    con: duckdb.DuckDBPyConnection, line_no: pa.Array, raw: pa.Array, source: str
) -> pa.Array:
    """Deterministic event ids for a whole batch, computed in parallel by DuckDB."""
    con.register("batch", pa.table({"line_no": line_no, "raw": raw}))
    try:
        return con.sql(ID_SQL, params=[source]).to_arrow_table().column("id").combine_chunks()
    finally:
        con.unregister("batch")


class CombinedRejected(ValueError):
    """A line is not in combined/common format; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class _Fields:
    host: str
    user: str
    time: datetime
    request: str
    status: int
    nbytes: int
    referrer: str | None
    agent: str | None
    warning: str | None = None


def scan_line(line: str, *, source: str, line_no: int, raw: str) -> dict[str, Any]:
    """Parse one combined/common line (optionally wrapped in quotes) into ECS fields.

    Raises :class:`CombinedRejected` with a precise reason when the line does not parse.
    """
    return _to_ecs(_fields(line), source=source, line_no=line_no, raw=raw)


def looks_combined(line: str) -> bool:
    """True if the line (or its text inside one pair of outer quotes) is a combined/common line."""
    try:
        _fields(line)
    except CombinedRejected:
        return False
    return True


def _fields(line: str) -> _Fields:
    if not line.strip():
        raise CombinedRejected("empty line")
    if line.lstrip().startswith("{"):
        raise CombinedRejected("expected combined log format, got what looks like a JSON object")
    wrapped = len(line) >= 2 and line[0] == '"' and line[-1] == '"'
    try:
        fields = _scan(line[1:-1] if wrapped else line)
    except CombinedRejected as first:
        if not wrapped:
            raise CombinedRejected(f"expected combined log format: {first}") from None
        try:  # a line that merely starts and ends with a quote, not a wrapped one
            fields = _scan(line)
        except CombinedRejected:
            msg = f"expected combined log format (inside outer quotes): {first}"
            raise CombinedRejected(msg) from None
    return fields


def _to_ecs(f: _Fields, *, source: str, line_no: int, raw: str) -> dict[str, Any]:
    method, target, version = split_request(f.request)
    row: dict[str, Any] = {
        "@timestamp": f.time.astimezone(UTC),
        "event.id": event_id(source, line_no, raw),
        "source.ip": f.host,
        "user.name": None if f.user == "-" else f.user,
        "user_agent.original": f.agent,
        "http.request.method": method,
        "http.request.referrer": f.referrer,
        "http.version": version,
        "http.response.status_code": f.status,
        "http.response.body.bytes": f.nbytes,
    }
    row.update(url_fields(target))
    if f.warning:
        row["labels"] = json.dumps({"log.parse_warning": f.warning})
    return row


def _scan(s: str) -> _Fields:
    host, pos = _word(s, 0, "client address (%h)")
    _ident, pos = _word(s, pos, "identity (%l)")
    open_ts = s.find(" [", pos - 1)
    if open_ts < 0:
        raise CombinedRejected("missing '[' opening the timestamp")
    user = s[pos:open_ts] if open_ts >= pos else ""
    if not user:
        raise CombinedRejected("missing user field (%u) before the timestamp")
    close_ts = s.find("]", open_ts)
    if close_ts < 0:
        raise CombinedRejected("missing ']' closing the timestamp")
    time = _time(s[open_ts + 2 : close_ts])
    request, pos = _quoted(s, close_ts + 1, "request")
    status, pos = _number(s, pos, "status code")
    nbytes, pos = _number(s, pos, "byte count")
    referrer = agent = warning = None
    if pos < len(s) and s.startswith(' "', pos):
        ref, pos = _quoted(s, pos, "referrer")
        try:
            ua, pos = _quoted(s, pos, "user-agent")
        except CombinedRejected:
            if not s.startswith(' "', pos) or s.find('"', pos + 2) >= 0:
                raise
            # The last field lost its closing quote (a line cut short): keep what is there.
            ua, pos, warning = s[pos + 2 :], len(s), "user-agent field not closed (truncated line?)"
        referrer, agent = (None if ref == "-" else ref), (None if ua == "-" else ua)
    if pos < len(s) and s[pos] != " ":
        raise CombinedRejected(f"unexpected text {s[pos : pos + 20]!r} after the last field")
    return _Fields(host, user, time, request, status, nbytes, referrer, agent, warning)


def _word(s: str, pos: int, what: str) -> tuple[str, int]:
    end = s.find(" ", pos)
    if end <= pos:
        raise CombinedRejected(f"missing {what}")
    return s[pos:end], end + 1


def _time(text: str) -> datetime:
    try:
        return datetime.strptime(text, CLF_TIME)
    except ValueError:
        raise CombinedRejected(
            f"invalid timestamp {text[:40]!r}: expected dd/Mon/yyyy:HH:MM:SS +hhmm"
        ) from None


def _quoted(s: str, pos: int, what: str) -> tuple[str, int]:
    """Read ' "…"' at pos (backslash escapes allowed); return the text and the index after it."""
    if not s.startswith(' "', pos):
        raise CombinedRejected(f"expected ' \"' opening the {what} field at column {pos + 1}")
    i = pos + 2
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return s[pos + 2 : i], i + 1
        i += 1
    raise CombinedRejected(f"missing closing quote of {what} field")


def _number(s: str, pos: int, what: str) -> tuple[int, int]:
    if not s.startswith(" ", pos):
        raise CombinedRejected(f"expected a space before the {what} at column {pos + 1}")
    end = s.find(" ", pos + 1)
    end = len(s) if end < 0 else end
    tok = s[pos + 1 : end]
    if what == "status code":
        if len(tok) != 3 or not tok.isascii() or not tok.isdigit():
            raise CombinedRejected(f"expected a 3-digit status code, got {tok[:20]!r}")
        return int(tok), end
    if tok == "-":
        return 0, end
    if not tok.isascii() or not tok.isdigit() or len(tok) > 19 or int(tok) >= 2**63:
        raise CombinedRejected(f"expected a byte count or '-', got {tok[:20]!r}")
    return int(tok), end
