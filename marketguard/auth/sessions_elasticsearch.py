"""Console sessions in the ``<prefix>-consolesessions`` index; one document per token hash.

The index and its explicit mapping (``dynamic: strict``) are created by ``marketguard es setup``
(:data:`marketguard.store.es_setup.RECORD_MAPPINGS`), which the store runs when it opens.
Expired sessions are deleted when read and purged (by query) when a new one is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError

from marketguard.auth import Principal
from marketguard.auth.sessions import StoredSession
from marketguard.errors import StoreError
from marketguard.store.elasticsearch import ElasticsearchStore
from marketguard.store.es_setup import RECORD_MAPPINGS

__all__ = ["ElasticsearchSessionStore", "MAPPING", "INDEX_KIND"]

#: The index kind (``store.names.index(INDEX_KIND)``).
INDEX_KIND = "consolesessions"
#: The explicit mapping of the session index (kept with the others in ``es_setup``).
MAPPING: dict[str, Any] = RECORD_MAPPINGS[INDEX_KIND]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ElasticsearchSessionStore:
    """:class:`~marketguard.auth.sessions.SessionStore` beside an :class:`ElasticsearchStore`."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._es = store.client
        self._index = store.names.index(INDEX_KIND)

    def put(self, session: StoredSession) -> None:
        """Store a session; expired ones are purged first."""
        self._purge(session.created)
        doc = {"hash": session.token_hash, "key_name": session.principal.name, "key_role": session.principal.role,
               "csrf": session.csrf, "created": _iso(session.created), "expires": _iso(session.expires)}
        self._call(lambda: self._es.index(index=self._index, id=session.token_hash, document=doc, refresh=True))

    def get(self, token_hash: str, now: datetime) -> StoredSession | None:
        """The live session, or None (an expired one is deleted)."""
        try:
            src = self._es.get(index=self._index, id=token_hash)["_source"]
        except NotFoundError:
            return None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"reading a console session failed: {exc}") from exc
        expires = _time(src["expires"])
        if expires <= now:
            self.delete(token_hash)
            return None
        return StoredSession(src["hash"], Principal(src["key_name"], src["key_role"]), src["csrf"],
                             _time(src["created"]), expires)

    def delete(self, token_hash: str) -> None:
        """End one session."""
        try:
            self._es.delete(index=self._index, id=token_hash, refresh=True)
        except NotFoundError:
            pass
        except (ApiError, TransportError) as exc:
            raise StoreError(f"deleting a console session failed: {exc}") from exc

    def delete_for(self, key_name: str) -> None:
        """End every session of a key."""
        self._call(lambda: self._es.delete_by_query(index=self._index, query={"term": {"key_name": key_name}},
                                                    refresh=True, conflicts="proceed"))

    def _purge(self, now: datetime) -> None:
        self._call(lambda: self._es.delete_by_query(index=self._index, query={"range": {"expires": {"lte": _iso(now)}}},
                                                    refresh=True, conflicts="proceed"))

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch console session request failed: {exc}") from exc
