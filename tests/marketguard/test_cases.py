"""Alerts and incidents: grouping rules, idempotency and persistence on a real DuckDB file."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prometheus_client import CollectorRegistry

import marketguard.cases.duckdb as cases_duckdb
from marketguard.cases import CaseFilters, CaseQueryError, CaseStore, RecordResult, open_cases
from marketguard.cases.grouping import dedupe_key, escalate, group_key, incident_type, links_of
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.errors import ConfigError, StoreError
from marketguard.metrics import Metrics, make_metrics
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ev(rule: str, event_id: str, at_s: float, *, level: str = "high", tags: tuple[str, ...] = (),
       title: str | None = None, **entities: str) -> Detection:
    """A single-event detection; entity keyword names use '_' for '.' (source_ip=...)."""
    evidence: dict[str, Any] = {k.replace("_", ".", 1): v for k, v in entities.items()}
    evidence |= {"event.id": event_id, "@timestamp": T0 + timedelta(seconds=at_s)}
    return Detection(rule, title or f"Rule {rule}", level, "tests", "Apache-2.0", "event",
                     T0 + timedelta(seconds=at_s), (event_id,), evidence, tags=tags)


def corr(rule: str, group: dict[str, str | None], start_s: float, end_s: float, ids: tuple[str, ...],
         *, level: str = "high", kind: str = "event_count") -> Detection:
    """A correlation hit of ``rule`` for ``group`` over [start_s, end_s]."""
    return Detection(
        rule, f"Correlation {rule}", level, "tests", None, kind, T0 + timedelta(seconds=end_s), ids,
        {k: v for k, v in group.items() if v is not None}, tuple(group.items()),
        T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s), float(len(ids)),
    )


class Cases:
    """A case store on a real DuckDB file, reopenable, with its own metrics registry."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.registry = CollectorRegistry()
        self.metrics: Metrics = make_metrics(self.registry)
        self.store = DuckDBStore(path)
        self.cases: CaseStore = open_cases(self.store, settings, metrics=self.metrics)

    def reopen(self) -> None:
        self.store.close()
        self.store = DuckDBStore(self.path)
        self.cases = open_cases(self.store, self.settings, metrics=self.metrics)

    def open_incidents(self) -> list[Any]:
        return self.cases.incidents(CaseFilters(status="open"), limit=500).items

    def all_alerts(self) -> list[Any]:
        return self.cases.alerts(limit=500).items

    def snapshot(self) -> list[Any]:
        return [self.store.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in (
            "alerts", "incidents", "incident_timeline", "alert_keys", "case_entities")]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Cases]]:
    opened: list[Cases] = []

    def factory(**overrides: Any) -> Cases:
        settings = Settings(data_dir=tmp_path, **{
            "suppression_window_s": 600, "incident_window_s": 3600, "escalation_rules": 3, **overrides})
        made = Cases(tmp_path / f"cases{len(opened)}.duckdb", settings)
        opened.append(made)
        return made

    yield factory
    for c in opened:
        c.store.close()


# -- pure helpers ----------------------------------------------------------------------------------
def test_group_key_of_event_is_its_primary_entity() -> None:
    assert group_key(ev("r", "e", 0, source_ip="1.1.1.1", user_id="u")) == (("source.ip", "1.1.1.1"),)
    assert group_key(ev("r", "e", 0, service_name="cart")) == (("service.name", "cart"),)
    assert group_key(ev("r", "e", 0)) == ()
    assert group_key(corr("c", {"source.ip": "1.1.1.1", "x": None}, 0, 1, ("a",))) == (
        ("source.ip", "1.1.1.1"), ("x", None))


def test_dedupe_keys() -> None:
    assert dedupe_key(ev("r", "e1", 0)) == dedupe_key(ev("r", "e1", 5, source_ip="9.9.9.9"))
    assert dedupe_key(ev("r", "e1", 0)) != dedupe_key(ev("r2", "e1", 0))
    hit = corr("c", {"source.ip": "1.1.1.1"}, 0, 10, ("a", "b"))
    assert dedupe_key(hit) == dedupe_key(corr("c", {"source.ip": "1.1.1.1"}, 0, 20, ("a", "b", "c")))
    assert dedupe_key(hit) != dedupe_key(corr("c", {"source.ip": "1.1.1.1"}, 1, 10, ("a", "b")))
    assert dedupe_key(hit) != dedupe_key(corr("c", {"source.ip": "2.2.2.2"}, 0, 10, ("a", "b")))


