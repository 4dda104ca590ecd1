"""Each notifier against a real local receiver; payloads checked against the service's documented format."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import pytest
from _response_fixtures import Receiver
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from marketguard.metrics import make_metrics
from playbooks.notifiers import build_notifier
from playbooks.notifiers.base import Notification
from playbooks.notifiers.dispatch import Dispatcher
from playbooks.retry import Backoff

STARTED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def note(event: str = "trigger", **kw: Any) -> Notification:
    return Notification(incident_id="in-abc123", title="Credential stuffing from 203.0.113.7",
                        text="42 failed logins in 5 min", severity="high", incident_type="security",
                        started=STARTED, event=event, link="https://mg.example/api/v1/incidents/in-abc123", **kw)  # type: ignore[arg-type]


class Audit:
    """In-memory audit double (records appends)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, actor: str, action: str, object: str, details: Any = None, **_: Any) -> None:
        self.entries.append({"actor": actor, "action": action, "object": object, "details": dict(details or {})})


def dispatcher(notifier: Any, sleeps: list[float] | None = None) -> tuple[Dispatcher, Audit, Any]:
    audit, metrics = Audit(), make_metrics(CollectorRegistry())
    d = Dispatcher({notifier.name: notifier}, audit, retry=Backoff(attempts=4, base_delay_s=0.5),
                   sleep=(sleeps if sleeps is not None else []).append, metrics=metrics)
    return d, audit, metrics


def test_generic_webhook_body_and_signature(receiver: Receiver) -> None:
    n = build_notifier("hook", {"type": "webhook", "url": f"{receiver.url}/hook", "secret": "k3y",
                                "headers": {"X-Team": "secops"}})
    assert dispatcher(n)[0].deliver("hook", note()).ok
    req = receiver.requests[0]
    body = req.json()
    assert body["version"] == "1" and body["event"] == "trigger" and body["text"] == "42 failed logins in 5 min"
    assert body["incident"] == {"id": "in-abc123", "title": "Credential stuffing from 203.0.113.7", "severity": "high",
                                "type": "security", "started": "2026-11-20T09:00:00Z", "ended": None,
                                "link": "https://mg.example/api/v1/incidents/in-abc123"}
    expected = "sha256=" + hmac.new(b"k3y", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-marketguard-signature"] == expected and req.headers["x-team"] == "secops"
    assert req.headers["content-type"] == "application/json"


def test_slack_incoming_webhook_text_and_blocks(receiver: Receiver) -> None:
    n = build_notifier("slack", {"type": "slack", "url": f"{receiver.url}/services/T0/B0/x"})
    assert dispatcher(n)[0].deliver("slack", note()).ok
    body = receiver.requests[0].json()
    assert set(body) == {"text", "blocks"} and "HIGH: Credential stuffing" in body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "context"]
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150
    assert body["blocks"][1]["text"] == {"type": "mrkdwn", "text": "42 failed logins in 5 min"}
    assert all(f["type"] == "mrkdwn" for f in body["blocks"][2]["fields"]) and len(body["blocks"][2]["fields"]) <= 10
    assert "in-abc123" in body["blocks"][3]["elements"][0]["text"]


def test_pagerduty_events_v2_trigger_acknowledge_resolve(receiver: Receiver) -> None:
    n = build_notifier("pd", {"type": "pagerduty", "url": f"{receiver.url}/v2/enqueue", "routing_key": "R" * 32})
    d = dispatcher(n)[0]
    for event in ("trigger", "acknowledge", "resolve"):
        assert d.deliver("pd", note(event)).ok
    trigger, ack, resolve = (r.json() for r in receiver.requests)
    assert {r.path for r in receiver.requests} == {"/v2/enqueue"}
    assert trigger["routing_key"] == "R" * 32 and trigger["event_action"] == "trigger" and trigger["dedup_key"] == "in-abc123"
    payload = trigger["payload"]
    assert {"summary", "source", "severity"} <= set(payload)
    assert len(payload["summary"]) <= 1024 and payload["severity"] in {"critical", "error", "warning", "info"}
    assert payload["severity"] == "error" and RFC3339.match(payload["timestamp"])
    assert trigger["links"] == [{"href": "https://mg.example/api/v1/incidents/in-abc123", "text": "MarketGuard incident"}]
    assert ack == {"routing_key": "R" * 32, "event_action": "acknowledge", "dedup_key": "in-abc123"}
    assert resolve == {"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": "in-abc123"}


