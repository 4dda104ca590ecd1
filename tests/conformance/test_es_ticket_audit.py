"""On Elasticsearch a ticket change and its audit entry are two writes; a crash between them
must not lose the entry nor write it twice. The change carries its audit record
(``pending_audit``) in the same compare-and-swap write, and the next open or change of the
ticket appends it (keyed: exactly once) before its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from marketguard.cases.audit_elasticsearch import ElasticsearchAuditLog
from marketguard.cases.tickets import NewTicket
from marketguard.cases.tickets_elasticsearch import PENDING, ElasticsearchTicketStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NEW = NewTicket("INC-1", "operator:secops", "Card testing", "P2", T0 + timedelta(hours=1), T0 + timedelta(days=1))


class Crash(Exception):
    """The process died here."""


class CrashingAudit(ElasticsearchAuditLog):
    """The real audit log on the cluster; ``crash`` makes the next keyed append die before
    (``"before"``) or right after (``"after"``) its entry is written."""

    crash: str | None = None

    def append_once(self, *args: Any, **kwargs: Any) -> Any:
        when, self.crash = self.crash, None
        if when == "before":
            raise Crash("died before appending the audit entry")
        entry = super().append_once(*args, **kwargs)
        if when == "after":
            raise Crash("died before clearing the pending record")
        return entry


def _trail(audit: ElasticsearchAuditLog) -> list[tuple[str, str, Any]]:
    return [(e.action, e.object, e.details) for e in audit.entries()]


def _pending(es_client: Any, store: Any, tid: str) -> Any:
    return es_client.get(index=store.names.index("tickets"), id=tid)["_source"].get(PENDING)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_audit_append_is_completed_once_by_the_next_change(when, es_client, open_store):
    store = open_store("elasticsearch")
    dying = CrashingAudit(store)
    opened = ElasticsearchTicketStore(store, dying).open(NEW, actor="key:svc", now=T0).ticket
    dying.crash = when
    with pytest.raises(Crash):
        ElasticsearchTicketStore(store, dying).set_status(opened.id, "acknowledged", actor="key:alice", now=T0 + timedelta(minutes=5))
    assert _pending(es_client, store, opened.id) is not None  # the change is stored with its record
    assert [a for a, _, _ in _trail(dying)] == (["ticket.open"] if when == "before" else ["ticket.open", "ticket.status"])

    audit = ElasticsearchAuditLog(store)  # another process takes over
    tickets = ElasticsearchTicketStore(store, audit)
    tickets.comment(opened.id, "looking", actor="key:bob", now=T0 + timedelta(minutes=6))
    tid = f"ticket:{opened.id}"
    trail = _trail(audit)
    assert [(action, obj) for action, obj, _ in trail] == [
        ("ticket.open", tid), ("ticket.status", tid), ("ticket.comment", tid)]
    assert trail[1][2] == {"from": "new", "to": "acknowledged", "reason": None}
    assert [e.actor for e in audit.entries()] == ["key:svc", "key:alice", "key:bob"]
    assert audit.entries()[1].time == T0 + timedelta(minutes=5)
    assert audit.verify().ok and audit.verify().entries == 3
    assert _pending(es_client, store, opened.id) is None


def test_a_crashed_open_is_audited_by_the_next_open_of_the_same_ticket(es_client, open_store):
    store = open_store("elasticsearch")
    dying = CrashingAudit(store)
    dying.crash = "before"
    with pytest.raises(Crash):
        ElasticsearchTicketStore(store, dying).open(NEW, actor="key:svc", now=T0)
    assert dying.entries() == []
    audit = ElasticsearchAuditLog(store)
    again = ElasticsearchTicketStore(store, audit).open(NEW, actor="key:svc", now=T0 + timedelta(minutes=1))
    assert not again.created
    (entry,) = audit.entries()
    assert (entry.action, entry.object, entry.time) == ("ticket.open", f"ticket:{again.ticket.id}", T0)
    assert audit.verify().ok and _pending(es_client, store, again.ticket.id) is None


def test_a_keyed_append_lands_once_whoever_retries_it(open_store):
    store = open_store("elasticsearch")
    one, two = ElasticsearchAuditLog(store), ElasticsearchAuditLog(store)
    first = one.append_once("k1", "key:a", "ticket.comment", "ticket:T-1", {"text": "x"}, now=T0)
    one.append("key:b", "other", "ticket:T-2", now=T0)
    assert two.append_once("k1", "key:a", "ticket.comment", "ticket:T-1", {"text": "x"}, now=T0) == first
    assert [e.action for e in two.entries()] == ["ticket.comment", "other"]
    assert two.append_once("k2", "key:a", "ticket.comment", "ticket:T-1", {"text": "x"}, now=T0).seq == 3
