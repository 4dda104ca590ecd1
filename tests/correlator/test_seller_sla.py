"""Seller support SLA on hand-computed cases: target choice, compliance, score, breaches.

Targets of the spec below (first response / resolution):
catch-all 8h/72h; delivery 4h/48h; urgent 1h/24h (pages); delivery+urgent 30m/12h.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from correlator.seller_sla import (
    SellerSlaSpec,
    evaluate_seller_sla,
    load_seller_slas,
    seller_sla_events,
    tickets_from_events,
)
from marketguard.cases import CaseFilters, open_cases
from marketguard.config import Settings
from marketguard.errors import RuleError
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.duckdb import DuckDBStore

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)

SPEC = SellerSlaSpec.model_validate({
    "kind": "seller_sla", "id": "seller-support", "title": "Seller support", "window": "30d",
    "targets": [
        {"first_response": "8h", "resolution": "72h"},
        {"category": "delivery", "first_response": "4h", "resolution": "48h"},
        {"priority": "urgent", "first_response": "1h", "resolution": "24h", "severity": "page"},
        {"category": "delivery", "priority": "urgent", "first_response": "30m", "resolution": "12h"},
    ],
})


def ticket_events() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(tid: str, kind: str, at: datetime, seller: str | None = None, cat: str | None = None,
            prio: str | None = None) -> None:
        rows.append({"@timestamp": at, "event.id": f"{tid}-{kind}", "ticket.id": tid, "ticket.event": kind,
                     "ticket.category": cat, "ticket.priority": prio, "marketplace.seller_id": seller,
                     "event.dataset": "support.ticket"})

    d0 = NOW - 36 * H  # 2026-11-19 00:00
    # S1: T1 delivery answered in 2h (met), resolved in 24h (met)
    add("T1", "created", d0, "S1", "delivery", "normal")
    add("T1", "first_response", d0 + 2 * H)
    add("T1", "resolved", d0 + 24 * H)
    # S1: T2 delivery answered in 6h (breach, credit 2 - 6/4 = 0.5), open 36h < 48h (pending)
    add("T2", "created", d0, "S1", "delivery", "normal")
    add("T2", "first_response", d0 + 6 * H, "S1")
    # S1: T3 urgent "billing" unanswered for 3h: open breach of 1h (credit 0), resolution pending
    add("T3", "created", NOW - 3 * H, "S1", "billing", "urgent")
    # S2: T4 created 40 days ago: outside the 30-day window
    add("T4", "created", NOW - 40 * 24 * H, "S2", "returns", "low")
    add("T4", "first_response", NOW - 30 * 24 * H, "S2")
    # S2: T5 resolved in 1h without a first_response event: both clocks stop (met, met)
    add("T5", "created", NOW - 2 * H, "S2", "returns", "low")
    add("T5", "resolved", NOW - H, "S2")
    # S2: T6 delivery+urgent answered in 20m (met, 30m target), resolution pending (1h < 12h)
    add("T6", "created", NOW - H, "S2", "delivery", "urgent")
    add("T6", "first_response", NOW - H + timedelta(minutes=20), "S2")
    # S3: no created event (ticket opened before the events were collected): ignored
    add("T7", "first_response", NOW - H, "S3", "delivery", "normal")
    # created after now: ignored
    add("T8", "created", NOW + H, "S2", "delivery", "normal")
    return rows


def frame() -> pd.DataFrame:
    return pd.DataFrame(ticket_events())


def test_target_choice_is_most_specific() -> None:
    assert SPEC.target_for("delivery", "urgent").first_response == timedelta(minutes=30)
    assert SPEC.target_for("delivery", "low").first_response == 4 * H
    assert SPEC.target_for("billing", "urgent").first_response == H
    assert SPEC.target_for(None, None).first_response == 8 * H


def test_tickets_are_rebuilt_from_lifecycle_events() -> None:
    tickets = tickets_from_events(frame())
    assert sorted(tickets.index) == ["T1", "T2", "T3", "T4", "T5", "T6", "T8"]
    t5 = tickets.loc["T5"]
    assert t5["first_response"] == t5["resolved"] == pd.Timestamp(NOW - H)
    assert tickets.loc["T2", "category"] == "delivery" and tickets.loc["T2", "seller"] == "S1"
    assert tickets.loc["T1", "event_ids"] == ("T1-created", "T1-first_response", "T1-resolved")


def test_compliance_and_score_by_hand() -> None:
    """S1: first response met 1 / breached 2 → 1/3; resolution met 1 → 1.0.
    Score = 100 × (0.6·1 + 0.6·0.5 + 0.6·0 + 0.4·1) / (3·0.6 + 0.4) = 100 × 1.3 / 2.2.
    S2 (T5, T6; T4 is outside the window): all met → 1.0 / 1.0, score 100."""
    report = evaluate_seller_sla(SPEC, frame(), NOW)
    assert set(report.sellers) == {"S1", "S2"}
    s1, s2 = report.sellers["S1"], report.sellers["S2"]
    assert s1.tickets == 3 and s1.met == {"first_response": 1, "resolution": 1}
    assert s1.breached == {"first_response": 2, "resolution": 0}
    assert s1.compliance == pytest.approx({"first_response": 1 / 3, "resolution": 1.0})
    assert s1.score == pytest.approx(100 * 1.3 / 2.2)
    assert s2.tickets == 2 and s2.compliance == {"first_response": 1.0, "resolution": 1.0}
    assert s2.score == pytest.approx(100.0)


def test_breaches_become_seller_owned_detections() -> None:
    report = evaluate_seller_sla(SPEC, frame(), NOW)
    by_ticket = {d.evidence["ticket.id"]: d for d in report.detections}
    assert set(by_ticket) == {"T2", "T3"}
    t2, t3 = by_ticket["T2"], by_ticket["T3"]
    assert t2.evidence["sla.target_s"] == 4 * 3600 and t2.evidence["sla.actual_s"] == 6 * 3600
    assert t2.evidence["sla.open"] is False and t2.rule_level == "medium"
    assert t2.timestamp == NOW - 36 * H + 4 * H and t2.window_end == NOW - 30 * H
    assert t3.evidence["sla.actual_s"] == 3 * 3600 and t3.evidence["sla.open"] is True
    assert t3.rule_level == "high"  # the urgent target pages
    for d in report.detections:
        assert d.rule_id == "seller-support" and d.kind == "seller_sla"
        assert d.evidence["marketplace.seller_id"] == "S1" and d.tags == ("marketguard.type.sla",)
        assert d.evidence["sla.metric"] == "first_response"
        assert d.evidence["seller.service_score"] == pytest.approx(100 * 1.3 / 2.2)


def test_pending_becomes_breach_as_time_passes() -> None:
    """At now + 11.5h: T2's resolution (48h, created now − 36h: 47.5h) is still pending, T6's
    (12h, created now − 1h: 12.5h) is breached, T3's (24h: 14.5h) pending; T8 (created now + 1h,
    delivery 4h) is now in the window and unanswered after 10.5h."""
    later = evaluate_seller_sla(SPEC, frame(), NOW + 11.5 * H)
    breached = {(d.evidence["ticket.id"], d.evidence["sla.metric"]) for d in later.detections}
    assert breached == {("T2", "first_response"), ("T3", "first_response"), ("T6", "resolution"),
                        ("T8", "first_response")}


def test_no_tickets_no_report() -> None:
    report = evaluate_seller_sla(SPEC, frame().iloc[0:0], NOW)
    assert report.sellers == {} and report.detections == []


def test_specs_are_validated(tmp_path: Path) -> None:
    (tmp_path / "s.yml").write_text(
        "kind: seller_sla\nid: x\ntitle: X\ntargets:\n  - {category: delivery, first_response: 4h}\n"
    )
    with pytest.raises(RuleError, match="catch-all"):
        load_seller_slas([tmp_path])
    (tmp_path / "s.yml").write_text("kind: seller_sla\nid: x\ntitle: X\ntargets:\n  - {first_response: soon}\n")
    with pytest.raises(RuleError, match=r"s\.yml#0: targets\.0\.first_response"):
        load_seller_slas([tmp_path])


def test_store_to_case_store_is_idempotent(tmp_path: Path) -> None:
    """From a real DuckDB store to the case store: the two breaches of S1 (30 h apart) join one
    sla incident through marketplace.seller_id when the incident window spans them; evaluating
    again records nothing new."""
    cols: dict[str, list[Any]] = {n: [] for n in EVENT_FIELDS}
    for row in ticket_events():
        for name in EVENT_FIELDS:
            cols[name].append(row.get(name))
    store = DuckDBStore(tmp_path / "events.duckdb")
    try:
        store.append_events(pa.table(cols, schema=EVENT_SCHEMA))
        cases = open_cases(store, Settings(data_dir=tmp_path, incident_window_s=2 * 86400))
        report = evaluate_seller_sla(SPEC, seller_sla_events(store, SPEC, NOW), NOW)
        assert report.sellers["S1"].score == pytest.approx(100 * 1.3 / 2.2)
        first = cases.record(report.detections, now=NOW)
        assert len(first.new_alerts) == 2 and len(first.new_incidents) == 1
        again = evaluate_seller_sla(SPEC, seller_sla_events(store, SPEC, NOW + timedelta(minutes=5)),
                                    NOW + timedelta(minutes=5))
        assert cases.record(again.detections, now=NOW).new_alerts == ()
        (incident,) = cases.incidents(CaseFilters(status="open")).items
        assert incident.type == "sla" and incident.entities["marketplace.seller_id"] == ["S1"]
    finally:
        store.close()
