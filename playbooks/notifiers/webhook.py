"""Generic JSON webhook: the notification as a documented JSON object, optionally signed.

Body (version 1)::

    {"version": "1", "event": "trigger", "incident": {"id", "title", "severity", "type",
     "started", "ended", "link"}, "text": "...", "details": {...}, "source": "marketguard"}

With ``secret`` set, ``X-MarketGuard-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

from pydantic import SecretStr

from playbooks.notifiers.base import HttpConfig, HttpNotifier, Notification, iso

__all__ = ["WebhookNotifier", "WebhookConfig"]


class WebhookConfig(HttpConfig):
    """A URL, optional headers and an optional signing secret."""

    secret: SecretStr | None = None


class WebhookNotifier(HttpNotifier):
    """POSTs MarketGuard's own JSON format (version 1) to any URL."""

    Config: ClassVar[type[HttpConfig]] = WebhookConfig
    config: WebhookConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        """The version-1 body."""
        return {
            "version": "1",
            "event": n.event,
            "incident": {
                "id": n.incident_id, "title": n.title, "severity": n.severity,
                "type": n.incident_type, "started": iso(n.started),
                "ended": iso(n.ended) if n.ended else None, "link": n.link,
            },
            "text": n.text,
            "details": n.details,
            "source": n.source,
        }

    def headers(self, body: bytes) -> dict[str, str]:
        """Configured headers plus the HMAC signature when a secret is set."""
        out = super().headers(body)
        if self.config.secret is not None:
            key = self.config.secret.get_secret_value().encode()
            out["X-MarketGuard-Signature"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return out
