"""The access-log collector: formats, quirks, dead letters, ids, files and the fast path."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import collectors.accesslog as accesslog
from collectors import (
    ParsedBatch,
    Pseudonymiser,
    detect_format,
    parse_lines,
    parse_records,
    read_access_log,
)
from collectors._combined import ID_SQL
from collectors._ecs import event_id
from collectors._fastpath import parse_fast
from collectors.privacy import candidate_mask
from marketguard.errors import InputError
from marketguard.schema import EVENT_SCHEMA

LINE = (
    '203.0.113.9 - alice [17/May/2015:10:05:03 +0200] "GET /shop/Item.PHP?id=7&q=x HTTP/1.1" '
    '200 5123 "https://ref.example/" "Mozilla/5.0 (X11)"'
)
SRC = "test.log"


@pytest.fixture
def p() -> Pseudonymiser:
    return Pseudonymiser(b"test-key")


def rows(batch: ParsedBatch) -> list[dict]:
    return sorted(batch.events.to_pylist(), key=lambda r: r["log.file.line"])


def one(lines: list[str], p: Pseudonymiser, fmt: str = "combined", **kw) -> dict:
    batch = parse_lines(lines, fmt, source=SRC, pseudonymiser=p, **kw)  # type: ignore[arg-type]
    assert batch.dead_letters == [], batch.dead_letters
    (row,) = rows(batch)
    return row


def all_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the vectorised parser accept nothing, so every line takes the per-line path."""
    monkeypatch.setattr(accesslog, "parse_fast", lambda lines: (np.zeros(0, np.int64), {}))


def test_combined_line_gives_every_ecs_field(p: Pseudonymiser) -> None:
    row = one([LINE], p)
    assert row["@timestamp"] == datetime(2015, 5, 17, 8, 5, 3, tzinfo=UTC)
    assert row["event.dataset"] == "api.access"
    assert row["event.original"] == LINE
    assert row["log.file.path"] == SRC and row["log.file.line"] == 1
    assert row["source.ip"] == "203.0.113.9"
    assert row["user.name"] == "alice"
    assert row["http.request.method"] == "GET" and row["http.version"] == "1.1"
    assert row["url.original"] == "/shop/Item.PHP?id=7&q=x"
    assert row["url.path"] == "/shop/Item.PHP" and row["url.query"] == "id=7&q=x"
    assert row["url.extension"] == "php"
    assert row["http.response.status_code"] == 200
    assert row["http.response.body.bytes"] == 5123
    assert row["http.request.referrer"] == "https://ref.example/"
    assert row["user_agent.original"] == "Mozilla/5.0 (X11)"
    assert abs((datetime.now(UTC) - row["event.ingested"]).total_seconds()) < 60
    assert re.fullmatch(r"[0-9a-f]{32}", row["event.id"])


def test_events_have_exactly_the_event_schema(p: Pseudonymiser) -> None:
    batch = parse_lines([LINE, "garbage"], "combined", source=SRC, pseudonymiser=p)
    assert batch.events.schema == EVENT_SCHEMA
    empty = parse_lines([], "combined", source=SRC, pseudonymiser=p)
    assert empty.events.schema == EVENT_SCHEMA and empty.lines_read == 0


def test_dashes_are_null_and_dash_bytes_are_zero(p: Pseudonymiser) -> None:
    row = one(['1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "HEAD / HTTP/1.0" 304 - "-" "-"'], p)
    assert row["user.name"] is None and row["http.request.referrer"] is None
    assert row["user_agent.original"] is None
    assert row["http.response.body.bytes"] == 0
    assert row["url.query"] is None and row["url.extension"] is None


def test_common_format_and_trailing_field(p: Pseudonymiser) -> None:
    common = one(['1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 200 12'], p)
    assert common["http.response.body.bytes"] == 12 and common["user_agent.original"] is None
    trailing = one([LINE + " 0.005"], p)
    assert trailing["user_agent.original"] == "Mozilla/5.0 (X11)"


