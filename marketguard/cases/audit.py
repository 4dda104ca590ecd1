"""The audit trail: append-only, hash-chained entries that prove who did what, when and why.

Every entry holds the hash of the entry before it; its own ``hash`` is the SHA-256 of the
canonical JSON (:func:`canonical_json`) of ``{seq, time, actor, action, object, details,
prev_hash}``. The first entry's ``prev_hash`` is :data:`GENESIS`. Editing or deleting any row
breaks the chain at that row, and :meth:`AuditLog.verify` names it.

Conventions for callers (tickets, playbooks, containment, the GDPR clock, the API):

* ``actor`` says who: ``key:<api-key name>`` for a person calling the API (use
  :func:`actor_of`), ``cli:<os user>`` for the CLI, ``playbook:<playbook id>`` for a playbook
  step, ``system`` for the service itself.
* ``action`` is ``<object kind>.<verb>``: ``ticket.open``, ``ticket.status``,
  ``ticket.assign``, ``ticket.comment``, ``ticket.step_failed``, ``ticket.read``,
  ``playbook.step``, ``containment.request``, ``containment.approve``, ``evidence.read``,
  ``audit.export`` ... (free text, but keep to this shape).
* ``object`` is ``<kind>:<id>``: ``ticket:T-…``, ``incident:I-…``, ``action:…``.
* ``details`` is a JSON-serialisable mapping (``why`` goes here, e.g. ``{"reason": …}``).

There is one writer per store (appends hold the store's writer lock), so ``seq`` is gap-free.
:func:`open_audit` picks the backend that lives beside the event store, by its dialect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from marketguard.auth import Principal
from marketguard.errors import ConfigError, MarketGuardError
from marketguard.store import Store

__all__ = [
    "AuditEntry", "VerifyResult", "AuditLog", "AuditError", "GENESIS", "canonical_json",
    "entry_hash", "verify_chain", "sign_bundle", "verify_bundle", "actor_of", "open_audit",
    "AUDIT_LOGS",
]

#: ``prev_hash`` of the first entry.
GENESIS = "0" * 64


class AuditError(MarketGuardError):
    """An audit operation was refused (bad range, unreadable bundle); the message says why."""


@dataclass(frozen=True)
class AuditEntry:
    """One audit record. ``time`` is wall clock (UTC); ``details`` is JSON-serialisable."""

    seq: int
    time: datetime
    actor: str
    action: str
    object: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The entry as plain JSON data (times ISO-8601), as exported."""
        data = asdict(self)
        data["time"] = self.time.isoformat()
        data["details"] = dict(self.details)
        return data


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check: ``entries`` checked; the first broken ``seq`` and why."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = field(default=None, compare=False)


