"""One probe of a monitor: ``1 + retries`` attempts of its kind's check, never raising, as a
:class:`ProbeResult`, and the ``uptime.probe`` event of a result (:func:`result_event`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from collectors._ecs import event_id, url_fields
from collectors._jsonlog import canonical_json
from collectors.uptime_checks import check_http, check_tcp, check_tls
from collectors.uptime_monitors import HttpMonitor, TcpMonitor, TlsMonitor

__all__ = ["ProbeResult", "probe", "result_event"]


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe (after retries)."""

    monitor: HttpMonitor | TcpMonitor | TlsMonitor
    up: bool
    started: datetime
    duration_s: float
    attempts: int = 1
    status_code: int | None = None
    not_after: datetime | None = None
    error: str | None = None
    warning: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_CHECKS: dict[str, Callable[[Any], dict[str, Any]]] = {"http": check_http, "tcp": check_tcp, "tls": check_tls}


def probe(monitor: HttpMonitor | TcpMonitor | TlsMonitor) -> ProbeResult:
    """Probe a monitor (``1 + retries`` attempts); never raises."""
    started = datetime.now(UTC)
    outcome: dict[str, Any] = {}
    attempt = 0
    for attempt in range(1, monitor.retries + 2):  # noqa: B007 - the count is reported
        try:
            outcome = _CHECKS[monitor.type](monitor)
        except Exception as exc:  # a probe never raises: an unexpected failure is "down"
            outcome = {"up": False, "duration_s": 0.0, "error": f"probe failed: {type(exc).__name__}: {exc}"}
        if outcome["up"]:
            break
    return ProbeResult(
        monitor=monitor, up=outcome["up"], started=started, duration_s=outcome["duration_s"],
        attempts=attempt, status_code=outcome.get("status_code"), not_after=outcome.get("not_after"),
        error=outcome.get("error"), warning=_warning(monitor, outcome.get("not_after"), started),
    )  # fmt: skip


def _warning(monitor: Any, not_after: datetime | None, now: datetime) -> str | None:
    if not_after is None or not isinstance(monitor, TlsMonitor) or not_after <= now:
        return None
    left = not_after - now
    if left > timedelta(days=monitor.warn_days):
        return None
    return f"certificate expires in {left.total_seconds() / 86400:.1f} days (warn_days {monitor.warn_days:g})"


def result_event(result: ProbeResult, observer: str) -> dict[str, Any]:
    """The ``uptime.probe`` event (ECS field -> value) of a probe result."""
    m = result.monitor
    target = m.url if isinstance(m, HttpMonitor) else f"{'tls' if m.type == 'tls' else 'tcp'}://{m.host}:{m.port}"
    labels = {"attempts": result.attempts}
    if result.warning:
        labels["tls.warning"] = result.warning  # type: ignore[assignment]
    row: dict[str, Any] = {
        "@timestamp": result.started,
        "event.id": event_id("uptime", 0, f"{m.id}\x1f{observer}\x1f{result.started.isoformat()}"),
        "event.duration": round(result.duration_s * 1e9),
        "event.outcome": "success" if result.up else "failure",
        "monitor.id": m.id, "monitor.name": m.label, "monitor.type": m.type,
        "monitor.status": "up" if result.up else "down",
        "url.full": target, "url.domain": url_fields(target).get("url.domain"),
        "http.response.status_code": result.status_code,
        "tls.server.x509.not_after": result.not_after,
        "error.message": result.error, "observer.name": observer, "service.name": m.service,
        "labels": canonical_json(labels),
    }  # fmt: skip
    return row

