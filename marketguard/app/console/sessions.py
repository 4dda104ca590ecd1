"""Console sessions: an API key, once verified, is exchanged for a random session token.

The browser holds only the token, in an HTTP-only, ``SameSite=Strict`` cookie. The server keeps
the token's SHA-256 (never the token, never the API key) with the key's name and role, a
per-session CSRF token and an absolute expiry (``console_session_ttl_s``) in the store's
session store (:mod:`marketguard.auth.sessions`): sessions survive a restart and every
``marketguard serve`` replica on the same store sees them. Signing out deletes the session;
expired ones are deleted lazily. Each request re-checks that the key is still active, so
revoking a key ends its console sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from marketguard.auth import Principal
from marketguard.auth.sessions import SessionStore, StoredSession

__all__ = ["Session", "ConsoleSessions", "COOKIE", "new_token", "digest"]

#: Name of the session cookie.
COOKIE = "mg_console"

#: A signed-in browser: who it is, its CSRF token and when it ends.
Session = StoredSession


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The stored form of a session token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleSessions:
    """Tokens in, sessions out, over a :class:`~marketguard.auth.sessions.SessionStore`."""

    def __init__(self, store: SessionStore, ttl: timedelta) -> None:
        self.store, self._ttl = store, ttl

    def create(self, principal: Principal, now: datetime | None = None) -> tuple[str, Session]:
        """Start a session for ``principal``; return the token (for the cookie) and the session."""
        now = now or datetime.now(UTC)
        token = new_token()
        session = Session(digest(token), principal, new_token(), now, now + self._ttl)
        self.store.put(session)
        return token, session

    def get(self, token: str | None, now: datetime | None = None) -> Session | None:
        """The live session of ``token``, or None (unknown, signed out or expired)."""
        if not token:
            return None
        return self.store.get(digest(token), now or datetime.now(UTC))

    def delete(self, token: str | None) -> None:
        """End the session of ``token`` (nothing if there is none)."""
        if token:
            self.store.delete(digest(token))

    def end_for(self, name: str) -> None:
        """End every session of the key called ``name`` (the key was revoked)."""
        self.store.delete_for(name)