def test_incident_type_and_escalation_rules() -> None:
    assert incident_type(["attack.t1190"], "SQL Injection") == "security"
    assert incident_type(["marketguard.type.sla"], "Fraud-looking title") == "sla"
    assert incident_type([], "Card Testing Fraud From One IP") == "fraud"
    assert incident_type(["marketguard.slo"], "Checkout burn rate") == "availability"
    assert incident_type([], "Slash in path") == "security"
    assert escalate("medium", 2, 3) == "medium"
    assert escalate("medium", 3, 3) == "high"
    assert escalate("critical", 9, 3) == "critical"
    assert links_of((), {"service.name": ["cart"], "source.ip": ["1.1.1.1"]}) == {("source.ip", "1.1.1.1")}
    assert ("service.name", "cart") in links_of((("service.name", "cart"),), {"service.name": ["cart"]})


# -- suppression and idempotency -------------------------------------------------------------------
def test_suppression_inside_window_increments_the_alert(make: Callable[..., Cases]) -> None:
    c = make(suppression_window_s=600)
    first = c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1", user_id="u1")])
    again = c.cases.record([ev("r1", "e2", 599, source_ip="1.1.1.1", user_id="u2")])
    assert len(first.new_alerts) == 1 and again.new_alerts == ()
    assert again.updated_alerts == first.new_alerts
    [alert] = c.all_alerts()
    assert (alert.count, alert.event_count, alert.event_ids) == (2, 2, ["e1", "e2"])
    assert (alert.first_seen, alert.last_seen) == (T0, T0 + timedelta(seconds=599))
    assert alert.entities == {"source.ip": ["1.1.1.1"], "user.id": ["u1", "u2"]}


def test_suppression_outside_window_opens_a_second_alert(make: Callable[..., Cases]) -> None:
    c = make(suppression_window_s=600)
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1")])
    result = c.cases.record([ev("r1", "e2", 601, source_ip="1.1.1.1")])
    assert len(result.new_alerts) == 1
    assert sorted(a.count for a in c.all_alerts()) == [1, 1]
    assert len(c.open_incidents()) == 1  # same source.ip, inside the incident window


def test_suppression_is_per_rule_and_group(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1"), ev("r1", "e2", 1, source_ip="2.2.2.2"),
                    ev("r2", "e3", 2, source_ip="1.1.1.1")])
    assert len(c.all_alerts()) == 3


def test_recording_the_same_detections_again_changes_nothing(make: Callable[..., Cases]) -> None:
    c = make()
    batch = [ev("r1", "e1", 0, source_ip="1.1.1.1"), ev("r2", "e2", 5, source_ip="1.1.1.1"),
             corr("c1", {"source.ip": "1.1.1.1"}, 0, 30, ("e1", "e2"))]
    c.cases.record(batch + batch)  # duplicates inside one batch count once
    before = c.snapshot()
    assert c.cases.record(batch) == RecordResult()
    for d in reversed(batch):
        result = c.cases.record([d])
        assert result.new_alerts == result.updated_alerts == result.updated_incidents == ()
    assert c.snapshot() == before
    assert sum(a.count for a in c.all_alerts()) == 3


def test_correlation_alerts_follow_their_group(make: Callable[..., Cases]) -> None:
    c = make(suppression_window_s=600)
    c.cases.record([corr("c1", {"source.ip": "1.1.1.1"}, 0, 60, ("a1", "a2"))])
    c.cases.record([corr("c1", {"source.ip": "1.1.1.1"}, 300, 360, ("a2", "a3"))])  # same group
    c.cases.record([corr("c1", {"source.ip": "2.2.2.2"}, 0, 60, ("b1", "b2"))])  # other group
    by_group = {a.group: a for a in c.all_alerts()}
    assert set(by_group) == {(("source.ip", "1.1.1.1"),), (("source.ip", "2.2.2.2"),)}
    one = by_group[(("source.ip", "1.1.1.1"),)]
    assert (one.count, one.event_ids, one.event_count) == (2, ["a1", "a2", "a3"], 3)
    assert (one.window_start, one.window_end) == (T0, T0 + timedelta(seconds=360))
    assert one.kind == "event_count" and one.value == 2.0
    assert len(c.open_incidents()) == 2


