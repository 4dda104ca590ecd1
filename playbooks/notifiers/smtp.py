"""SMTP e-mail through :mod:`smtplib`, with optional STARTTLS and login."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import ClassVar

from pydantic import Field, SecretStr

from playbooks.notifiers.base import DeliveryError, Notification, NotifierConfig, iso
from playbooks.retry import Permanent

__all__ = ["SmtpNotifier", "SmtpConfig"]


class SmtpConfig(NotifierConfig):
    """Server, credentials, sender and recipients."""

    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[str] = Field(min_length=1)
    subject_prefix: str = "[MarketGuard]"


class SmtpNotifier:
    """Sends a plain-text e-mail per notification."""

    Config: ClassVar[type[SmtpConfig]] = SmtpConfig

    def __init__(self, name: str, config: SmtpConfig) -> None:
        self.name, self.config = name, config

    def message(self, n: Notification) -> EmailMessage:
        """The e-mail for one notification."""
        msg = EmailMessage()
        tag = {"acknowledge": " [acknowledged]", "resolve": " [resolved]"}.get(n.event, "")
        msg["Subject"] = f"{self.config.subject_prefix} {n.severity.upper()}: {n.title}{tag}"
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.recipients)
        msg["X-MarketGuard-Incident"] = n.incident_id
        lines = [n.text, "", f"Incident: {n.incident_id}", f"Type: {n.incident_type}",
                 f"Severity: {n.severity}", f"Started: {iso(n.started)}"]
        if n.link:
            lines.append(f"Link: {n.link}")
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, notification: Notification) -> None:
        """Deliver once; authentication and refused recipients are permanent failures."""
        cfg = self.config
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username and cfg.password is not None:
                    smtp.login(cfg.username, cfg.password.get_secret_value())
                smtp.send_message(self.message(notification))
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPNotSupportedError) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from Permanent()
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
