"""``marketguard demo``: a marketplace scenario through the live service, scored against truth.

The demo starts the real service in-process (HTTP on 127.0.0.1, ingest writer, scheduled
detection engine, case store on a DuckDB file), sends the scenario's access-log lines over
HTTP with an ``ingest`` key, waits for the engine to catch up, reads alerts and incidents
back through the API with an ``analyst`` key, and compares them with the ground truth.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from marketguard.app.localserver import LocalServer
from marketguard.app.receivers import CaptureServer
from marketguard.app.reports.demo import write_demo_reports
from marketguard.app.scenario import Scenario, generate, write_log
from marketguard.app.scenario.fraud import FamilyScore, generate_fraud, index_by_trace_id
from marketguard.app.scenario.fraud import score as score_fraud
from marketguard.app.scenario.sla import SlaScenario, generate_sla
from marketguard.app.services import build_services
from marketguard.config import Settings
from marketguard.store import MatchWindow, Store
from marketguard.types import severity_rank

__all__ = ["run_demo", "score", "CampaignScore", "default_rule_dirs", "fetch_all"]

REPO = Path(__file__).resolve().parents[2]
SIGMAHQ = REPO.parent / "shared" / "corpora" / "sigmahq"
BATCH_LINES = 2_000


@dataclass(frozen=True)
class CampaignScore:
    """Ground-truth comparison for one campaign."""

    name: str
    lines: int
    detected: int
    rules: tuple[str, ...]
    latency_s: float | None = None

    @property
    def recall(self) -> float:
        """Share of the campaign's attack lines covered by some alert."""
        return self.detected / self.lines if self.lines else 0.0


def default_rule_dirs() -> list[Path]:
    """Our rule pack, plus SigmaHQ's public web rules when ../shared/corpora is beside the repo."""
    dirs = [REPO / "rules"]
    if SIGMAHQ.is_dir():
        dirs.append(SIGMAHQ)
    return dirs


def _line_of(store: Store) -> dict[str, int]:
    """Event id -> scenario line: batches are sent with ``X-Batch-Id: lines-<offset>``."""
    table = store.query_events(MatchWindow(), columns=["event.id", "log.file.path", "log.file.line"])
    out = {}
    for eid, path, line in zip(*(table.column(i).to_pylist() for i in range(3)), strict=True):
        batch = re.search(r":lines-(\d+)$", path or "")
        if batch:  # the JSON gateway events are not lines of the scenario log
            out[eid] = int(batch.group(1)) + line
    return out


def score(
    scenario: Scenario, findings: Iterable[tuple[str, Iterable[str]]], line_of: dict[str, int],
    found_at: dict[int, float] | None = None, sent_at: dict[int, float] | None = None,
) -> tuple[list[CampaignScore], int, int]:
    """Per-campaign recall (and latency), plus (flagged benign lines, flagged lines).

    ``findings`` are (rule title, event ids) pairs; ``found_at``/``sent_at`` map a line to
    when its alert was stored and when its request was acknowledged (wall clock seconds).
    """
    flagged: dict[int, set[str]] = {}
    for title, event_ids in findings:
        for eid in event_ids:
            if eid in line_of:
                flagged.setdefault(line_of[eid], set()).add(title)
    scores = []
    for name, lines in scenario.truth.items():
        hit = [n for n in lines if n in flagged]
        rules = tuple(sorted({t for n in hit for t in flagged[n]}))
        detected = len(hit)
        if hit and not scenario.campaigns[name].per_line:
            detected = len(lines)  # a correlation alert covers the episode
        latency = None
        if hit and found_at and sent_at:
            latency = max(0.0, min(found_at[n] for n in hit if n in found_at) - sent_at[hit[0]])
        scores.append(CampaignScore(name, len(lines), detected, rules, latency))
    attack = scenario.attack_lines()
    benign = sum(1 for n in flagged if n not in attack)
    return scores, benign, len(flagged)