@pytest.mark.parametrize("slow", [False, True])
def test_quirks(p: Pseudonymiser, monkeypatch: pytest.MonkeyPatch, slow: bool) -> None:
    if slow:
        all_slow(monkeypatch)
    wrapped = one([f'"{LINE}"'], p)
    assert wrapped["source.ip"] == "203.0.113.9"
    assert wrapped["user_agent.original"] == "Mozilla/5.0 (X11)"
    assert wrapped["event.original"] == f'"{LINE}"'
    assert one([LINE + "\r\n"], p)["event.original"] == LINE
    escaped = one(
        [
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /?q=\\"x\\" HTTP/1.1" 200 1 "-" "a \\"b\\""'
        ],
        p,
    )
    assert (
        escaped["url.original"] == '/?q=\\"x\\"' and escaped["user_agent.original"] == 'a \\"b\\"'
    )
    spaced_user = one(['1.2.3.4 - John Doe [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1'], p)
    assert spaced_user["user.name"] == "John Doe"


@pytest.mark.parametrize("slow", [False, True])
def test_binary_request_is_kept_printable(
    p: Pseudonymiser, monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    if slow:
        all_slow(monkeypatch)
    row = one(['211.144.162.173 - - [05/Feb/2005:08:16:59 -0500] "\x04\x01" 501 1002 "-" "-"'], p)
    assert row["http.request.method"] is None and row["http.version"] is None
    assert row["url.original"] == "\\x04\\x01" and row["url.path"] is None
    assert row["http.response.status_code"] == 501


def test_proxy_and_connect_targets(p: Pseudonymiser) -> None:
    proxy = one(
        [
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET http://www.yahoo.com/x.html?a=1 HTTP/1.1" 404 1'
        ],
        p,
    )
    assert proxy["url.domain"] == "www.yahoo.com" and proxy["url.path"] == "/x.html"
    assert (
        proxy["url.full"] == "http://www.yahoo.com/x.html?a=1" and proxy["url.extension"] == "html"
    )
    connect = one(
        ['1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "CONNECT 1.3.3.7:1337 HTTP/1.0" 405 1'], p
    )
    assert connect["http.request.method"] == "CONNECT" and connect["url.domain"] == "1.3.3.7"
    assert connect["url.path"] is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1 200 1',
            "missing closing quote of request field",
        ),
        (
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 2x0 1',
            "expected a 3-digit status code",
        ),
        (
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 abc',
            "expected a byte count or '-'",
        ),
        ('1.2.3.4 - - [32/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1', "invalid timestamp"),
        (
            '1.2.3.4 - - 01/Jan/2024:00:00:00 +0000 "GET / HTTP/1.1" 200 1',
            "missing '[' opening the timestamp",
        ),
        ('{"remote_addr": "1.2.3.4"}', "looks like a JSON object"),
        ("", "empty line"),
        ("   ", "empty line"),
    ],
)
def test_bad_lines_are_dead_lettered_with_a_precise_reason(
    p: Pseudonymiser, line: str, reason: str
) -> None:
    batch = parse_lines([LINE, line, LINE], "combined", source=SRC, pseudonymiser=p, first_line=10)
    assert batch.lines_read == 3 and batch.events.num_rows == 2
    (dead,) = batch.dead_letters
    assert dead.source == SRC and dead.line == 11 and reason in dead.reason
    assert sorted(batch.events.column("log.file.line").to_pylist()) == [10, 12]


def test_dead_letter_raw_is_pseudonymised(p: Pseudonymiser) -> None:
    batch = parse_lines(
        ["broken jane@example.com 4111111111111111"], "combined", source=SRC, pseudonymiser=p
    )
    (dead,) = batch.dead_letters
    assert "jane@example.com" not in dead.raw and "4111111111111111" not in dead.raw
    assert "<email:" in dead.raw and "<card:" in dead.raw


def test_personal_data_never_reaches_any_field(p: Pseudonymiser) -> None:
    line = (
        "1.2.3.4 - jane@example.com [01/Jan/2024:00:00:00 +0000] "
        '"GET /u/jane@example.com?card=4111111111111111&token=s3cr3t HTTP/1.1" 200 1 '
        '"https://x/?phone=%2B4915112345678" "UA jane@example.com"'
    )
    row = one([line], p)
    text = json.dumps(row, default=str)
    for secret in ("jane@example.com", "4111111111111111", "s3cr3t", "4915112345678"):
        assert secret not in text
    assert row["source.ip"] == "1.2.3.4"
    assert row["user.name"] == p.token("email", "jane@example.com")


