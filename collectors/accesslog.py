r"""The API access-log collector: files and HTTP bodies in, ECS ``api.access`` events out.

Three formats are understood (see :data:`marketguard.types.LogFormat`): Apache/nginx
*combined* (and *common*) lines, nginx JSON ``log_format`` objects, and ECS-shaped JSON lines.
Every input line becomes either one event or one :class:`~marketguard.schema.DeadLetter`
saying where and why; nothing is dropped silently. Personal data is pseudonymised before an
event or a dead letter is built (see :mod:`collectors.privacy`).

Decisions (each has a test):

* Line accounting: ``\n`` ends a line (a ``\r`` before it is dropped, so CRLF and mixed
  endings read alike); the empty remainder after a file's final newline is not a line, and a
  last line without a newline is one. Any real line that is empty or whitespace-only —
  including one in the middle of a file — is dead-lettered as ``"empty line"``.
  ``lines_read`` always equals events plus dead letters.
* A line wrapped in one extra pair of double quotes is parsed from its inner text when that
  parses; ``event.original`` keeps the line as read.
* A request field that is not ``METHOD TARGET HTTP/x`` (e.g. the raw SOCKS4 bytes 0x04 0x01 a
  proxy scanner sends) does not reject the line: the rest of it is well-formed and the probe
  is exactly what detections look for. The event has no method or version, and
  ``url.original`` holds the request with control bytes escaped as ``\xNN`` — the form
  Apache >= 2.0.46 itself logs. Field text is otherwise kept as logged (``\"`` stays).
* ``%b`` logs ``-`` for an empty body, so ``http.response.body.bytes`` is 0 for ``-``;
  ``-`` in user, referrer or user agent is null.
* A last (user-agent) field that lost its closing quote — a line cut short — keeps its text
  and says so in ``labels`` (``log.parse_warning``).
* Bytes that are not UTF-8 are decoded as ``\xNN`` escapes; no line makes the reader fail.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors._combined import CombinedRejected, event_ids, looks_combined, scan_line
from collectors._ecs import finish_table, rows_to_table
from collectors._fastpath import parse_fast
from collectors._jsonlog import JsonRejected, canonical_json, normalise_record
from collectors._lines import LineBatch, iter_line_batches, peek_lines
from collectors.privacy import Pseudonymiser, candidate_mask
from marketguard.errors import InputError
from marketguard.schema import DeadLetter, empty_events
from marketguard.types import LogFormat

__all__ = [
    "ParsedBatch",
    "detect_format",
    "read_access_log",
    "parse_lines",
    "parse_records",
    "FORMATS",
]

log = logging.getLogger(__name__)

_CHUNK = 50_000  # most lines per parallel work unit
_WORKERS = 2

_NGINX_KEYS = frozenset(
    {"remote_addr", "time_local", "time_iso8601", "request", "body_bytes_sent", "request_uri",
     "http_user_agent", "http_referer", "request_time", "remote_user"}
)  # fmt: skip


@dataclass
class ParsedBatch:
    """The result of parsing consecutive input lines or records."""

    events: pa.Table  # exactly marketguard.schema.EVENT_SCHEMA (column order and types)
    dead_letters: list[DeadLetter]
    lines_read: int  # input lines/items consumed by this batch (parsed + dead-lettered)


class _Parser(Protocol):
    def __call__(
        self, lines: pa.StringArray, *, source: str, first_line: int,
        pseudonymiser: Pseudonymiser, field_map: dict[str, str] | None,
        con: duckdb.DuckDBPyConnection,
    ) -> ParsedBatch: ...  # fmt: skip


def detect_format(sample: list[str]) -> LogFormat:
    """Guess the format of a log from its first lines (majority vote over non-empty lines).

    Raises :class:`InputError` when no line of the sample looks like any known format.
    """
    votes: dict[LogFormat, int] = {"combined": 0, "nginx-json": 0, "jsonl": 0}
    for line in sample:
        text = line.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                votes["nginx-json" if len(_NGINX_KEYS & obj.keys()) >= 2 else "jsonl"] += 1
        elif text and looks_combined(text):
            votes["combined"] += 1
    best = max(votes, key=lambda k: votes[k])
    if votes[best] == 0:
        raise InputError(
            "cannot detect the log format: no sample line is a JSON object or a "
            "combined/common log line; pass the format explicitly"
        )
    return best


def read_access_log(
    path: str | Path,
    fmt: LogFormat | Literal["auto"],
    pseudonymiser: Pseudonymiser,
    *,
    batch_lines: int = 200_000,
    field_map: dict[str, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[ParsedBatch]:
    """Read a plain or .gz log file in batches of at most ``batch_lines`` lines.

    ``on_progress(bytes_consumed_so_far_of_the_file)`` is called as each batch is delivered (for
    a progress bar; compressed bytes for .gz). Raises :class:`InputError` (with path and reason)
    if the file can't be opened or read; the file is opened — and for ``"auto"`` its format
    detected — before this returns, so a missing file fails at the call. ``field_map``
    (``{their_key: ecs_field}``) applies to the JSON formats only.
    """
    path = Path(path)
    source = str(path)
    head = peek_lines(path)
    if fmt == "auto":
        try:
            fmt = detect_format(head)
        except InputError as exc:
            raise InputError(exc.reason, source=source) from None
    parser = _parser(fmt, source)
    return _read(path, source, parser, pseudonymiser, batch_lines, field_map, on_progress)


def _read(
    path: Path, source: str, parser: _Parser, pseudonymiser: Pseudonymiser,
    batch_lines: int, field_map: dict[str, str] | None,
    on_progress: Callable[[int], None] | None,
) -> Iterator[ParsedBatch]:  # fmt: skip
    def work(lines: pa.StringArray, first_line: int) -> ParsedBatch:
        con = _engine()
        try:
            return parser(
                lines, source=source, first_line=first_line,
                pseudonymiser=pseudonymiser, field_map=field_map, con=con,
            )  # fmt: skip
        finally:
            con.close()

    # Chunks of a batch are parsed on two threads (NumPy, Arrow and DuckDB release the GIL)
    # while the next batch is being read: one chunk per worker, of at most _CHUNK lines.
    chunk = min(_CHUNK, max(1, -(-batch_lines // _WORKERS)))
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="accesslog") as pool:
        pending: deque[tuple[LineBatch, list[Future[ParsedBatch]]]] = deque()
        for lb in iter_line_batches(path, batch_lines):
            chunks = [
                pool.submit(work, lb.lines.slice(at, chunk), lb.first_line + at)
                for at in range(0, len(lb.lines), chunk)
            ]
            pending.append((lb, chunks))
            if len(pending) > 1:
                yield _merge(*pending.popleft(), on_progress)
        while pending:
            yield _merge(*pending.popleft(), on_progress)


def _merge(
    lb: LineBatch, chunks: list[Future[ParsedBatch]], on_progress: Callable[[int], None] | None
) -> ParsedBatch:
    parts = [future.result() for future in chunks]
    if on_progress is not None:
        on_progress(lb.bytes_consumed)
    events = pa.concat_tables([p.events for p in parts]) if parts else empty_events()
    dead = [d for p in parts for d in p.dead_letters]
    return ParsedBatch(events, dead, sum(p.lines_read for p in parts))


def parse_lines(
    lines: Sequence[str],
    fmt: LogFormat,
    *,
    source: str,
    pseudonymiser: Pseudonymiser,
    first_line: int = 1,
    field_map: dict[str, str] | None = None,
) -> ParsedBatch:
    """Parse lines already in memory (``lines[i]`` is line ``first_line + i`` of ``source``).

    A trailing ``\\r``/``\\n`` on an item is ignored.
    """
    parser = _parser(fmt, source)
    con = _engine()
    try:
        return parser(
            _to_arrow(lines), source=source, first_line=first_line,
            pseudonymiser=pseudonymiser, field_map=field_map, con=con,
        )  # fmt: skip
    finally:
        con.close()


def parse_records(
    records: Sequence[object],
    *,
    source: str,
    pseudonymiser: Pseudonymiser,
    first_line: int = 1,
    field_map: dict[str, str] | None = None,
) -> ParsedBatch:
    """Parse already-decoded JSON values (from an HTTP body) as access-log records.

    A record that isn't a JSON object, or lacks a usable timestamp, is dead-lettered with its
    index as ``line`` and a precise reason. Record ``i`` is numbered ``first_line + i``
    (1-based by default); its canonical JSON text stands in for the raw line (event id,
    ``event.original``, dead letter).
    """
    rows, dead = [], []
    for i, record in enumerate(records):
        number = first_line + i
        raw = canonical_json(record)
        try:
            rows.append(
                normalise_record(
                    record,
                    raw=raw,
                    source=source,
                    line_no=number,
                    pseudonymiser=pseudonymiser,
                    field_map=field_map,
                )  # fmt: skip
            )
        except JsonRejected as exc:
            dead.append(DeadLetter(source, number, str(exc), pseudonymiser.text(raw)))
        except Exception as exc:  # the hot path never raises: dead-letter and carry on
            dead.append(_internal_error(source, number, raw, exc, pseudonymiser))
    return ParsedBatch(_table(rows, source), dead, len(records))


def _parse_combined(
    lines: pa.StringArray, *, source: str, first_line: int, pseudonymiser: Pseudonymiser,
    field_map: dict[str, str] | None, con: duckdb.DuckDBPyConnection,
) -> ParsedBatch:  # fmt: skip
    n = len(lines)
    if n == 0:
        return ParsedBatch(empty_events(), [], 0)
    pseudo = pseudonymiser.column(lines)
    line_no = pa.array(np.arange(first_line, first_line + n, dtype=np.int64))
    try:
        rows, columns = parse_fast(pseudo)
    except Exception:  # a bug here must not lose lines: the per-line path takes them all
        log.exception("%s:%d: vectorised parser failed; parsing line by line", source, first_line)
        rows, columns = np.zeros(0, dtype=np.int64), {}
    pick = _picker(rows)
    columns["event.id"] = pick(event_ids(con, line_no, lines, source))
    columns["event.original"] = pick(pseudo)
    columns["log.file.line"] = pick(line_no)
    fast = finish_table(columns, len(rows), source=source)
    if len(rows) == n:
        return ParsedBatch(fast, [], n)
    rest = np.ones(n, dtype=bool)
    rest[rows] = False
    slow, dead = [], []
    for i in np.flatnonzero(rest).tolist():
        number, text = first_line + i, pseudo[i].as_py()
        try:
            slow.append(scan_line(text, source=source, line_no=number, raw=lines[i].as_py()))
            slow[-1]["event.original"], slow[-1]["log.file.line"] = text, number
        except CombinedRejected as exc:
            dead.append(DeadLetter(source, number, str(exc), text))
        except Exception as exc:  # the hot path never raises: dead-letter and carry on
            dead.append(_internal_error(source, number, text, exc, pseudonymiser))
    return ParsedBatch(pa.concat_tables([fast, _table(slow, source)]), dead, n)


def _picker(rows: np.ndarray) -> Callable[[pa.Array], pa.Array]:
    """Select ``rows`` from batch-long arrays; zero-copy when they are a prefix (the usual case)."""
    if len(rows) == 0 or rows[-1] == len(rows) - 1:
        return lambda arr: arr.slice(0, len(rows))
    taken = pa.array(rows)
    return lambda arr: arr.take(taken)


def _parse_json(
    lines: pa.StringArray, *, source: str, first_line: int, pseudonymiser: Pseudonymiser,
    field_map: dict[str, str] | None, con: duckdb.DuckDBPyConnection,
) -> ParsedBatch:  # fmt: skip
    rows, dead = [], []
    # JSON escapes (\u0040) can hide personal data from the pre-filter: scan those lines too.
    escaped = pc.fill_null(pc.match_substring(lines, "\\u"), False).to_numpy(zero_copy_only=False)
    scan = candidate_mask(lines) | escaped
    originals = pseudonymiser.column(lines).to_pylist()
    for i, line in enumerate(lines.to_pylist()):
        number = first_line + i
        try:
            if not line.strip():
                raise JsonRejected("empty line")
            record = _loads(line)
            rows.append(
                normalise_record(
                    record,
                    raw=line,
                    source=source,
                    line_no=number,
                    pseudonymiser=pseudonymiser,
                    field_map=field_map,
                    original=originals[i],
                    scan=bool(scan[i]),
                )  # fmt: skip
            )
        except JsonRejected as exc:
            dead.append(DeadLetter(source, number, str(exc), originals[i]))
        except Exception as exc:  # the hot path never raises: dead-letter and carry on
            dead.append(_internal_error(source, number, line, exc, pseudonymiser))
    return ParsedBatch(_table(rows, source), dead, len(lines))


def _loads(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise JsonRejected(f"invalid JSON: {exc}") from None


PARSERS: dict[str, _Parser] = {
    "combined": _parse_combined,
    "nginx-json": _parse_json,
    "jsonl": _parse_json,
}
FORMATS: tuple[str, ...] = tuple(PARSERS)


def _parser(fmt: str, source: str) -> _Parser:
    try:
        return PARSERS[fmt]
    except KeyError:
        valid = ", ".join([*FORMATS, "auto"])
        raise InputError(
            f"unknown log format {fmt!r}; expected one of {valid}", source=source
        ) from None


def _table(rows: list[dict[str, object]], source: str) -> pa.Table:
    return rows_to_table(rows, source=source) if rows else empty_events()


def _internal_error(
    source: str, number: int, text: str, exc: Exception, pseudonymiser: Pseudonymiser
) -> DeadLetter:
    log.warning("%s:%d: unexpected parser error", source, number, exc_info=True)
    raw = pseudonymiser.text(text)
    return DeadLetter(source, number, f"internal parser error: {type(exc).__name__}: {exc}", raw)


def _to_arrow(lines: Sequence[str]) -> pa.StringArray:
    items = [s.rstrip("\r\n") for s in lines]
    try:
        return pa.array(items, type=pa.string())
    except (pa.ArrowInvalid, UnicodeEncodeError):  # lone surrogates from a lenient decode
        fixed = [
            s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for s in items
        ]
        return pa.array(fixed, type=pa.string())


_ENGINE: duckdb.DuckDBPyConnection | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on a lazily created in-memory DuckDB (a compute engine, not the store)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = duckdb.connect(config={"threads": 1})  # parallel across chunks already
        cursor = _ENGINE.cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    return cursor
