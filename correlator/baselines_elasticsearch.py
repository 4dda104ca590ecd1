"""The :class:`~correlator.baselines.Baselines` store in indices beside the Elasticsearch store.

Indices (mappings in :data:`marketguard.store.es_setup.RECORD_MAPPINGS`): ``baselinecounts``
(signal, entity, bucket → count), ``baselineknown`` (signal, entity, attribute, value → first
seen in ns) and ``baselinealerts`` (signal, entity, bucket → the run that alerted). The ingest
sequence number counted so far is ``baselines:counted`` in the store's state index.

Document ids are a hash of the natural key. Adding counts and merging first-seen times are
bulk compare-and-swap writes (read with ``_mget``, write with ``if_seq_no``/``if_primary_term``,
redo what another writer changed meanwhile), so two instances never lose each other's counts;
an alert is recorded with ``op_type=create``, so only one run ever owns a window.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from marketguard.store._es_docs import iso
from marketguard.store._es_records import EsRecords
from marketguard.store.elasticsearch import ElasticsearchStore

__all__ = ["ElasticsearchBaselines", "COUNTED_ID"]

#: Id of the "counted up to" document in the store's state index.
COUNTED_ID = "baselines:counted"
_TERMS = 10_000


def _id(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:40]


class ElasticsearchBaselines:
    """Per-window counts of baseline signals, persisted beside the events."""

    def __init__(self, store: ElasticsearchStore) -> None:
        client, names = store.client, store.names
        self._counts = EsRecords(client, names.index("baselinecounts"), "baseline count")
        self._known = EsRecords(client, names.index("baselineknown"), "baseline first-seen")
        self._alerts = EsRecords(client, names.index("baselinealerts"), "baseline alert")
        self._state = EsRecords(client, names.state, "baseline state")

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        """Add counts (entity, bucket, count) to the stored ones."""
        if counts.empty:
            return
        summed = counts.groupby(["entity", "bucket"], as_index=False)["count"].sum()
        docs = {
            _id(signal, e, int(b)): {"signal": signal, "entity": str(e), "bucket": int(b), "count": int(c)}
            for e, b, c in summed[["entity", "bucket", "count"]].itertuples(index=False)
        }
        self._counts.merge(docs, lambda old, new: new | {"count": int(old["count"]) + int(new["count"])})

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        """Stored counts of buckets ``first..last`` (inclusive)."""
        query = {"bool": {"filter": [{"term": {"signal": signal}}, {"range": {"bucket": {"gte": first, "lte": last}}}]}}
        rows = [(s["entity"], int(s["bucket"]), int(s["count"]))
                for s in self._counts.search_all(query, [{"bucket": "asc"}, {"entity": "asc"}])]
        return pd.DataFrame(rows, columns=["entity", "bucket", "count"]).astype({"bucket": "int64", "count": "int64"})

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        """Record that an entity's window alerted in ``run``; False if another run had."""
        key = _id(signal, entity, int(bucket))
        doc = {"signal": signal, "entity": entity, "bucket": int(bucket), "run": int(run)}
        if self._alerts.create(key, doc):
            return True
        found = self._alerts.get(key)
        return found is not None and int(found[0]["run"]) == run

    def counted(self) -> int:
        """The ingest sequence number up to which events were counted."""
        found = self._state.get(COUNTED_ID)
        return int(found[0]["seq"]) if found else 0

    def set_counted(self, seq: int) -> None:
        """Remember that events up to ``seq`` were counted (never moves back)."""
        doc = {"seq": int(seq), "updated": iso(datetime.now(UTC))}
        self._state.swap(COUNTED_ID, lambda cur: None if cur is not None and int(cur["seq"]) >= seq else doc)

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        """Merge first-seen times of entity attribute values; the earliest time wins."""
        if seen.empty:
            return
        docs: dict[str, dict[str, Any]] = {}
        for e, a, v, t in seen[["entity", "attribute", "value", "first_seen"]].itertuples(index=False):
            key = _id(signal, e, a, v)
            if key not in docs or int(t) < docs[key]["first_seen"]:
                docs[key] = {"signal": signal, "entity": str(e), "attribute": str(a), "value": str(v), "first_seen": int(t)}
        self._known.merge(docs, lambda old, new: None if int(old["first_seen"]) <= new["first_seen"] else new)

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        """First-seen times (entity, attribute, value, first_seen in ns) of the entities."""
        wanted = sorted({str(e) for e in entities})
        rows: list[tuple[str, str, str, int]] = []
        for i in range(0, len(wanted), _TERMS):
            query = {"bool": {"filter": [{"term": {"signal": signal}}, {"terms": {"entity": wanted[i:i + _TERMS]}}]}}
            sort = [{"entity": "asc"}, {"attribute": "asc"}, {"value": "asc"}]
            rows += [(s["entity"], s["attribute"], s["value"], int(s["first_seen"]))
                     for s in self._known.search_all(query, sort)]
        return pd.DataFrame(rows, columns=["entity", "attribute", "value", "first_seen"]).astype({"first_seen": "int64"})