def test_event_id_is_deterministic_and_line_specific(p: Pseudonymiser) -> None:
    a = parse_lines([LINE, LINE], "combined", source=SRC, pseudonymiser=p)
    b = parse_lines([LINE, LINE], "combined", source=SRC, pseudonymiser=Pseudonymiser(b"other"))
    ids = [r["event.id"] for r in rows(a)]
    assert ids == [r["event.id"] for r in rows(b)]
    assert ids[0] != ids[1]
    assert ids[0] == event_id(SRC, 1, LINE)
    other_source = parse_lines([LINE], "combined", source="other.log", pseudonymiser=p)
    assert rows(other_source)[0]["event.id"] != ids[0]


def test_python_and_sql_event_ids_agree() -> None:
    import duckdb

    con = duckdb.connect()
    con.register("batch", pa.table({"line_no": pa.array([7], pa.int64()), "raw": ['é "x" \x04']}))
    ((sql_id,),) = con.sql(ID_SQL, params=["src"]).fetchall()
    assert sql_id == event_id("src", 7, 'é "x" \x04')


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_file_quirks_crlf_mixed_no_final_newline_invalid_utf8(
    tmp_path: Path, p: Pseudonymiser
) -> None:
    line2 = LINE.replace("alice", "bob").encode()
    line3 = LINE.replace("Mozilla/5.0", "Moz\xffilla").encode("latin-1")
    data = LINE.encode() + b"\r\n" + line2 + b"\n" + line3  # mixed endings, no final newline
    (batch,) = read_access_log(_write(tmp_path / "a.log", data), "combined", p)
    assert batch.lines_read == 3 and not batch.dead_letters
    got = rows(batch)
    assert [r["user.name"] for r in got] == ["alice", "bob", "alice"]
    assert all("\r" not in r["event.original"] for r in got)
    assert got[2]["user_agent.original"] == "Moz\\xffilla (X11)"


def test_empty_line_in_the_middle_vs_final_newline(tmp_path: Path, p: Pseudonymiser) -> None:
    path = _write(tmp_path / "b.log", f"{LINE}\n\n{LINE}\n".encode())
    (batch,) = read_access_log(path, "combined", p)
    assert batch.lines_read == 3 and batch.events.num_rows == 2
    assert [(d.line, d.reason) for d in batch.dead_letters] == [(2, "empty line")]


def test_out_of_order_timestamps_keep_their_own_time(p: Pseudonymiser) -> None:
    late = LINE.replace("10:05:03", "11:00:00")
    batch = parse_lines([late, LINE], "combined", source=SRC, pseudonymiser=p)
    times = [r["@timestamp"].hour for r in rows(batch)]
    assert times == [9, 8]


def test_batches_progress_gzip_and_numbering(tmp_path: Path, p: Pseudonymiser) -> None:
    lines = [LINE.replace("id=7", f"id={i}") for i in range(25)]
    plain = _write(tmp_path / "c.log", ("\n".join(lines) + "\n").encode())
    packed = _write(tmp_path / "c.log.gz", gzip.compress(plain.read_bytes()))
    seen: list[int] = []
    batches = list(read_access_log(plain, "auto", p, batch_lines=10, on_progress=seen.append))
    assert [b.lines_read for b in batches] == [10, 10, 5]
    numbers = [r["log.file.line"] for b in batches for r in rows(b)]
    assert numbers == list(range(1, 26))
    assert seen == sorted(seen) and seen[-1] == plain.stat().st_size
    gz = list(read_access_log(packed, "auto", p, batch_lines=10))
    assert [r["url.original"] for b in gz for r in rows(b)] == [
        r["url.original"] for b in batches for r in rows(b)
    ]


def test_unreadable_files_raise_input_error_with_path(tmp_path: Path, p: Pseudonymiser) -> None:
    with pytest.raises(InputError, match="missing.log"):
        read_access_log(tmp_path / "missing.log", "combined", p)
    with pytest.raises(InputError, match=str(tmp_path)):
        read_access_log(tmp_path, "combined", p)
    broken = _write(tmp_path / "broken.log.gz", gzip.compress(LINE.encode() * 50)[:-20])
    with pytest.raises(InputError, match="broken.log.gz"):
        list(read_access_log(broken, "combined", p))
    with pytest.raises(InputError, match="unknown log format"):
        read_access_log(_write(tmp_path / "ok.log", LINE.encode()), "apache", p)  # type: ignore[arg-type]


