"""The audit trail: hash chain, tamper detection on the real DuckDB file, signed export, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from marketguard.app.cli_audit import audit_app
from marketguard.cases.audit import GENESIS, AuditLog, entry_hash, open_audit, verify_bundle
from marketguard.errors import ConfigError
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32

# The lead registers `audit` on marketguard's CLI; here it hangs under a root of our own.
app = typer.Typer()
app.add_typer(audit_app, name="audit")


@app.callback()
def _root() -> None:
    """Test root."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "marketguard.duckdb"


def _fill(path: Path, n: int = 5) -> None:
    store = DuckDBStore(path)
    log = open_audit(store)
    for i in range(1, n + 1):
        log.append(f"key:user{i}", "ticket.status", f"ticket:T-{i}", {"to": "acknowledged", "n": i},
                   now=T0 + timedelta(minutes=i))
    store.close()


@pytest.fixture
def log(db: Path) -> Iterator[AuditLog]:
    _fill(db)
    store = DuckDBStore(db)
    yield open_audit(store)
    store.close()


def _sql(path: Path, statement: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(statement)
    con.close()


def _verify(path: Path) -> tuple[bool, int | None, str | None]:
    store = DuckDBStore(path)
    try:
        result = open_audit(store).verify()
    finally:
        store.close()
    return result.ok, result.first_broken_seq, result.reason


def test_entries_chain_from_genesis(log: AuditLog) -> None:
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    first = entries[0]
    assert first.hash == entry_hash(1, first.time, first.actor, first.action, first.object, first.details, GENESIS)
    result = log.verify()
    assert (result.ok, result.entries, result.last_hash) == (True, 5, entries[-1].hash)
    assert log.verify(2, 4).entries == 3 and log.verify(2, 4).ok
    assert [e.seq for e in log.entries(object="ticket:T-3")] == [3]


def test_details_round_trip_and_times_are_canonical(log: AuditLog) -> None:
    entry = log.append("system", "ticket.open", "ticket:T-9", {"due": T0, "tags": ("a", "b")}, now=T0)
    assert entry.details == {"due": T0.isoformat(), "tags": ["a", "b"]}
    assert log.entries(entry.seq)[0] == entry
    assert log.verify().ok


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'key:mallory' WHERE seq = 3",
    "UPDATE audit_log SET details = '{\"n\":3,\"to\":\"closed\"}' WHERE seq = 3",
    "UPDATE audit_log SET time = time + INTERVAL 1 SECOND WHERE seq = 3",
])
def test_editing_one_row_names_that_entry(db: Path, statement: str) -> None:
    _fill(db)
    assert _verify(db)[0]
    _sql(db, statement)
    ok, seq, reason = _verify(db)
    assert (ok, seq) == (False, 3)
    assert "entry 3" in (reason or "")


def test_rehashing_an_edited_row_still_breaks_the_next_link(db: Path) -> None:
    _fill(db)
    _sql(db, "UPDATE audit_log SET hash = repeat('a', 64) WHERE seq = 3")
    ok, seq, _ = _verify(db)
    assert (ok, seq) == (False, 3)


def test_deleting_a_row_names_the_missing_entry(db: Path) -> None:
    _fill(db)
    _sql(db, "DELETE FROM audit_log WHERE seq = 2")
    ok, seq, reason = _verify(db)
    assert (ok, seq) == (False, 2)
    assert "missing" in (reason or "")


def test_deleting_the_first_row_is_detected(db: Path) -> None:
    _fill(db)
    _sql(db, "DELETE FROM audit_log WHERE seq = 1")
    assert _verify(db)[:2] == (False, 1)


def test_appends_after_reopen_continue_the_chain(db: Path) -> None:
    _fill(db, 3)
    _fill(db, 2)
    store = DuckDBStore(db)
    try:
        log = open_audit(store)
        assert [e.seq for e in log.entries()] == [1, 2, 3, 4, 5]
        assert log.verify().ok
    finally:
        store.close()


def test_export_is_signed_and_tampering_is_detected(log: AuditLog) -> None:
    bundle = log.export(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), KEY)
    lines = bundle.splitlines()
    assert len(lines) == 4
    assert [json.loads(line)["seq"] for line in lines[:-1]] == [2, 3, 4]
    signature = json.loads(lines[-1])["signature"]
    assert (signature["alg"], signature["count"], signature["first_seq"], signature["last_seq"]) == ("HMAC-SHA256", 3, 2, 4)
    assert verify_bundle(bundle, KEY).ok
    assert not verify_bundle(bundle, b"other key").ok
    tampered = bundle.replace("key:user3", "key:mallory")
    assert "signature does not match" in (verify_bundle(tampered, KEY).reason or "")
    dropped = "\n".join([lines[0], lines[2], lines[3]]) + "\n"
    assert not verify_bundle(dropped, KEY).ok


def test_unknown_dialect_names_the_valid_ones() -> None:
    class Other:
        dialect = "nope"

    with pytest.raises(ConfigError, match="valid: duckdb"):
        open_audit(Other())  # type: ignore[arg-type]


def test_cli_verify_export_and_check_bundle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _fill(data / "marketguard.duckdb")
    runner = CliRunner(env={"MARKETGUARD_CONFIG": "/nonexistent"})
    ok = runner.invoke(app, ["audit", "verify", "--data-dir", str(data)])
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 entries" in ok.output
    out = tmp_path / "bundle.jsonl"
    exported = runner.invoke(app, ["audit", "export", "--from", "2025-03-01", "--to", "2025-03-02",
                                   "--out", str(out), "--data-dir", str(data)])
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == 6
    assert (data / "audit-export.key").stat().st_mode & 0o777 == 0o600
    checked = runner.invoke(app, ["audit", "check-bundle", str(out), "--data-dir", str(data)])
    assert checked.exit_code == 0 and "bundle valid: 5 entries" in checked.output
    out.write_text(out.read_text().replace("user2", "user9"))
    assert runner.invoke(app, ["audit", "check-bundle", str(out), "--data-dir", str(data)]).exit_code == 1
    _sql(data / "marketguard.duckdb", "UPDATE audit_log SET action = 'ticket.close' WHERE seq = 4")
    broken = runner.invoke(app, ["audit", "verify", "--data-dir", str(data)])
    assert broken.exit_code == 1
    assert "BROKEN at entry 4" in broken.output
