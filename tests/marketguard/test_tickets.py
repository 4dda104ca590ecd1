"""Tickets and routing: priority matrix, SLAs, workflow, idempotent open, persistence, scoping, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from marketguard.app.cli_tickets import tickets_app
from marketguard.auth import Principal
from marketguard.cases import Incident
from marketguard.cases.audit import AuditLog, open_audit
from marketguard.cases.routing import TicketPolicy, load_policy, parse_duration
from marketguard.cases.tickets import (
    TRANSITIONS,
    Comment,
    Link,
    NewTicket,
    StepFailure,
    TicketError,
    TicketFilters,
    TicketNotFound,
    TicketStore,
    TransitionError,
    open_tickets,
)
from marketguard.errors import ConfigError
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
ROUTING = REPO / "playbooks" / "routing.yaml"


def incident(iid: str = "I-1", *, type: str = "security", severity: str = "high", **entities: list[str]) -> Incident:
    """An incident; entity keyword names use '_' for '.' (source_ip=[...])."""
    ents = {k.replace("_", ".", 1): v for k, v in entities.items()}
    return Incident(iid, f"Incident {iid}", type, severity, severity, ents, set(), ["A-1"], ["r1"],
                    T0, T0, "open", T0, T0)


class Db:
    """Tickets and audit on a real DuckDB file, reopenable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open()

    def open(self) -> None:
        self.store = DuckDBStore(self.path)
        self.audit: AuditLog = open_audit(self.store)
        self.tickets: TicketStore = open_tickets(self.store, self.audit)

    def reopen(self) -> None:
        self.store.close()
        self.open()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    made = Db(tmp_path / "t.duckdb")
    yield made
    made.store.close()


def new(iid: str = "I-1", queue: str = "operator:secops", priority: Any = "P2", **kw: Any) -> NewTicket:
    return NewTicket(iid, queue, f"Ticket for {iid}", priority, T0 + timedelta(hours=1), T0 + timedelta(hours=24), **kw)


# -- policy: impact, matrix, SLAs, routing ---------------------------------------------------------
@pytest.fixture(scope="module")
def policy() -> TicketPolicy:
    return load_policy(ROUTING)


def test_shipped_routing_file_loads_and_covers_every_queue(policy: TicketPolicy) -> None:
    queues = {q for r in policy.routes for q in r.queues}
    assert {"operator:secops", "operator:sre", "operator:payments", "operator:dpo"} <= queues
    assert "seller:{marketplace.seller_id}" in queues
    assert policy == load_policy(ROUTING)


@pytest.mark.parametrize(("severity", "entities", "tags", "expected"), [
    ("critical", {}, [], ("low", "P2")),
    ("critical", {"user_id": [f"u{i}" for i in range(10)]}, [], ("medium", "P1")),
    ("high", {}, [], ("low", "P3")),
    ("high", {"service_name": ["checkout"]}, [], ("high", "P1")),
    ("high", {"marketplace_seller_id": ["s1", "s2"]}, [], ("medium", "P2")),
    ("medium", {}, ["marketguard.personal_data"], ("high", "P2")),
    ("medium", {"user_id": [f"u{i}" for i in range(100)]}, [], ("high", "P2")),
    ("low", {"service_name": ["search"]}, [], ("low", "P4")),
    ("informational", {"service_name": ["payments"]}, [], ("high", "P4")),
])
def test_priority_from_severity_and_impact(policy: TicketPolicy, severity: str, entities: dict[str, list[str]],
                                           tags: list[str], expected: tuple[str, str]) -> None:
    inc = incident(severity=severity, **entities)
    impact = policy.impact.of(inc, tags)
    assert (impact, policy.priority_of(severity, impact)) == expected


def test_due_times_follow_the_priority_sla(policy: TicketPolicy) -> None:
    assert policy.due("P1", T0) == (T0 + timedelta(minutes=15), T0 + timedelta(hours=4))
    assert policy.due("P4", T0) == (T0 + timedelta(hours=24), T0 + timedelta(days=14))
    custom = TicketPolicy(sla={**policy.sla, "P1": {"ack": "5m", "resolve": 3600}})  # type: ignore[dict-item]
    assert custom.due("P1", T0) == (T0 + timedelta(minutes=5), T0 + timedelta(hours=1))


