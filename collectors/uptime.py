"""Uptime probes: monitors declared in YAML, probed with hard timeouts, results as events.

Three monitor types, in the spirit of Prometheus' blackbox_exporter:

- ``http``: a request to ``url``; up when the status is in ``expected_status`` (default any
  2xx/3xx), the body holds ``body_keyword`` (if set) and the answer came within
  ``max_latency_ms`` (if set); ``verify_tls`` checks the server certificate.
- ``tcp``: a TCP connect to ``host:port``.
- ``tls``: a TLS handshake to ``host:port``; down when the certificate is expired or (with
  ``verify``) untrusted; the expiry date is reported either way, and a certificate expiring
  within ``warn_days`` is flagged in the event's labels.

:func:`probe` never raises: every failure is a ``down`` result with the reason. Every monitor
tries ``1 + retries`` times within its ``timeout_s`` per attempt. :class:`Prober` runs one
APScheduler job per monitor (``max_instances=1``: a slow probe delays only itself), turns
each result into an ``uptime.probe`` event for the store and updates the probe metrics.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import yaml
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from collectors._ecs import event_id, url_fields
from collectors._jsonlog import JsonRejected, canonical_json, normalise_record
from collectors._otlp_table import dataset_table
from collectors.accesslog import ParsedBatch
from collectors.privacy import Pseudonymiser
from marketguard.errors import ConfigError
from marketguard.metrics import METRICS, Metrics
from marketguard.schema import DeadLetter, empty_events

__all__ = [
    "DATASET",
    "HttpMonitor",
    "TcpMonitor",
    "TlsMonitor",
    "Monitor",
    "ProbeResult",
    "load_monitors",
    "probe",
    "result_event",
    "Prober",
    "parse_probe_records",
]

log = logging.getLogger(__name__)

DATASET = "uptime.probe"
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _MonitorBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_ID, description="Stable id; the metric label and monitor.id.")
    name: str | None = Field(None, description="Human name (defaults to the id).")
    interval_s: float = Field(60.0, ge=1, description="Seconds between probes.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Hard limit of one attempt.")
    retries: int = Field(0, ge=0, le=5, description="Extra attempts before reporting down.")
    service: str | None = Field(None, description="service.name the monitor watches.")

    @property
    def label(self) -> str:
        """The monitor's display name."""
        return self.name or self.id


class HttpMonitor(_MonitorBase):
    """An HTTP(S) check."""

    type: Literal["http"]
    url: str = Field(pattern=r"(?i)^https?://\S+$")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    body_keyword: str | None = None
    max_latency_ms: float | None = Field(None, gt=0)
    verify_tls: bool = True


class TcpMonitor(_MonitorBase):
    """A TCP connect check."""

    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class TlsMonitor(_MonitorBase):
    """A TLS certificate check."""

    type: Literal["tls"]
    host: str = Field(min_length=1)
    port: int = Field(443, ge=1, le=65535)
    server_name: str | None = Field(None, description="SNI name (defaults to host).")
    warn_days: float = Field(14, ge=0)
    verify: bool = True


Monitor = Annotated[HttpMonitor | TcpMonitor | TlsMonitor, Field(discriminator="type")]
_MONITOR: TypeAdapter[HttpMonitor | TcpMonitor | TlsMonitor] = TypeAdapter(Monitor)


