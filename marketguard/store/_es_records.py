"""Plain records in one Elasticsearch index: the few moves every record store beside the events
needs (tickets, the audit trail, playbook state, baselines).

* :meth:`EsRecords.get` is a real-time read that also returns the document's version
  (``_seq_no``, ``_primary_term``);
* :meth:`EsRecords.create` writes once (``op_type=create``): a second writer of the same id
  gets ``False``, never an overwrite;
* :meth:`EsRecords.swap` is a compare-and-swap loop: read, change, write with
  ``if_seq_no``/``if_primary_term``; on a 409 (another writer was first) read again and
  re-apply the change to what it wrote;
* :meth:`EsRecords.search_all` pages a sorted search with ``search_after``.

Writes refresh the index, so a search right after a write sees it (as DuckDB does). Every
server error becomes a :class:`~marketguard.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError

from marketguard.errors import StoreError

__all__ = ["EsRecords", "Version", "parse_time", "CAS_ATTEMPTS"]

#: A document's version: (``_seq_no``, ``_primary_term``).
Version = tuple[int, int]
#: Compare-and-swap attempts before a write under heavy contention gives up.
CAS_ATTEMPTS = 50
_PAGE = 5000


def parse_time(value: str | None) -> datetime | None:
    """A stored ``date_nanos`` text (as written by :func:`marketguard.store._es_docs.iso`) in UTC."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class EsRecords:
    """One index of plain records; ``what`` names it in error messages."""

    def __init__(self, client: Elasticsearch, index: str, what: str) -> None:
        self.client, self.index, self.what = client, index, what

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run one request; a server or transport error becomes a StoreError naming the index."""
        try:
            return fn()
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch {self.what} request failed: {exc}") from exc

    def get(self, doc_id: str) -> tuple[dict[str, Any], Version] | None:
        """The document and its version, or None (real time: no refresh needed)."""
        try:
            resp = self.client.get(index=self.index, id=doc_id)
        except NotFoundError:
            return None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch {self.what} read of {doc_id!r} failed: {exc}") from exc
        return resp["_source"], (resp["_seq_no"], resp["_primary_term"])

    def create(self, doc_id: str, doc: dict[str, Any], *, refresh: bool = True) -> bool:
        """Write a new document; False when the id is taken (by us earlier or another writer)."""
        try:
            self.client.index(index=self.index, id=doc_id, document=doc, op_type="create", refresh=refresh)
        except ConflictError:
            return False
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch {self.what} write of {doc_id!r} failed: {exc}") from exc
        return True

    def put(self, doc_id: str, doc: dict[str, Any], version: Version | None, *, refresh: bool = True) -> bool:
        """Replace the document if it is still at ``version`` (create it if None); False on 409."""
        kw: dict[str, Any] = {"op_type": "create"} if version is None else {
            "if_seq_no": version[0], "if_primary_term": version[1]}
        try:
            self.client.index(index=self.index, id=doc_id, document=doc, refresh=refresh, **kw)
        except ConflictError:
            return False
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch {self.what} write of {doc_id!r} failed: {exc}") from exc
        return True

    def swap(
        self, doc_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
    ) -> tuple[dict[str, Any] | None, bool]:
        """Compare-and-swap: ``change(current or None)`` returns the new document (None: leave it).

        Returns (the document as stored afterwards, whether this call wrote it). ``change`` may
        raise to refuse; it runs again on the fresh document after every lost race.
        """
        for _ in range(CAS_ATTEMPTS):
            found = self.get(doc_id)
            current, version = found if found is not None else (None, None)
            new = change(current)
            if new is None:
                return current, False
            if self.put(doc_id, new, version):
                return new, True
        raise StoreError(f"{self.what} {doc_id!r}: still changed concurrently after {CAS_ATTEMPTS} attempts")

    def merge(
        self, docs: dict[str, dict[str, Any]],
        combine: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None], chunk: int = 1000,
    ) -> None:
        """Many compare-and-swaps in bulk: ``docs[id]`` is created where missing, else stored as
        ``combine(stored, doc)`` (None: keep the stored one). Lost races are redone; refreshes once."""
        pending = dict(docs)
        for _ in range(CAS_ATTEMPTS):
            if not pending:
                self.refresh()
                return
            ids = list(pending)
            lost: dict[str, dict[str, Any]] = {}
            for i in range(0, len(ids), chunk):
                part = {k: pending[k] for k in ids[i:i + chunk]}
                lost |= self._merge_chunk(part, combine)
            pending = lost
        raise StoreError(f"{self.what}: {len(pending)} documents still changed concurrently after {CAS_ATTEMPTS} attempts")

    def _merge_chunk(
        self, docs: dict[str, dict[str, Any]], combine: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, dict[str, Any]]:
        found = self.call(lambda: self.client.mget(index=self.index, ids=list(docs)))["docs"]
        ops: list[dict[str, Any]] = []
        for hit in found:
            doc_id, new = hit["_id"], docs[hit["_id"]]
            if not hit.get("found"):
                ops += [{"create": {"_index": self.index, "_id": doc_id}}, new]
                continue
            merged = combine(hit["_source"], new)
            if merged is not None:
                ops += [{"index": {"_index": self.index, "_id": doc_id, "if_seq_no": hit["_seq_no"],
                                   "if_primary_term": hit["_primary_term"]}}, merged]
        if not ops:
            return {}
        items = self.call(lambda: self.client.bulk(operations=ops))["items"]
        lost: dict[str, dict[str, Any]] = {}
        for item in items:
            (outcome,) = item.values()
            if outcome.get("status") == 409:
                lost[outcome["_id"]] = docs[outcome["_id"]]
            elif outcome.get("status", 500) >= 300:
                raise StoreError(f"Elasticsearch {self.what} write of {outcome['_id']!r} failed: {outcome.get('error')}")
        return lost

    def search_all(self, query: dict[str, Any], sort: list[dict[str, Any]], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every matching source in ``sort`` order (which must end in a unique field)."""
        after: list[Any] | None = None
        left = limit
        while left is None or left > 0:
            size = _PAGE if left is None else min(_PAGE, left)
            body: dict[str, Any] = {"query": query, "sort": sort, "size": size, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            hits = self.call(lambda b=body: self.client.search(index=self.index, body=b))["hits"]["hits"]
            for h in hits:
                yield h["_source"]
            if left is not None:
                left -= len(hits)
            if len(hits) < size:
                return
            after = hits[-1]["sort"]

    def refresh(self) -> None:
        """Make every write so far visible to searches."""
        self.call(lambda: self.client.indices.refresh(index=self.index))
