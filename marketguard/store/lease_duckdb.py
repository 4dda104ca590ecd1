"""Leases in the ``leases`` table of the DuckDB file.

DuckDB holds an exclusive lock on its file, so only one service process can open it and the
lease always goes to that process. The protocol still runs in full (a row per lease, a version
column for compare-and-swap, terms that grow), so the service takes the same code path on both
backends and a second :class:`~marketguard.app.leader.Leadership` in the same process is
refused exactly as a second replica would be. A lease found held when the file is opened
belonged to a process that has ended (a crash), so it is ended at once: a restart does not wait
for the TTL.
"""

from __future__ import annotations

from typing import Any

import duckdb

from marketguard.errors import StoreError
from marketguard.store.duckdb import DuckDBStore
from marketguard.store.lease import CasLeaseStore, Clock, LeaseState, utc_now

__all__ = ["DuckDBLeaseStore"]


class DuckDBLeaseStore(CasLeaseStore):
    """:class:`~marketguard.store.lease.LeaseStore` beside a :class:`DuckDBStore`."""

    def __init__(self, store: DuckDBStore, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self._store = store
        self._write(
            "CREATE TABLE IF NOT EXISTS leases (name VARCHAR PRIMARY KEY, holder VARCHAR,"
            " term BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL, version BIGINT NOT NULL)", [])
        # The file's exclusive lock proves no other process runs: a lease still held in it belongs
        # to a process that is gone (a crash), so it ends now instead of making a restart wait.
        self._write("UPDATE leases SET holder = NULL, expires_at = ?, version = version + 1"
                    " WHERE holder IS NOT NULL", [self.clock()])

    def _load(self, name: str) -> tuple[LeaseState, Any] | None:
        cur = self._store.cursor()
        try:
            rows = cur.execute(
                "SELECT holder, term, expires_at, version FROM leases WHERE name = ?", [name]).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading lease {name!r} failed: {exc}") from exc
        finally:
            cur.close()
        if not rows:
            return None
        holder, term, expires_at, version = rows[0]
        return LeaseState(name, holder, int(term), expires_at), int(version)

    def _save(self, state: LeaseState, version: Any) -> bool:
        values = [state.holder, state.term, state.expires_at]
        if version is None:
            try:
                self._write("INSERT INTO leases VALUES (?, ?, ?, ?, 1)", [state.name, *values])
            except duckdb.ConstraintException:
                return False
            return True
        changed = self._write(
            "UPDATE leases SET holder = ?, term = ?, expires_at = ?, version = version + 1"
            " WHERE name = ? AND version = ?", [*values, state.name, version])
        return bool(changed and changed[0][0])

    def _write(self, sql: str, params: list[Any]) -> list[Any]:
        with self._store.lock:
            cur = self._store.cursor()
            try:
                return cur.execute(sql, params).fetchall()
            except duckdb.ConstraintException:
                raise
            except duckdb.Error as exc:
                raise StoreError(f"writing leases failed: {exc}") from exc
            finally:
                cur.close()
