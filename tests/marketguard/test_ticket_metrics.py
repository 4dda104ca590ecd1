"""MTTA and MTTR of incidents (``marketguard_incident_acknowledge_seconds`` /
``marketguard_incident_resolve_seconds``), observed when tickets change state.

Real DuckDB file, real case store (the incident and its ``created``), real ticket store from
:func:`~marketguard.cases.tickets.open_tickets` with the case store, as the service wires it.
Every expected value is computed here from the times the test moves the tickets at: MTTA =
first acknowledgement − incident creation, MTTR = last resolution − incident creation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from marketguard.cases import CaseStore, open_cases
from marketguard.cases.audit import open_audit
from marketguard.cases.routing import load_policy
from marketguard.cases.tickets import NewTicket, TicketStore, TransitionError, open_tickets
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import ACK_BUCKETS, make_metrics
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ACK = "marketguard_incident_acknowledge_seconds"
RESOLVE = "marketguard_incident_resolve_seconds"


class Db:
    """Cases and tickets on one DuckDB file, with a registry that a restart replaces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open()

    def open(self) -> None:
        self.store = DuckDBStore(self.path)
        self.registry = CollectorRegistry()
        metrics = make_metrics(self.registry)
        self.cases: CaseStore = open_cases(self.store, Settings(data_dir=self.path.parent), metrics=metrics)
        self.tickets: TicketStore = open_tickets(self.store, open_audit(self.store), cases=self.cases, metrics=metrics)

    def restart(self) -> None:
        self.store.close()
        self.open()

    def hist(self, name: str, severity: str) -> tuple[float, float]:
        """(observations, sum of seconds) of one histogram series."""
        labels = {"severity": severity}
        return (self.registry.get_sample_value(f"{name}_count", labels) or 0.0,
                self.registry.get_sample_value(f"{name}_sum", labels) or 0.0)

    def incident(self, event: str, level: str = "high") -> tuple[str, datetime, str]:
        """Record one detection at T0; (incident id, its created, its severity)."""
        hit = Detection("card-testing", "Card testing", level, "tests", None, "event", T0, (event,),
                        {"event.id": event, "source.ip": f"198.51.100.{len(event)}"},
                        tags=("marketguard.type.fraud", "marketguard.fraud.card_testing"))
        [iid] = self.cases.record([hit], now=T0).new_incidents
        detail = self.cases.incident(iid)
        assert detail is not None
        return iid, detail.incident.created, detail.incident.severity

    def open_routed(self, iid: str, at: datetime) -> list[str]:
        """Open the tickets routing.yaml plans for the incident (payments and secops for fraud)."""
        detail = self.cases.incident(iid)
        assert detail is not None
        plans = load_policy(REPO / "playbooks" / "routing.yaml").plan(detail.incident, detail.alerts, now=at)
        return [self.tickets.open(p, actor="playbook:test", now=at).ticket.id for p in plans]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    made = Db(tmp_path / "mg.duckdb")
    yield made
    made.store.close()


def test_mtta_is_the_first_acknowledgement_of_any_ticket_once(db: Db) -> None:
    iid, created, severity = db.incident("e1")
    first, second = db.open_routed(iid, T0 + timedelta(seconds=20))
    assert db.hist(ACK, severity) == (0, 0)
    acked = T0 + timedelta(minutes=4)
    db.tickets.set_status(first, "acknowledged", actor="key:analyst", now=acked)
    mtta = (acked - created).total_seconds()
    assert db.hist(ACK, severity) == (1, mtta)
    bucket = min(b for b in ACK_BUCKETS if b >= mtta)
    assert db.registry.get_sample_value(f"{ACK}_bucket", {"severity": severity, "le": str(float(bucket))}) == 1
    below = max(b for b in ACK_BUCKETS if b < mtta)
    assert db.registry.get_sample_value(f"{ACK}_bucket", {"severity": severity, "le": str(float(below))}) == 0

    db.tickets.set_status(second, "in_progress", actor="key:oncall", now=acked + timedelta(minutes=5))
    with pytest.raises(TransitionError):  # a retried acknowledgement is refused and counts nothing
        db.tickets.set_status(first, "acknowledged", actor="key:analyst", now=acked + timedelta(minutes=6))
    db.tickets.set_status(first, "in_progress", actor="key:analyst", now=acked + timedelta(minutes=7))
    assert db.hist(ACK, severity) == (1, mtta)