def fetch_all(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list endpoint."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=query)
        page.raise_for_status()
        body = page.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


def _send(client: httpx.Client, lines: list[str], con: Console) -> dict[int, float]:
    sent_at: dict[int, float] = {}
    for start in range(0, len(lines), BATCH_LINES):
        chunk = lines[start : start + BATCH_LINES]
        while True:
            resp = client.post("/api/v1/logs", params={"format": "combined"}, content="\n".join(chunk),
                               headers={"Content-Type": "text/plain", "X-Batch-Id": f"lines-{start}"})
            if resp.status_code != 429:
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        resp.raise_for_status()
        now = time.time()
        sent_at.update({n: now for n in range(start + 1, start + len(chunk) + 1)})
    con.print(f"Sent {len(lines):,} lines over HTTP in {len(range(0, len(lines), BATCH_LINES))} requests.", highlight=False)
    return sent_at


def _send_events(client: httpx.Client, events: list[dict[str, Any]], chunk: int = 500) -> None:
    """JSON events (a gateway that adds marketplace context) as NDJSON requests."""
    for start in range(0, len(events), chunk):
        body = "".join(json.dumps(e) + "\n" for e in events[start : start + chunk])
        while True:
            resp = client.post("/api/v1/logs", content=body, headers={"Content-Type": "application/x-ndjson", "X-Batch-Id": f"fraud-{start}"})
            if resp.status_code != 429:
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        resp.raise_for_status()


def _wait_for_engine(store: Store, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = (store.get_checkpoint("engine") or {}).get("seq", 0)
        if done >= store.max_seq():
            return
        time.sleep(0.1)
    raise TimeoutError("the detection engine did not catch up within the timeout")


def run_demo(settings: Settings, *, normal: int = 20_000, seed: int = 7, console: Console | None = None) -> list[CampaignScore]:
    """Generate the scenario, run it through the live service, print the scorecard."""
    con = console or Console()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for stale in (settings.duckdb_path, settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")):
        stale.unlink(missing_ok=True)  # the demo starts from an empty store, every time
    settings = settings.model_copy(update={"rules_dirs": default_rule_dirs(), "rule_interval_s": 0.5})
    scenario = generate(normal, seed=seed)
    fraud = generate_fraud(seed, max(2_000, normal // 2), start=scenario.start)
    sla = generate_sla(seed)
    log_path = write_log(scenario, settings.data_dir / "scenario-access.log")
    con.rule("[bold]MarketGuard demo")
    con.print(
        f"Scenario: {len(scenario.lines):,} API access-log lines of a marketplace "
        f"({scenario.start:%Y-%m-%d %H:%M}–{scenario.end:%H:%M} UTC): buyers, sellers' integrations, "
        f"search bots, and {len(scenario.truth)} injected attack campaigns "
        f"({len(scenario.attack_lines())} attack lines). Log: {log_path}",
        highlight=False,
    )
    receiver = CaptureServer().__enter__()
    os.environ.update(_receiver_env(receiver.url))
    services = build_services(settings)
    ingest_key = services.keys.create("demo-gateway", "ingest")
    analyst_key = services.keys.create("demo-analyst", "analyst")
    started = time.perf_counter()
    with LocalServer(services) as server:
        con.print(f"Service: {server.url} — {services.rules.loaded} Sigma rules "
                  f"({len(services.rules.detections)} detection, {len(services.rules.correlations)} correlation), "
                  f"engine every {settings.rule_interval_s}s, store {settings.duckdb_path}", highlight=False)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ingest_key}"}, timeout=60) as client:
            sent_at = _send(client, scenario.lines, con)
            _send_events(client, fraud.events)
            _send_sla(client, sla)
            con.print(f"Sent {len(fraud.events):,} gateway JSON events (a sale-day peak with fraud campaigns) as NDJSON.", highlight=False)
        _wait_for_engine(services.store)
        services.run_sla()  # one SLO / seller-SLA evaluation now, rather than on its interval
        _wait_for_engine(services.store)
        services.worker.drain()  # playbooks for every incident have run
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {analyst_key}"}, timeout=60) as client:
            response = _response_summary(client, services, receiver)
            alerts = fetch_all(client, "/api/v1/alerts")
            incidents = [i for i in fetch_all(client, "/api/v1/incidents") if i["status"] != "merged"]
        line_of = _line_of(services.store)
        traces = services.store.query_events(MatchWindow(dataset=None), columns=["event.id", "trace.id"])
        fraud_index = index_by_trace_id(traces.column(0).to_pylist(), traces.column(1).to_pylist())
    elapsed = time.perf_counter() - started
    found_at = _found_at(alerts, line_of)
    scores, benign, flagged = score(scenario, ((a["rule_title"], a["event_ids"]) for a in alerts), line_of, found_at, sent_at)
    con.print(f"Pipeline: HTTP ingest → DuckDB → scheduled rules → {len(alerts)} alerts in {len(incidents)} incidents, "
              f"{elapsed:.1f}s end to end.", highlight=False)
    con.print(_scorecard(scores))
    con.print("Per-line campaigns count each attack line an alert cites; credential stuffing and ID enumeration "
              "are episodes a correlation rule detects as a whole. Latency: from the request's acknowledgement "
              "to its alert being stored.", highlight=False)
    precision = (flagged - benign) / flagged if flagged else 0.0
    con.print(f"Lines flagged: {flagged:,}, of which benign (false positives): {benign:,} → precision {precision:.3f}", highlight=False)
    fraud_scores = score_fraud(fraud, ((a["tags"], a["event_ids"]) for a in alerts), fraud_index)
    con.print(_fraud_table(fraud_scores))
    _print_sla(con, services.sla.last, sla)
    con.print(_incidents_table(incidents))
    _print_response(con, response)
    receiver.__exit__(None, None, None)
    # reports (issue #9): the most severe incident and the period's compliance report, HTML + PDF
    con.print("Reports: " + ", ".join(str(p) for p in write_demo_reports(settings, settings.data_dir / "reports")), highlight=False)
    con.print("Next: `marketguard serve` to run the service; `marketguard keys create --role ingest --name gateway` "
              "for a key; `marketguard hunt YOUR.log --rules rules` to hunt files offline.")
    return scores


def _found_at(alerts: list[dict[str, Any]], line_of: dict[str, int]) -> dict[int, float]:
    found: dict[int, float] = {}
    for alert in alerts:
        created = datetime.fromisoformat(alert["created"]).astimezone(UTC).timestamp()
        for eid in alert["event_ids"]:
            if eid in line_of:
                n = line_of[eid]
                found[n] = min(found.get(n, created), created)
    return found


def _scorecard(scores: list[CampaignScore]) -> Table:
    table = Table(title="Ground truth: attack campaigns and what caught them")
    for col, just in (("campaign", "left"), ("attack lines", "right"), ("detected", "right"),
                      ("recall", "right"), ("latency", "right"), ("caught by", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for s in sorted(scores, key=lambda s: s.name):
        style = "green" if s.recall >= 0.95 else ("yellow" if s.recall > 0 else "red")
        latency = f"{s.latency_s:.2f}s" if s.latency_s is not None else "—"
        table.add_row(s.name, str(s.lines), str(s.detected), f"[{style}]{s.recall:.2f}[/]", latency, ", ".join(s.rules[:3]))
    total, found = sum(s.lines for s in scores), sum(s.detected for s in scores)
    latencies = [s.latency_s for s in scores if s.latency_s is not None]
    table.add_section()
    table.add_row("all", str(total), str(found), f"{found / total if total else 0:.2f}",
                  f"p50 {statistics.median(latencies):.2f}s" if latencies else "—", "")
    return table


def _send_sla(client: httpx.Client, sla: SlaScenario) -> None:
    """Checkout API events, external probe results, OTLP spans and seller support events."""
    _send_events(client, sla.api_events, chunk=2_000)
    for path, body in (("/api/v1/logs", sla.probe_results), ("/v1/traces", sla.otlp), ("/api/v1/support-events", sla.support_events)):
        client.post(path, json=body).raise_for_status()


def _print_sla(con: Console, cycle: Any, sla: SlaScenario) -> None:
    if cycle is None:
        return
    table = Table(title="SLOs: attainment, error budget and multi-window burn rates (SRE workbook policy)")
    for col in ("SLO", "service", "attainment", "budget left", "burn 5m", "burn 1h", "burn 6h", "alert"):
        table.add_column(col, justify="left" if col in ("SLO", "service", "alert") else "right")
    for st in cycle.slos:
        burn = {k: w.burn_rate for k, w in st.windows.items()}
        table.add_row(st.slo_id, st.service, f"{st.attainment:.4f}" if st.attainment is not None else "—",
                      f"{st.budget_remaining:.0%}", *(f"{burn.get(k, float('nan')):.1f}×" for k in ("5m", "1h", "6h")),
                      st.severity or "—")
    con.print(table)
    sellers = Table(title="Seller support SLA: compliance and service score (0–100)")
    for col in ("seller", "tickets", "first response on time", "resolution on time", "score"):
        sellers.add_column(col)
    for report in cycle.sellers:
        for sid, c in sorted(report.sellers.items()):
            fr, res = c.compliance.get("first_response"), c.compliance.get("resolution")
            flag = "  ← slow seller" if sid == sla.slow_seller else ""
            sellers.add_row(sid, str(c.tickets), f"{fr:.0%}" if fr is not None else "—", f"{res:.0%}" if res is not None else "—",
                            f"{c.score:.0f}{flag}" if c.score is not None else "—")
    con.print(sellers)


def _receiver_env(url: str) -> dict[str, str]:
    """Point every notifier and the containment webhook at the demo's local receiver."""
    return {
        "SLACK_SECOPS_WEBHOOK_URL": f"{url}/slack/secops", "SLACK_FRAUD_WEBHOOK_URL": f"{url}/slack/fraud",
        "PAGERDUTY_ROUTING_KEY": "demo-routing-key", "PAGERDUTY_EVENTS_URL": f"{url}/pagerduty/v2/enqueue",
        "ALERTMANAGER_URL": f"{url}/alertmanager", "SELLER_WEBHOOK_URL": f"{url}/sellers",
        "SELLER_WEBHOOK_SECRET": "demo-secret", "CONTAINMENT_WEBHOOK_URL": f"{url}/waf",
        "CONTAINMENT_WEBHOOK_TOKEN": "demo-token",
    }


def _response_summary(client: httpx.Client, services: Any, receiver: CaptureServer) -> dict[str, Any]:
    auditor = services.keys.create("demo-auditor", "auditor")
    tickets = fetch_all(client, "/api/v1/tickets")
    clocks = client.get("/api/v1/gdpr/clocks").json()
    verify = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {auditor}"}).json()
    pending = client.get("/api/v1/approvals").json()
    return {"tickets": tickets, "clocks": clocks, "verify": verify, "received": list(receiver.received),
            "pending": pending.get("items", pending) if isinstance(pending, dict) else pending}


def _print_response(con: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"Response: {len(r['tickets'])} tickets opened by playbooks, by queue and priority")
    for col in ("queue", "P1", "P2", "P3", "P4", "example"):
        table.add_column(col)
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for t in r["tickets"]:
        by_queue.setdefault(t["queue"] if not t["queue"].startswith("seller:") else "seller:<id>", []).append(t)
    for queue, items in sorted(by_queue.items()):
        counts = [str(sum(1 for t in items if t["priority"] == p)) for p in ("P1", "P2", "P3", "P4")]
        table.add_row(queue, *counts, items[0]["title"][:60])
    con.print(table)
    paths: dict[str, int] = {}
    for path, _ in r["received"]:
        key = "/".join(path.split("/")[:3])
        paths[key] = paths.get(key, 0) + 1
    con.print("Notifications received by the local receiver: " + (", ".join(f"{p} ×{n}" for p, n in sorted(paths.items())) or "none"), highlight=False)
    con.print(f"Containment actions waiting for human approval: {len(r['pending'])} (nothing is blocked until approved).", highlight=False)
    for clock in r["clocks"][:3]:
        con.print(f"GDPR Article 33 clock: incident {clock['incident_id']} — notify the authority by {clock['deadline']} "
                  f"({clock['seconds_left'] / 3600:.1f} h left), DPO ticket {clock['ticket_id']}", highlight=False)
    v = r["verify"]
    con.print(f"Audit trail: {v['entries']} hash-chained entries, verification {'[green]intact[/]' if v['ok'] else '[red]BROKEN at ' + str(v['first_broken_seq']) + '[/]'}")


def _fraud_table(scores: dict[str, FamilyScore]) -> Table:
    table = Table(title="Fraud families: precision and recall against the scenario's ground truth")
    for col in ("family", "instances", "detected", "recall", "alerts", "true alerts", "precision"):
        table.add_column(col, justify="left" if col == "family" else "right")
    for family, s in scores.items():
        table.add_row(family, str(s.instances), str(s.detected), f"{s.recall:.2f}", str(s.alerts), str(s.true_alerts), f"{s.precision:.2f}")
    return table


def _incidents_table(incidents: list[dict[str, Any]], limit: int = 12) -> Table:
    table = Table(title=f"Incidents (top {min(limit, len(incidents))} of {len(incidents)}, most severe first)")
    for col in ("severity", "type", "title", "alerts", "entities"):
        table.add_column(col, overflow="fold")
    ranked = sorted(incidents, key=lambda i: (-severity_rank(i["severity"]), i["first_seen"]))
    for inc in ranked[:limit]:
        ents = "; ".join(f"{k}={', '.join(v[:2])}" for k, v in inc["entities"].items() if v)
        table.add_row(inc["severity"], inc["type"], inc["title"], str(len(inc.get("alert_ids", []))), ents[:80])
    return table
