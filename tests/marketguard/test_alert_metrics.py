"""``marketguard_fraud_alerts_total`` and ``marketguard_seller_sla_breaches_total``: counted once,
when the case store first records the alert or breach, read back from the registry.

Fraud: the real fraud scenario through the real collector, a DuckDB store and the rules of
``rules/fraud/``, recorded in the real case store; the expected counts are the new fraud alerts
the case store reports, by the family their rule's tag names. Seller SLA: support-ticket events
in a DuckDB file, the real :class:`~correlator.sla_engine.SlaEngine` evaluating the shipped spec
cycle after cycle; the expected breaches are computed here from the events and the spec.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry

from collectors.accesslog import parse_records
from collectors.privacy import Pseudonymiser
from correlator.engine import run_rules
from correlator.rules import load_rules
from correlator.seller_sla import SellerSlaSpec, load_seller_slas
from correlator.sla_engine import SlaEngine
from marketguard.app.scenario.fraud import FAMILIES, family_of, generate_fraud
from marketguard.cases import CaseFilters, CaseStore, open_cases
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import make_metrics
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)


@dataclass
class Cases:
    """A case store on a DuckDB file with its own registry (a fresh one after each restart)."""

    path: Path
    settings: Settings
    store: DuckDBStore
    registry: CollectorRegistry
    cases: CaseStore

    @classmethod
    def open(cls, path: Path, settings: Settings) -> Cases:
        store = DuckDBStore(path)
        registry = CollectorRegistry()
        return cls(path, settings, store, registry, open_cases(store, settings, metrics=make_metrics(registry)))

    def restart(self) -> Cases:
        self.store.close()
        return Cases.open(self.path, self.settings)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def by_label(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(s.labels[k] for k in keys): s.value
            for family in self.registry.collect() for s in family.samples
            if s.name == name and s.value
        }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Cases]:
    made = Cases.open(tmp_path / "mg.duckdb", Settings(data_dir=tmp_path))
    yield made
    made.store.close()


# -- fraud alerts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fraud_detections() -> list[Detection]:
    """Detections of the shipped fraud rules over a short real fraud scenario."""
    scenario = generate_fraud(seed=7, normal=2_000)
    batch = parse_records(scenario.events, source="fraud-demo", pseudonymiser=Pseudonymiser(b"demo" * 8))
    store = DuckDBStore(":memory:")
    try:
        store.append_events(batch.events)
        rules = load_rules([REPO / "rules" / "fraud"])
        assert not rules.failures, rules.failures
        result = run_rules(store, rules, MatchWindow())
        assert not result.errors, result.errors
        return list(result.detections)
    finally:
        store.close()


def test_fraud_alerts_count_each_new_alert_once_by_family(db: Cases, fraud_detections: list[Detection]) -> None:
    """One count per new fraud alert, labelled with its rule's family and level; recording the
    same detections again (a retry, a re-evaluated window) and restarting add nothing."""
    first = db.cases.record(fraud_detections)
    alerts = [a for a in db.cases.alerts(CaseFilters(), None, 500).items if a.id in first.new_alerts]
    expected = Counter((family_of(a.tags), a.rule_level) for a in alerts if a.type == "fraud")
    assert {family for family, _ in expected} == set(FAMILIES), "the scenario should alert on every family"
    assert db.by_label("marketguard_fraud_alerts_total", "family", "severity") == {k: float(v) for k, v in expected.items()}
    assert sum(expected.values()) == len(first.new_alerts)  # every alert of rules/fraud is a fraud alert

    assert db.cases.record(fraud_detections).new_alerts == ()
    assert db.by_label("marketguard_fraud_alerts_total", "family", "severity") == {k: float(v) for k, v in expected.items()}
    restarted = db.restart()
    assert restarted.cases.record(fraud_detections).new_alerts == ()
    assert restarted.by_label("marketguard_fraud_alerts_total", "family", "severity") == {}
    db.store = restarted.store


def test_non_fraud_alerts_and_untagged_fraud(db: Cases) -> None:
    """A security alert is not a fraud alert; a fraud rule without a family tag counts as other."""
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def hit(rule: str, tags: tuple[str, ...], event: str) -> Detection:
        return Detection(rule, f"Rule {rule}", "high", "tests", None, "event", at, (event,),
                         {"event.id": event, "source.ip": "198.51.100.9"}, tags=tags)

    db.cases.record([hit("sqli", ("attack.initial_access",), "e1"), hit("odd", ("marketguard.type.fraud",), "e2")])
    assert db.by_label("marketguard_fraud_alerts_total", "family", "severity") == {("other", "high"): 1.0}
    assert db.value("marketguard_alerts_total", severity="high") == 2.0


# -- seller SLA breaches --------------------------------------------------------------------------
SPECS = REPO / "rules" / "sla" / "specs"
D0 = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)

#: (ticket, seller, category, priority, created, first response or None, resolved or None), hours after D0.
TICKETS: list[tuple[str, str, str, str, float, float | None, float | None]] = [
    ("T1", "S1", "delivery", "normal", 0, 14, 20),
    ("T2", "S1", "returns", "normal", 0, None, None),
    ("T3", "S2", "returns", "normal", 0, 1, 30),
    ("T4", "S2", "payment", "normal", 33, None, None),
    ("T5", "S3", "product", "high", 10, 12, None),
    ("T6", "S3", "payment", "urgent", 0, 5, None),
]


def _spec() -> SellerSlaSpec:
    """The shipped seller support SLA (rules/sla/specs/seller_support.sla)."""
    [spec] = load_seller_slas([SPECS])
    return spec


def _events() -> pa.Table:
    rows: list[dict[str, Any]] = []
    for tid, seller, cat, prio, created, answered, resolved in TICKETS:
        for kind, hours in (("created", created), ("first_response", answered), ("resolved", resolved)):
            if hours is not None:
                rows.append({"@timestamp": D0 + hours * H, "event.id": f"{tid}-{kind}", "ticket.id": tid,
                             "ticket.event": kind, "ticket.category": cat, "ticket.priority": prio,
                             "marketplace.seller_id": seller, "event.dataset": "support.ticket"})
    return pa.table({n: [r.get(n) for r in rows] for n in EVENT_FIELDS}, schema=EVENT_SCHEMA)


def expected_breaches(spec: SellerSlaSpec, now: datetime) -> Counter[tuple[str, str]]:
    """Breaches at ``now``: a clock that stopped late, or is still running past its target."""
    out: Counter[tuple[str, str]] = Counter()
    for _tid, seller, cat, prio, created, answered, resolved in TICKETS:
        start = D0 + created * H
        if start > now:
            continue
        target = spec.target_for(cat, prio)
        for limit, stop in ((target.first_response, answered if answered is not None else resolved),
                            (target.resolution, resolved)):
            if limit is None:
                continue
            end = min(D0 + stop * H, now) if stop is not None else now
            if end - start > limit:
                out[(seller, cat)] += 1
    return out


def test_seller_sla_breaches_count_once_across_cycles_and_restarts(db: Cases) -> None:
    """Each breach counts when first recorded: later cycles re-emit it and count nothing; a
    breach that happens between cycles counts then; a restarted service counts none again."""
    spec = _spec()
    db.store.append_events(_events())
    engine = SlaEngine(db.store, [], [spec])
    now = D0 + 36 * H
    first = expected_breaches(spec, now)
    assert first, "the fixture should breach at the first cycle"
    db.cases.record(engine.run_once(now).detections, now=now)
    assert db.by_label("marketguard_seller_sla_breaches_total", "seller", "category") == {k: float(v) for k, v in first.items()}

    db.cases.record(engine.run_once(now + timedelta(minutes=1)).detections, now=now)  # the next cycle
    assert db.by_label("marketguard_seller_sla_breaches_total", "seller", "category") == {k: float(v) for k, v in first.items()}

    later = now + 3 * H  # T4 (payment, created at 33 h) is now past its 4 h first-response target
    both = expected_breaches(spec, later)
    assert both != first
    db.cases.record(engine.run_once(later).detections, now=later)
    assert db.by_label("marketguard_seller_sla_breaches_total", "seller", "category") == {k: float(v) for k, v in both.items()}

    restarted = db.restart()
    cycle = SlaEngine(restarted.store, [], [spec]).run_once(later)
    assert len(cycle.detections) == sum(both.values())  # the engine re-emits every breach ...
    restarted.cases.record(cycle.detections, now=later)
    assert restarted.by_label("marketguard_seller_sla_breaches_total", "seller", "category") == {}  # ... counted before
    db.store = restarted.store
