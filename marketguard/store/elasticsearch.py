"""The cluster store: events, dead letters and checkpoints in Elasticsearch.

* **Ingest** goes through ``_bulk`` with ``op_type=create`` and ``_id = event.id`` (see
  :mod:`marketguard.store._es_bulk`): a replay creates nothing twice; a rejected document is
  dead-lettered with the server's reason.
* **Ingest order**: the live engine follows ``_seq``. This store is the single writer of its
  prefix and numbers new events itself (``marketguard.seq``), persisting the counter in the
  state index so that a restart never reuses a number. Events already stored are filtered out
  before numbering, so sequence numbers stay dense as on DuckDB (a document the server rejects
  leaves a gap, which windows tolerate).
* **Reads** page with ``search_after`` over (``@timestamp``, ``event.id``), inside a
  point-in-time where the server offers Elasticsearch's ``_pit`` (plain ``search_after``
  otherwise); :meth:`scan` pages over ``marketguard.seq``.
* Every write is followed by a refresh, so that what :meth:`max_seq` reports can be matched.

Deduplication by ``_id`` holds within one backing index: after a rollover a replay of events
older than the rollover is caught by the pre-check (a search on the ids), not by ``_id``.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from marketguard.errors import StoreError
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA, DeadLetter
from marketguard.store._es_bulk import bulk_create
from marketguard.store._es_docs import (
    iso,
    source_fields,
    to_documents,
    to_table,
    window_filters,
)
from marketguard.store.base import MatchWindow
from marketguard.store.es_setup import SEQ_FIELD, Capabilities, IndexNames, setup

__all__ = ["ElasticsearchStore", "open_elasticsearch"]

log = logging.getLogger(__name__)

_PAGE = 5000  # hits per search page (below index.max_result_window)
_SEQ_DOC = "seq"  # id of the sequence counter in the state index
_SORT = [{"@timestamp": "asc"}, {"event.id": "asc"}]
#: Rule regexps are unanchored alternations; Lucene's default (10 000 states) is too tight.
_MAX_DFA_STATES = 200_000


def open_elasticsearch(
    url: str,
    *,
    prefix: str = "marketguard",
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_cert: str | None = None,
    retention_days: int = 30,
    request_timeout: float = 30.0,
    node_class: Any = None,
) -> ElasticsearchStore:
    """Connect, check reachability and privileges (a clear :class:`StoreError` otherwise),
    run the idempotent setup and return the store (which owns the client).

    ``node_class`` swaps the client's HTTP node (tests reach OpenSearch-compatible fakes so)."""
    from marketguard.store._es_client import check_access, connect

    client = connect(url, api_key=api_key, username=username, password=password, ca_cert=ca_cert,
                     request_timeout=request_timeout, node_class=node_class)
    try:
        check_access(client, prefix)
        return ElasticsearchStore(client, prefix=prefix, retention_days=retention_days)
    except BaseException:
        client.close()
        raise


