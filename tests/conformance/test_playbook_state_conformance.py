"""Playbook state answers the same on both stores: step records, containment actions and GDPR
clocks; every backend class comes from the registries, so one setting switches everything."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _compare import assert_same

from correlator.baselines import open_baselines
from marketguard.auth import open_keys
from marketguard.cases import open_cases
from marketguard.cases.audit import open_audit
from marketguard.cases.tickets import open_tickets
from marketguard.config import Settings
from playbooks.state import (
    GdprClockRecord,
    PendingAction,
    ResponseState,
    StepRecord,
    open_response_state,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def story(state: ResponseState, *, twist: bool = False) -> dict[str, Any]:
    """Every state call with fixed values; what each answered."""
    steps, actions, clocks = state.steps, state.actions, state.clocks
    out: dict[str, Any] = {}
    records = [StepRecord("pb-a", "I-1", 0, "open_ticket", "done", 1, {"ticket": "T-1", "n": [1, 2]}, None, at(1)),
               StepRecord("pb-a", "I-1", 1, "notify", "failed", 3, {}, "timeout after 3 attempts", at(2)),
               StepRecord("pb-a", "I-2", 0, "open_ticket", "done", 1, {}, None, at(3)),
               StepRecord("pb-a", "I-1", 0, "open_ticket", "failed", 9, {}, "again", at(4))]  # already recorded
    out["recorded"] = [steps.record(r) for r in records]
    out["steps"] = [steps.steps("pb-a", "I-1"), steps.steps("pb-a", "I-2"), steps.steps("pb-b", "I-1")]
    acts = [PendingAction(f"act-{n}", f"I-{n % 2}", "block_ip", f"10.0.0.{n}", "playbook:pb-a", at(n), playbook_id="pb-a")
            for n in range(4)]
    out["added"] = [actions.add(a) for a in [*acts, acts[0]]]
    approved = dataclasses.replace(acts[1], status="approved", decided_by="key:lead", decided_at=at(9),
                                   reason="confirmed" + (" twice" if twist else ""))
    out["transitions"] = [actions.transition("act-1", "pending", approved),
                          actions.transition("act-1", "pending", dataclasses.replace(approved, status="rejected")),
                          actions.transition("act-9", "pending", approved)]
    out["actions"] = [actions.get("act-1"), actions.get("act-9"), actions.list(), actions.list(status="pending"),
                      actions.list(incident_id="I-1"), actions.list(status="approved", incident_id="I-1")]
    first = GdprClockRecord("I-1", at(0), at(72 * 60), (24, 48, 68))
    out["started"] = [clocks.start(first), clocks.start(GdprClockRecord("I-2", at(5), at(5 + 72 * 60), (24.5,))),
                      clocks.start(dataclasses.replace(first, aware_at=at(30)))]
    out["fired"] = [clocks.fire("I-1", 24, at(24 * 60)), clocks.fire("I-1", 24.0, at(25 * 60)), clocks.fire("I-1", 48, at(48 * 60))]
    before = clocks.open_clocks()
    clocks.update(dataclasses.replace(first, ticket_id="T-9", notified_at=at(50 * 60), authority_ref="SA-1"))
    clocks.update(GdprClockRecord("I-7", at(0), at(1), ()))  # no such clock: nothing happens
    out["clocks"] = [before, clocks.open_clocks(), clocks.get("I-1"), clocks.get("I-7")]
    return _plain(out)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_same_calls_same_state(open_store):
    answers = {name: story(open_response_state(open_store(name))) for name in ("duckdb", "elasticsearch")}
    duck = answers["duckdb"]
    assert duck["recorded"] == [True, True, True, False] and duck["added"] == [True] * 4 + [False]
    assert duck["transitions"] == [True, False, False] and duck["fired"] == [True, False, True]
    assert [len(x) for x in duck["clocks"][:2]] == [2, 1] and duck["clocks"][2]["fired"] == [24.0, 48.0]
    for key in duck:
        assert_same(duck[key], answers["elasticsearch"][key], key)


def test_one_different_call_makes_the_comparison_fail(open_store):
    duck = story(open_response_state(open_store("duckdb")))
    es = story(open_response_state(open_store("elasticsearch")), twist=True)
    with pytest.raises(AssertionError, match="actions differ"):
        assert_same(duck["actions"], es["actions"], "actions")


def test_one_approval_wins_a_race(backend, open_store):
    """Four approvers (on Elasticsearch across two store instances) race; one decision is kept."""
    first = open_store(backend)
    second = open_store(backend, prefix=first.names.prefix) if backend == "elasticsearch" else first
    states = [open_response_state(first), open_response_state(second)]
    states[0].actions.add(PendingAction("act-1", "I-1", "block_ip", "10.0.0.1", "playbook:pb", T0))
    wins: list[str] = []

    def approve(state: ResponseState, who: str) -> None:
        done = dataclasses.replace(state.actions.get("act-1"), status="approved", decided_by=who)  # type: ignore[arg-type]
        if state.actions.transition("act-1", "pending", done):
            wins.append(who)

    threads = [threading.Thread(target=approve, args=(states[n % 2], f"key:a{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert states[1].actions.get("act-1").decided_by == wins[0]  # type: ignore[union-attr]


OPENERS = {
    "cases": lambda store, tmp: open_cases(store, Settings(data_dir=tmp)),
    "audit": lambda store, tmp: open_audit(store),
    "tickets": lambda store, tmp: open_tickets(store, open_audit(store)),
    "keys": lambda store, tmp: open_keys(store),
    "baselines": lambda store, tmp: open_baselines(store),
    "playbook steps": lambda store, tmp: open_response_state(store).steps,
    "containment": lambda store, tmp: open_response_state(store).actions,
    "gdpr clocks": lambda store, tmp: open_response_state(store).clocks,
}


def test_every_sibling_store_follows_the_event_store(backend, open_store, tmp_path):
    """What build_services opens beside the store is that store's backend, for every part."""
    store = open_store(backend)
    prefix = {"duckdb": "DuckDB", "elasticsearch": "Elasticsearch"}[backend]
    kinds = {name: type(opener(store, tmp_path)).__name__ for name, opener in OPENERS.items()}
    assert {name: kind.startswith(prefix) for name, kind in kinds.items()} == dict.fromkeys(OPENERS, True), kinds
