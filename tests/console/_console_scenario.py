"""A seeded marketplace for the console tests: real services on a DuckDB file, with incidents
(and their evidence events), tickets for the operator and two sellers, a containment action
awaiting approval (its webhook a real HTTP receiver on 127.0.0.1), an SLO/seller-SLA evaluation,
and one API key per role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

from marketguard.app.services import Services, build_services
from marketguard.cases.tickets import NewTicket
from marketguard.config import load_settings
from marketguard.detections import Detection
from marketguard.schema import EVENT_SCHEMA
from playbooks.containment import Containment
from playbooks.notifiers import ActionWebhook
from playbooks.retry import Backoff
from playbooks.state_duckdb import DuckDBActionStore

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
T0 = NOW - timedelta(hours=3)
ATTACKER = "203.0.113.7"
ROLES = {"analyst": "analyst", "oncall": "oncall", "auditor": "auditor", "admin": "admin", "ingest": "ingest",
         "acme": "seller:acme", "globex": "seller:globex"}


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 recording the paths it was POSTed to."""

    server: ThreadingHTTPServer
    posts: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` for the duration of the block."""
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            holder["r"].posts.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Scenario:
    """What was seeded: keys by short name, incident, ticket and action ids."""

    services: Services
    keys: dict[str, str]
    incidents: dict[str, str]
    tickets: dict[str, str]
    action_id: str
    receiver: Receiver


def _event(i: int, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"@timestamp": at, "event.id": f"ev-{i}", "event.ingested": NOW, **fields}


def _events() -> list[dict[str, Any]]:
    rows = [_event(i, T0 + timedelta(seconds=i), **{"event.dataset": "api.access", "source.ip": ATTACKER,
                                                     "http.request.method": "POST", "url.path": "/api/v1/login",
                                                     "http.response.status_code": 401, "service.name": "identity"})
            for i in range(6)]
    rows += [_event(100 + i, T0 + timedelta(minutes=30, seconds=i), **{
        "event.dataset": "api.access", "source.ip": "198.51.100.20", "http.request.method": "POST",
        "url.path": "/api/v1/checkout", "http.response.status_code": 500 if i % 4 == 0 else 200,
        "service.name": "checkout", "event.duration": 120_000_000}) for i in range(40)]
    for n, (seller, late) in enumerate([("acme", False), ("acme", False), ("globex", True), ("globex", True)]):
        opened = NOW - timedelta(days=2, hours=n)
        base = {"event.dataset": "support.ticket", "ticket.id": f"st-{n}", "ticket.category": "delivery",
                "marketplace.seller_id": seller, "ticket.priority": "normal"}
        rows.append(_event(200 + 3 * n, opened, **base, **{"ticket.event": "created"}))
        rows.append(_event(201 + 3 * n, opened + timedelta(hours=30 if late else 2), **base, **{"ticket.event": "first_response"}))
        rows.append(_event(202 + 3 * n, opened + timedelta(days=1), **base, **{"ticket.event": "resolved"}))
    return rows


def _detection(rule: str, title: str, level: str, at: datetime, ids: tuple[str, ...], tags: tuple[str, ...],
               start: datetime | None = None, **evidence: str) -> Detection:
    """One detection; with ``start``, a correlation (event_count) over ``(start, at]``."""
    return Detection(rule, title, level, "tests", "Apache-2.0", "event_count" if start else "event", at, ids,
                     evidence={k.replace("__", "."): v for k, v in evidence.items()}, tags=tags,
                     window_start=start, window_end=at if start else None, value=float(len(ids)) if start else None,
                     group=tuple(sorted((k.replace("__", "."), v) for k, v in evidence.items())) if start else ())


def _incidents(services: Services) -> dict[str, str]:
    cases = services.cases
    found: dict[str, str] = {}
    stuffing = [
        _detection("r-login-burst", "Credential stuffing on login", "high", T0 + timedelta(seconds=5),
                   ("ev-0", "ev-1", "ev-2"), ("attack.credential_access",), T0, source__ip=ATTACKER),
        _detection("r-login-ua", "Login failures from one client", "medium", T0 + timedelta(seconds=5),
                   ("ev-3", "ev-4", "ev-5"), ("attack.t1110",), T0, source__ip=ATTACKER),
    ]
    result = cases.record(stuffing, now=T0 + timedelta(minutes=1))
    found["stuffing"] = result.new_incidents[0]
    fraud = _detection("r-card-testing", "Card testing from one seller storefront", "medium", T0 + timedelta(minutes=10),
                       ("ev-100",), ("marketguard.type.fraud",), marketplace__seller_id="acme")
    found["fraud"] = cases.record([fraud], now=T0 + timedelta(minutes=11)).new_incidents[0]
    outage = _detection("r-checkout-5xx", "Checkout API 5xx spike", "critical", T0 + timedelta(minutes=31),
                        ("ev-100", "ev-104", "ev-108"), ("marketguard.type.availability",), T0 + timedelta(minutes=30),
                        service__name="checkout")
    found["outage"] = cases.record([outage], now=T0 + timedelta(minutes=32)).new_incidents[0]
    return found


def _tickets(services: Services, incidents: dict[str, str]) -> dict[str, str]:
    opened: dict[str, str] = {}
    plan = {
        "secops": (incidents["stuffing"], "operator:secops", "Credential stuffing against login", "P1", "high",
                   {"source.ip": [ATTACKER]}),
        "acme": (incidents["fraud"], "seller:acme", "Card testing through your storefront", "P2", "medium",
                 {"marketplace.seller_id": ["acme"], "source.ip": ["198.51.100.20"]}),
        "globex": (incidents["fraud"], "seller:globex", "Support replies overdue", "P3", "medium",
                   {"marketplace.seller_id": ["globex"]}),
    }
    for name, (incident, queue, title, prio, sev, entities) in plan.items():
        new = NewTicket(incident, queue, title, prio, NOW + timedelta(hours=1), NOW + timedelta(days=1),  # type: ignore[arg-type]
                        severity=sev, entities=entities)
        opened[name] = services.tickets.open(new, actor="playbook:tests", now=T0 + timedelta(minutes=2)).ticket.id
        services.tickets.comment(opened[name], f"internal note on {name}: check {ATTACKER}",
                                 actor="playbook:tests", internal=True)
    return opened


@contextmanager
def scenario(tmp: Path) -> Iterator[Scenario]:
    """The seeded services (not started), closed afterwards."""
    settings = load_settings(data_dir=tmp / "data", rules_dirs=[REPO / "rules" / "sla" / "specs"],
                             slo_interval_s=3600)
    services = build_services(settings, with_engine=False)
    with receiver() as rec:
        try:
            services.store.append_events(pa.Table.from_pylist(_events(), schema=EVENT_SCHEMA))
            keys = {name: services.keys.create(f"{name}-key", role) for name, role in ROLES.items()}
            incidents = _incidents(services)
            tickets = _tickets(services, incidents)
            containment = Containment(DuckDBActionStore(services.store), services.audit, ActionWebhook(url=f"{rec.url}/contain"),
                                      retry=Backoff(attempts=1, base_delay_s=0.01, max_delay_s=0.01))
            services.extras["containment"] = containment
            action = containment.request(incidents["stuffing"], "block_ip", ATTACKER, requested_by="playbook:credential-stuffing")
            services.sla.run_once(NOW)
            yield Scenario(services, keys, incidents, tickets, action.id, rec)
        finally:
            services.close()
