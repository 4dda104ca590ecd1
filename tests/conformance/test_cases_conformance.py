"""Alerts and incidents agree on both stores: same detections -> same cases, pages and details."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _compare import assert_same
from prometheus_client import CollectorRegistry

from marketguard.cases import CaseFilters
from marketguard.cases.duckdb import DuckDBCaseStore
from marketguard.cases.elasticsearch import ElasticsearchCaseStore
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import make_metrics

CASE_STORES = {"duckdb": DuckDBCaseStore, "elasticsearch": ElasticsearchCaseStore}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 2, tzinfo=UTC)


def ev(rule: str, event_id: str, at_s: float, level: str = "high", **entities: str) -> Detection:
    evidence: dict[str, Any] = {k.replace("_", ".", 1): v for k, v in entities.items()}
    evidence |= {"event.id": event_id, "@timestamp": T0 + timedelta(seconds=at_s)}
    return Detection(rule, f"Rule {rule}", level, "tests", None, "event", T0 + timedelta(seconds=at_s),
                     (event_id,), evidence)


def corr(rule: str, ip: str, start_s: float, end_s: float, ids: tuple[str, ...]) -> Detection:
    return Detection(rule, f"Correlation {rule}", "medium", "tests", None, "event_count", T0 + timedelta(seconds=end_s),
                     ids, {"source.ip": ip}, (("source.ip", ip),), T0 + timedelta(seconds=start_s),
                     T0 + timedelta(seconds=end_s), float(len(ids)))


BATCHES = [
    [ev("r1", "e1", 0, source_ip="1.1.1.1"), ev("r1", "e2", 30, source_ip="1.1.1.1"),
     ev("r2", "e3", 60, "low", source_ip="2.2.2.2", user_id="u1")],
    [ev("r3", "e4", 90, "critical", user_id="u1"), corr("c1", "1.1.1.1", 0, 60, ("e1", "e2"))],
    [ev("r4", "e5", 120, source_ip="1.1.1.1", user_id="u1", marketplace_seller_id="s1"),  # bridges two incidents
     ev("r2", "e6", 700, "low", source_ip="2.2.2.2")],
    [ev("r5", "e7", 9000, source_ip="3.3.3.3"), ev("r1", "e1", 0, source_ip="1.1.1.1")],  # e1 replayed
] + [[ev("r6", f"x{i}", 10_000 + i, "medium", source_ip=f"9.9.9.{i % 4}")] for i in range(12)]


def _comparable(item: Any) -> Any:
    data = dataclasses.asdict(item)
    if "links" in data:
        data["links"] = sorted(data["links"])
    return data


def _walk(list_call, filters: CaseFilters | None, limit: int = 5) -> list[Any]:
    out, cursor = [], None
    while True:
        page = list_call(filters, cursor=cursor, limit=limit)
        out.extend(_comparable(x) for x in page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


@pytest.fixture
def pair(open_store, tmp_path):
    settings = Settings(data_dir=tmp_path, suppression_window_s=600, incident_window_s=3600, escalation_rules=3)
    out = {}
    for name, cls in CASE_STORES.items():
        cases = cls(open_store(name), settings, metrics=make_metrics(CollectorRegistry()))
        out[name] = (cases, [cases.record(batch, now=NOW) for batch in BATCHES])
    return out


FILTERS = [None, CaseFilters(severity="high"), CaseFilters(entity="2.2.2.2"), CaseFilters(entity="user.id=u1"),
           CaseFilters(status="merged"), CaseFilters(time_from=T0 + timedelta(seconds=100)),
           CaseFilters(rule_id="r1"), CaseFilters(type="security", status="open")]


def test_same_record_results(pair):
    (_, a), (_, b) = pair["duckdb"], pair["elasticsearch"]
    assert_same(a, b, "record results")
    assert a[2].merged_incidents  # the bridge merged two incidents
    assert not a[3].new_alerts or len(a[3].new_alerts) == 1  # the replay of e1 added nothing


@pytest.mark.parametrize("index", range(len(FILTERS)))
def test_same_pages(pair, index):
    (duck, _), (es, _) = pair["duckdb"], pair["elasticsearch"]
    flt = FILTERS[index]
    assert_same(_walk(duck.alerts, flt), _walk(es.alerts, flt), "alerts")
    assert_same(_walk(duck.incidents, flt), _walk(es.incidents, flt), "incidents")


def test_same_incident_details(pair):
    (duck, _), (es, _) = pair["duckdb"], pair["elasticsearch"]
    ids = [i.id for i in duck.incidents(CaseFilters(status="merged"), limit=100).items]
    ids += [i.id for i in duck.incidents(limit=100).items]
    assert len(ids) > 3
    for iid in ids:
        a, b = duck.incident(iid), es.incident(iid)
        assert a is not None and b is not None
        assert _comparable(a) == _comparable(b), iid
    assert es.incident("in-nothing") is None