def load_monitors(path: str | Path) -> list[HttpMonitor | TcpMonitor | TlsMonitor]:
    """Read and validate a monitors file (a list, or a mapping with a ``monitors`` list).

    Fails fast with :class:`ConfigError` naming the file, the monitor's index (and id) and
    what was expected; duplicate ids are refused.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read monitors file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    items = data.get("monitors") if isinstance(data, dict) else data
    if data is None:
        items = []
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of monitors (or a mapping with 'monitors:'), got {type(items).__name__}")
    monitors, seen = [], {}
    for i, item in enumerate(items):
        where = f"{path}: monitor {i}" + (f" ({item.get('id')!r})" if isinstance(item, dict) and item.get("id") else "")
        try:
            monitor = _MONITOR.validate_python(item)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_explain(exc)}") from None
        if monitor.id in seen:
            raise ConfigError(f"{where}: duplicate id {monitor.id!r} (first at monitor {seen[monitor.id]})")
        seen[monitor.id] = i
        monitors.append(monitor)
    return monitors


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"][1:] if x not in ("http", "tcp", "tls")) or "monitor"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


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


_MAX_BODY = 1024 * 1024  # bytes of an HTTP body searched for the keyword


def check_http(m: HttpMonitor) -> dict[str, Any]:
    """One HTTP attempt: status, keyword and latency checks within ``timeout_s``."""
    t0 = time.monotonic()
    deadline = t0 + m.timeout_s
    out: dict[str, Any] = {"up": False}
    try:
        with httpx.Client(verify=m.verify_tls, timeout=m.timeout_s, headers={"User-Agent": "MarketGuard-Prober/1"}) as client:
            with client.stream(m.method, m.url) as response:
                out["status_code"] = response.status_code
                out["not_after"] = _stream_not_after(response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("body not read in time")
                    if len(body) >= _MAX_BODY:
                        break
    except httpx.TimeoutException as exc:
        return {**out, "duration_s": time.monotonic() - t0, "error": f"timeout after {m.timeout_s:g} s ({type(exc).__name__})"}
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return {**out, "duration_s": time.monotonic() - t0, "error": f"request failed: {_short(exc)}"}
    duration = time.monotonic() - t0
    out["duration_s"] = duration
    out["error"] = _http_problem(m, out["status_code"], bytes(body), duration)
    out["up"] = out["error"] is None
    return out


def _http_problem(m: HttpMonitor, code: int, body: bytes, duration: float) -> str | None:
    if m.expected_status and code not in m.expected_status:
        return f"status {code} not in expected_status {m.expected_status}"
    if not m.expected_status and not 200 <= code < 400:
        return f"status {code} is not 2xx/3xx"
    if m.body_keyword is not None and m.body_keyword.encode() not in body:
        return f"body keyword {m.body_keyword!r} not found"
    if m.max_latency_ms is not None and duration * 1000 > m.max_latency_ms:
        return f"latency {duration * 1000:.0f} ms above max_latency_ms {m.max_latency_ms:g}"
    return None


def _stream_not_after(response: httpx.Response) -> datetime | None:
    """The server certificate's expiry of an HTTPS response (best effort: None if unknown)."""
    try:
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        return None
    return _not_after(der) if der else None


