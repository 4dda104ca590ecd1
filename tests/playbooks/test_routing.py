"""Ownership routing of ``playbooks/routing.yaml``: fraud belongs to payments, the rest unchanged.

The fraud families are read from the shipped rules (``rules/fraud/*.yml``: each alerting rule
carries ``marketguard.fraud.<family>``), so a new family without a payments route fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from _response_fixtures import REPO, Response, detection, later

from marketguard.cases import Incident
from marketguard.cases.routing import load_policy
from marketguard.detections import Detection
from playbooks.model import load_playbooks
from playbooks.runner import PlaybookRunner
from playbooks.state_duckdb import DuckDBStepLog

POLICY = load_policy(REPO / "playbooks" / "routing.yaml")
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _fraud_rule_tags() -> dict[str, tuple[str, ...]]:
    """family -> the tags of one shipped fraud rule of that family."""
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted((REPO / "rules" / "fraud").glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            tags = tuple(doc.get("tags", ()))
            for tag in tags:
                if tag.startswith("marketguard.fraud."):
                    out.setdefault(tag.removeprefix("marketguard.fraud."), tags)
    return out


FAMILIES = _fraud_rule_tags()


def incident(type: str, severity: str = "high", **entities: list[str]) -> Incident:
    """An incident; entity keyword names use '_' for the first '.' (source_ip=[...])."""
    ents = {k.replace("_", ".", 1): v for k, v in entities.items()}
    return Incident("I-1", "Incident", type, severity, severity, ents, set(), ["A-1"], ["r1"],
                    T0, T0, "open", T0, T0)


def queues(inc: Incident, tags: tuple[str, ...] = ()) -> set[str]:
    return {r.queue for r in POLICY.route(inc, tags)}


def test_every_shipped_fraud_family_is_known() -> None:
    assert set(FAMILIES) == {"card_testing", "click", "account_takeover", "promo_abuse"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fraud_families_route_to_payments(family: str) -> None:
    """Card testing, click fraud, account takeover and promo abuse open a payments ticket."""
    routes = POLICY.route(incident("fraud", source_ip=["198.51.100.7"]), FAMILIES[family])
    by_queue = {r.queue: r.rules for r in routes}
    assert "operator:payments" in by_queue
    assert "payments-fraud-families" in by_queue["operator:payments"]
    assert by_queue.get("operator:secops") == ("fraud",), "the fraud route still adds secops"


def test_fraud_without_a_family_and_other_types_keep_their_routes() -> None:
    """Routes other than the new one decide exactly what they did before."""
    assert queues(incident("fraud"), ("marketguard.type.fraud",)) == {"operator:secops"}
    assert queues(incident("security", source_ip=["192.0.2.1"]), ("attack.t1190",)) == {"operator:secops"}
    assert queues(incident("security", service_name=["checkout"])) == {"operator:secops", "operator:payments"}
    assert queues(incident("security"), ("attack.collection",)) == {"operator:secops", "operator:dpo"}
    assert queues(incident("availability", service_name=["search"])) == {"operator:sre"}
    assert queues(incident("sla", marketplace_seller_id=["s1", "s2"])) == {"seller:s1", "seller:s2"}
    assert queues(incident("sla")) == {"operator:sre"}
    assert queues(incident("security", marketplace_seller_id=["s3"]), ("marketguard.seller.returns",)) == {
        "operator:secops", "seller:s3"}
    # a family tag on an incident that is not fraud does not send it to payments
    assert queues(incident("security"), FAMILIES["click"]) == {"operator:secops"}


@pytest.mark.parametrize(("playbook", "family"), [("card-testing", "card_testing"), ("click-fraud", "click")])
def test_fraud_playbooks_open_the_payments_ticket(response: Response, playbook: str, family: str) -> None:
    """The shipped fraud playbooks (open_ticket with routing) open the ticket in payments' queue."""
    hit: Detection = detection(f"{family}-rule", tags=FAMILIES[family], source_ip="198.51.100.9", at=later(1))
    detail = response.world.incident(hit)
    runner = PlaybookRunner(load_playbooks(REPO / "playbooks"), response.responders,
                            DuckDBStepLog(response.world.store), sleep=response.sleeps.append,
                            metrics=response.world.metrics)
    result = runner.run(detail)
    assert playbook in result.playbooks
    opened = {t.queue for t in response.world.tickets.list().items}
    assert "operator:payments" in opened
