"""``_bulk`` ingest: size- and byte-bounded batches, per-item outcomes, retries with backoff.

Every document is sent with ``op_type=create`` and its own ``_id``: a 409 means "already
stored" (a replay) and is counted as a duplicate, a 429/503 item is retried with exponential
backoff, any other rejection is returned with the server's reason for the dead-letter store.
The hot path never raises for a rejected document; it raises :class:`StoreError` only when
the cluster itself cannot be written after the retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from marketguard.errors import StoreError

__all__ = ["BulkOutcome", "bulk_create", "chunks"]

RETRY_STATUSES = frozenset({429, 503})


@dataclass
class BulkOutcome:
    """What happened to the documents of one :func:`bulk_create` call."""

    created: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (_id, reason)
    retries: int = 0


def chunks(
    docs: Iterable[tuple[str, dict[str, Any]]], max_docs: int, max_bytes: int
) -> Iterator[list[tuple[str, bytes]]]:
    """Serialise ``(_id, doc)`` pairs into chunks of at most ``max_docs`` and ``max_bytes``
    (a single larger document still goes alone)."""
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for doc_id, doc in docs:
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        if chunk and (len(chunk) >= max_docs or size + len(raw) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((doc_id, raw))
        size += len(raw) + 64
    if chunk:
        yield chunk


def bulk_create(
    client: Elasticsearch,
    index: str,
    docs: Iterable[tuple[str, dict[str, Any]]],
    *,
    max_docs: int = 5000,
    max_bytes: int = 8 * 1024 * 1024,
    max_retries: int = 5,
    initial_backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> BulkOutcome:
    """Create documents; return which were created, were duplicates or were rejected (why)."""
    out = BulkOutcome()
    for chunk in chunks(docs, max_docs, max_bytes):
        pending = chunk
        for attempt in range(max_retries + 1):
            retry = _send(client, index, pending, out)
            if not retry:
                break
            if attempt == max_retries:
                out.rejected.extend((i, "still throttled (429/503) after retries") for i, _ in retry)
                break
            out.retries += 1
            sleep(min(max_backoff, initial_backoff * 2**attempt))
            pending = retry
    return out


def _send(client: Elasticsearch, index: str, chunk: list[tuple[str, bytes]], out: BulkOutcome) -> list[tuple[str, bytes]]:
    """Send one chunk; record final outcomes in ``out``; return the items to retry."""
    action = '{"create":{"_index":%s,"_id":%s}}'
    body = b"".join(
        (action % (json.dumps(index), json.dumps(doc_id))).encode() + b"\n" + raw + b"\n" for doc_id, raw in chunk
    )
    try:
        resp = client.bulk(operations=body, refresh=False)
    except (ApiError, TransportError) as exc:
        raise StoreError(f"bulk request of {len(chunk)} documents to {index} failed: {exc}") from exc
    retry = []
    for (doc_id, raw), item in zip(chunk, resp["items"], strict=True):
        result = item.get("create") or next(iter(item.values()))
        status = int(result.get("status", 500))
        if status in (200, 201):
            out.created.append(doc_id)
        elif status == 409:
            out.duplicates.append(doc_id)
        elif status in RETRY_STATUSES:
            retry.append((doc_id, raw))
        else:
            err = result.get("error") or {}
            reason = f"{err.get('type', status)}: {err.get('reason', '')}" if isinstance(err, dict) else str(err)
            out.rejected.append((doc_id, reason))
    return retry