def check_tcp(m: TcpMonitor) -> dict[str, Any]:
    """One TCP connect attempt within ``timeout_s``."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((m.host, m.port), timeout=m.timeout_s):
            pass
    except TimeoutError:
        return {"up": False, "duration_s": time.monotonic() - t0, "error": f"connect timeout after {m.timeout_s:g} s"}
    except OSError as exc:
        return {"up": False, "duration_s": time.monotonic() - t0, "error": f"connect failed: {_short(exc)}"}
    return {"up": True, "duration_s": time.monotonic() - t0}


def check_tls(m: TlsMonitor) -> dict[str, Any]:
    """One TLS handshake: certificate expiry (always read) and trust (with ``verify``)."""
    t0 = time.monotonic()
    error = None
    try:
        try:
            der = _handshake(m, verify=m.verify)
        except ssl.SSLCertVerificationError as exc:
            error = f"certificate verify failed: {exc.verify_message}"
            der = _handshake(m, verify=False)
    except TimeoutError:
        return {"up": False, "duration_s": time.monotonic() - t0, "error": f"handshake timeout after {m.timeout_s:g} s"}
    except (OSError, ssl.SSLError) as exc:
        return {"up": False, "duration_s": time.monotonic() - t0, "error": f"TLS handshake failed: {_short(exc)}"}
    duration = time.monotonic() - t0
    not_after = _not_after(der) if der else None
    if not_after is not None and not_after <= datetime.now(UTC):
        error = f"certificate expired at {not_after.isoformat()}"
    elif not_after is None and error is None:
        error = "server sent no certificate"
    return {"up": error is None, "duration_s": duration, "not_after": not_after, "error": error}


def _handshake(m: TlsMonitor, *, verify: bool) -> bytes | None:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((m.host, m.port), timeout=m.timeout_s) as sock:
        with context.wrap_socket(sock, server_hostname=m.server_name or m.host) as tls:
            return tls.getpeercert(binary_form=True)


def _not_after(der: bytes) -> datetime | None:
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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


class Prober:
    """Runs monitors on a schedule, stores each result and updates the probe metrics.

    ``write`` receives one :class:`ParsedBatch` per result (in the service:
    ``lambda b: services.ingest.submit(b, source="uptime")``); it may raise, which is logged
    and counted, never propagated.
    """

    def __init__(
        self, write: Callable[[ParsedBatch], object], monitors: list[Any], *,
        metrics: Metrics = METRICS, observer: str | None = None,
    ) -> None:  # fmt: skip
        self._write = write
        self.monitors = list(monitors)
        self._metrics = metrics
        self.observer = observer or socket.gethostname()

    def run(self, monitor: HttpMonitor | TcpMonitor | TlsMonitor) -> ProbeResult:
        """Probe one monitor now, record the result; never raises."""
        result = probe(monitor)
        try:
            self._observe(result)
        except Exception:  # metrics never cost a result
            log.exception("probe metrics not updated for %s", monitor.id)
        try:
            row = result_event(result, self.observer)
            self._write(ParsedBatch(dataset_table([row], dataset=DATASET, source=f"uptime:{self.observer}"), [], 1))
        except Exception as exc:
            log.warning("probe result of %s not stored: %s", monitor.id, exc)
        return result

    def _observe(self, result: ProbeResult) -> None:
        m, label = self._metrics, result.monitor.id
        m.probe_success.labels(monitor=label).set(1 if result.up else 0)
        m.probe_duration.labels(monitor=label).set(result.duration_s)
        m.probes.labels(monitor=label, status="up" if result.up else "down").inc()
        if result.not_after is not None:
            left = (result.not_after - datetime.now(UTC)).total_seconds()
            m.tls_cert_expiry.labels(monitor=label).set(left)

    def schedule(self, scheduler: Any) -> list[Any]:
        """Add one interval job per monitor to an APScheduler 3 scheduler; return the jobs.

        ``max_instances=1`` and ``coalesce`` keep a slow monitor from piling up runs; jobs run
        in the scheduler's thread pool, so one slow probe never delays another monitor.
        """
        now = datetime.now(UTC)
        return [
            scheduler.add_job(
                self.run, "interval", seconds=m.interval_s, args=[m], id=f"probe:{m.id}",
                name=f"probe {m.label}", max_instances=1, coalesce=True, replace_existing=True,
                next_run_time=now, misfire_grace_time=max(1, int(m.interval_s)),
            )  # fmt: skip
            for m in self.monitors
        ]


def parse_probe_records(records: list[Any], *, source: str, pseudonymiser: Pseudonymiser) -> ParsedBatch:
    """Results of external probes (decoded JSON, ECS flat or nested) as ``uptime.probe`` events.

    Each record needs a timestamp, ``monitor.id`` and ``monitor.status`` (``up``/``down``);
    other ECS fields are kept as sent. Invalid records are dead-lettered with their 1-based
    index and the reason.
    """
    rows, dead = [], []
    for number, record in enumerate(records, start=1):
        raw = canonical_json(record)
        try:
            row = normalise_record(record, raw=raw, source=source, line_no=number, pseudonymiser=pseudonymiser)
            if not row.get("monitor.id"):
                raise JsonRejected("missing monitor.id")
            if row.get("monitor.status") not in ("up", "down"):
                raise JsonRejected(f"monitor.status must be 'up' or 'down', got {row.get('monitor.status')!r}")
        except JsonRejected as exc:
            dead.append(DeadLetter(source, number, f"invalid probe result: {exc}", pseudonymiser.text(raw)))
            continue
        row.setdefault("event.outcome", "success" if row["monitor.status"] == "up" else "failure")
        rows.append(row)
    table = dataset_table(rows, dataset=DATASET, source=source) if rows else empty_events()
    return ParsedBatch(table, dead, len(records))