def test_alertmanager_v2_postable_alerts(receiver: Receiver) -> None:
    n = build_notifier("am", {"type": "alertmanager", "url": f"{receiver.url}/"})
    d = dispatcher(n)[0]
    assert d.deliver("am", note()).ok and d.deliver("am", note("resolve", ended=datetime(2026, 11, 20, 10, tzinfo=UTC))).ok
    assert [r.path for r in receiver.requests] == ["/api/v2/alerts"] * 2
    firing, resolved = (r.json() for r in receiver.requests)
    assert isinstance(firing, list) and len(firing) == 1
    alert = firing[0]
    assert set(alert) == {"labels", "annotations", "startsAt", "generatorURL"}
    assert alert["labels"]["alertname"] == "MarketGuardIncident" and alert["labels"]["incident_id"] == "in-abc123"
    assert all(isinstance(v, str) and re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", k) for k, v in alert["labels"].items())
    assert alert["annotations"] == {"summary": "Credential stuffing from 203.0.113.7", "description": "42 failed logins in 5 min"}
    assert RFC3339.match(alert["startsAt"]) and alert["generatorURL"].startswith("https://")
    assert resolved[0]["endsAt"] == "2026-11-20T10:00:00Z"


def test_retries_on_500_then_success_and_records_outcome(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    n = build_notifier("hook", {"type": "webhook", "url": f"{receiver.url}/hook"})
    sleeps: list[float] = []
    d, audit, metrics = dispatcher(n, sleeps)
    result = d.deliver("hook", note(), actor="playbook:x")
    assert (result.ok, result.attempts) == (True, 3) and sleeps == [0.5, 1.0]
    assert len(receiver.requests) == 3
    assert audit.entries[-1]["action"] == "notification.delivered" and audit.entries[-1]["details"]["attempts"] == 3
    assert metrics.notifications.labels("hook", "delivered")._value.get() == 1


def test_client_error_is_not_retried_and_failure_is_recorded(receiver: Receiver) -> None:
    receiver.statuses = [400]
    n = build_notifier("hook", {"type": "webhook", "url": f"{receiver.url}/hook"})
    d, audit, metrics = dispatcher(n)
    result = d.deliver("hook", note())
    assert (result.ok, result.attempts, result.status) == (False, 1, 400)
    assert audit.entries[-1]["action"] == "notification.failed"
    assert metrics.notifications.labels("hook", "failed")._value.get() == 1


def test_unreachable_receiver_and_unknown_name_never_raise() -> None:
    n = build_notifier("hook", {"type": "webhook", "url": "http://127.0.0.1:9/nothing", "timeout_s": 1})
    d, audit, _ = dispatcher(n)
    assert not d.deliver("hook", note()).ok
    missing = d.deliver("teams", note())
    assert not missing.ok and "unknown notifier 'teams'" in (missing.error or "")


class Sink:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's naming
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Sink]]:
    sink = Sink()
    with socket.socket() as probe:  # aiosmtpd needs a concrete port (it connects to check readiness)
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=free)
    controller.start()
    yield controller, sink
    controller.stop()


def test_smtp_email_to_a_real_server(smtp: tuple[Controller, Sink]) -> None:
    controller, sink = smtp
    port = controller.port
    n = build_notifier("mail", {"type": "smtp", "host": "127.0.0.1", "port": port, "starttls": False,
                                "sender": "mg@market.example", "recipients": ["dpo@market.example", "ciso@market.example"]})
    assert dispatcher(n)[0].deliver("mail", note()).ok
    envelope = sink.messages[0]
    assert envelope.mail_from == "mg@market.example" and envelope.rcpt_tos == ["dpo@market.example", "ciso@market.example"]
    msg = message_from_bytes(envelope.content)
    assert msg["Subject"] == "[MarketGuard] HIGH: Credential stuffing from 203.0.113.7"
    assert msg["X-MarketGuard-Incident"] == "in-abc123"
    assert "42 failed logins in 5 min" in msg.get_payload() and "Incident: in-abc123" in msg.get_payload()


def test_smtp_starttls_refused_by_a_plain_server_fails_permanently(smtp: tuple[Controller, Sink]) -> None:
    controller, sink = smtp
    port = controller.port
    n = build_notifier("mail", {"type": "smtp", "host": "127.0.0.1", "port": port, "starttls": True,
                                "sender": "mg@market.example", "recipients": ["dpo@market.example"]})
    result = dispatcher(n)[0].deliver("mail", note())
    assert (result.ok, result.attempts) == (False, 1) and not sink.messages
