"""The compliance report over a period: every figure recomputed here from the raw records."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
from _report_scenario import ReportWorld, open_sources

from marketguard.app.reports import ReportSources, build_compliance_report, render
from marketguard.app.reports.model import ComplianceReport
from marketguard.config import Settings
from marketguard.store import MatchWindow


def compliance(world: ReportWorld, sources: ReportSources) -> ComplianceReport:
    return build_compliance_report(sources, *world.period)


def test_incidents_by_type_severity_and_owner(report_world: ReportWorld, sources: ReportSources) -> None:
    c = compliance(report_world, sources)
    incidents = list(sources.all_incidents())
    assert c.incidents == len(incidents) > 5
    assert c.by_type.counts == dict(Counter(i.type for i in incidents))
    assert c.by_severity.counts == dict(Counter(i.severity for i in incidents))
    assert list(c.by_severity.counts) == sorted(c.by_severity.counts, key=["critical", "high", "medium", "low", "informational"].index)
    queues: dict[str, set[str]] = {}
    for t in sources.all_tickets():
        queues.setdefault(t.incident_id, set()).add(t.queue)
    expected = Counter(q for i in incidents for q in queues.get(i.id, {"unowned"}))
    assert c.by_owner.counts == dict(expected) and c.by_owner.counts["operator:dpo"] >= 1


def test_mtta_and_mttr_by_priority_against_the_policy_targets(report_world: ReportWorld, sources: ReportSources) -> None:
    c = compliance(report_world, sources)
    tickets = list(sources.all_tickets())
    assert [r.priority for r in c.response] == ["P1", "P2", "P3", "P4"]
    for row in c.response:
        mine = [t for t in tickets if t.priority == row.priority]
        acked = [(t.acknowledged_at - t.created).total_seconds() for t in mine if t.acknowledged_at]
        solved = [(t.resolved_at - t.created).total_seconds() for t in mine if t.resolved_at]
        assert (row.tickets, row.acknowledged, row.resolved) == (len(mine), len(acked), len(solved))
        assert row.mtta_s == (sum(acked) / len(acked) if acked else None)
        assert row.mttr_s == (sum(solved) / len(solved) if solved else None)
        sla = sources.policy.sla[row.priority]  # type: ignore[index]
        assert (row.ack_target_s, row.resolve_target_s) == (sla.ack.total_seconds(), sla.resolve.total_seconds())
        assert row.resolve_met == sum(1 for t in mine if t.resolved_at and t.resolved_at <= t.resolve_due)
    p1 = c.response[0]
    assert p1.ack_met >= 3 and p1.ack_compliance == 1.0  # the personal-data tickets, acknowledged after 10 min


def test_seller_sla_compliance_and_scores(report_world: ReportWorld, sources: ReportSources) -> None:
    c = compliance(report_world, sources)
    sellers = {s.seller_id: s for s in c.sellers}
    assert set(sellers) == {"s-101", "s-202", "s-303"} and all(s.tickets == 8 for s in sellers.values())
    for fast in ("s-101", "s-202"):  # they answer within hours
        assert (sellers[fast].first_response, sellers[fast].score, sellers[fast].breaches) == (1.0, 100.0, 0)
    slow = sellers["s-303"]  # answers after 30-60 h; delivery tickets are due in 12 h
    assert slow.first_response == 0.0 and slow.breaches >= 8
    events = sources.store.query_events(MatchWindow(dataset="support.ticket"),
                                        columns=["@timestamp", "ticket.id", "ticket.event", "marketplace.seller_id"]).to_pandas()
    mine = events[events["marketplace.seller_id"] == "s-303"]
    at = {(r["ticket.id"], r["ticket.event"]): pd.Timestamp(r["@timestamp"]) for _, r in mine.iterrows()}
    credits = []
    for tid in {k[0] for k in at}:
        created = at[(tid, "created")]
        answer = (at[(tid, "first_response")] - created).total_seconds() / (12 * 3600)
        solve = (at[(tid, "resolved")] - created).total_seconds() / (5 * 86400)
        credits += [(0.6, 1.0 if answer <= 1 else max(0.0, 2 - answer)), (0.4, 1.0 if solve <= 1 else max(0.0, 2 - solve))]
    expected = 100 * sum(w * c for w, c in credits) / sum(w for w, _ in credits)
    assert abs((slow.score or 0) - expected) < 1e-6


def test_slo_attainment_recomputed_from_the_raw_events(report_world: ReportWorld, sources: ReportSources) -> None:
    start, end = report_world.period
    c = compliance(report_world, sources)
    slos = {s.slo_id: s for s in c.slos}
    api = sources.store.query_events(MatchWindow(dataset="api.access"),
                                     columns=["@timestamp", "service.name", "http.response.status_code"]).to_pandas()
    times = pd.to_datetime(api["@timestamp"], utc=True)
    checkout = api[(api["service.name"] == "checkout") & (times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))]
    good = int((checkout["http.response.status_code"] < 500).sum())
    row = slos["checkout-availability"]
    assert (row.good, row.total) == (good, len(checkout)) and row.total > 1000
    assert row.attainment == good / len(checkout) and row.met == (100 * good / len(checkout) >= 99.9)
    assert row.met is False  # the scenario's 12-minute outage spends more than the 0.1 % budget
    probes = sources.store.query_events(MatchWindow(dataset="uptime.probe"), columns=["monitor.id", "monitor.status"]).to_pandas()
    probes = probes[probes["monitor.id"] == "checkout-https"]
    probe_row = slos["checkout-probe-availability"]
    assert (probe_row.good, probe_row.total) == (int((probes["monitor.status"] == "up").sum()), len(probes))


def test_gdpr_adherence_and_audit_verification(report_world: ReportWorld, sources: ReportSources) -> None:
    start, end = report_world.period
    c = compliance(report_world, sources)
    clocks = [k for k in (sources.clocks.get(i.id) for i in sources.all_incidents()) if k]  # type: ignore[union-attr]
    assert [g.incident_id for g in c.gdpr.clocks] == sorted(k.incident_id for k in clocks)
    assert report_world.enumeration in [g.incident_id for g in c.gdpr.clocks]
    assert c.gdpr.on_time == sum(1 for k in clocks if k.notified_at and k.notified_at <= k.deadline) >= 1
    assert c.gdpr.adherence == 1.0
    entries = sources.audit.entries()
    assert c.audit_entries == sum(1 for e in entries if start <= e.time <= end) > 0
    assert c.audit_chain.ok and c.audit_chain.entries == len(entries) and c.audit_period.ok


def test_a_period_without_activity_reports_zeroes(report_world: ReportWorld, sources: ReportSources) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    c = build_compliance_report(sources, start, start + timedelta(days=7))
    assert (c.incidents, c.by_type.counts, c.sellers, c.gdpr.clocks, c.audit_entries) == (0, {}, [], [], 0)
    assert all(r.tickets == 0 and r.mtta_s is None for r in c.response)
    assert all(s.total == 0 and s.attainment is None and s.met is None for s in c.slos)
    assert json.loads(render(c, "json"))["incidents"] == 0


def test_tampering_breaks_the_period_and_chain_verification(report_world: ReportWorld, world_copy: Settings) -> None:
    con = duckdb.connect(str(world_copy.duckdb_path))
    seq = con.execute("SELECT max(seq) - 3 FROM audit_log").fetchone()[0]  # type: ignore[index]
    con.execute("UPDATE audit_log SET details = '{\"reason\": \"nothing to see\"}' WHERE seq = ?", [seq])
    con.close()
    sources, store = open_sources(world_copy)
    try:
        c = compliance(report_world, sources)
    finally:
        store.close()
    assert (c.audit_chain.ok, c.audit_chain.first_broken_seq) == (False, seq)
    assert (c.audit_period.ok, c.audit_period.first_broken_seq) == (False, seq)