def test_detect_format() -> None:
    assert detect_format(["", LINE, f'"{LINE}"']) == "combined"
    nginx = json.dumps(
        {
            "time_local": "01/Jan/2024:00:00:00 +0000",
            "remote_addr": "1.2.3.4",
            "request": "GET / HTTP/1.1",
        }
    )
    assert detect_format([nginx, nginx]) == "nginx-json"
    assert (
        detect_format([json.dumps({"@timestamp": "2024-01-01T00:00:00Z", "source.ip": "1.2.3.4"})])
        == "jsonl"
    )
    with pytest.raises(InputError, match="cannot detect"):
        detect_format(["hello", "world"])


NGINX = {
    "time_iso8601": "2024-03-01T10:00:00+01:00", "remote_addr": "198.51.100.7", "remote_user": "-",
    "request": "POST /api/v1/orders?email=jane%40example.com HTTP/2.0", "status": "201",
    "body_bytes_sent": "512", "http_referer": "-", "http_user_agent": "curl/8", "request_time": "0.250",
    "service": "orders", "http_x_request_id": "abc123", "host": "shop.example", "upstream_addr": "10.0.0.5:8080",
}  # fmt: skip


def test_nginx_json_good_and_bad(p: Pseudonymiser) -> None:
    bad_status = dict(NGINX, status="OK")
    no_time = {k: v for k, v in NGINX.items() if k != "time_iso8601"}
    lines = [json.dumps(NGINX), "{not json", json.dumps(bad_status), json.dumps(no_time), "[1, 2]"]
    batch = parse_lines(lines, "nginx-json", source=SRC, pseudonymiser=p)
    assert batch.lines_read == 5 and batch.events.schema == EVENT_SCHEMA
    (row,) = rows(batch)
    assert row["@timestamp"] == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert row["http.request.method"] == "POST" and row["http.version"] == "2.0"
    assert row["url.path"] == "/api/v1/orders" and "jane" not in row["url.query"]
    assert row["http.response.status_code"] == 201 and row["http.response.body.bytes"] == 512
    assert row["event.duration"] == 250_000_000 and row["service.name"] == "orders"
    assert row["trace.id"] == "abc123" and row["url.domain"] == "shop.example"
    assert row["user.name"] is None and row["http.request.referrer"] is None
    assert json.loads(row["labels"]) == {"upstream_addr": "10.0.0.5:8080"}
    assert "jane" not in row["event.original"]
    reasons = {d.line: d.reason for d in batch.dead_letters}
    assert reasons[2].startswith("invalid JSON")
    assert "field 'http.response.status_code'" in reasons[3]
    assert reasons[4].startswith("missing timestamp")
    assert reasons[5] == "expected a JSON object, got an array"


def test_json_escapes_cannot_hide_personal_data(p: Pseudonymiser) -> None:
    line = '{"time": "2024-03-01T10:00:00Z", "user.id": "jane\\u0040example.com"}'
    assert not candidate_mask(pa.array([line]))[0]  # the raw text shows no '@'
    row = one([line], p, "jsonl")
    assert row["user.id"] == p.token("email", "jane@example.com")


def test_nginx_split_request_and_msec(p: Pseudonymiser) -> None:
    rec = {k: v for k, v in NGINX.items() if k not in ("request", "time_iso8601")}
    rec.update(
        msec="1709287200.125",
        request_method="GET",
        request_uri="/x.css?v=1",
        server_protocol="HTTP/1.1",
    )
    row = one([json.dumps(rec)], p, "nginx-json")
    assert row["@timestamp"] == datetime(2024, 3, 1, 10, 0, 0, 125000, tzinfo=UTC)
    assert row["http.request.method"] == "GET" and row["http.version"] == "1.1"
    assert (row["url.path"], row["url.query"], row["url.extension"]) == ("/x.css", "v=1", "css")


def test_nginx_time_local(p: Pseudonymiser) -> None:
    rec = dict(NGINX, time_local="01/Mar/2024:10:00:00 +0100")
    del rec["time_iso8601"]
    assert one([json.dumps(rec)], p, "nginx-json")["@timestamp"].hour == 9


