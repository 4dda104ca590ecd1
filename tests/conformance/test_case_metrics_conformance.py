"""Both stores count the same: fraud alerts by family, seller-SLA breaches and incident MTTA/MTTR
come out equal for the same detections and the same ticket moves (each store on its own registry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from marketguard.cases import open_cases
from marketguard.cases.audit import open_audit
from marketguard.cases.tickets import NewTicket, open_tickets
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import make_metrics

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NAMES = ("marketguard_fraud_alerts_total", "marketguard_seller_sla_breaches_total",
         "marketguard_incident_acknowledge_seconds_count", "marketguard_incident_acknowledge_seconds_sum",
         "marketguard_incident_resolve_seconds_count", "marketguard_incident_resolve_seconds_sum")


def fraud(rule: str, family: str, event: str, ip: str, level: str = "high") -> Detection:
    return Detection(rule, f"Fraud {rule}", level, "tests", None, "event", T0, (event,),
                     {"event.id": event, "source.ip": ip},
                     tags=("marketguard.type.fraud", f"marketguard.fraud.{family}"))


def breach(seller: str, ticket: str, category: str, metric: str = "first_response") -> Detection:
    created = T0 - timedelta(days=1)
    return Detection("seller-support-sla", "Seller SLA breach", "medium", "MarketGuard", None, "seller_sla",
                     created + timedelta(hours=8), (f"{ticket}-created",),
                     {"marketplace.seller_id": seller, "ticket.id": ticket, "ticket.category": category},
                     (("marketplace.seller_id", seller), ("ticket.id", ticket), ("sla.metric", metric)),
                     created, created + timedelta(hours=8), 3600.0 * 9, ("marketguard.type.sla",))


DETECTIONS = [
    fraud("ct", "card_testing", "e1", "198.51.100.1"), fraud("ct", "card_testing", "e2", "198.51.100.2"),
    fraud("ck", "click", "e3", "198.51.100.3", "medium"), fraud("ato", "account_takeover", "e4", "198.51.100.4"),
    breach("s-1", "T1", "delivery"), breach("s-1", "T2", "delivery"), breach("s-2", "T3", "returns"),
    breach("s-2", "T3", "returns", "resolution"),
]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if s.name in NAMES}


def _run(store: Any, tmp_path: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    cases = open_cases(store, Settings(data_dir=tmp_path), metrics=metrics)
    for _ in range(2):  # a retry records nothing new
        result = cases.record(DETECTIONS, now=T0)
    assert result.new_alerts == ()
    tickets = open_tickets(store, open_audit(store), cases=cases, metrics=metrics)
    incident = cases.incidents().items[-1]
    ids = [tickets.open(NewTicket(incident.id, q, "Work", "P2", T0, T0 + timedelta(days=1)),
                        actor="playbook:test", now=T0).ticket.id for q in ("operator:payments", "operator:secops")]
    tickets.set_status(ids[0], "acknowledged", actor="key:a", now=T0 + timedelta(minutes=5))
    tickets.set_status(ids[1], "acknowledged", actor="key:a", now=T0 + timedelta(minutes=9))
    tickets.set_status(ids[0], "resolved", actor="key:a", now=T0 + timedelta(hours=1))
    tickets.set_status(ids[1], "resolved", actor="key:a", now=T0 + timedelta(hours=2))
    return _samples(registry)


def test_both_stores_count_the_same(open_store, tmp_path) -> None:
    duck = _run(open_store("duckdb"), tmp_path / "d")
    elastic = _run(open_store("elasticsearch"), tmp_path / "e")
    assert elastic == duck
    fraud_counts = {dict(k[1])["family"]: v for k, v in duck.items() if k[0] == "marketguard_fraud_alerts_total"}
    assert fraud_counts == {"card_testing": 2.0, "click": 1.0, "account_takeover": 1.0}
    breaches = {(dict(k[1])["seller"], dict(k[1])["category"]): v for k, v in duck.items()
                if k[0] == "marketguard_seller_sla_breaches_total"}
    assert breaches == {("s-1", "delivery"): 2.0, ("s-2", "returns"): 2.0}
    ack = {k: v for k, v in duck.items() if k[0].startswith("marketguard_incident_acknowledge")}
    resolve = {k: v for k, v in duck.items() if k[0].startswith("marketguard_incident_resolve")}
    assert sorted(ack.values()) == [1.0, 300.0] and sorted(resolve.values()) == [1.0, 7200.0]
