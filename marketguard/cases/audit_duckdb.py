"""The audit trail in the ``audit_log`` table of the store's DuckDB file.

Appends hold the store's writer lock, read the last hash and insert the next entry, so one
process has one writer and ``seq`` is gap-free. Sibling DuckDB modules (tickets) append
inside their own transaction with :meth:`DuckDBAuditLog.append_with`, so a change and its
audit entry are written together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from marketguard.cases.audit import (
    GENESIS,
    AuditEntry,
    AuditError,
    VerifyResult,
    canonical_json,
    entry_hash,
    sign_bundle,
    verify_chain,
)
from marketguard.errors import StoreError
from marketguard.store.duckdb import DuckDBStore

__all__ = ["DuckDBAuditLog"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_log (seq BIGINT PRIMARY KEY, time TIMESTAMPTZ, actor VARCHAR,"
    " action VARCHAR, object VARCHAR, details VARCHAR, prev_hash VARCHAR, hash VARCHAR)"
)
_COLS = "seq, time, actor, action, object, details, prev_hash, hash"
_BATCH = 10_000


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, time, actor, action, obj, details, prev, digest = row
    try:
        parsed = json.loads(details) if details is not None else None
    except ValueError:
        parsed = {"_unreadable": details}
    return AuditEntry(seq, time.astimezone(UTC), actor, action, obj, parsed, prev, digest)


class DuckDBAuditLog:
    """:class:`~marketguard.cases.audit.AuditLog` in the store's DuckDB file."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        with store.lock:
            cur = store.cursor()
            try:
                cur.execute(_SCHEMA).fetchall()
            finally:
                cur.close()

    # -- writes -----------------------------------------------------------------------------------
    def append(self, actor: str, action: str, object: str, details: Mapping[str, Any] | None = None,
               *, now: datetime | None = None) -> AuditEntry:
        """Append one entry chained to the last (its own transaction)."""
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.execute("BEGIN TRANSACTION").fetchall()
                entry = self.append_with(cur, actor, action, object, details, now=now)
                cur.execute("COMMIT").fetchall()
            except duckdb.Error as exc:
                cur.execute("ROLLBACK").fetchall()
                raise StoreError(f"audit append failed: {exc}") from exc
            finally:
                cur.close()
        return entry

    def append_with(self, cur: duckdb.DuckDBPyConnection, actor: str, action: str, object: str,
                    details: Mapping[str, Any] | None = None, *, now: datetime | None = None) -> AuditEntry:
        """Append inside the caller's transaction on ``cur``; the caller holds the store lock."""
        clean: dict[str, Any] = json.loads(canonical_json(dict(details or {})))
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        last = cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
        seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
        digest = entry_hash(seq, moment, actor, action, object, clean, prev)
        cur.execute(
            f"INSERT INTO audit_log ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, moment, actor, action, object, canonical_json(clean), prev, digest],
        ).fetchall()
        return AuditEntry(seq, moment, actor, action, object, clean, prev, digest)

    # -- reads ------------------------------------------------------------------------------------
    def _read(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._store.read(sql, params, "audit query")

    def entries(self, from_seq: int | None = None, to_seq: int | None = None, *, object: str | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        """Entries in seq order, bounded (inclusive) and optionally for one object."""
        where, params = ["seq >= ?", "seq <= ?"], [from_seq or 1, to_seq if to_seq is not None else 1 << 62]
        if object is not None:
            where.append("object = ?")
            params.append(object)
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self._read(f"SELECT {_COLS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq{tail}", params)
        return [_entry(r) for r in rows]

    def verify(self, from_seq: int | None = None, to_seq: int | None = None) -> VerifyResult:
        """Recompute hashes and links over the range, in batches; name the first broken entry."""
        start = from_seq or 1
        if to_seq is not None and to_seq < start:
            raise AuditError(f"empty range: from_seq {start} > to_seq {to_seq}")
        prev: str | None = GENESIS if start == 1 else None
        if start > 1:
            before = self._read("SELECT hash FROM audit_log WHERE seq = ?", [start - 1])
            prev = before[0][0] if before else None
        total, expect = 0, start
        while True:
            hi = expect + _BATCH - 1 if to_seq is None else min(to_seq, expect + _BATCH - 1)
            batch = self.entries(expect, hi)
            gap = self._gap_after(expect, hi) if not batch else None
            if gap is not None:
                return VerifyResult(False, total, expect, f"entry {expect} is missing (next stored entry is {gap})")
            result = verify_chain(batch, expect_seq=expect, expect_prev=prev)
            total += result.entries if not result.ok else len(batch)
            if not result.ok:
                return VerifyResult(False, total, result.first_broken_seq, result.reason)
            if not batch or (to_seq is not None and hi >= to_seq):
                return VerifyResult(True, total, last_hash=prev if not batch else result.last_hash)
            prev, expect = result.last_hash, batch[-1].seq + 1

    def _gap_after(self, expect: int, hi: int) -> int | None:
        """The next stored seq after a missing range, or None when the log simply ends."""
        rows = self._read("SELECT min(seq) FROM audit_log WHERE seq > ?", [hi])
        return rows[0][0] if rows and rows[0][0] is not None else None

    def export(self, from_time: datetime, to_time: datetime, key: bytes) -> str:
        """Signed JSONL bundle of the entries with ``from_time <= time <= to_time``."""
        if to_time < from_time:
            raise AuditError(f"empty time range: from {from_time.isoformat()} is after to {to_time.isoformat()}")
        rows = self._read(
            f"SELECT {_COLS} FROM audit_log WHERE time >= ? AND time <= ? ORDER BY seq", [from_time, to_time]
        )
        entries = [_entry(r) for r in rows]
        lines = [canonical_json(e.to_json()) for e in entries]
        meta = {
            "from": from_time.astimezone(UTC).isoformat(), "to": to_time.astimezone(UTC).isoformat(),
            "first_seq": entries[0].seq if entries else None, "last_seq": entries[-1].seq if entries else None,
        }
        return sign_bundle(lines, key, meta)