class ElasticsearchStore:
    """:class:`~marketguard.store.base.Store` on an Elasticsearch (or OpenSearch) cluster.

    ``client`` is an ``elasticsearch.Elasticsearch``; ``prefix`` names every index. With
    ``run_setup`` (the default) templates and indices are created when missing. The store
    closes the client on :meth:`close` unless ``owns_client`` is False.
    """

    dialect = "elasticsearch"

    def __init__(
        self,
        client: Elasticsearch,
        *,
        prefix: str = "marketguard",
        run_setup: bool = True,
        retention_days: int = 30,
        bulk_docs: int = 5000,
        bulk_bytes: int = 8 * 1024 * 1024,
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self._owns_client = owns_client
        self.names = IndexNames(prefix)
        self._bulk_docs, self._bulk_bytes = bulk_docs, bulk_bytes
        self._lock = threading.RLock()
        self._pit: bool | None = None  # unknown until first tried
        try:
            self.capabilities: Capabilities = setup(client, self.names, retention_days=retention_days) if run_setup else None  # type: ignore[assignment]
            self._seq = max(self._stored_counter(), self._max_stored_seq())
        except (ApiError, TransportError) as exc:
            raise StoreError(f"cannot open the Elasticsearch store {prefix!r}: {exc}") from exc

    # -- writes ---------------------------------------------------------------------------
    def append_events(self, events: pa.Table) -> int:
        """Append events not stored yet, numbered in the batch's order; return how many."""
        if events.num_rows == 0:
            return 0
        batch = events.select(list(EVENT_FIELDS))
        if batch.schema != EVENT_SCHEMA:
            batch = batch.cast(EVENT_SCHEMA)
        with self._lock:
            batch = self._new_only(batch)
            if batch.num_rows == 0:
                return 0
            docs = to_documents(batch)
            first = self._seq + 1
            for n, doc in enumerate(docs):
                doc[SEQ_FIELD] = first + n
            self._seq = first + len(docs) - 1
            self._save_counter()
            out = bulk_create(
                self.client, self.names.events, ((d["event.id"], d) for d in docs),
                max_docs=self._bulk_docs, max_bytes=self._bulk_bytes,
            )
            self._refresh(self.names.events)
            if out.rejected:
                by_id = {d["event.id"]: d for d in docs}
                self.append_dead_letters([_rejected(by_id[i], reason) for i, reason in out.rejected])
            return len(out.created)

    def _new_only(self, batch: pa.Table) -> pa.Table:
        """Drop repeats inside the batch (first wins) and events already stored."""
        ids = batch.column("event.id")
        if pc.count_distinct(ids).as_py() != batch.num_rows:
            seen: set[str] = set()
            keep = []
            for i, value in enumerate(ids.to_pylist()):
                if value not in seen:
                    seen.add(value)
                    keep.append(i)
            batch = batch.take(pa.array(keep, pa.int64()))
        known = self._stored_ids(batch.column("event.id").to_pylist())
        if known:
            batch = batch.filter(pc.invert(pc.is_in(batch.column("event.id"), value_set=pa.array(list(known)))))
        return batch

    def _stored_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _PAGE):
            part = ids[i:i + _PAGE]
            resp = self._search(self.names.events, {"query": {"ids": {"values": part}}, "_source": False, "size": len(part)})
            found.update(h["_id"] for h in resp["hits"]["hits"])
        return found

    def append_dead_letters(self, items: Sequence[DeadLetter]) -> None:
        """Keep unparsable or rejected input with its source, line and reason."""
        if not items:
            return
        now = iso(datetime.now(UTC))
        docs = [
            (f"{now}-{uuid.uuid4().hex[:12]}-{n}", {"received": now, "source": d.source, "line": d.line, "reason": d.reason, "raw": d.raw})
            for n, d in enumerate(items)
        ]
        out = bulk_create(self.client, self.names.dead_letters, docs, max_docs=self._bulk_docs, max_bytes=self._bulk_bytes)
        for doc_id, reason in out.rejected:
            log.error("dead letter %s could not be kept: %s", doc_id, reason)
        self._refresh(self.names.dead_letters)

    def set_checkpoint(self, name: str, value: dict[str, Any]) -> None:
        """Durably set a named checkpoint (JSON-serialisable value)."""
        doc = {"value": json.dumps(value, default=str), "updated": iso(datetime.now(UTC))}
        self._call(lambda: self.client.index(index=self.names.state, id=f"cp:{name}", document=doc, refresh=True))

    def _save_counter(self) -> None:
        doc = {"seq": self._seq, "updated": iso(datetime.now(UTC))}
        self._call(lambda: self.client.index(index=self.names.state, id=_SEQ_DOC, document=doc, refresh=True))

    # -- reads ----------------------------------------------------------------------------
    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        """Return a named checkpoint or None."""
        doc = self._get(self.names.state, f"cp:{name}")
        return json.loads(doc["value"]) if doc else None

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest dead letters first."""
        body = {"size": max(1, int(limit)), "sort": [{"received": "desc"}, {"source": "asc"}, {"line": "asc"}]}
        hits = self._search(self.names.dead_letters, body)["hits"]["hits"]
        out = []
        for h in hits:
            src = dict(h["_source"])
            src["received"] = datetime.fromisoformat(src["received"].replace("Z", "+00:00"))
            out.append({k: src.get(k) for k in ("received", "source", "line", "reason", "raw")})
        return out

    def count_dead_letters(self) -> int:
        """Return how many dead letters are kept."""
        return int(self._call(lambda: self.client.count(index=self.names.dead_letters))["count"])

    def count_events(self, dataset: str | None = None) -> int:
        """Return the number of stored events, optionally of one dataset."""
        query = {"term": {"event.dataset": dataset}} if dataset else {"match_all": {}}
        return int(self._call(lambda: self.client.count(index=self.names.events, query=query))["count"])

    def max_seq(self) -> int:
        """Return the newest ingest sequence number stored (0 when empty)."""
        return self._max_stored_seq()

    def _max_stored_seq(self) -> int:
        resp = self._search(self.names.events, {"size": 0, "aggs": {"m": {"max": {"field": SEQ_FIELD}}}})
        value = resp["aggregations"]["m"]["value"]
        return int(value) if value is not None else 0

    def _stored_counter(self) -> int:
        doc = self._get(self.names.state, _SEQ_DOC)
        return int(doc["seq"]) if doc else 0

    def query_events(
        self, window: MatchWindow, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> pa.Table:
        """Return events in the window, ordered by time then id."""
        return self._ordered({"match_all": {}}, window, list(columns or EVENT_FIELDS), limit)

    def match(
        self, query: str, window: MatchWindow, columns: Sequence[str], limit: int | None = None
    ) -> pa.Table:
        """Run a compiled rule (a Lucene query string) over the window."""
        rule = {"query_string": {
            "query": query, "default_field": "event.original", "allow_leading_wildcard": True,
            "max_determinized_states": _MAX_DFA_STATES,
        }}
        return self._ordered(rule, window, list(columns), limit)

    def _ordered(self, query: dict[str, Any], window: MatchWindow, columns: list[str], limit: int | None) -> pa.Table:
        body = {
            "query": {"bool": {"must": [query], "filter": window_filters(window)}},
            "_source": source_fields(columns), "sort": _SORT, "track_total_hits": False,
        }
        sources = [h["_source"] for h in self._paged(body, limit)]
        return to_table(sources, columns)

    def scan(
        self, window: MatchWindow, columns: Sequence[str], batch_rows: int = 262_144
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``_seq`` and the columns of the window's events (in sequence order)."""
        body = {
            "query": {"bool": {"filter": window_filters(window)}},
            "_source": [SEQ_FIELD, *source_fields(columns)], "sort": [{SEQ_FIELD: "asc"}], "track_total_hits": False,
        }
        pending: list[dict[str, Any]] = []
        for hit in self._paged(body, None):
            pending.append(hit["_source"])
            if len(pending) >= batch_rows:
                yield from to_table(pending, columns, seq=True).to_batches()
                pending = []
        if pending:
            yield from to_table(pending, columns, seq=True).to_batches()

    def _paged(self, body: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
        """Every hit of a sorted search, with search_after (inside a PIT when offered)."""
        pit = self._open_pit()
        left = limit
        try:
            after = None
            while left is None or left > 0:
                page = dict(body, size=min(_PAGE, left) if left is not None else _PAGE)
                if after is not None:
                    page["search_after"] = after
                if pit:
                    page["pit"] = {"id": pit, "keep_alive": "2m"}
                    resp = self._call(lambda p=page: self.client.search(body=p))
                    pit = resp.get("pit_id", pit)
                else:
                    resp = self._search(self.names.events, page)
                hits = resp["hits"]["hits"]
                yield from hits
                if left is not None:
                    left -= len(hits)
                if len(hits) < page["size"]:
                    return
                after = hits[-1]["sort"]
        finally:
            if pit:
                try:
                    self.client.close_point_in_time(id=pit)
                except (ApiError, TransportError):
                    pass

    def _open_pit(self) -> str | None:
        if self._pit is False:
            return None
        try:
            resp = self.client.open_point_in_time(index=self.names.events, keep_alive="2m")
        except (ApiError, TransportError) as exc:
            if self._pit is None:
                log.info("no Elasticsearch point-in-time on this server (%s); paging with plain search_after", exc)
            self._pit = False
            return None
        self._pit = True
        return str(resp["id"])

    # -- plumbing -------------------------------------------------------------------------
    def _search(self, index: str, body: dict[str, Any]) -> Any:
        return self._call(lambda: self.client.search(index=index, body=body))

    def _get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get(index=index, id=doc_id)["_source"]
        except NotFoundError:
            return None
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch get {index}/{doc_id} failed: {exc}") from exc

    def _refresh(self, index: str) -> None:
        self._call(lambda: self.client.indices.refresh(index=index))

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except (ApiError, TransportError) as exc:
            raise StoreError(f"Elasticsearch request failed: {exc}") from exc

    def close(self) -> None:
        """Release the client's connections (unless the client was lent to the store)."""
        if self._owns_client:
            self.client.close()


def _rejected(doc: dict[str, Any], reason: str) -> DeadLetter:
    raw = doc.get("event.original") or json.dumps(doc, default=str)[:4096]
    source = doc.get("log.file.path") or "elasticsearch"
    return DeadLetter(str(source), doc.get("log.file.line"), f"rejected by Elasticsearch: {reason}", str(raw))