class AuditLog(Protocol):
    """Where audit entries live; one implementation per store dialect. Never updates or deletes."""

    def append(self, actor: str, action: str, object: str, details: Mapping[str, Any] | None = None,
               *, now: datetime | None = None) -> AuditEntry:
        """Append one entry chained to the last; returns it (with its seq and hash)."""
        ...

    def entries(self, from_seq: int | None = None, to_seq: int | None = None, *, object: str | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        """Entries in seq order, optionally bounded (inclusive) and filtered to one object."""
        ...

    def verify(self, from_seq: int | None = None, to_seq: int | None = None) -> VerifyResult:
        """Recompute every hash and link in the range; name the first entry that does not hold.

        A missing ``seq`` (a deleted row) breaks the chain at the first seq after the gap.
        """
        ...

    def export(self, from_time: datetime, to_time: datetime, key: bytes) -> str:
        """A signed JSONL bundle of the entries with ``from_time <= time <= to_time``.

        One entry per line (:meth:`AuditEntry.to_json`); the last line is the signature
        record ``{"signature": {"alg": "HMAC-SHA256", "count", "from", "to", "first_seq",
        "last_seq", "mac"}}`` where ``mac`` is HMAC-SHA256 (hex) with ``key`` over every byte
        before the last line. Check it with :func:`verify_bundle`.
        """
        ...


# -- pure functions shared by every backend ---------------------------------------------------
def canonical_json(data: Any) -> str:
    """The one JSON form hashes are computed over: sorted keys, no spaces, UTF-8, ISO times."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"audit details must be JSON data, got {type(value).__name__}")


def entry_hash(seq: int, time: datetime, actor: str, action: str, object: str,
               details: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's fields, ``prev_hash`` included."""
    body = {
        "seq": seq, "time": time.astimezone(UTC).isoformat(), "actor": actor, "action": action,
        "object": object, "details": details, "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], *, expect_seq: int = 1, expect_prev: str | None = GENESIS) -> VerifyResult:
    """Check entries in seq order: contiguous seqs, each hash correct, each link to the one before.

    ``expect_prev=None`` trusts the first entry's ``prev_hash`` (verifying a sub-range).
    """
    count, prev = 0, expect_prev
    for e in entries:
        count += 1
        if e.seq != expect_seq:
            return VerifyResult(False, count, expect_seq if e.seq > expect_seq else e.seq,
                                f"entry {expect_seq} is missing (next stored entry is {e.seq})")
        if prev is not None and e.prev_hash != prev:
            return VerifyResult(False, count, e.seq, f"entry {e.seq}: prev_hash does not match entry {e.seq - 1}'s hash")
        if entry_hash(e.seq, e.time, e.actor, e.action, e.object, e.details, e.prev_hash) != e.hash:
            return VerifyResult(False, count, e.seq, f"entry {e.seq}: content does not match its hash (edited)")
        prev, expect_seq = e.hash, expect_seq + 1
    return VerifyResult(True, count, last_hash=prev)


def sign_bundle(lines: list[str], key: bytes, meta: Mapping[str, Any]) -> str:
    """Join entry lines and append the signature record (see :meth:`AuditLog.export`)."""
    body = "".join(line + "\n" for line in lines)
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    record = {"signature": {"alg": "HMAC-SHA256", "count": len(lines), **meta, "mac": mac}}
    return body + canonical_json(record) + "\n"


def verify_bundle(bundle: str, key: bytes) -> VerifyResult:
    """Check an exported bundle: the HMAC over its entry lines, then the chain inside it."""
    lines = bundle.splitlines()
    if not lines:
        return VerifyResult(False, 0, None, "empty bundle")
    try:
        sig = json.loads(lines[-1])["signature"]
        body = "".join(line + "\n" for line in lines[:-1])
        entries = [_entry_of(json.loads(line)) for line in lines[:-1]]
    except (ValueError, KeyError, TypeError) as exc:
        return VerifyResult(False, 0, None, f"not an audit bundle: {exc}")
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, str(sig.get("mac", ""))):
        return VerifyResult(False, len(entries), None, "signature does not match (bundle altered or wrong key)")
    if sig.get("count") != len(entries):
        return VerifyResult(False, len(entries), None, f"signature covers {sig.get('count')} entries, bundle has {len(entries)}")
    if not entries:
        return VerifyResult(True, 0)
    return verify_chain(entries, expect_seq=entries[0].seq, expect_prev=None)


def _entry_of(data: dict[str, Any]) -> AuditEntry:
    data = dict(data)
    data["time"] = datetime.fromisoformat(data["time"])
    return AuditEntry(**data)


def actor_of(principal: Principal) -> str:
    """The audit actor of an API caller: ``key:<key name>`` (the key's role is in its record)."""
    return f"key:{principal.name}"


# -- choosing a backend -------------------------------------------------------------------------
def _duckdb_audit(store: Store) -> AuditLog:
    from marketguard.cases.audit_duckdb import DuckDBAuditLog

    return DuckDBAuditLog(store)  # type: ignore[arg-type]


def _elasticsearch_audit(store: Store) -> AuditLog:
    from marketguard.cases.audit_elasticsearch import ElasticsearchAuditLog

    return ElasticsearchAuditLog(store)  # type: ignore[arg-type]


#: Store dialect -> audit-log factory.
AUDIT_LOGS: dict[str, Callable[[Store], AuditLog]] = {"duckdb": _duckdb_audit, "elasticsearch": _elasticsearch_audit}


def open_audit(store: Store) -> AuditLog:
    """The audit log that lives beside ``store`` (chosen by its dialect)."""
    try:
        factory = AUDIT_LOGS[store.dialect]
    except KeyError:
        raise ConfigError(
            f"no audit log for the {store.dialect!r} store; valid: {', '.join(sorted(AUDIT_LOGS))}"
        ) from None
    return factory(store)