def test_routing_to_several_owners(policy: TicketPolicy) -> None:
    pay = incident(type="fraud", severity="high", service_name=["checkout"], source_ip=["1.2.3.4"])
    assert {r.queue for r in policy.route(pay, ["marketguard.card_testing"])} == {"operator:payments", "operator:secops"}
    leak = incident(type="security")
    assert {r.queue for r in policy.route(leak, ["attack.collection"])} == {"operator:secops", "operator:dpo"}
    sla = incident(type="sla", marketplace_seller_id=["s1", "s2"])
    assert {r.queue for r in policy.route(sla)} == {"seller:s1", "seller:s2"}
    assert {r.queue for r in policy.route(incident(type="sla"))} == {"operator:sre"}
    assert {r.queue for r in policy.route(incident(type="availability"))} == {"operator:sre"}
    assert [r.queue for r in TicketPolicy().route(incident())] == ["operator:secops"]  # default queue


def test_plan_builds_tickets_with_priority_due_and_links(policy: TicketPolicy) -> None:
    planned = policy.plan(incident(type="sla", severity="high", marketplace_seller_id=["s1"]), now=T0)
    [t] = planned
    assert (t.queue, t.priority, t.impact) == ("seller:s1", "P3", "low")
    assert (t.ack_due, t.resolve_due) == (T0 + timedelta(hours=4), T0 + timedelta(days=3))
    assert Link("incident", "I-1") in t.links and Link("alert", "A-1") in t.links
    assert t.details["routed_by"] == ["seller-sla"]


