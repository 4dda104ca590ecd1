"""A real incident-response history for the report tests, built once per session.

Marketplace traffic with attack campaigns (the demo's generator) goes over HTTP into the real
service (DuckDB store), the rule pack runs over it, the SLO / seller-SLA engine evaluates, the
case store groups incidents, the real playbooks run (notifiers and the containment webhook
post to a local receiver), and then people act: they acknowledge and resolve tickets, approve
and reject containment, and record the GDPR notification. The store is closed at the end;
tests open it (or a copy, when they write) themselves.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from correlator.engine import run_rules
from marketguard.app.api import create_app
from marketguard.app.receivers import CaptureServer
from marketguard.app.reports import ReportSources, sources_from_store
from marketguard.app.scenario import generate
from marketguard.app.scenario.sla import generate_sla
from marketguard.app.services import Services, build_services
from marketguard.cases import CaseFilters
from marketguard.cases.tickets import TicketFilters
from marketguard.config import Settings, load_settings
from marketguard.store import MatchWindow, Store, open_store
from playbooks.stage import build_response

REPO = Path(__file__).resolve().parents[3]
#: Where tests leave files for people to look at (gitignored).
OUTPUT = REPO / "test-output" / "reports"
NOW = datetime.now(UTC).replace(microsecond=0)
AUTHORITY_REF = "SA-2026-0042"


@dataclass(frozen=True)
class ReportWorld:
    """Where the history lives and what the people did in it."""

    settings: Settings
    enumeration: str  # personal-data incident: acked, containment approved, authority notified, resolved
    stuffing: str  # credential stuffing: acked and resolved late, containment rejected
    acked_after: timedelta
    resolved_after: timedelta
    period: tuple[datetime, datetime]

    def copy_to(self, target: Path) -> Settings:
        """A copy of the data directory (for tests that write: audited reads, tampering)."""
        shutil.copytree(self.settings.data_dir, target)
        return self.settings.model_copy(update={"data_dir": target})


def _env(url: str) -> dict[str, str]:
    return {
        "SLACK_SECOPS_WEBHOOK_URL": f"{url}/slack/secops", "SLACK_FRAUD_WEBHOOK_URL": f"{url}/slack/fraud",
        "PAGERDUTY_ROUTING_KEY": "test-routing-key", "PAGERDUTY_EVENTS_URL": f"{url}/pagerduty/v2/enqueue",
        "ALERTMANAGER_URL": f"{url}/alertmanager", "SELLER_WEBHOOK_URL": f"{url}/sellers",
        "SELLER_WEBHOOK_SECRET": "test-secret", "CONTAINMENT_WEBHOOK_URL": f"{url}/waf",
        "CONTAINMENT_WEBHOOK_TOKEN": "test-token",
    }


def _ingest(services: Services) -> None:
    key = services.keys.create("report-gateway", "ingest")
    scenario, sla = generate(1_500, seed=3), generate_sla(3, now=NOW)
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        services.ingest.start()
        client.headers["Authorization"] = f"Bearer {key}"
        client.post("/api/v1/logs", params={"format": "combined"}, content="\n".join(scenario.lines),
                    headers={"Content-Type": "text/plain"}).raise_for_status()
        body = "".join(json.dumps(e) + "\n" for e in sla.api_events)
        client.post("/api/v1/logs", content=body, headers={"Content-Type": "application/x-ndjson"}).raise_for_status()
        for path, payload in (("/api/v1/logs", sla.probe_results), ("/v1/traces", sla.otlp),
                              ("/api/v1/support-events", sla.support_events)):
            client.post(path, json=payload).raise_for_status()
        services.ingest.stop()


def _detect_and_respond(services: Services, receiver_url: str) -> list[str]:
    detections = run_rules(services.store, services.rules, MatchWindow()).detections
    detections += services.sla.run_once(NOW).detections
    services.cases.record(detections)
    services.response = build_response(
        services.store, services.cases, services.tickets, services.ticket_policy, services.audit,
        playbook_dir=REPO / "playbooks", env=_env(receiver_url), base_url="http://127.0.0.1:8080",
        gdpr_notifier="email-dpo", sleep=lambda _s: None)
    ids = [i.id for i in services.cases.incidents(CaseFilters(), None, 500).items]
    services.response.runner.run_many(ids)
    return ids


def _incident(services: Services, words: str) -> str:
    found = [i for i in services.cases.incidents(CaseFilters(), None, 500).items if words in i.title]
    assert len(found) == 1, f"expected one incident titled {words!r}, got {[i.title for i in found]}"
    return found[0].id


def _people_act(services: Services, enumeration: str, stuffing: str, acked: timedelta, late: timedelta) -> None:
    tickets, response = services.tickets, services.response
    for t in tickets.list(TicketFilters(incident_id=enumeration), None, 100).items:
        tickets.set_status(t.id, "acknowledged", actor="key:analyst-ann", now=t.created + acked)
        tickets.set_status(t.id, "resolved", actor="key:analyst-ann", reason="source blocked, DPO informed",
                           now=t.created + timedelta(hours=2))
    for t in tickets.list(TicketFilters(incident_id=stuffing), None, 100).items:
        tickets.set_status(t.id, "acknowledged", actor="key:oncall-omar", now=t.created + acked)
        tickets.set_status(t.id, "resolved", actor="key:oncall-omar", reason="passwords reset",
                           now=t.created + late)
    for action in response.containment.actions.list(incident_id=enumeration):
        response.containment.approve(action.id, actor="key:oncall-omar", reason="scraper confirmed in logs")
    for action in response.containment.actions.list(incident_id=stuffing):
        response.containment.reject(action.id, actor="key:oncall-omar", reason="shared NAT of a university")
    clock = response.gdpr.clocks.get(enumeration)
    assert clock is not None, "the personal-data playbook should have started the Article 33 clock"
    response.gdpr.record_notification(enumeration, notified_at=clock.aware_at + timedelta(hours=30),
                                      authority_ref=AUTHORITY_REF, actor="key:dpo-dana")


def open_sources(settings: Settings) -> tuple[ReportSources, Store]:
    """Report sources on the data directory's store; close the returned store after use."""
    store = open_store(settings)
    return sources_from_store(store, settings), store


def build_world(base: Path) -> Iterator[ReportWorld]:
    """Build the history under ``base`` (see the module docstring); yields it, store closed."""
    settings = load_settings(data_dir=base / "data", rules_dirs=[REPO / "rules"], routing_file=REPO / "playbooks" / "routing.yaml")
    services = build_services(settings, with_engine=False)
    acked, late = timedelta(minutes=10), timedelta(hours=30)
    try:
        with CaptureServer() as receiver:
            _ingest(services)
            _detect_and_respond(services, receiver.url)
            enumeration = _incident(services, "Enumeration of Order or Seller IDs")
            stuffing = _incident(services, "Credential Stuffing")
            _people_act(services, enumeration, stuffing, acked, late)
    finally:
        services.close()
    period = (NOW - timedelta(days=30), NOW + timedelta(days=1))
    yield ReportWorld(settings, enumeration, stuffing, acked, late, period)

