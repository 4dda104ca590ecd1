"""API keys in the ``<prefix>-apikeys`` index, hashed; one document per key name.

Creation uses ``op_type=create`` (a name is taken once, even by two service instances at the
same moment); revocation is a conditional write (``if_seq_no``/``if_primary_term``), so a
concurrent change is detected instead of overwritten. The index and its mapping are created by
the store's setup (:data:`marketguard.store.es_setup.RECORD_MAPPINGS`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError

from marketguard.auth import ApiKey, KeyError_, Principal, check_new_key, hash_key, new_secret
from marketguard.errors import StoreError
from marketguard.store.elasticsearch import ElasticsearchStore

__all__ = ["ElasticsearchKeyStore"]

def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class ElasticsearchKeyStore:
    """:class:`~marketguard.auth.KeyStore` beside an :class:`ElasticsearchStore`."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._es = store.client
        self._index = store.names.index("apikeys")

    def create(self, name: str, role: str) -> str:
        """Create a key and return its secret; only the hash is stored."""
        check_new_key(name, role)
        secret = new_secret()
        doc = {"name": name, "role": role, "hash": hash_key(secret), "created": _now()}
        try:
            self._es.create(index=self._index, id=name, document=doc, refresh=True)
        except ConflictError:
            raise KeyError_(f"a key named {name!r} already exists (revoked keys keep their name)") from None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"creating key {name!r} failed: {exc}") from exc
        return secret

    def list(self) -> list[ApiKey]:
        """All keys, oldest first."""
        resp = self._call(lambda: self._es.search(index=self._index, size=10_000, sort=[{"created": "asc"}, {"name": "asc"}]))
        return [
            ApiKey(h["_source"]["name"], h["_source"]["role"], _time(h["_source"]["created"]),  # type: ignore[arg-type]
                   _time(h["_source"].get("revoked")))
            for h in resp["hits"]["hits"]
        ]

    def revoke(self, name: str) -> None:
        """Revoke an active key (a conditional write: a concurrent change is not lost)."""
        try:
            got = self._es.get(index=self._index, id=name)
        except NotFoundError:
            raise KeyError_(f"no active key named {name!r}") from None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"reading key {name!r} failed: {exc}") from exc
        if got["_source"].get("revoked"):
            raise KeyError_(f"no active key named {name!r}")
        doc = dict(got["_source"], revoked=_now())
        try:
            self._es.index(index=self._index, id=name, document=doc, refresh=True,
                           if_seq_no=got["_seq_no"], if_primary_term=got["_primary_term"])
        except ConflictError:
            raise KeyError_(f"key {name!r} changed while being revoked; try again") from None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"revoking key {name!r} failed: {exc}") from exc

    def verify(self, secret: str) -> Principal | None:
        """The principal of an active key, or None."""
        query = {"bool": {"filter": [{"term": {"hash": hash_key(secret)}}],
                          "must_not": [{"exists": {"field": "revoked"}}]}}
        hits = self._call(lambda: self._es.search(index=self._index, query=query, size=1))["hits"]["hits"]
        return Principal(hits[0]["_source"]["name"], hits[0]["_source"]["role"]) if hits else None

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch key store request failed: {exc}") from exc


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
