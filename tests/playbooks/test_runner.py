"""The playbook runner on real DuckDB state, tickets and audit trail, with a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _response_fixtures import REPO, Response, detection, later

from marketguard.errors import ConfigError
from playbooks.model import load_playbook, load_playbooks
from playbooks.runner import PlaybookRunner
from playbooks.state_duckdb import DuckDBStepLog

BOOKS = load_playbooks(REPO / "playbooks")


def runner(response: Response, books: Any = BOOKS, **kw: Any) -> PlaybookRunner:
    return PlaybookRunner(books, response.responders, DuckDBStepLog(response.world.store),
                          sleep=response.sleeps.append, metrics=response.world.metrics, **kw)


def stuffing(response: Response, level: str = "high") -> Any:
    return response.world.incident(detection(
        "cred-stuff", tags=("attack.credential-access", "attack.t1110.001"), level=level,
        source_ip="203.0.113.7", user_id="u-1"))


def test_trigger_selects_by_type_tags_severity_and_entities(response: Response) -> None:
    run = runner(response)
    assert [b.id for b in run.select(stuffing(response))] == ["credential-stuffing"]
    w = response.world
    card = w.incident(detection("card", tags=("marketguard.type.fraud", "marketguard.fraud.card_testing"),
                                source_ip="198.51.100.9", at=later(5)))
    assert [b.id for b in run.select(card)] == ["card-testing"]
    enum = w.incident(detection("enum", tags=("attack.collection", "attack.t1213"), source_ip="192.0.2.44", at=later(9)))
    assert [b.id for b in run.select(enum)] == ["personal-data-exposure"]
    sla = w.incident(detection("late", tags=("marketguard.type.sla",), level="medium", marketplace_seller_id="s-42", at=later(12)))
    assert [b.id for b in run.select(sla)] == ["seller-sla"]


def test_low_severity_and_missing_entity_do_not_trigger(response: Response) -> None:
    assert runner(response).select(stuffing(response, level="low")) == []
    no_ip = response.world.incident(detection("cs2", tags=("attack.t1110",), user_id="u-9", at=later(30)))
    assert runner(response).select(no_ip) == []


def _counts(response: Response) -> tuple[int, int, int, int]:
    w = response.world
    return (len(w.tickets.list().items), len(response.receiver.requests),
            len(w.audit.entries()), len(response.responders.containment.actions.list()))


def test_running_twice_changes_nothing_the_second_time(response: Response) -> None:
    detail = stuffing(response)
    run = runner(response)
    first = run.run(detail)
    assert first.playbooks == ("credential-stuffing",)
    assert [s.status for s in first.steps] == ["done"] * 6, first.failed
    tickets = response.world.tickets.list().items
    assert [(t.queue, t.assignee) for t in tickets] == [("operator:secops", "oncall:secops")]
    assert any("awaiting approval" in c.text for c in tickets[0].comments)
    assert [r.path for r in response.receiver.requests] == ["/slack/secops"]
    before = _counts(response)
    second = runner(response).run(detail.incident.id)  # a fresh runner: state is in the database
    assert not second.changed and [s.status for s in second.steps] == ["skipped"] * 6
    assert _counts(response) == before
    actions = [e.action for e in response.world.audit.entries()]
    assert actions.count("playbook.step") == 6 and "containment.request" in actions


def test_failing_step_is_retried_with_backoff_then_succeeds(response: Response) -> None:
    detail = stuffing(response)
    response.responders.store = FlakyStore(response.world.store, failures=2)
    result = runner(response).run(detail)
    enrich = result.steps[0]
    assert (enrich.kind, enrich.status, enrich.attempts) == ("enrich", "done", 3)
    assert response.sleeps[:2] == [1.0, 2.0]


def test_step_failing_after_retries_is_recorded_on_ticket_and_audit(response: Response) -> None:
    detail = stuffing(response)
    response.receiver.statuses = [500] * 10
    result = runner(response).run(detail)
    assert [s.kind for s in result.failed] == ["notify"]
    assert result.failed[0].attempts == 1 and "after 3 attempts" in (result.failed[0].error or "")
    assert len(response.receiver.requests) == 3 and response.sleeps == [1.0, 2.0]
    assert [s.status for s in result.steps][-2:] == ["done", "done"]  # later steps still ran
    ticket = response.world.tickets.list().items[0]
    assert [(f.playbook, f.step) for f in ticket.failed_steps] == [("credential-stuffing", "3:notify")]
    actions = [e.action for e in response.world.audit.entries()]
    assert "playbook.step_failed" in actions and "notification.failed" in actions
    again = runner(response).run(detail)
    assert not again.changed and len(response.receiver.requests) == 3


def test_failure_before_any_ticket_is_still_audited(response: Response, tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("id: t1\ntitle: xyz\ntrigger: {types: [security]}\nsteps:\n  - {kind: assign, assignee: x}\n")
    result = runner(response, [load_playbook(path)]).run(stuffing(response))
    assert result.failed[0].attempts == 1  # permanent: not retried
    entry = [e for e in response.world.audit.entries() if e.action == "playbook.step_failed"][0]
    assert "no ticket to assign" in entry.details["error"]


def test_routing_opens_tickets_for_every_owner_and_starts_gdpr_clock(response: Response) -> None:
    enum = response.world.incident(detection("enum", tags=("attack.collection", "attack.t1213"), source_ip="192.0.2.44"))
    result = runner(response).run(enum)
    assert not result.failed, result.failed
    queues = sorted((t.queue, t.kind) for t in response.world.tickets.list().items)
    assert queues == [("operator:dpo", "gdpr_art33"), ("operator:dpo", "response"), ("operator:secops", "response")]
    paths = [r.path for r in response.receiver.requests]
    assert paths == ["/email-dpo", "/slack/secops"]


def test_unknown_notifier_is_a_config_error(response: Response, tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("id: t1\ntitle: xyz\ntrigger: {types: [security]}\nsteps:\n  - {kind: notify, notifier: teams, template: x}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: steps\[0\] \(notify\): unknown notifier 'teams'"):
        runner(response, [load_playbook(path)])


class FlakyStore:
    """Test double: the real store, whose ``scan`` fails the first ``failures`` times."""

    def __init__(self, store: Any, failures: int) -> None:
        self._store, self.failures = store, failures

    def scan(self, *args: Any, **kw: Any) -> Iterator[pa.RecordBatch]:
        if self.failures:
            self.failures -= 1
            raise OSError("store briefly unavailable")
        return self._store.scan(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_responding_sink_queues_incidents_for_the_worker(response: Response) -> None:
    from playbooks.worker import RespondingSink, ResponseWorker

    worker = ResponseWorker(runner(response), response.responders.gdpr, gdpr_interval_s=0.05)
    sink = RespondingSink(response.world.cases, worker)
    result = sink.record([detection("cs", tags=("attack.t1110",), source_ip="203.0.113.8")], now=later(0))
    assert result.new_incidents and response.world.tickets.list().items == []
    worker.start()
    worker.stop()
    tickets = response.world.tickets.list().items
    assert [t.incident_id for t in tickets] == list(result.new_incidents)
    sink.record([detection("cs", tags=("attack.t1110",), source_ip="203.0.113.8", event_id="e2")], now=later(0))
    worker.drain()
    assert len(response.world.tickets.list().items) == 1
