"""API keys in the DuckDB file, hashed."""

from __future__ import annotations

from datetime import UTC, datetime

from marketguard.auth import ApiKey, KeyError_, Principal, check_new_key, hash_key, new_secret
from marketguard.store.duckdb import DuckDBStore

__all__ = ["DuckDBKeyStore"]


class DuckDBKeyStore:
    """:class:`~marketguard.auth.KeyStore` in the ``api_keys`` table of the store's file."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        with store.lock:
            cur = store.cursor()
            cur.execute(
                "CREATE TABLE IF NOT EXISTS api_keys (name VARCHAR PRIMARY KEY, role VARCHAR,"
                " hash VARCHAR UNIQUE, created TIMESTAMPTZ, revoked TIMESTAMPTZ)"
            ).fetchall()
            cur.close()

    def create(self, name: str, role: str) -> str:
        """Create a key and return its secret; only the hash is stored."""
        check_new_key(name, role)
        secret = new_secret()
        with self._store.lock:
            cur = self._store.cursor()
            try:
                if cur.execute("SELECT 1 FROM api_keys WHERE name = ?", [name]).fetchall():
                    raise KeyError_(f"a key named {name!r} already exists (revoked keys keep their name)")
                cur.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL)",
                    [name, role, hash_key(secret), datetime.now(UTC)],
                ).fetchall()
            finally:
                cur.close()
        return secret

    def list(self) -> list[ApiKey]:
        """All keys, oldest first."""
        cur = self._store.cursor()
        try:
            rows = cur.execute("SELECT name, role, created, revoked FROM api_keys ORDER BY created").fetchall()
        finally:
            cur.close()
        return [ApiKey(*row) for row in rows]

    def revoke(self, name: str) -> None:
        """Revoke an active key."""
        with self._store.lock:
            cur = self._store.cursor()
            try:
                found = cur.execute(
                    "SELECT 1 FROM api_keys WHERE name = ? AND revoked IS NULL", [name]
                ).fetchall()
                if not found:
                    raise KeyError_(f"no active key named {name!r}")
                cur.execute("UPDATE api_keys SET revoked = ? WHERE name = ?", [datetime.now(UTC), name]).fetchall()
            finally:
                cur.close()

    def verify(self, secret: str) -> Principal | None:
        """The principal of an active key, or None."""
        cur = self._store.cursor()
        try:
            row = cur.execute(
                "SELECT name, role FROM api_keys WHERE hash = ? AND revoked IS NULL", [hash_key(secret)]
            ).fetchall()
        finally:
            cur.close()
        return Principal(*row[0]) if row else None