def test_jsonl_flat_nested_and_field_map(p: Pseudonymiser) -> None:
    flat = {
        "@timestamp": "2024-03-01T10:00:00Z", "source.ip": "192.0.2.1", "url.original": "/a/b.JSON?x=1",
        "http.response.status_code": 200, "marketplace.seller_id": "S-1", "marketplace.payment.amount": "12.5",
        "marketplace.payment.card_fingerprint": "4111 1111 1111 1111", "user.id": "jane@example.com",
        "source.as.number": 64500, "client.geo.country_iso_code": "DE", "custom": {"k": 1},
        "marketplace.order_id": "1234567812345678", "trace.id": "t-1", "service.name": "checkout",
    }  # fmt: skip
    row = one([json.dumps(flat)], p, "jsonl")
    assert (
        row["url.path"] == "/a/b.JSON"
        and row["url.extension"] == "json"
        and row["url.query"] == "x=1"
    )
    assert row["marketplace.seller_id"] == "S-1" and row["marketplace.payment.amount"] == 12.5
    assert row["marketplace.payment.card_fingerprint"] == p.token("card", "4111111111111111")
    assert row["user.id"] == p.token("email", "jane@example.com")
    assert row["source.as.number"] == 64500 and row["client.geo.country_iso_code"] == "DE"
    assert row["marketplace.order_id"] == "1234567812345678"  # not Luhn-valid: an id, kept
    assert (row["trace.id"], row["service.name"]) == ("t-1", "checkout")
    assert json.loads(row["labels"]) == {"custom.k": 1}
    nested = {
        "@timestamp": 1709287200,
        "source": {"ip": "192.0.2.2"},
        "http": {"request": {"method": "GET"}},
    }
    row = one([json.dumps(nested)], p, "jsonl")
    assert row["source.ip"] == "192.0.2.2" and row["http.request.method"] == "GET"
    assert row["@timestamp"] == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    mapped = {"when": "2024-03-01T10:00:00Z", "client": "192.0.2.3", "seller": "S-9", "extra": "x"}
    field_map = {"when": "@timestamp", "client": "source.ip", "seller": "marketplace.seller_id"}
    row = one([json.dumps(mapped)], p, "jsonl", field_map=field_map)
    assert row["source.ip"] == "192.0.2.3" and row["marketplace.seller_id"] == "S-9"
    assert json.loads(row["labels"]) == {"extra": "x"}


def test_parse_records_from_http_body(p: Pseudonymiser) -> None:
    good = {"@timestamp": "2024-03-01T10:00:00Z", "source.ip": "192.0.2.1", "password": "hunter2"}
    batch = parse_records(
        [good, "not an object", {"source.ip": "192.0.2.9"}, 42], source="http", pseudonymiser=p
    )
    assert batch.lines_read == 4 and batch.events.num_rows == 1
    assert [(d.line, d.reason) for d in batch.dead_letters] == [
        (2, "expected a JSON object, got a string"),
        (
            3,
            "missing timestamp: expected one of @timestamp, timestamp, time_iso8601, time, ts, time_local, msec",
        ),
        (4, "expected a JSON object, got a number"),
    ]
    row = rows(batch)[0]
    assert "hunter2" not in row["event.original"] and "hunter2" not in (row["labels"] or "")
    again = parse_records([good], source="http", pseudonymiser=p)
    assert rows(again)[0]["event.id"] == row["event.id"]


def test_fast_path_agrees_with_line_scanner_on_a_large_batch(
    p: Pseudonymiser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """> 1 MiB, so the fast path reads the buffer in place and hands the last line over."""
    base = [LINE, f'"{LINE}"', LINE.replace("alice", "-").replace('"https://ref.example/"', '"-"'),
            '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a.tar.GZ HTTP/1.0" 304 -',
            '1.2.3.4 - - [01/Jan/2024:00:00:00 -0000] "OPTIONS * HTTP/1.1" 200 0 "" ""']  # fmt: skip
    lines = [line.replace("Item", f"Item{i}") for i in range(1500) for line in base]
    accepted, _ = parse_fast(pa.array(lines))
    assert len(accepted) == len(lines) * 4 // 5  # all but the 'OPTIONS *' (not origin-form) lines
    fast = parse_lines(lines, "combined", source=SRC, pseudonymiser=p)
    all_slow(monkeypatch)
    slow = parse_lines(lines, "combined", source=SRC, pseudonymiser=p)
    drop = ["event.ingested"]
    assert rows(ParsedBatch(fast.events.drop(drop), [], 0)) == rows(
        ParsedBatch(slow.events.drop(drop), [], 0)
    )
    assert fast.dead_letters == slow.dead_letters == []
