"""Run playbooks off the detection path: a sink that records, then hands incidents to a worker.

The live engine records detections through :class:`RespondingSink` (a drop-in for the case
store as its sink). Incidents touched by a record — new, updated or merged into — are queued
and the :class:`ResponseWorker` thread runs the matching playbooks on them, so notifier
retries and backoff never delay detection. The same thread evaluates the GDPR clocks every
``gdpr_interval_s``. Nothing here raises into the engine: errors are logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from marketguard.cases import CaseStore, RecordResult
from marketguard.detections import Detection
from playbooks.gdpr import GdprClock
from playbooks.runner import PlaybookRunner

__all__ = ["ResponseWorker", "RespondingSink"]

log = logging.getLogger(__name__)
_STOP = "\x00stop"


class ResponseWorker:
    """One background thread: runs playbooks on queued incident ids; ticks the GDPR clocks."""

    def __init__(self, runner: PlaybookRunner, gdpr: GdprClock | None = None, *, gdpr_interval_s: float = 60.0) -> None:
        self.runner, self.gdpr, self._interval = runner, gdpr, gdpr_interval_s
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def submit(self, incident_ids: Sequence[str]) -> None:
        """Queue incidents for a playbook run (duplicates are harmless: runs are idempotent)."""
        for incident_id in dict.fromkeys(incident_ids):
            self._queue.put(incident_id)

    def start(self) -> None:
        """Start the thread."""
        self._stopping.clear()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="marketguard-response", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the incident in hand, then stop; queued ones are picked up again at the next
        start (the service re-queues open incidents, and runs are idempotent)."""
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def drain(self) -> None:
        """Run everything queued now, in the caller's thread (CLI, tests, the demo)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item != _STOP:
                self._run(item)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._interval)
            except queue.Empty:
                self._tick()
                continue
            if self._stopping.is_set():
                return
            if item == _STOP:  # left over from an earlier stop (the worker restarts on re-election)
                continue
            self._run(item)

    def _run(self, incident_id: str) -> None:
        try:
            self.runner.run(incident_id)
        except Exception:  # noqa: BLE001 - never kill the worker; the runner records step failures itself
            log.exception("playbook run on incident %s failed", incident_id)

    def _tick(self) -> None:
        if self.gdpr is None:
            return
        try:
            self.gdpr.evaluate()
        except Exception:  # noqa: BLE001 - retried on the next tick
            log.exception("GDPR clock evaluation failed")


class RespondingSink:
    """The case store as the engine's sink, queueing the incidents each record touched."""

    def __init__(self, cases: CaseStore, worker: ResponseWorker) -> None:
        self.cases, self.worker = cases, worker

    def record(self, detections: Sequence[Detection], *, now: datetime | None = None) -> RecordResult:
        """Record through the case store, then queue the new and updated incidents."""
        result = self.cases.record(detections, now=now)
        self.worker.submit([*result.new_incidents, *result.updated_incidents])
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cases, name)
