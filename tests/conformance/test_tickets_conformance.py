"""Tickets tell the same story on both stores: the same calls give the same tickets, pages,
refusals, seller views and audit entries; concurrent writers lose no change."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _compare import assert_same

from marketguard.auth import Principal
from marketguard.cases.audit import open_audit
from marketguard.cases.tickets import (
    Link,
    NewTicket,
    StepFailure,
    TicketFilters,
    TicketNotFound,
    TicketStore,
    TransitionError,
    open_tickets,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SELLER_A = Principal("seller-a", "seller:A")
ENTS = {"source.ip": ["9.9.9.9"], "marketplace.seller_id": ["A", "B"], "service.name": ["returns"]}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new(iid: str, queue: str = "operator:secops", priority: Any = "P2", **kw: Any) -> NewTicket:
    return NewTicket(iid, queue, f"Ticket for {iid}", priority, at(60), at(24 * 60), **kw)


def _label(ids: dict[str, str], value: Any) -> Any:
    """Replace backend-chosen ticket ids by their (incident|queue|kind) label, anywhere."""
    if isinstance(value, str):
        for tid, label in ids.items():
            value = value.replace(tid, label)
        return value
    if isinstance(value, dict):
        return {_label(ids, k): _label(ids, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_label(ids, v) for v in value]
    return value


def story(tickets: TicketStore, audit: Any, *, twist: bool = False) -> dict[str, Any]:
    """Every kind of ticket call, with fixed clocks; what each returned, ids made comparable."""
    out: dict[str, Any] = {}
    opened = [tickets.open(new(f"I-{n}", priority=p), actor="playbook:pb", now=at(n)) for n, p in enumerate("P1 P3 P2 P4".split())]
    seller = tickets.open(new("I-9", "seller:A", entities=ENTS, links=(Link("alert", "A-1"), Link("url", "https://x"))),
                          actor="playbook:pb", now=at(5))
    other = tickets.open(new("I-9", "seller:B", entities=ENTS), actor="playbook:pb", now=at(6))  # (ids break ties)
    ids = {r.ticket.id: f"{r.ticket.incident_id}|{r.ticket.queue}|{r.ticket.kind}" for r in [*opened, seller, other]}
    first, s = opened[0].ticket.id, seller.ticket.id
    out["again"] = tickets.open(new("I-0", priority="P4"), actor="playbook:pb", now=at(9))
    out["steps"] = [
        tickets.set_status(first, "acknowledged", actor="key:alice", now=at(10)),
        tickets.set_status(first, "in_progress", actor="key:alice", reason="on it", now=at(11)),
        tickets.assign(first, "alice", actor="key:lead", now=at(12)),
        tickets.assign(first, "alice", actor="key:lead", now=at(13)),  # no change, no audit entry
        tickets.comment(first, "looking", actor="key:alice", now=at(14)),
        tickets.link(first, (Link("evidence", "ev-1"), Link("incident", "I-0")), actor="key:alice", now=at(15)),
        tickets.link(first, (Link("evidence", "ev-1"),), actor="key:alice", now=at(16)),  # nothing new
        tickets.record_step_failure(first, StepFailure(at(17), "pb", "notify", "timeout", 3), actor="playbook:pb"),
        tickets.record_step_failure(first, StepFailure(at(18), "pb", "notify", "timeout", 3), actor="playbook:pb"),
        tickets.update_details(first, {"deadline": at(72 * 60)}, actor="system", now=at(19)),
        tickets.set_status(first, "resolved", actor="key:alice", now=at(20)),
        tickets.set_status(first, "acknowledged", actor="key:alice", reason="came back", now=at(21)),  # reopen
        tickets.assign(opened[1].ticket.id, None, actor="key:lead", queue="operator:sre", now=at(22)),
        tickets.comment(s, "internal", actor="key:bob", internal=True, now=at(23)),
        tickets.comment(s, "please check the parcel" + (" twice" if twist else ""), actor="key:bob", now=at(24)),
    ]
    refused = []
    for call in (lambda: tickets.set_status(first, "closed", actor="key:x", now=at(30)),
                 lambda: tickets.set_status(opened[2].ticket.id, "closed", actor="key:x", now=at(30)),
                 lambda: tickets.comment("T-0000000000000000", "x", actor="key:x")):
        with pytest.raises((TransitionError, TicketNotFound)) as err:
            call()
        refused.append(str(err.value))
    out["refused"] = refused
    out["find"] = [tickets.find("I-0", "operator:secops"), tickets.find("I-0", "operator:dpo")]
    out["seller"] = [tickets.get(s, principal=SELLER_A), tickets.get(other.ticket.id, principal=SELLER_A),
                     tickets.list(principal=SELLER_A).items]
    filters = [None, TicketFilters(priority="P2"), TicketFilters(open_only=True), TicketFilters(status="new"),
               TicketFilters(queue="operator:sre"), TicketFilters(assignee="alice"), TicketFilters(incident_id="I-9"),
               TicketFilters(overdue_at=at(2 * 60)), TicketFilters(overdue_at=at(30 * 60), open_only=True)]
    out["pages"] = [_walk(tickets, f) for f in filters]
    out["audit"] = [(e.seq, e.actor, e.action, e.object, e.details, e.time) for e in audit.entries()]
    result = audit.verify()
    out["verified"] = [result.ok, result.entries]
    return _label(ids, _plain(out))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _walk(tickets: TicketStore, flt: TicketFilters | None) -> list[Any]:
    out, cursor = [], None
    while True:
        page = tickets.list(flt, cursor=cursor, limit=2)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def _open(open_store, backend: str) -> tuple[TicketStore, Any]:
    store = open_store(backend)
    audit = open_audit(store)
    return open_tickets(store, audit), audit


def test_same_calls_same_tickets_and_audit(open_store):
    stories = {name: story(*_open(open_store, name)) for name in ("duckdb", "elasticsearch")}
    duck, es = stories["duckdb"], stories["elasticsearch"]
    assert duck["verified"] == [True, 18] and len(duck["audit"]) == 18
    assert [len(p) for p in duck["pages"]][:3] == [6, 4, 6]
    assert duck["seller"][1] is None and len(duck["seller"][2]) == 1
    for key in duck:
        assert_same(duck[key], es[key], key)
    assert duck == es


def test_one_different_call_makes_the_comparison_fail(open_store):
    duck = story(*_open(open_store, "duckdb"))
    es = story(*_open(open_store, "elasticsearch"), twist=True)
    with pytest.raises(AssertionError, match="steps differ"):
        assert_same(duck["steps"], es["steps"], "steps")


def _instances(open_store, backend: str) -> list[tuple[TicketStore, Any]]:
    """Two writers: on Elasticsearch two stores (two service instances) on one prefix; on
    DuckDB (one writer process by design) two ticket stores over the one store."""
    first = open_store(backend)
    second = open_store(backend, prefix=first.names.prefix) if backend == "elasticsearch" else first
    return [(open_tickets(s, audit := open_audit(s)), audit) for s in (first, second)]


def test_concurrent_writers_lose_no_change(backend, open_store):
    (one, audit), (two, _) = _instances(open_store, backend)
    tid = one.open(new("I-1"), actor="p", now=T0).ticket.id
    errors: list[BaseException] = []

    def writer(tickets: TicketStore, name: str) -> None:
        try:
            for i in range(6):
                tickets.comment(tid, f"{name}-{i}", actor=f"key:{name}", now=at(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t, f"w{n}")) for n, t in enumerate([one, two, one, two])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ticket = two.get(tid)
    assert ticket is not None
    assert sorted(c.text for c in ticket.comments) == sorted(f"w{n}-{i}" for n in range(4) for i in range(6))
    comments = [e for e in audit.entries(object=f"ticket:{tid}") if e.action == "ticket.comment"]
    assert len(comments) == 24
    assert audit.verify().ok
