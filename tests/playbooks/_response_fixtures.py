"""Shared fixtures and helpers of the response-stage tests (imported by conftest.py and the tests): real DuckDB store, cases, tickets and audit trail, and real
local receivers (an HTTP server on 127.0.0.1 that records every request)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from marketguard.cases import IncidentDetail
from marketguard.cases.audit_duckdb import DuckDBAuditLog
from marketguard.cases.duckdb import DuckDBCaseStore
from marketguard.cases.routing import TicketPolicy, load_policy
from marketguard.cases.tickets_duckdb import DuckDBTicketStore
from marketguard.config import load_settings
from marketguard.detections import Detection
from marketguard.metrics import Metrics, make_metrics
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass
class Captured:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; answers with ``statuses`` in turn (then 200)."""

    server: ThreadingHTTPServer
    requests: list[Captured] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver, shut down after the test."""
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            rec = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append(Captured("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = rec.statuses.pop(0) if rec.statuses else 200
            payload = b'{"status":"success"}' if status < 300 else b'{"error":"try later"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


@dataclass
class Cases:
    """Real cases components on one DuckDB file."""

    store: DuckDBStore
    cases: DuckDBCaseStore
    audit: DuckDBAuditLog
    tickets: DuckDBTicketStore
    policy: TicketPolicy
    metrics: Metrics

    def incident(self, *detections: Detection, now: datetime = T0) -> IncidentDetail:
        """Record detections; return the (single) incident they form."""
        result = self.cases.record(list(detections), now=now)
        detail = self.cases.incident((result.new_incidents or result.updated_incidents)[0])
        assert detail is not None
        return detail


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Cases]:
    """Store, case store, audit trail and ticket store on a fresh DuckDB file."""
    settings = load_settings(data_dir=tmp_path / "data", rules_dirs=[tmp_path])
    store = DuckDBStore(tmp_path / "mg.duckdb")
    metrics = make_metrics(CollectorRegistry())
    audit = DuckDBAuditLog(store)
    yield Cases(store, DuckDBCaseStore(store, settings, metrics=metrics), audit,
                DuckDBTicketStore(store, audit), load_policy(REPO / "playbooks" / "routing.yaml"), metrics)
    store.close()


def detection(rule: str, *, tags: tuple[str, ...], level: str = "high", at: datetime = T0,
              event_id: str | None = None, title: str | None = None, **entities: str) -> Detection:
    """A single-event detection with entity evidence (``source_ip="…"`` → ``source.ip``)."""
    evidence = {k.replace("_", ".", 1) if k != "marketplace_seller_id" else "marketplace.seller_id": v
                for k, v in entities.items()}
    return Detection(rule, title or f"Rule {rule}", level, "tests", "Apache-2.0", "event",
                     at, (event_id or f"ev-{rule}-{at.timestamp()}",), evidence=evidence, tags=tags)


def later(hours: float) -> datetime:
    """``T0`` plus some hours."""
    return T0 + timedelta(hours=hours)


@dataclass
class Response:
    """The response stage wired on :class:`Cases` with every notifier pointed at the receiver."""

    world: Cases
    receiver: Receiver
    responders: Any
    sleeps: list[float]


@pytest.fixture
def response(world: Cases, receiver: Receiver) -> Response:
    """Responders (dispatcher, containment, GDPR clock) whose notifiers post to ``receiver``."""
    from playbooks.containment import Containment
    from playbooks.gdpr import GdprClock
    from playbooks.notifiers import ActionWebhook, build_notifier
    from playbooks.notifiers.dispatch import Dispatcher
    from playbooks.retry import Backoff
    from playbooks.state_duckdb import DuckDBActionStore, DuckDBClockStore
    from playbooks.steps import Responders

    sleeps: list[float] = []
    url = receiver.url
    specs = {
        "slack-secops": {"type": "slack", "url": f"{url}/slack/secops"},
        "slack-fraud": {"type": "slack", "url": f"{url}/slack/fraud"},
        "pagerduty-oncall": {"type": "pagerduty", "url": f"{url}/v2/enqueue", "routing_key": "R0UTINGKEY"},
        "alertmanager": {"type": "alertmanager", "url": f"{url}/am"},
        "webhook-sellers": {"type": "webhook", "url": f"{url}/sellers", "secret": "s3cret"},
        "email-dpo": {"type": "webhook", "url": f"{url}/email-dpo"},
    }
    notifiers = {name: build_notifier(name, spec) for name, spec in specs.items()}
    retry = Backoff(attempts=3, base_delay_s=1, max_delay_s=8)
    dispatcher = Dispatcher(notifiers, world.audit, retry=retry, sleep=sleeps.append, metrics=world.metrics)
    containment = Containment(DuckDBActionStore(world.store), world.audit, ActionWebhook(url=f"{url}/contain"),
                              retry=retry, sleep=sleeps.append, metrics=world.metrics)
    gdpr = GdprClock(DuckDBClockStore(world.store), world.tickets, world.policy, world.audit,
                     dispatcher=dispatcher, reminder_notifier="email-dpo", metrics=world.metrics)
    responders = Responders(store=world.store, cases=world.cases, tickets=world.tickets, policy=world.policy,
                            audit=world.audit, dispatcher=dispatcher, containment=containment, gdpr=gdpr,
                            base_url="https://marketguard.example", clock=lambda: later(1))
    return Response(world, receiver, responders, sleeps)