def test_event_ids_are_capped_and_counted(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", f"e{i:03}", i, source_ip="1.1.1.1") for i in range(150)])
    [alert] = c.all_alerts()
    assert (alert.count, alert.event_count, len(alert.event_ids)) == (150, 150, 100)
    assert alert.event_ids[0] == "e000"


# -- incidents -------------------------------------------------------------------------------------
def test_alerts_sharing_a_source_ip_form_one_incident(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1")])
    result = c.cases.record([ev("r2", "e2", 120, source_ip="1.1.1.1", user_id="u7")])
    assert result.new_incidents == () and len(result.updated_incidents) == 1
    [inc] = c.open_incidents()
    assert len(inc.alert_ids) == 2 and inc.rule_ids == ["r1", "r2"]
    assert inc.entities == {"source.ip": ["1.1.1.1"], "user.id": ["u7"]}
    assert {a.incident_id for a in c.all_alerts()} == {inc.id}


def test_alerts_with_disjoint_entities_form_two_incidents(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1", user_id="u1"),
                    ev("r2", "e2", 10, source_ip="2.2.2.2", user_id="u2")])
    assert len(c.open_incidents()) == 2


def test_a_shared_entity_outside_the_incident_window_does_not_merge(make: Callable[..., Cases]) -> None:
    c = make(incident_window_s=3600, suppression_window_s=60)
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1")])
    c.cases.record([ev("r2", "e2", 3601, source_ip="1.1.1.1")])
    assert len(c.open_incidents()) == 2
    c.cases.record([ev("r3", "e3", 3600, source_ip="1.1.1.1")])  # within both: bridges them
    assert len(c.open_incidents()) == 1


def test_service_name_links_only_when_the_rule_groups_by_it(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", "e1", 0, source_ip="1.1.1.1", service_name="checkout"),
                    ev("r2", "e2", 5, source_ip="2.2.2.2", service_name="checkout")])
    assert len(c.open_incidents()) == 2  # two attackers of one service stay apart
    c.cases.record([corr("slo", {"service.name": "payments"}, 0, 60, ("s1", "s2")),
                    ev("span-errors", "e3", 30, service_name="payments", trace_id="t1")])
    payments = c.cases.incidents(CaseFilters(entity="service.name=payments")).items
    assert len(payments) == 1 and payments[0].rule_ids == ["slo", "span-errors"]


