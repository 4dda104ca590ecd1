"""Web-console sessions in the store, so they survive a restart and are shared by replicas.

A session is stored by the SHA-256 of its random token (never the token, never the API key)
with the key it was opened with (name and role), its CSRF token, and created/expires times.
One module per backend (:mod:`~marketguard.auth.sessions_duckdb`,
:mod:`~marketguard.auth.sessions_elasticsearch`), chosen by the store's dialect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from marketguard.auth import Principal
from marketguard.errors import ConfigError
from marketguard.store import Store

__all__ = ["StoredSession", "SessionStore", "SESSION_STORES", "open_sessions"]


@dataclass(frozen=True)
class StoredSession:
    """One console session as stored: its token's hash, its key, CSRF token and lifetime."""

    token_hash: str
    principal: Principal
    csrf: str
    created: datetime
    expires: datetime


class SessionStore(Protocol):
    """Where console sessions live."""

    def put(self, session: StoredSession) -> None:
        """Store a new session (purging expired ones on the way)."""
        ...

    def get(self, token_hash: str, now: datetime) -> StoredSession | None:
        """The live session with this token hash, or None; an expired one is deleted."""
        ...

    def delete(self, token_hash: str) -> None:
        """End one session (nothing if there is none)."""
        ...

    def delete_for(self, key_name: str) -> None:
        """End every session opened with the key called ``key_name``."""
        ...


def _duckdb_sessions(store: Store) -> SessionStore:
    from marketguard.auth.sessions_duckdb import DuckDBSessionStore

    return DuckDBSessionStore(store)  # type: ignore[arg-type]


def _elasticsearch_sessions(store: Store) -> SessionStore:
    from marketguard.auth.sessions_elasticsearch import ElasticsearchSessionStore

    return ElasticsearchSessionStore(store)  # type: ignore[arg-type]


#: Store dialect -> session-store factory.
SESSION_STORES = {"duckdb": _duckdb_sessions, "elasticsearch": _elasticsearch_sessions}


def open_sessions(store: Store) -> SessionStore:
    """The console session store that lives beside ``store`` (chosen by its dialect)."""
    try:
        return SESSION_STORES[store.dialect](store)
    except KeyError:
        raise ConfigError(f"no console session store for the {store.dialect!r} store") from None
