"""The SLA side of the scenario: a checkout outage with a latency regression, a failing probe,
an expiring certificate and a slow seller — all relative to *now*, since SLOs burn in real time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["SlaScenario", "generate_sla"]

OUTAGE = timedelta(minutes=12)


@dataclass
class SlaScenario:
    """JSON bodies ready for the ingest endpoints, and what should be found."""

    api_events: list[dict[str, Any]]
    probe_results: list[dict[str, Any]]
    otlp: dict[str, Any]
    support_events: list[dict[str, Any]]
    slow_seller: str
    outage_service: str = "checkout"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _api(rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    events = []
    for second in range(0, 6 * 3600, 6):  # one checkout request every 6 s for six hours
        t = now - timedelta(seconds=6 * 3600 - second)
        broken = now - t < OUTAGE
        failed = broken and rng.random() < 0.5
        slow_ms = rng.uniform(1500, 4000) if broken else rng.uniform(40, 300)
        events.append({
            "@timestamp": _iso(t), "service.name": "checkout", "http.request.method": "POST",
            "url.original": "/api/v1/checkout", "url.path": "/api/v1/checkout",
            "http.response.status_code": 503 if failed else 200, "event.duration": int(slow_ms * 1e6),
            "source.ip": f"81.2.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}",
        })
    return events


def _probes(now: datetime) -> list[dict[str, Any]]:
    out = []
    for minute in range(180, 0, -1):
        t = now - timedelta(minutes=minute)
        down = timedelta(minutes=minute) <= OUTAGE
        out.append({"@timestamp": _iso(t), "event.dataset": "uptime.probe", "monitor.id": "checkout-https",
                    "monitor.name": "Checkout page", "monitor.type": "http", "service.name": "checkout",
                    "monitor.status": "down" if down else "up", "url.full": "https://shop.example.com/checkout",
                    "error.message": "HTTP 503" if down else None, "observer.name": "probe-eu-1",
                    "tls.server.x509.not_after": _iso(now + timedelta(days=5))})
    return [{k: v for k, v in p.items() if v is not None} for p in out]


def _spans(rng: random.Random, now: datetime) -> dict[str, Any]:
    spans = []
    for i in range(40):
        start = now - OUTAGE + timedelta(seconds=i * 15)
        spans.append({
            "traceId": f"{rng.getrandbits(128):032x}", "spanId": f"{rng.getrandbits(64):016x}",
            "name": "POST /api/v1/checkout", "kind": 2,
            "startTimeUnixNano": str(int(start.timestamp() * 1e9)),
            "endTimeUnixNano": str(int((start + timedelta(seconds=3)).timestamp() * 1e9)),
            "status": {"code": 2, "message": "payment gateway timeout"},
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "503"}}],
        })
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "demo"}, "spans": spans}]}]}


def _support(rng: random.Random, now: datetime, slow: str) -> list[dict[str, Any]]:
    events = []
    for seller in ("s-101", "s-202", slow):
        for n in range(8):
            created = now - timedelta(days=9) + timedelta(hours=n * 20)
            answer = timedelta(hours=rng.uniform(30, 60)) if seller == slow else timedelta(hours=rng.uniform(0.5, 6))
            base = {"ticket_id": f"{seller}-{n}", "seller_id": seller, "category": "delivery", "priority": "normal"}
            events.append({**base, "event": "created", "timestamp": _iso(created)})
            events.append({**base, "event": "first_response", "timestamp": _iso(created + answer)})
            events.append({**base, "event": "resolved", "timestamp": _iso(created + answer * 2)})
    return events


def generate_sla(seed: int = 7, now: datetime | None = None) -> SlaScenario:
    """Six hours of checkout traffic ending in a 12-minute outage, probes, spans, seller tickets."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    return SlaScenario(_api(rng, now), _probes(now), _spans(rng, now), _support(rng, now, "s-303"), "s-303")
