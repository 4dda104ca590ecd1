"""Delivery written once: retry with backoff, then record the outcome (audit + metric).

:meth:`Dispatcher.deliver` never raises: a notifier failing must not stop a playbook or the
service; it returns a :class:`Delivery` the caller may act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from marketguard.cases.audit import AuditLog
from marketguard.metrics import METRICS, Metrics
from playbooks.notifiers.base import DeliveryError, Notification, Notifier
from playbooks.retry import Backoff, retry_call

__all__ = ["Dispatcher", "Delivery"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery, after its retries."""

    notifier: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class Dispatcher:
    """Delivers notifications by notifier name, retrying and recording every outcome."""

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        audit: AuditLog,
        *,
        retry: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics = METRICS,
    ) -> None:
        self.notifiers = dict(notifiers)
        self._audit, self._retry, self._sleep, self._metrics = audit, retry or Backoff(), sleep, metrics

    def deliver(self, name: str, notification: Notification, *, actor: str = "marketguard") -> Delivery:
        """Send through the notifier ``name``; unknown names fail (recorded) without raising."""
        notifier = self.notifiers.get(name)
        if notifier is None:
            result = Delivery(name, False, 0, error=f"unknown notifier {name!r}; configured: {', '.join(sorted(self.notifiers)) or 'none'}")
        else:
            _, tries = retry_call(lambda: notifier.send(notification), self._retry, sleep=self._sleep)
            err = tries.error
            status = err.status if isinstance(err, DeliveryError) else None
            result = Delivery(name, err is None, tries.attempts, status, None if err is None else str(err))
        self._record(result, notification, actor)
        return result

    def _record(self, result: Delivery, n: Notification, actor: str) -> None:
        outcome = "delivered" if result.ok else "failed"
        self._metrics.notifications.labels(result.notifier, outcome).inc()
        if not result.ok:
            log.warning("notification %s via %s failed after %d attempts: %s", n.incident_id, result.notifier, result.attempts, result.error)
        try:
            self._audit.append(
                actor=actor, action=f"notification.{outcome}", object=f"incident:{n.incident_id}",
                details={"notifier": result.notifier, "event": n.event, "attempts": result.attempts,
                         "status": result.status, "error": result.error},
            )
        except Exception:  # noqa: BLE001 - the hot path never raises
            log.exception("audit append failed for notification %s", n.incident_id)
