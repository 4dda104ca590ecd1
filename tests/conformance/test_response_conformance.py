"""The response stage runs the same on both stores: the shipped playbooks, on the same
incidents, open the same tickets, record the same steps, request the same containment and
write the same audit trail; a second run changes nothing on either."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _compare import assert_same
from prometheus_client import CollectorRegistry

from marketguard.cases import open_cases
from marketguard.cases.audit import open_audit
from marketguard.cases.routing import load_policy
from marketguard.cases.tickets import open_tickets
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import make_metrics
from playbooks.stage import build_response
from playbooks.state import open_response_state

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)


def attack(rule: str, event: str, ip: str, at_s: int) -> Detection:
    return Detection(rule, f"SQL injection {rule}", "high", "tests", None, "event", T0 + timedelta(seconds=at_s),
                     (event,), {"source.ip": ip, "event.id": event}, tags=("attack.t1190", "attack.initial-access"))


DETECTIONS = [attack("r-sqli", "e1", "45.1.1.1", 0), attack("r-sqli", "e2", "45.1.1.1", 20),
              attack("r-cmd", "e3", "45.1.1.1", 40), attack("r-sqli", "e4", "81.2.2.2", 60)]


def _plain(value: Any, ids: dict[str, str]) -> Any:
    """JSON-like data with backend-chosen ticket ids replaced by their open key."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), ids)
    if isinstance(value, dict):
        return {_plain(k, ids): _plain(v, ids) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = [_plain(v, ids) for v in value]
        return sorted(items, key=repr) if isinstance(value, set) else items
    if isinstance(value, str):
        for tid, label in ids.items():
            value = value.replace(tid, label)
    return value


def respond(open_store, backend: str, tmp_path: Path) -> dict[str, Any]:
    store = open_store(backend)
    metrics = make_metrics(CollectorRegistry())
    cases = open_cases(store, Settings(data_dir=tmp_path), metrics=metrics)
    audit = open_audit(store)
    tickets = open_tickets(store, audit)
    stage = build_response(store, cases, tickets, load_policy(REPO / "playbooks" / "routing.yaml"), audit,
                           playbook_dir=REPO / "playbooks", notifier_file=tmp_path / "no-notifiers.yaml",
                           sleep=lambda _s: None, metrics=metrics)
    stage.runner.responders.clock = lambda: NOW
    incidents = cases.record(DETECTIONS, now=NOW).new_incidents
    runs = [stage.runner.run_many(incidents), stage.runner.run_many(incidents)]
    opened = sorted(tickets.list(limit=100).items, key=lambda t: (t.incident_id, t.queue, t.kind))  # same created: ids order them
    ids = {t.id: f"{t.incident_id}|{t.queue}|{t.kind}" for t in opened}
    state = open_response_state(store)
    steps = {(r.incident_id, b): state.steps.steps(b, r.incident_id) for r in runs[0] for b in r.playbooks}
    return _plain({
        "runs": runs, "tickets": opened, "steps": [[k, sorted(v.items())] for k, v in sorted(steps.items())],
        "actions": state.actions.list(), "verified": [audit.verify().ok],
        # appends the playbooks make without a clock carry wall-clock times (and so hashes)
        "audit": [(e.seq, e.actor, e.action, e.object, e.details) for e in audit.entries()],
    }, ids)


def test_same_incidents_same_response(open_store, tmp_path):
    duck = respond(open_store, "duckdb", tmp_path / "duckdb")
    es = respond(open_store, "elasticsearch", tmp_path / "elasticsearch")
    first, second = duck["runs"]
    assert {b for r in first for b in r["playbooks"]} >= {"injection-attacks"}
    assert all(o["status"] == "skipped" for r in second for o in r["steps"])
    assert duck["tickets"] and duck["actions"] and duck["verified"] == [True]
    assert any(o["status"] == "failed" for r in first for o in r["steps"])  # no notifiers configured
    for key in duck:
        assert_same(duck[key], es[key], key)
    assert (len(duck["tickets"]), len(duck["actions"]), len(duck["audit"])) == (2, 2, 30)
