"""Console sessions: an API key, once verified, is exchanged for a random session token.

The browser holds only the token, in an HTTP-only, ``SameSite=Strict`` cookie. The server keeps
the token's SHA-256 (never the token, never the API key) with the principal, a per-session CSRF
token and an absolute expiry (``console_session_ttl_s``). Sessions live in this process's
memory: one ``marketguard serve`` process owns them, a restart signs everybody out, and signing
out deletes the entry. Each request re-checks that the key is still active, so revoking a key
ends its console sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from marketguard.auth import Principal

__all__ = ["Session", "SessionStore", "COOKIE", "new_token"]

#: Name of the session cookie.
COOKIE = "mg_console"


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who it is, its CSRF token and when it ends."""

    principal: Principal
    csrf: str
    created: datetime
    expires: datetime


class SessionStore:
    """Sessions in memory, keyed by the SHA-256 of their token; thread-safe."""

    def __init__(self, ttl: timedelta, *, max_sessions: int = 10_000) -> None:
        self._ttl, self._max = ttl, max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, principal: Principal, now: datetime | None = None) -> tuple[str, Session]:
        """Start a session for ``principal``; return the token (for the cookie) and the session."""
        now = now or datetime.now(UTC)
        token = new_token()
        session = Session(principal, new_token(), now, now + self._ttl)
        with self._lock:
            self._purge(now)
            if len(self._sessions) >= self._max:  # drop the oldest rather than grow without bound
                oldest = min(self._sessions, key=lambda k: self._sessions[k].created)
                del self._sessions[oldest]
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None, now: datetime | None = None) -> Session | None:
        """The live session of ``token``, or None (unknown, signed out or expired)."""
        if not token:
            return None
        now = now or datetime.now(UTC)
        key = _digest(token)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= now:
                del self._sessions[key]
                return None
            return session

    def delete(self, token: str | None) -> None:
        """End the session of ``token`` (nothing if there is none)."""
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def end_for(self, name: str) -> None:
        """End every session of the key called ``name`` (the key was revoked)."""
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.principal.name == name]:
                del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)

    def _purge(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]
