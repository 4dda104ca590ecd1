"""Item 6: an API 5xx spike, span errors and probe failures of one service, plus its SLO burn
alert, become ONE availability incident in the case store; another service's spike at the same
time stays a separate incident.

Real path end to end: events in a DuckDB file, the ``rules/sla`` Sigma pack through
``correlator.engine.run_rules``, the checkout SLO through ``correlator.slo.evaluate_slos`` and
the case store from ``marketguard.cases.open_cases``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from correlator.engine import run_rules
from correlator.rules import load_rules
from correlator.slo import evaluate_slos, load_slos
from marketguard.cases import CaseFilters, open_cases
from marketguard.config import Settings
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
OUTAGE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [] for n in EVENT_FIELDS}
    for i, row in enumerate(rows):
        full = {"event.id": f"ev-{i:06d}", **row}
        for name in EVENT_FIELDS:
            cols[name].append(full.get(name))
    return pa.table(cols, schema=EVENT_SCHEMA)


def _traffic() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # an hour of healthy checkout traffic before the outage: 60 requests a minute
    for s in range(0, 3600):
        rows.append({"@timestamp": OUTAGE - timedelta(hours=1) + timedelta(seconds=s), "event.dataset": "api.access",
                     "service.name": "checkout", "url.path": "/api/v1/checkout", "http.response.status_code": 200,
                     "event.duration": 90_000_000})
    # 5 minutes of outage: every checkout request 503, every checkout span fails, probes down
    for s in range(0, 300):
        at = OUTAGE + timedelta(seconds=s)
        rows.append({"@timestamp": at, "event.dataset": "api.access", "service.name": "checkout",
                     "url.path": "/api/v1/checkout", "http.response.status_code": 503, "event.duration": 30_000_000})
        rows.append({"@timestamp": at, "event.dataset": "apm.span", "service.name": "checkout", "span.kind": "server",
                     "event.outcome": "failure", "error.message": "payment gateway unreachable"})
        if s % 30 == 0:
            rows.append({"@timestamp": at, "event.dataset": "uptime.probe", "service.name": "checkout",
                         "monitor.id": "checkout-https", "monitor.status": "down"})
    # meanwhile search has a 5xx burst of its own
    for s in range(0, 60):
        rows.append({"@timestamp": OUTAGE + timedelta(seconds=60 + 2 * s), "event.dataset": "api.access",
                     "service.name": "search", "url.path": "/api/v1/search", "http.response.status_code": 500})
    return rows


def test_one_availability_incident_per_service(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "mg.duckdb")
    try:
        store.append_events(_table(_traffic()))
        rules = load_rules([REPO / "rules" / "sla"])
        assert not rules.failures
        result = run_rules(store, rules, MatchWindow())
        assert not result.errors
        slos = [s for s in load_slos([REPO / "rules" / "sla"]) if s.id == "checkout-availability"]
        statuses, slo_dets = evaluate_slos(store, slos, OUTAGE + timedelta(minutes=5))
        assert statuses[0].severity == "page" and len(slo_dets) == 1
        by_rule = {}
        for d in result.detections:
            by_rule.setdefault(d.rule_title, set()).add(dict(d.group)["service.name"])
        assert by_rule["API 5xx Spike on One Service"] == {"checkout", "search"}
        assert by_rule["Span Error Burst on One Service"] == {"checkout"}
        assert by_rule["Uptime Probes Failing for One Service"] == {"checkout"}

        cases = open_cases(store, Settings(data_dir=tmp_path))
        cases.record([*result.detections, *slo_dets], now=OUTAGE + timedelta(minutes=6))
        incidents = cases.incidents(CaseFilters(status="open")).items
        by_service = {tuple(i.entities["service.name"]): i for i in incidents}
        assert set(by_service) == {("checkout",), ("search",)}, [(i.title, i.entities) for i in incidents]
        checkout = by_service[("checkout",)]
        assert checkout.type == "availability" and len(checkout.alert_ids) == 4
        assert len(checkout.rule_ids) == 4  # 5xx spike, span errors, probe failures, SLO burn
        assert "checkout-availability" in checkout.rule_ids
        assert checkout.severity == "critical"  # high alerts, escalated: >= 3 distinct rules agree
        assert by_service[("search",)].type == "availability"
        assert len(by_service[("search",)].alert_ids) == 1
    finally:
        store.close()
