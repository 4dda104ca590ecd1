"""Events <-> Elasticsearch documents, and match windows -> query DSL filters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from marketguard.schema import EVENT_FIELDS, TIMESTAMP_FIELDS
from marketguard.store.base import MatchWindow
from marketguard.store.es_setup import LABELS_JSON_FIELD, SEQ_FIELD

__all__ = ["to_documents", "to_table", "window_filters", "iso", "lookup", "source_fields", "SEQ_COLUMN"]

#: The protocol's name for the ingest sequence column.
SEQ_COLUMN = "_seq"
#: terms-query chunk (Elasticsearch refuses more than 65 536 terms in one query).
_TERMS_CHUNK = 50_000


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds (``date_nanos`` keeps them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_documents(events: pa.Table) -> list[dict[str, Any]]:
    """One flat-keyed document per event; nulls are left out, ``labels`` is kept twice:
    as given (returned by reads) and as an object (what rules match)."""
    docs = []
    for row in events.to_pylist():
        doc: dict[str, Any] = {}
        for name, value in row.items():
            if value is None:
                continue
            if name in TIMESTAMP_FIELDS:
                doc[name] = iso(value)
            elif name == "labels":
                doc[LABELS_JSON_FIELD] = value
                labels = _labels(value)
                if labels:
                    doc["labels"] = labels
            else:
                doc[name] = value
        docs.append(doc)
    return docs


def _labels(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def to_table(sources: Sequence[dict[str, Any]], columns: Sequence[str], *, seq: bool = False) -> pa.Table:
    """An Arrow table of ``columns`` (event schema types) from ``_source`` dicts."""
    fields = [pa.field(SEQ_COLUMN, pa.int64())] if seq else []
    fields += [pa.field(c, EVENT_FIELDS[c]) for c in columns]
    data: dict[str, list[Any]] = {f.name: [] for f in fields}
    for src in sources:
        if seq:
            data[SEQ_COLUMN].append(lookup(src, SEQ_FIELD))
        for c in columns:
            if c == "labels":
                data[c].append(lookup(src, LABELS_JSON_FIELD))
            elif c in TIMESTAMP_FIELDS:
                data[c].append(_parse_time(lookup(src, c)))
            else:
                data[c].append(lookup(src, c))
    return pa.table({k: pa.array(v, type=f.type) for (k, v), f in zip(data.items(), fields, strict=True)},
                    schema=pa.schema(fields))


def lookup(src: dict[str, Any], name: str) -> Any:
    """The value of a dotted field in ``_source``, whether the server kept the document's flat
    keys (Elasticsearch) or returned filtered sources as nested objects (OpenSearch)."""
    if name in src:
        return src[name]
    parts = name.split(".")
    for i in range(1, len(parts)):
        inner = src.get(".".join(parts[:i]))
        if isinstance(inner, dict):
            value = lookup(inner, ".".join(parts[i:]))
            if value is not None:
                return value
    return None


def source_fields(columns: Sequence[str]) -> list[str]:
    """The ``_source`` paths holding ``columns``."""
    return [LABELS_JSON_FIELD if c == "labels" else c for c in columns]


def window_filters(window: MatchWindow) -> list[dict[str, Any]]:
    """Query DSL filters for a window: ``(after, upto]`` on sequence and time, dataset, seqs."""
    filters: list[dict[str, Any]] = []
    seq: dict[str, Any] = {}
    if window.seq_after is not None:
        seq["gt"] = int(window.seq_after)
    if window.seq_upto is not None:
        seq["lte"] = int(window.seq_upto)
    if seq:
        filters.append({"range": {SEQ_FIELD: seq}})
    moment: dict[str, Any] = {}
    if window.time_after is not None:
        moment["gt"] = iso(window.time_after)
    if window.time_upto is not None:
        moment["lte"] = iso(window.time_upto)
    if moment:
        filters.append({"range": {"@timestamp": moment}})
    if window.dataset is not None:
        filters.append({"term": {"event.dataset": window.dataset}})
    if window.seqs is not None:
        values = [int(s) for s in window.seqs]
        parts = [values[i:i + _TERMS_CHUNK] for i in range(0, len(values), _TERMS_CHUNK)]
        filters.append({"bool": {"should": [{"terms": {SEQ_FIELD: p}} for p in parts], "minimum_should_match": 1}}
                       if parts else {"bool": {"must_not": {"match_all": {}}}})
    return filters