def test_a_large_incident_keeps_every_link_beyond_the_shown_entities(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r1", f"e{i}", i, source_ip=f"10.1.0.{i}", user_id="victim") for i in range(60)])
    [inc] = c.open_incidents()
    assert len(inc.entities["source.ip"]) == 50 and len(inc.alert_ids) == 60
    c.reopen()
    c.cases.record([ev("r2", "late", 70, source_ip="10.1.0.59")])  # linked only through IP #60
    [again] = c.open_incidents()
    assert again.id == inc.id and again.rule_ids == ["r1", "r2"]
    assert [i.id for i in c.cases.incidents(CaseFilters(entity="10.1.0.59")).items] == [inc.id]


def _bridge_batch() -> list[Detection]:
    return [ev("r1", "a", 0, source_ip="1.1.1.1"),
            ev("r2", "b", 10, source_ip="2.2.2.2", user_id="u9"),
            ev("r3", "c", 20, source_ip="1.1.1.1", user_id="u9")]


def test_a_bridging_alert_merges_two_incidents_into_the_older(make: Callable[..., Cases]) -> None:
    c = make()
    a, b, bridge = _bridge_batch()
    older = c.cases.record([a], now=T0).new_incidents[0]
    newer = c.cases.record([b], now=T0 + timedelta(seconds=1)).new_incidents[0]
    result = c.cases.record([bridge], now=T0 + timedelta(seconds=2))
    assert result.merged_incidents == (newer,) and result.updated_incidents == (older,)
    [inc] = c.open_incidents()
    assert inc.id == older and len(inc.alert_ids) == 3 and inc.rule_ids == ["r1", "r2", "r3"]
    detail = c.cases.incident(older)
    assert detail is not None and {x.incident_id for x in detail.alerts} == {older}
    assert [e.kind for e in detail.timeline].count("alert") == 3
    merged = [e for e in detail.timeline if e.kind == "merged"]
    assert len(merged) == 1 and newer in merged[0].text
    stale = c.cases.incident(newer)  # the absorbed id resolves to the survivor
    assert stale is not None and stale.incident.id == older
    gone = c.cases.incidents(CaseFilters(status="merged")).items
    assert [(i.id, i.merged_into) for i in gone] == [(newer, older)]


def test_merging_inside_one_batch_gives_the_same_incident(make: Callable[..., Cases]) -> None:
    c = make()
    result = c.cases.record(_bridge_batch())
    [inc] = c.open_incidents()
    assert result.new_incidents == (inc.id,) and result.merged_incidents == ()
    assert c.cases.incidents(CaseFilters(status="merged")).items == []
    detail = c.cases.incident(inc.id)
    assert detail is not None and len(detail.alerts) == 3
    assert all(e.alert_id in inc.alert_ids for e in detail.timeline)


def test_severity_is_the_highest_alert_level(make: Callable[..., Cases]) -> None:
    c = make(escalation_rules=5)
    c.cases.record([ev("r1", "e1", 0, level="low", source_ip="1.1.1.1"),
                    ev("r2", "e2", 1, level="critical", title="Log4Shell", source_ip="1.1.1.1"),
                    ev("r3", "e3", 2, level="medium", source_ip="1.1.1.1")])
    [inc] = c.open_incidents()
    assert (inc.severity, inc.level, inc.title) == ("critical", "critical", "Log4Shell")


def test_escalation_when_enough_distinct_rules_agree(make: Callable[..., Cases]) -> None:
    c = make(escalation_rules=3, suppression_window_s=0)
    c.cases.record([ev("r1", "e1", 0, level="medium", source_ip="1.1.1.1"),
                    ev("r2", "e2", 10, level="medium", source_ip="1.1.1.1"),
                    ev("r2", "e3", 20, level="medium", source_ip="1.1.1.1")])  # same rule again
    [inc] = c.open_incidents()
    assert inc.severity == "medium" and len(inc.alert_ids) == 3
    c.cases.record([ev("r3", "e4", 30, level="low", source_ip="1.1.1.1")])
    [inc] = c.open_incidents()
    assert (inc.severity, inc.level) == ("high", "medium")
    detail = c.cases.incident(inc.id)
    assert detail is not None
    [up] = [e for e in detail.timeline if e.kind == "escalated"]
    assert "3 distinct rules" in up.text and "medium -> high" in up.text


def test_incident_type_follows_the_most_severe_alert(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("scan", "e1", 0, level="low", source_ip="1.1.1.1"),
                    ev("card", "e2", 5, level="high", tags=("marketguard.type.fraud",), source_ip="1.1.1.1")])
    [inc] = c.open_incidents()
    assert inc.type == "fraud"
    assert c.cases.incidents(CaseFilters(type="security")).items == []


def test_metrics_count_alerts_incidents_and_open_incidents(make: Callable[..., Cases]) -> None:
    c = make()
    a, b, bridge = _bridge_batch()
    c.cases.record([a, b])
    assert c.metric("marketguard_alerts_total", severity="high") == 2
    assert c.metric("marketguard_incidents_total", severity="high") == 2
    assert c.metric("marketguard_incidents_open", severity="high") == 2
    c.cases.record([bridge])  # one incident of three rules: escalated to critical
    assert c.metric("marketguard_incidents_open", severity="high") == 0
    assert c.metric("marketguard_incidents_open", severity="critical") == 1
    c.cases.record([a, b, bridge])
    assert c.metric("marketguard_alerts_total", severity="high") == 3


# -- persistence, atomicity, queries ---------------------------------------------------------------
def test_cases_persist_across_reopening_the_file(make: Callable[..., Cases]) -> None:
    c = make()
    batch = _bridge_batch()
    c.cases.record(batch)
    before = c.snapshot()
    c.metrics.incidents_open.labels("critical").set(0)
    c.reopen()
    assert c.snapshot() == before
    assert c.cases.record(batch).new_alerts == ()  # dedupe keys survived
    assert c.snapshot() == before
    result = c.cases.record([ev("r1", "later", 30, source_ip="1.1.1.1")])
    assert result.new_alerts == () and len(result.updated_alerts) == 1  # suppression state too
    assert c.metric("marketguard_incidents_open", severity="critical") == 1  # gauge from the file


