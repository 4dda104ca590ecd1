"""The audit trail is the same chain on both stores: same entries give the same hashes and the
same signed export; editing or deleting one stored entry makes verify name it; concurrent
writers (threads, and on Elasticsearch two service instances) append one unforked chain that
verifies intact even while they append."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _compare import assert_same

from marketguard.cases.audit import GENESIS, AuditLog, open_audit, verify_bundle

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


def fill(log: AuditLog, n: int = 5, *, twist: bool = False) -> None:
    for i in range(1, n + 1):
        details = {"to": "acknowledged", "n": i, "due": T0 + timedelta(hours=i), "tags": ("a", "b")}
        if twist and i == 3:
            details["n"] = 33
        log.append(f"key:user{i}", "ticket.status", f"ticket:T-{i}", details, now=T0 + timedelta(minutes=i))


def what(log: AuditLog) -> dict[str, Any]:
    """Everything the protocol answers about a filled log."""
    full, part = log.verify(), log.verify(2, 4)
    bundle = log.export(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), KEY)
    return {
        "entries": [e.to_json() for e in log.entries()],
        "ranges": [[e.seq for e in log.entries(2, 4)], [e.seq for e in log.entries(object="ticket:T-3")],
                   [e.seq for e in log.entries(limit=2)]],
        "verify": [(full.ok, full.entries, full.last_hash), (part.ok, part.entries)],
        "bundle": [bundle, verify_bundle(bundle, KEY).ok],
    }


def test_same_entries_same_chain_and_export(open_store):
    answers = {}
    for name in ("duckdb", "elasticsearch"):
        log = open_audit(open_store(name))
        fill(log)
        answers[name] = what(log)
    duck = answers["duckdb"]
    assert duck["entries"][0]["prev_hash"] == GENESIS and duck["verify"][0][:2] == (True, 5)
    assert duck["ranges"] == [[2, 3, 4], [3], [1, 2]] and duck["bundle"][1]
    for key in duck:
        assert_same(duck[key], answers["elasticsearch"][key], key)


def test_one_different_entry_makes_the_comparison_fail(open_store):
    logs = {name: open_audit(open_store(name)) for name in ("duckdb", "elasticsearch")}
    fill(logs["duckdb"])
    fill(logs["elasticsearch"], twist=True)
    with pytest.raises(AssertionError, match="entries differ"):
        assert_same(what(logs["duckdb"])["entries"], what(logs["elasticsearch"])["entries"], "entries")


# -- tampering with what is stored --------------------------------------------------------------
def _edit(store: Any, seq: int, change: dict[str, Any]) -> None:
    """Change one stored entry behind the log's back, as someone with database access could."""
    if store.dialect == "duckdb":
        sets = ", ".join(f"{k} = ?" for k in change)
        with store.lock:
            cur = store.cursor()
            cur.execute(f"UPDATE audit_log SET {sets} WHERE seq = ?", [*change.values(), seq]).fetchall()
            cur.close()
        return
    index = store.names.index("audit")
    doc = store.client.get(index=index, id=str(seq))["_source"] | change
    store.client.index(index=index, id=str(seq), document=doc, refresh=True)


def _delete(store: Any, seq: int) -> None:
    if store.dialect == "duckdb":
        with store.lock:
            cur = store.cursor()
            cur.execute("DELETE FROM audit_log WHERE seq = ?", [seq]).fetchall()
            cur.close()
        return
    store.client.delete(index=store.names.index("audit"), id=str(seq), refresh=True)


TAMPERING = {
    "actor": (lambda s: _edit(s, 3, {"actor": "key:mallory"}), 3, "edited"),
    "details": (lambda s: _edit(s, 3, {"details": json.dumps({"n": 3, "to": "closed"})}), 3, "edited"),
    "rehashed": (lambda s: _edit(s, 3, {"hash": "a" * 64}), 3, "entry 3"),
    "deleted": (lambda s: _delete(s, 2), 2, "missing"),
    "first deleted": (lambda s: _delete(s, 1), 1, "missing"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_with_one_entry_is_named(backend, open_store, kind):
    store = open_store(backend)
    log = open_audit(store)
    fill(log)
    assert log.verify().ok
    tamper, seq, reason = TAMPERING[kind]
    tamper(store)
    result = open_audit(store).verify()
    assert (result.ok, result.first_broken_seq) == (False, seq)
    assert reason in (result.reason or "") and f"entry {seq}" in (result.reason or "")


# -- concurrent writers -------------------------------------------------------------------------
def _writers(open_store, backend: str) -> list[AuditLog]:
    """Two appenders: on Elasticsearch two stores (two service instances) on one prefix; on
    DuckDB (one writer process by design) two audit logs over the one store."""
    first = open_store(backend)
    second = open_store(backend, prefix=first.names.prefix) if backend == "elasticsearch" else first
    return [open_audit(first), open_audit(second)]


def test_concurrent_writers_append_one_unforked_chain(backend, open_store):
    one, two = _writers(open_store, backend)
    errors: list[BaseException] = []

    def writer(log: AuditLog, name: str) -> None:
        try:
            for i in range(12):
                log.append(f"key:{name}", "ticket.comment", f"ticket:{name}-{i}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    alarms: list[object] = []
    writing = threading.Event()

    def verifier() -> None:  # a scheduled verification while others append never cries wolf
        while writing.is_set():
            result = one.verify()
            if not result.ok:
                alarms.append(result)

    threads = [threading.Thread(target=writer, args=(log, f"w{n}")) for n, log in enumerate([one, two, one, two])]
    writing.set()
    checker = threading.Thread(target=verifier)
    checker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writing.clear()
    checker.join()
    assert not errors, errors
    assert not alarms, alarms[:3]
    entries = two.entries()
    assert [e.seq for e in entries] == list(range(1, 49))
    assert sorted(e.object for e in entries) == sorted(f"ticket:w{n}-{i}" for n in range(4) for i in range(12))
    assert len({e.prev_hash for e in entries}) == 48  # no two entries claim one predecessor
    assert one.verify().ok and two.verify().ok


def test_elasticsearch_append_continues_past_a_writer_that_stopped_half_way(open_store):
    """A writer that created its entry but died before moving the chain head forks nothing:
    the next appender walks past the entry and links to it."""
    from marketguard.cases.audit import entry_hash
    from marketguard.store._es_docs import iso

    store = open_store("elasticsearch")
    log = open_audit(store)
    fill(log, 3)
    last = log.entries()[-1]
    moment = T0 + timedelta(minutes=9)
    digest = entry_hash(4, moment, "key:crashed", "ticket.open", "ticket:T-9", {}, last.hash)
    store.client.index(index=store.names.index("audit"), id="4", op_type="create", refresh=True, document={
        "seq": 4, "time": iso(moment), "actor": "key:crashed", "action": "ticket.open", "object": "ticket:T-9",
        "details": "{}", "prev_hash": last.hash, "hash": digest})
    entry = open_audit(store).append("system", "ticket.open", "ticket:T-10", now=moment)
    assert (entry.seq, entry.prev_hash) == (5, digest)
    assert log.verify().ok and log.verify().entries == 5


def test_elasticsearch_deleting_the_newest_entries_is_named(open_store):
    """The chain head remembers the length, so cutting the tail off is reported too."""
    store = open_store("elasticsearch")
    log = open_audit(store)
    fill(log)
    _delete(store, 5)
    result = log.verify()
    assert (result.ok, result.first_broken_seq) == (False, 5) and "missing" in (result.reason or "")
