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

Modules: the monitors and their YAML file (:mod:`collectors.uptime_monitors`), one check per
kind (:mod:`collectors.uptime_checks`), a probe and its event (:mod:`collectors.uptime_probe`);
this one holds the scheduler-facing :class:`Prober` and the ingest of external probe results.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from collectors._jsonlog import JsonRejected, canonical_json, normalise_record
from collectors._otlp_table import dataset_table
from collectors.accesslog import ParsedBatch
from collectors.privacy import Pseudonymiser
from collectors.uptime_checks import check_http, check_tcp, check_tls
from collectors.uptime_monitors import HttpMonitor, Monitor, TcpMonitor, TlsMonitor, load_monitors
from collectors.uptime_probe import ProbeResult, probe, result_event
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
    # moved to collectors.uptime_checks, still importable from here
    "check_http",
    "check_tcp",
    "check_tls",
]

log = logging.getLogger(__name__)

DATASET = "uptime.probe"


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