def test_a_failed_record_writes_nothing(make: Callable[..., Cases], monkeypatch: pytest.MonkeyPatch) -> None:
    c = make()
    real = cases_duckdb._insert

    def failing(cur: Any, table: str, rows: list[dict[str, Any]]) -> None:
        if table == "alert_keys":
            raise duckdb.IOException("disk full")
        real(cur, table, rows)

    monkeypatch.setattr(cases_duckdb, "_insert", failing)
    with pytest.raises(StoreError, match="disk full"):
        c.cases.record(_bridge_batch())
    assert all(rows == [] for rows in c.snapshot())
    monkeypatch.setattr(cases_duckdb, "_insert", real)
    assert len(c.cases.record(_bridge_batch()).new_alerts) == 3


def _walk(c: Cases, filters: CaseFilters, limit: int, *, incidents: bool = False) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(200):  # a cursor that does not advance must fail, not hang
        page = (c.cases.incidents if incidents else c.cases.alerts)(filters, cursor, limit)
        seen.extend(x.id for x in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError(f"pagination did not end; {len(seen)} items so far")


def test_filters_and_cursor_pagination(make: Callable[..., Cases]) -> None:
    c = make()
    levels = ["low", "medium", "high", "critical"]
    c.cases.record([ev(f"r{i % 5}", f"e{i}", (i // 3) * 60, level=levels[i % 4], source_ip=f"10.0.0.{i}")
                    for i in range(40)])  # several alerts share a last_seen: ties on id
    every = [a.id for a in c.all_alerts()]
    assert len(every) == 40
    for limit in (1, 7, 40, 100):
        assert _walk(c, CaseFilters(), limit) == every
    high = _walk(c, CaseFilters(severity="high"), 3)
    assert len(high) == 20 and all(a.rule_level in ("high", "critical") for a in c.all_alerts() if a.id in high)
    assert [a.group for a in c.cases.alerts(CaseFilters(entity="10.0.0.7")).items] == [(("source.ip", "10.0.0.7"),)]
    assert len(c.cases.alerts(CaseFilters(entity="source.ip=10.0.0.7")).items) == 1
    assert c.cases.alerts(CaseFilters(entity="user.id=10.0.0.7")).items == []
    assert len(c.cases.alerts(CaseFilters(rule_id="r1")).items) == 8
    window = CaseFilters(time_from=T0 + timedelta(seconds=60), time_to=T0 + timedelta(seconds=120))
    assert len(c.cases.alerts(window).items) == 6
    assert c.cases.alerts(CaseFilters(status="closed")).items == []
    assert len(_walk(c, CaseFilters(), 4, incidents=True)) == 40
    with pytest.raises(CaseQueryError, match="invalid cursor"):
        c.cases.alerts(cursor="not-a-cursor")


def test_pagination_is_stable_under_concurrent_inserts(make: Callable[..., Cases]) -> None:
    c = make()
    c.cases.record([ev("r", f"e{i}", i, source_ip=f"10.0.0.{i}") for i in range(20)])
    expected = [a.id for a in c.all_alerts()]
    page = c.cases.alerts(limit=6)
    seen = [a.id for a in page.items]
    c.cases.record([ev("r", f"new{i}", 1000 + i, source_ip=f"10.9.0.{i}") for i in range(5)])
    cursor = page.next_cursor
    while cursor and len(seen) <= len(expected):
        page = c.cases.alerts(cursor=cursor, limit=6)
        seen.extend(a.id for a in page.items)
        cursor = page.next_cursor
    assert seen == expected


def test_open_cases_refuses_an_unknown_dialect(tmp_path: Path) -> None:
    class OtherStore:
        dialect = "cassandra"

    with pytest.raises(ConfigError, match="duckdb"):
        open_cases(OtherStore(), Settings(data_dir=tmp_path))  # type: ignore[arg-type]


def test_recording_does_not_wait_for_writes_of_other_tables(make: Callable[..., Cases]) -> None:
    """While another writer holds the store's writer lock (tickets, audit, playbook state), the
    engine's detections are still recorded: only the case store writes the case tables."""
    c = make()
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with c.store.lock:
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        with ThreadPoolExecutor(1) as pool:
            recorded = pool.submit(c.cases.record, [ev("r1", "e1", 0, source_ip="198.51.100.7")])
            assert len(recorded.result(timeout=10).new_incidents) == 1
    finally:
        done.set()
        holder.join()
    assert [a.rule_id for a in c.all_alerts()] == ["r1"]
