"""Console sessions in the ``console_sessions`` table of the DuckDB file."""

from __future__ import annotations

from datetime import datetime

from marketguard.auth import Principal
from marketguard.auth.sessions import StoredSession
from marketguard.store.duckdb import DuckDBStore

__all__ = ["DuckDBSessionStore"]


class DuckDBSessionStore:
    """:class:`~marketguard.auth.sessions.SessionStore` in the store's file."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        self._run(
            "CREATE TABLE IF NOT EXISTS console_sessions (hash VARCHAR PRIMARY KEY, key_name VARCHAR,"
            " key_role VARCHAR, csrf VARCHAR, created TIMESTAMPTZ, expires TIMESTAMPTZ)", [])

    def put(self, session: StoredSession) -> None:
        """Store a session; expired ones are purged first."""
        self._run("DELETE FROM console_sessions WHERE expires <= ?", [session.created])
        self._run("INSERT INTO console_sessions VALUES (?, ?, ?, ?, ?, ?)",
                  [session.token_hash, session.principal.name, session.principal.role, session.csrf,
                   session.created, session.expires])

    def get(self, token_hash: str, now: datetime) -> StoredSession | None:
        """The live session, or None (an expired one is deleted)."""
        rows = self._run("SELECT hash, key_name, key_role, csrf, created, expires FROM console_sessions"
                         " WHERE hash = ?", [token_hash])
        if not rows:
            return None
        h, name, role, csrf, created, expires = rows[0]
        if expires <= now:
            self.delete(token_hash)
            return None
        return StoredSession(h, Principal(name, role), csrf, created, expires)

    def delete(self, token_hash: str) -> None:
        """End one session."""
        self._run("DELETE FROM console_sessions WHERE hash = ?", [token_hash])

    def delete_for(self, key_name: str) -> None:
        """End every session of a key."""
        self._run("DELETE FROM console_sessions WHERE key_name = ?", [key_name])

    def _run(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        with self._store.lock:
            cur = self._store.cursor()
            try:
                return cur.execute(sql, params).fetchall()
            finally:
                cur.close()