def test_mttr_is_the_resolution_of_the_last_open_ticket_once(db: Db) -> None:
    iid, created, severity = db.incident("e2", level="critical")
    first, second = db.open_routed(iid, T0 + timedelta(seconds=30))
    db.tickets.set_status(first, "resolved", actor="key:analyst", now=T0 + timedelta(hours=1))
    assert db.hist(RESOLVE, severity) == (0, 0), "one ticket of the incident is still open"
    done = T0 + timedelta(hours=3, minutes=10)
    db.tickets.set_status(second, "acknowledged", actor="key:oncall", now=T0 + timedelta(hours=2))
    db.tickets.set_status(second, "resolved", actor="key:oncall", now=done)
    mttr = (done - created).total_seconds()
    assert db.hist(RESOLVE, severity) == (1, mttr)
    # resolving directly from new also acknowledged the first ticket: that was the incident's MTTA
    assert db.hist(ACK, severity) == (1, 3600.0)

    for ticket in (first, second):
        db.tickets.set_status(ticket, "closed", actor="key:analyst", now=done + timedelta(hours=1))
    db.tickets.set_status(second, "acknowledged", actor="key:analyst", now=done + timedelta(hours=2))  # reopen
    db.tickets.set_status(second, "resolved", actor="key:analyst", now=done + timedelta(hours=5))
    assert db.hist(RESOLVE, severity) == (1, mttr), "a reopened incident is not resolved a second time"


def test_a_ticket_opened_after_the_incident_was_resolved_does_not_resolve_it_again(db: Db) -> None:
    iid, created, severity = db.incident("e3")
    tickets = db.open_routed(iid, T0)
    for n, ticket in enumerate(tickets, start=1):
        db.tickets.set_status(ticket, "resolved", actor="key:analyst", now=T0 + n * timedelta(hours=1))
    resolved = (T0 + len(tickets) * timedelta(hours=1) - created).total_seconds()
    assert db.hist(RESOLVE, severity) == (1, resolved)
    late = db.tickets.open(NewTicket(iid, "operator:dpo", "Late owner", "P3", T0, T0 + timedelta(days=3)),
                           actor="playbook:test", now=T0 + timedelta(hours=6)).ticket.id
    db.tickets.set_status(late, "resolved", actor="key:dpo", now=T0 + timedelta(hours=8))
    assert db.hist(RESOLVE, severity) == (1, resolved)


def test_restart_and_severities_are_kept_apart(db: Db) -> None:
    """After a restart (fresh registry, same file) moves count only what is new; each
    incident's observation carries its own severity."""
    high, high_created, high_sev = db.incident("e4", level="high")
    low, low_created, low_sev = db.incident("e5-other", level="low")
    assert high_sev != low_sev
    [h1, h2] = db.open_routed(high, T0)
    [l1, l2] = db.open_routed(low, T0)
    db.tickets.set_status(h1, "acknowledged", actor="key:analyst", now=T0 + timedelta(minutes=10))
    db.restart()
    db.tickets.set_status(h2, "acknowledged", actor="key:analyst", now=T0 + timedelta(minutes=11))
    assert db.hist(ACK, high_sev) == (0, 0), "the incident was acknowledged before the restart"
    db.tickets.set_status(l2, "acknowledged", actor="key:analyst", now=T0 + timedelta(hours=2))
    db.tickets.set_status(l1, "resolved", actor="key:analyst", now=T0 + timedelta(hours=5))
    db.tickets.set_status(l2, "resolved", actor="key:analyst", now=T0 + timedelta(hours=30))
    assert db.hist(ACK, low_sev) == (1, (T0 + timedelta(hours=2) - low_created).total_seconds())
    assert db.hist(RESOLVE, low_sev) == (1, (T0 + timedelta(hours=30) - low_created).total_seconds())
    assert db.hist(RESOLVE, high_sev) == (0, 0)


def test_tickets_of_an_unknown_incident_still_move(db: Db) -> None:
    """A ticket whose incident the case store does not know moves as usual and observes nothing."""
    ticket = db.tickets.open(NewTicket("I-none", "operator:secops", "Manual", "P2", T0, T0 + timedelta(hours=24)),
                             actor="key:analyst", now=T0).ticket.id
    moved = db.tickets.set_status(ticket, "resolved", actor="key:analyst", now=T0 + timedelta(hours=1))
    assert moved.status == "resolved"
    assert [f for f in db.registry.collect() if f.name in (ACK, RESOLVE) and any(s.value for s in f.samples)] == []
