"""Prometheus Alertmanager: ``POST <url>/api/v2/alerts`` with a JSON list of alerts.

Each alert has ``labels`` (``alertname``, ``severity``, ``incident_id``, ``incident_type``,
``source`` — strings; Alertmanager groups and de-duplicates by them), ``annotations``
(``summary``, ``description``), ``startsAt``, ``endsAt`` (on ``resolve``: now, which resolves the
alert; otherwise omitted so Alertmanager applies its resolve timeout) and ``generatorURL``.
``acknowledge`` has no Alertmanager counterpart and re-sends the firing alert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from playbooks.notifiers.base import HttpNotifier, Notification, iso

__all__ = ["AlertmanagerNotifier"]


class AlertmanagerNotifier(HttpNotifier):
    """Posts one alert per notification to Alertmanager's v2 API (``url`` is its base URL)."""

    def endpoint(self) -> str:
        """``<base>/api/v2/alerts``."""
        return self.config.url.rstrip("/") + "/api/v2/alerts"

    def payload(self, n: Notification) -> list[dict[str, Any]]:
        """A one-element list of postable alerts."""
        alert: dict[str, Any] = {
            "labels": {
                "alertname": "MarketGuardIncident",
                "severity": n.severity,
                "incident_id": n.incident_id,
                "incident_type": n.incident_type,
                "source": n.source,
            },
            "annotations": {"summary": n.title, "description": n.text},
            "startsAt": iso(n.started),
        }
        if n.event == "resolve":
            alert["endsAt"] = iso(n.ended or datetime.now(UTC))
        if n.link:
            alert["generatorURL"] = n.link
        return [alert]