@pytest.mark.parametrize(("text", "message"), [
    ("priority: {high: {low: P1}}", "priority matrix lacks"),
    ("routes: [{id: a, queues: [operator:legal]}]", "unknown queue 'operator:legal'"),
    ("routes: [{id: a, queues: [operator:sre]}, {id: a, queues: [operator:sre]}]", "duplicate route ids: a"),
    ("sla: {P1: {ack: soon, resolve: 1h}}", "expected a positive duration"),
    ("routes: [{id: a, queues: [operator:sre], colour: red}]", "routes.0.colour"),
    ("- just a list", "expected a mapping"),
])
def test_bad_policy_files_fail_fast_with_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="routing.yaml") as info:
        load_policy(path)
    assert message in str(info.value)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    for bad in ("0m", "-1h", "1w", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


# -- store: open, workflow, times ------------------------------------------------------------------
def test_open_is_idempotent_per_incident_queue_and_kind(db: Db) -> None:
    first = db.tickets.open(new(), actor="playbook:x", now=T0)
    again = db.tickets.open(new(priority="P1"), actor="playbook:x", now=T0 + timedelta(hours=1))
    assert first.created and not again.created and again.ticket == first.ticket
    other_queue = db.tickets.open(new(queue="operator:dpo"), actor="playbook:x", now=T0)
    other_kind = db.tickets.open(new(kind="gdpr_art33", queue="operator:dpo"), actor="playbook:x", now=T0)
    assert len({first.ticket.id, other_queue.ticket.id, other_kind.ticket.id}) == 3
    assert [e.action for e in db.audit.entries()] == ["ticket.open"] * 3
    moved = db.tickets.assign(first.ticket.id, "alice", actor="key:lead", queue="operator:sre")
    assert not db.tickets.open(new(), actor="playbook:x").created  # keyed on the queue it opened in
    assert db.tickets.find("I-1", "operator:secops") == moved
    with pytest.raises(TicketError, match="unknown queue 'operator:legal'"):
        db.tickets.assign(first.ticket.id, "alice", actor="key:lead", queue="operator:legal")


def test_workflow_with_reopen_and_tta_ttr(db: Db) -> None:
    t = db.tickets.open(new(), actor="p", now=T0).ticket
    assert (t.status, t.time_to_acknowledge, t.time_to_resolve) == ("new", None, None)
    t = db.tickets.set_status(t.id, "acknowledged", actor="key:bob", now=T0 + timedelta(minutes=7))
    assert t.time_to_acknowledge == timedelta(minutes=7)
    t = db.tickets.set_status(t.id, "in_progress", actor="key:bob", now=T0 + timedelta(minutes=9))
    t = db.tickets.set_status(t.id, "resolved", actor="key:bob", reason="blocked", now=T0 + timedelta(hours=2))
    assert t.time_to_resolve == timedelta(hours=2)
    t = db.tickets.set_status(t.id, "closed", actor="key:bob", now=T0 + timedelta(hours=3))
    assert t.closed_at == T0 + timedelta(hours=3)
    t = db.tickets.set_status(t.id, "acknowledged", actor="key:bob", reason="came back", now=T0 + timedelta(hours=5))
    assert (t.status, t.reopened, t.resolved_at, t.closed_at) == ("acknowledged", 1, None, None)
    assert t.time_to_acknowledge == timedelta(minutes=7)  # the first acknowledgement counts
    t = db.tickets.set_status(t.id, "resolved", actor="key:bob", now=T0 + timedelta(hours=6))
    assert t.time_to_resolve == timedelta(hours=6)
    statuses = [(e.details["from"], e.details["to"]) for e in db.audit.entries() if e.action == "ticket.status"]
    assert statuses == [("new", "acknowledged"), ("acknowledged", "in_progress"), ("in_progress", "resolved"),
                        ("resolved", "closed"), ("closed", "acknowledged"), ("acknowledged", "resolved")]
    assert db.audit.verify().ok


@pytest.mark.parametrize(("path", "target"), [
    ((), "closed"), ((), "new"), (("acknowledged",), "acknowledged"), (("in_progress",), "acknowledged"),
    (("resolved",), "in_progress"), (("resolved", "closed"), "resolved"), (("resolved", "closed"), "closed"),
])
def test_refused_transitions_say_why_and_change_nothing(db: Db, path: tuple[str, ...], target: str) -> None:
    t = db.tickets.open(new(), actor="p", now=T0).ticket
    for step in path:
        t = db.tickets.set_status(t.id, step, actor="p")  # type: ignore[arg-type]
    entries = len(db.audit.entries())
    with pytest.raises(TransitionError) as info:
        db.tickets.set_status(t.id, target, actor="p")  # type: ignore[arg-type]
    allowed = ", ".join(TRANSITIONS[t.status])
    assert str(info.value) == f"ticket {t.id}: cannot move from {t.status!r} to {target!r} (allowed: {allowed})"
    assert db.tickets.get(t.id) == t and len(db.audit.entries()) == entries


def test_overdue_and_breach_flags(db: Db) -> None:
    t = db.tickets.open(new(), actor="p", now=T0).ticket
    assert not t.ack_breached(T0 + timedelta(minutes=59)) and t.ack_breached(T0 + timedelta(minutes=61))
    late = TicketFilters(overdue_at=T0 + timedelta(minutes=61))
    assert [x.id for x in db.tickets.list(late).items] == [t.id]
    db.tickets.set_status(t.id, "acknowledged", actor="p", now=T0 + timedelta(minutes=30))
    assert db.tickets.list(late).items == []
    assert [x.id for x in db.tickets.list(TicketFilters(overdue_at=T0 + timedelta(days=2))).items] == [t.id]


def test_comments_links_failures_details_persist_across_reopen(db: Db) -> None:
    t = db.tickets.open(new(entities={"source.ip": ["1.2.3.4"]}, links=(Link("incident", "I-1"),)),
                        actor="p", now=T0).ticket
    db.tickets.comment(t.id, "looking", actor="key:bob", now=T0 + timedelta(minutes=1))
    db.tickets.comment(t.id, "IP belongs to s2's customer", actor="key:bob", internal=True, now=T0 + timedelta(minutes=2))
    db.tickets.link(t.id, (Link("evidence", "ev-1", "pcap"), Link("incident", "I-1")), actor="p")
    db.tickets.link(t.id, (Link("evidence", "ev-1", "pcap"),), actor="p")  # no-op: no audit entry
    failure = StepFailure(T0, "card-testing", "notify", "HTTP 500 from hook", 3)
    db.tickets.record_step_failure(t.id, failure, actor="playbook:card-testing")
    db.tickets.record_step_failure(t.id, failure, actor="playbook:card-testing")  # re-run: no duplicate
    db.tickets.update_details(t.id, {"gdpr_deadline": T0 + timedelta(hours=72)}, actor="playbook:gdpr")
    before = db.tickets.get(t.id)
    db.reopen()
    after = db.tickets.get(t.id)
    assert after == before and after is not None
    assert [c.text for c in after.comments] == ["looking", "IP belongs to s2's customer"]
    assert after.comments[1] == Comment(T0 + timedelta(minutes=2), "key:bob", "IP belongs to s2's customer", True)
    assert after.links == (Link("incident", "I-1"), Link("evidence", "ev-1", "pcap"))
    assert after.failed_steps == (failure,)
    assert after.details == {"gdpr_deadline": (T0 + timedelta(hours=72)).isoformat()}
    actions = [e.action for e in db.audit.entries()]
    assert actions == ["ticket.open", "ticket.comment", "ticket.comment", "ticket.link", "ticket.step_failed", "ticket.details"]
    assert db.audit.verify().ok


def test_unknown_ticket_writes_raise_not_found(db: Db) -> None:
    with pytest.raises(TicketNotFound, match="T-nope"):
        db.tickets.comment("T-nope", "x", actor="p")
    assert db.tickets.get("T-nope") is None and db.audit.entries() == []


def test_list_filters_and_pages(db: Db) -> None:
    ids = [db.tickets.open(new(f"I-{i}", priority=f"P{i % 4 + 1}"), actor="p", now=T0 + timedelta(minutes=i)).ticket.id
           for i in range(10)]
    everything = db.tickets.list(limit=100).items
    assert [t.id for t in everything] == ids[::-1]
    walked: list[str] = []
    cursor = None
    while True:
        page = db.tickets.list(None, cursor, 3)
        walked += [t.id for t in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert walked == ids[::-1]
    assert {t.priority for t in db.tickets.list(TicketFilters(priority="P2")).items} == {"P1", "P2"}
    db.tickets.set_status(ids[0], "resolved", actor="p")
    assert ids[0] not in [t.id for t in db.tickets.list(TicketFilters(open_only=True)).items]
    assert [t.id for t in db.tickets.list(TicketFilters(status="resolved")).items] == [ids[0]]


def test_sellers_see_only_their_own_tickets_redacted(db: Db) -> None:
    ents = {"source.ip": ["9.9.9.9"], "user.id": ["u1"], "marketplace.seller_id": ["A", "B"], "service.name": ["returns"]}
    mine = db.tickets.open(new(queue="seller:A", entities=ents, links=(Link("alert", "A-1"), Link("url", "https://x"))),
                           actor="p", now=T0).ticket
    theirs = db.tickets.open(new(queue="seller:B", entities=ents), actor="p", now=T0).ticket
    ops = db.tickets.open(new(queue="operator:secops"), actor="p", now=T0).ticket
    db.tickets.comment(mine.id, "internal note", actor="key:bob", internal=True)
    db.tickets.comment(mine.id, "please check the parcel", actor="key:bob")
    a = Principal("seller-a", "seller:A")
    assert [t.id for t in db.tickets.list(principal=a).items] == [mine.id]
    assert db.tickets.get(theirs.id, principal=a) is None and db.tickets.get(ops.id, principal=a) is None
    seen = db.tickets.get(mine.id, principal=a)
    assert seen is not None
    assert seen.entities == {"marketplace.seller_id": ["A"], "service.name": ["returns"]}
    assert [c.text for c in seen.comments] == ["please check the parcel"]
    assert seen.links == (Link("url", "https://x"),)
    staff = db.tickets.get(mine.id, principal=Principal("bob", "analyst"))
    assert staff is not None and staff.entities == ents and len(staff.comments) == 2
    assert len(db.tickets.list(principal=Principal("bob", "analyst")).items) == 3


def test_a_failed_write_leaves_no_audit_entry(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    t = db.tickets.open(new(), actor="p").ticket

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(db.audit, "append_with", boom)
    with pytest.raises(RuntimeError):
        db.tickets.comment(t.id, "x", actor="p")
    monkeypatch.undo()
    assert db.tickets.get(t.id) == t and len(db.audit.entries()) == 1


# -- CLI -------------------------------------------------------------------------------------------
cli = typer.Typer()
cli.add_typer(tickets_app, name="tickets")


@cli.callback()
def _root() -> None:
    """Test root (the lead registers `tickets` on marketguard's CLI)."""


def test_cli_on_call_flow(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    made = Db(data / "marketguard.duckdb")
    tid = made.tickets.open(new(entities={"source.ip": ["1.2.3.4"]}), actor="p", now=T0).ticket.id
    made.store.close()
    runner = CliRunner(env={"MARKETGUARD_CONFIG": "/nonexistent"})

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["tickets", *args, "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        return result

    listed = json.loads(run("list", "--open", "-o", "json").stdout)
    assert [t["id"] for t in listed] == [tid]
    run("ack", tid, "--as", "cli:carol")
    run("assign", tid, "carol")
    run("comment", tid, "on it", "--internal")
    run("resolve", tid, "--reason", "blocked at WAF")
    shown = json.loads(run("show", tid, "-o", "json").stdout)
    assert (shown["status"], shown["assignee"], shown["comments"][0]["internal"]) == ("resolved", "carol", True)
    assert shown["time_to_acknowledge_s"] is not None and shown["time_to_resolve_s"] is not None
    assert "P2" in run("list").stdout
    refused = runner.invoke(cli, ["tickets", "resolve", tid, "--data-dir", str(data)])
    assert refused.exit_code == 2 and "cannot move from 'resolved' to 'resolved'" in refused.output
    missing = runner.invoke(cli, ["tickets", "show", "T-nope", "--data-dir", str(data)])
    assert missing.exit_code == 1 and "no ticket" in missing.output
    made.open()
    actions = [e.action for e in made.audit.entries()]
    assert actions == ["ticket.open", "ticket.status", "ticket.assign", "ticket.comment", "ticket.status", "ticket.read"]
    assert made.audit.entries()[1].actor == "cli:carol"
    made.store.close()



def test_incident_from_the_case_store_opens_routed_tickets_once(db: Db, policy: TicketPolicy, tmp_path: Path) -> None:
    from marketguard.cases import open_cases
    from marketguard.config import Settings
    from marketguard.detections import Detection

    cases = open_cases(db.store, Settings(data_dir=tmp_path))
    evidence = {"event.id": "e1", "source.ip": "1.2.3.4", "service.name": "checkout", "marketplace.seller_id": "s9"}
    hit = Detection("card", "Card testing fraud", "high", "tests", None, "event", T0, ("e1",), evidence,
                    tags=("marketguard.type.fraud", "marketguard.card_testing"))
    [iid] = cases.record([hit], now=T0).new_incidents
    detail = cases.incident(iid)
    assert detail is not None
    for _ in range(2):  # a playbook run twice changes nothing the second time
        opened = [db.tickets.open(n, actor="playbook:card-testing", now=T0)
                  for n in policy.plan(detail.incident, detail.alerts, now=T0)]
    assert {(o.ticket.queue, o.ticket.priority, o.created) for o in opened} == {
        ("operator:payments", "P1", False), ("operator:secops", "P1", False)}
    assert [e.action for e in db.audit.entries()] == ["ticket.open", "ticket.open"]
