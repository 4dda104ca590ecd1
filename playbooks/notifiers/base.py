"""The notifier interface and the HTTP base class most notifiers are written on.

To add a notifier: subclass :class:`HttpNotifier`, declare its ``Config`` (a pydantic model
extending :class:`NotifierConfig`), implement :meth:`HttpNotifier.payload`, and add the class
to :data:`playbooks.notifiers.NOTIFIERS` under its ``type`` name. ``send`` makes exactly one
attempt and raises :class:`DeliveryError`; retries, audit and metrics are the
:class:`~playbooks.notifiers.dispatch.Dispatcher`'s job, written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from marketguard.errors import MarketGuardError
from playbooks.retry import Permanent

__all__ = [
    "Notification", "DeliveryError", "Notifier", "NotifierConfig", "HttpConfig", "HttpNotifier",
    "NotificationEvent",
]

NotificationEvent = Literal["trigger", "acknowledge", "resolve"]


@dataclass(frozen=True)
class Notification:
    """What to tell people about an incident; each notifier renders it in its service's format."""

    incident_id: str
    title: str
    text: str
    severity: str
    incident_type: str
    started: datetime
    event: NotificationEvent = "trigger"
    ended: datetime | None = None
    link: str | None = None
    source: str = "marketguard"
    details: dict[str, Any] = field(default_factory=dict)


class DeliveryError(MarketGuardError):
    """One delivery attempt failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class Notifier(Protocol):
    """Delivers notifications to one configured destination."""

    name: str

    def send(self, notification: Notification) -> None:
        """Make one delivery attempt; raise :class:`DeliveryError` when it fails."""
        ...


class NotifierConfig(BaseModel):
    """Fields every notifier's configuration has."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: str
    timeout_s: float = Field(10.0, gt=0, le=120)


class HttpConfig(NotifierConfig):
    """A notifier that POSTs JSON to a URL."""

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value[:40]!r}")
        return value


class HttpNotifier:
    """Base of the JSON-over-HTTP notifiers: POST :meth:`payload` to :meth:`endpoint`.

    2xx is success; 408, 429 and 5xx and connection errors are worth retrying; other 4xx are
    permanent (the payload or credentials are wrong).
    """

    Config: ClassVar[type[HttpConfig]] = HttpConfig

    def __init__(self, name: str, config: HttpConfig, *, client: httpx.Client | None = None) -> None:
        self.name, self.config = name, config
        self._client = client or httpx.Client(timeout=config.timeout_s)

    def endpoint(self) -> str:
        """The URL to POST to."""
        return self.config.url

    def payload(self, n: Notification) -> Any:
        """The JSON body for one notification."""
        raise NotImplementedError

    def headers(self, body: bytes) -> dict[str, str]:
        """Request headers (configured ones, secrets revealed)."""
        return {k: v.get_secret_value() for k, v in self.config.headers.items()}

    def send(self, notification: Notification) -> None:
        """POST the payload once."""
        import json

        body = json.dumps(self.payload(notification), default=str).encode()
        headers = {"Content-Type": "application/json", **self.headers(body)}
        try:
            resp = self._client.post(self.endpoint(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if resp.is_success:
            return
        error = DeliveryError(f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]}", status=resp.status_code)
        if resp.status_code < 500 and resp.status_code not in (408, 429):
            raise error from Permanent()
        raise error


def iso(moment: datetime) -> str:
    """RFC 3339 with a ``Z`` suffix for UTC."""
    return moment.isoformat().replace("+00:00", "Z")
