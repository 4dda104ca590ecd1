"""The audit trail in Elasticsearch: ``<prefix>-audit``, one document per entry, ``_id`` = seq.

**One chain, however many writers.** Several service instances may append at once; the chain
must not fork (two entries claiming the same predecessor) nor skip. Two documents make that so:

* the entry itself, written with ``op_type=create`` under ``_id = seq``: exactly one writer can
  create entry *n*; a writer that lost the race gets a 409 and starts over on the new end;
* the chain head (``audit:head`` in the store's state index: last seq and its hash), moved
  forward after each append with ``if_seq_no``/``if_primary_term`` as the compare-and-swap
  and never moved back.

An appender reads the head, then follows entries past it (real-time GETs by id) to the true
end, and links its entry to the hash it read there. Entries are never rewritten, so the hash
it links to is the one verification will find. The head is only a hint to start from: a
writer that stopped between creating its entry and moving the head leaves nothing broken, the
next appender walks past it and moves the head itself.

:meth:`ElasticsearchAuditLog.verify` also compares the stored end with the head, so deleting
the newest entries is reported too (the head remembers how long the chain was).

**Exactly once, when retried.** :meth:`ElasticsearchAuditLog.append_once` stores a caller's key
with the entry (``key``, outside the hash) and appends nothing when an entry with that key
exists: the ticket store uses it to finish an append that a crash interrupted. The check
cannot miss a concurrent twin: every append is created at the chain end, so the loser of a
race walks past the winner's entry (real-time reads) before it could create its own, and an
entry at or before the head was refreshed before the head moved, so a search finds it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from marketguard.cases.audit import (
    GENESIS,
    AuditEntry,
    AuditError,
    VerifyResult,
    canonical_json,
    entry_hash,
    sign_bundle,
    verify_chain,
)
from marketguard.errors import StoreError
from marketguard.store._es_docs import iso
from marketguard.store._es_records import CAS_ATTEMPTS, EsRecords, parse_time
from marketguard.store.elasticsearch import ElasticsearchStore

__all__ = ["ElasticsearchAuditLog", "HEAD_ID"]

#: Id of the chain-head document in the store's state index.
HEAD_ID = "audit:head"
_BY_SEQ = [{"seq": "asc"}]


def _entry(src: dict[str, Any]) -> AuditEntry:
    details = src.get("details")
    try:
        parsed = json.loads(details) if details is not None else None
    except ValueError:
        parsed = {"_unreadable": details}
    return AuditEntry(int(src["seq"]), parse_time(src["time"]), src["actor"], src["action"],  # type: ignore[arg-type]
                      src["object"], parsed, src["prev_hash"], src["hash"])


class ElasticsearchAuditLog:
    """:class:`~marketguard.cases.audit.AuditLog` in ``<prefix>-audit`` (see the module docstring)."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._entries = EsRecords(store.client, store.names.index("audit"), "audit")
        self._state = EsRecords(store.client, store.names.state, "audit head")
        self._lock = threading.Lock()  # one appender per process at a time: fewer lost races

    # -- writes -----------------------------------------------------------------------------------
    def append(self, actor: str, action: str, object: str, details: Mapping[str, Any] | None = None,
               *, now: datetime | None = None) -> AuditEntry:
        """Append one entry at the end of the chain; retried on the new end after a lost race."""
        return self._append(None, actor, action, object, details, now)

    def append_once(self, key: str, actor: str, action: str, object: str,
                    details: Mapping[str, Any] | None = None, *, now: datetime | None = None) -> AuditEntry:
        """Append the entry unless one with ``key`` exists (then return that one); see the module docstring."""
        return self._append(key, actor, action, object, details, now)

    def _append(self, key: str | None, actor: str, action: str, object: str,
                details: Mapping[str, Any] | None, now: datetime | None) -> AuditEntry:
        clean: dict[str, Any] = json.loads(canonical_json(dict(details or {})))
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        with self._lock:
            for _ in range(CAS_ATTEMPTS):
                last, prev, tail = self._end()
                if key is not None and (done := self._with_key(key, tail)) is not None:
                    return done
                seq = last + 1
                digest = entry_hash(seq, moment, actor, action, object, clean, prev)
                doc = {"seq": seq, "time": iso(moment), "actor": actor, "action": action, "object": object,
                       "details": canonical_json(clean), "prev_hash": prev, "hash": digest}
                if key is not None:
                    doc["key"] = key
                if self._entries.create(str(seq), doc):
                    self._advance(seq, digest)
                    return AuditEntry(seq, moment, actor, action, object, clean, prev, digest)
        raise StoreError(f"audit append: the chain end kept moving for {CAS_ATTEMPTS} attempts")

    def _with_key(self, key: str, tail: list[dict[str, Any]]) -> AuditEntry | None:
        """The entry stored under ``key``: among those past the head, else by search."""
        for src in tail:
            if src.get("key") == key:
                return _entry(src)
        return next(self._stream({"term": {"key": key}}, 1), None)

    def _head(self) -> tuple[int, str]:
        found = self._state.get(HEAD_ID)
        return (int(found[0]["seq"]), str(found[0]["value"])) if found else (0, GENESIS)

    def _end(self) -> tuple[int, str, list[dict[str, Any]]]:
        """The last entry's seq and hash, from the head then past it while entries exist, and the
        entries walked past the head."""
        seq, digest = self._head()
        tail: list[dict[str, Any]] = []
        while (nxt := self._entries.get(str(seq + 1))) is not None:
            seq, digest = seq + 1, str(nxt[0]["hash"])
            tail.append(nxt[0])
        return seq, digest, tail

    def _advance(self, seq: int, digest: str) -> None:
        """Move the head to ``seq`` unless another writer already moved it further."""
        doc = {"seq": seq, "value": digest, "updated": iso(datetime.now(UTC))}
        self._state.swap(HEAD_ID, lambda cur: None if cur is not None and int(cur["seq"]) >= seq else doc)

    # -- reads ------------------------------------------------------------------------------------
    def _stream(self, query: dict[str, Any], limit: int | None = None) -> Iterator[AuditEntry]:
        return (_entry(s) for s in self._entries.search_all(query, _BY_SEQ, limit))

    def entries(self, from_seq: int | None = None, to_seq: int | None = None, *, object: str | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        """Entries in seq order, bounded (inclusive) and optionally for one object."""
        bounds = {"gte": from_seq or 1, "lte": to_seq if to_seq is not None else 1 << 62}
        query: list[dict[str, Any]] = [{"range": {"seq": bounds}}]
        if object is not None:
            query.append({"term": {"object": object}})
        return list(self._stream({"bool": {"filter": query}}, limit))

    def verify(self, from_seq: int | None = None, to_seq: int | None = None) -> VerifyResult:
        """Recompute hashes and links over the range; name the first broken entry."""
        start = from_seq or 1
        if to_seq is not None and to_seq < start:
            raise AuditError(f"empty range: from_seq {start} > to_seq {to_seq}")
        prev: str | None = GENESIS
        if start > 1:
            before = self._entries.get(str(start - 1))
            prev = str(before[0]["hash"]) if before else None
        hi = to_seq if to_seq is not None else 1 << 62
        head, _ = self._head()  # read first: entries up to it are searchable, later ones may come
        stream = self._stream({"range": {"seq": {"gte": start, "lte": hi}}})
        result = verify_chain(stream, expect_seq=start, expect_prev=prev)
        if result.ok and to_seq is None:
            checked_to = start + result.entries - 1
            if head > checked_to:
                missing = checked_to + 1
                return VerifyResult(False, result.entries, missing,
                                    f"entry {missing} is missing (the chain head records {head} entries)")
        return result

    def export(self, from_time: datetime, to_time: datetime, key: bytes) -> str:
        """Signed JSONL bundle of the entries with ``from_time <= time <= to_time``."""
        if to_time < from_time:
            raise AuditError(f"empty time range: from {from_time.isoformat()} is after to {to_time.isoformat()}")
        entries = list(self._stream({"range": {"time": {"gte": iso(from_time), "lte": iso(to_time)}}}))
        lines = [canonical_json(e.to_json()) for e in entries]
        meta = {
            "from": from_time.astimezone(UTC).isoformat(), "to": to_time.astimezone(UTC).isoformat(),
            "first_seq": entries[0].seq if entries else None, "last_seq": entries[-1].seq if entries else None,
        }
        return sign_bundle(lines, key, meta)
