"""PagerDuty Events API v2 (``POST https://events.pagerduty.com/v2/enqueue``).

``trigger`` sends ``routing_key``, ``event_action``, ``dedup_key`` (the incident id, so every
event of one incident lands on one PagerDuty alert) and ``payload`` with the required
``summary`` (≤ 1024 characters), ``source`` and ``severity`` (critical, error, warning or
info), plus ``timestamp``, ``class``, ``custom_details``. ``acknowledge`` and ``resolve`` send
only ``routing_key``, ``event_action`` and ``dedup_key``, as the API specifies.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SecretStr

from playbooks.notifiers.base import HttpConfig, HttpNotifier, Notification, iso

__all__ = ["PagerDutyNotifier", "PagerDutyConfig", "PAGERDUTY_SEVERITY"]

#: MarketGuard severity -> PagerDuty payload severity.
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info", "informational": "info"}


class PagerDutyConfig(HttpConfig):
    """The integration's routing key; the URL defaults to the public Events v2 endpoint."""

    url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_key: SecretStr


class PagerDutyNotifier(HttpNotifier):
    """Sends Events v2 trigger / acknowledge / resolve with ``dedup_key`` = incident id."""

    Config: ClassVar[type[HttpConfig]] = PagerDutyConfig
    config: PagerDutyConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        """The Events v2 body."""
        body: dict[str, Any] = {
            "routing_key": self.config.routing_key.get_secret_value(),
            "event_action": n.event,
            "dedup_key": n.incident_id,
        }
        if n.event != "trigger":
            return body
        body["payload"] = {
            "summary": f"[{n.severity}] {n.title}"[:1024],
            "source": n.source,
            "severity": PAGERDUTY_SEVERITY.get(n.severity, "warning"),
            "timestamp": iso(n.started),
            "class": n.incident_type,
            "custom_details": {"text": n.text, **n.details},
        }
        body["client"] = "MarketGuard"
        if n.link:
            body["client_url"] = n.link
            body["links"] = [{"href": n.link, "text": "MarketGuard incident"}]
        return body
