"""The live detection engine: rules on a schedule over checkpointed windows.

Each cycle:

1. ``upto`` = the store's newest ingest sequence number; the checkpoint says which events
   were already evaluated, so the new events are ``(checkpoint, upto]`` — **ingest order**,
   whatever their event time: a gateway replaying a day-old buffer is still evaluated.
2. Detection rules run over the new events (prefiltered, see :mod:`correlator.prefilter`).
3. Correlation rules work in **event time**: the new matches of their referenced rules join a
   buffer of earlier matches that covers at least each rule's required lookback before the
   earliest new event. A late event older than the buffer makes the engine load that span's
   matches from the store first. Windows are evaluated with ``since`` = the earliest new event,
   over the buffer's matches from the required lookback before it, so only hits that involve
   new events are reported and a cycle's cost follows its own span, not the buffer's.
4. Detections are recorded in the case store (idempotent), *then* the checkpoint is written.
   A crash between the two re-evaluates the same window after restart; the case store's
   de-duplication makes that harmless. So ``kill -9`` at any moment neither misses nor
   repeats an alert.

A rule that fails is reported (log, metric, :meth:`LiveEngine.status`) and the others go on;
a cycle that takes longer than the interval flags the rules behind schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from correlator.baselines import Baselines, run_baselines
from correlator.correlation import required_lookback
from correlator.engine import EngineResult, RuleRun, correlate, run_rules
from correlator.match_buffer import MatchBuffer
from correlator.rules import CorrelationRule, RuleSet
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.metrics import METRICS, Metrics
from marketguard.store import MatchWindow, Store

__all__ = ["LiveEngine", "RuleStatus", "CycleReport", "DetectionSink", "STAGES"]

log = logging.getLogger(__name__)
CHECKPOINT = "engine"

#: The stages of one cycle, in order, as :attr:`CycleReport.stages` and the DEBUG log name them.
STAGES = ("rules", "correlate", "baselines", "record", "checkpoint")


class DetectionSink(Protocol):
    """Where detections go (the case store)."""

    def record(self, detections: Sequence[Detection]) -> Any:
        """Record detections idempotently."""
        ...


@dataclass
class RuleStatus:
    """What ``GET /api/v1/rules`` reports for one rule."""

    id: str
    title: str
    level: str
    kind: str
    file: str
    last_run: datetime | None = None
    last_seconds: float = 0.0
    matches_total: int = 0
    error: str | None = None
    behind_schedule: bool = False


@dataclass(frozen=True)
class CycleReport:
    """One engine cycle. ``stages`` maps each stage of :data:`STAGES` that ran to its
    (wall-clock seconds, CPU seconds of the engine thread)."""

    seq_from: int
    seq_upto: int
    detections: int
    seconds: float
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)


class LiveEngine:
    """Runs every rule on ``settings.rule_interval_s`` over checkpointed windows."""

    def __init__(
        self, store: Store, rules: RuleSet, sink: DetectionSink, settings: Settings, *,
        metrics: Metrics = METRICS, baselines: Baselines | None = None,
    ):
        self.store, self.rules, self.sink, self.settings, self.metrics = store, rules, sink, settings, metrics
        self.baselines = baselines
        self._buffers: dict[str, MatchBuffer] = {}
        self._buffer_low: dict[str, datetime] = {}
        self._buffered_upto = 0  # the ingest sequence up to which matches are in the buffers
        self._lock = threading.Lock()
        self._scheduler: Any = None
        self.status: dict[str, RuleStatus] = {
            r.id: RuleStatus(r.id, r.title, r.level, "detection", r.file) for r in rules.detections
        } | {c.id: RuleStatus(c.id, c.title, c.level, c.type, c.file) for c in rules.correlations}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background scheduler (one job, never two runs at once)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        # A tick skipped because the previous cycle still runs is reported by our own
        # behind-schedule flag and metric; APScheduler's per-tick warning would only be noise.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_job(
            self._safe_cycle, "interval", seconds=self.settings.rule_interval_s,
            id="detection", max_instances=1, coalesce=True, next_run_time=datetime.now(UTC),
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the scheduler, waiting for a running cycle to finish."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def _safe_cycle(self) -> None:
        try:
            self.run_once()
        except Exception:  # the scheduler must survive anything a cycle throws
            log.exception("detection cycle failed; it will be retried on the next tick")

    # -- one cycle ----------------------------------------------------------------------------
    def run_once(self) -> CycleReport:
        """Evaluate everything ingested since the checkpoint; record; advance the checkpoint."""
        with self._lock:
            started = time.perf_counter()
            stages: dict[str, tuple[float, float]] = {}
            seq_from = int((self.store.get_checkpoint(CHECKPOINT) or {}).get("seq", 0))
            upto = self.store.max_seq()
            detections: list[Detection] = []
            if upto > seq_from:
                new = MatchWindow(seq_after=seq_from, seq_upto=upto)
                with _stage(stages, "rules"):
                    result = run_rules(self.store, self.rules, new, correlate=False)
                    detections.extend(result.detections)
                with _stage(stages, "correlate"):
                    detections.extend(self._correlate(result, seq_from, upto))
                with _stage(stages, "baselines"):
                    detections.extend(self._baselines(new, seq_from, upto))
                self._note(result)
                if detections:
                    with _stage(stages, "record"):
                        self.sink.record(detections)
                    self._observe_latency(detections)
                with _stage(stages, "checkpoint"):
                    self.store.set_checkpoint(CHECKPOINT, {"seq": upto, "at": datetime.now(UTC).isoformat()})
            seconds = time.perf_counter() - started
            self._flag_behind(seconds)
            report = CycleReport(seq_from, upto, len(detections), seconds, stages)
            if upto > seq_from:
                log.debug("cycle %s", _describe(report))
            return report

    def _baselines(self, new: MatchWindow, seq_from: int, upto: int) -> list[Detection]:
        """Behavioural baselines (fraud volume and ratio signals) over the new events."""
        if self.baselines is None:
            return []
        try:
            return list(run_baselines(self.store, self.baselines, new))
        except Exception:  # one failing signal family must not stop detection
            log.exception("baselines failed on seq %d..%d", seq_from, upto)
            return []

    def _correlate(self, result: EngineResult, seq_from: int, upto: int) -> list[Detection]:
        out: list[Detection] = []
        again = seq_from < self._buffered_upto  # a window re-run after a failed cycle
        for corr in self.rules.correlations:
            new = [self._frame(rid, result.matched.get(rid)) for rid in corr.rules]
            new_frames = [f for f in new if f is not None]
            if not new_frames:
                continue
            fresh = pd.concat(new_frames, ignore_index=True)
            earliest = fresh["@timestamp"].min().to_pydatetime()
            need = earliest - required_lookback(corr)
            self._extend_back(corr, need, seq_from)
            buffer = self._buffer(corr)
            buffer.add(fresh, dedupe=again)
            # Only hits ending after ``earliest`` are wanted, and they are exact from ``need``
            # on: the buffer's older part (kept for late events) is not evaluated again.
            recent = buffer.since(need)
            if recent is not None:
                self._note_run(correlate(corr, recent, out, since=earliest - timedelta(microseconds=1)))
            self._prune(corr, buffer)  # after evaluating: this cycle's events may span more
        self._buffered_upto = max(self._buffered_upto, upto)
        return out

    def _buffer(self, corr: CorrelationRule) -> MatchBuffer:
        if corr.id not in self._buffers:
            span = required_lookback(corr) + timedelta(seconds=self.settings.lookback_s)
            self._buffers[corr.id] = MatchBuffer(max(timedelta(minutes=1), span / 64))
        return self._buffers[corr.id]

    def _frame(self, rule_id: str, table: pa.Table | None) -> pd.DataFrame | None:
        if table is None or table.num_rows == 0:
            return None
        frame = table.to_pandas()
        frame["_rule"] = rule_id
        return frame

    def _extend_back(self, corr: CorrelationRule, need_from: datetime, seq_from: int) -> None:
        """Load older matches from the store when the buffer does not reach back far enough."""
        low = self._buffer_low.get(corr.id)
        if low is not None and low <= need_from:
            return
        window = MatchWindow(time_after=need_from, time_upto=low, seq_upto=seq_from)
        referenced = RuleSet([r for r in self.rules.detections if r.id in corr.rules], [corr])
        older = run_rules(self.store, referenced, window, correlate=False)
        frames = [self._frame(rid, older.matched.get(rid)) for rid in corr.rules]
        frames = [f for f in frames if f is not None]
        if frames:  # the buffer may hold some of them already (at its lower edge)
            self._buffer(corr).add(pd.concat(frames, ignore_index=True), dedupe=True)
        self._buffer_low[corr.id] = need_from

    def _prune(self, corr: CorrelationRule, buffer: MatchBuffer) -> None:
        """Forget matches older than the lookback before the newest one; the buffer is complete
        from that time on (``_buffer_low``)."""
        latest = buffer.latest()
        if latest is None:
            return
        keep_from = (latest - required_lookback(corr) - timedelta(seconds=self.settings.lookback_s)).to_pydatetime()
        low = self._buffer_low.get(corr.id)
        if low is None or keep_from > low:
            self._buffer_low[corr.id] = keep_from
        buffer.prune(keep_from)

    # -- reporting -------------------------------------------------------------------------------
    def _note(self, result: EngineResult) -> None:
        for run in result.runs.values():
            self._note_run(run)

    def _note_run(self, run: RuleRun) -> None:
        st = self.status.get(run.rule_id)
        if st is None:
            return
        st.last_run, st.last_seconds = datetime.now(UTC), run.seconds
        st.matches_total += run.matches
        st.error = run.error
        self.metrics.rule_eval_seconds.labels(run.rule_id).observe(run.seconds)
        self.metrics.rule_last_run.labels(run.rule_id).set(time.time())
        if run.error:
            self.metrics.rule_errors.labels(run.rule_id).inc()

    def _flag_behind(self, seconds: float) -> None:
        behind = seconds > self.settings.rule_interval_s
        for st in self.status.values():
            st.behind_schedule = behind
        self.metrics.rules_behind.set(len(self.status) if behind else 0)
        if behind:
            log.warning("detection cycle took %.2fs, longer than the %.2fs interval: rules are behind schedule", seconds, self.settings.rule_interval_s)

    def _observe_latency(self, detections: Sequence[Detection]) -> None:
        now = datetime.now(UTC)
        for d in detections:
            ingested = d.evidence.get("event.ingested")
            if isinstance(ingested, datetime):
                self.metrics.detection_latency.observe(max(0.0, (now - ingested).total_seconds()))


@contextmanager
def _stage(stages: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    """Time one stage of a cycle: wall clock and this thread's CPU time."""
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        stages[name] = (time.perf_counter() - wall, time.thread_time() - cpu)


def _describe(report: CycleReport) -> str:
    """One parseable line: ``events=N detections=N seconds=S <stage>=wall/cpu …``."""
    parts = [f"events={report.seq_upto - report.seq_from}", f"detections={report.detections}",
             f"seconds={report.seconds:.4f}"]
    parts += [f"{name}={wall:.4f}/{cpu:.4f}" for name, (wall, cpu) in report.stages.items()]
    return " ".join(parts)
