"""Offline hunting: log files -> collector -> scratch store -> rules -> detections.

Everything that can overlap does, on two cores: the rules are loaded and compiled on a thread
while the first lines are parsed; each parsed batch is stored and, at the same time, scanned
by the prefilter (:class:`~correlator.prefilter.CandidateScan`) while the collector parses the
next one; the rule queries then run on candidates only.

Offline hunting always uses a scratch :class:`~marketguard.store.duckdb.DuckDBStore`, whatever
store the service is configured with (:func:`open_scratch_store`): the inputs are files, and
the embedded store numbers each appended batch contiguously, which the prefilter relies on. An
in-memory scratch store is capped (:data:`SCRATCH_MEMORY_MB`) and spills to a temporary
directory beyond it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from collectors.accesslog import read_access_log
from collectors.privacy import Pseudonymiser
from correlator.detections import Detection
from correlator.engine import EngineResult, run_rules
from correlator.prefilter import CandidateScan
from correlator.rules import RuleSet, load_rules
from marketguard.config import Settings, pseudonymisation_key
from marketguard.store import MatchWindow
from marketguard.store.duckdb import DuckDBStore

__all__ = ["HuntReport", "hunt", "open_scratch_store", "LOGSOURCES", "SCRATCH_MEMORY_MB", "BATCH_LINES"]

#: Sigma logsource categories an input can be declared as.
LOGSOURCES = ("webserver", "proxy")

#: Memory cap of an in-memory scratch store (its table spills to a temporary directory beyond
#: it). A million access-log events take about 0.8 GB in DuckDB; with this cap, the batches in
#: flight and the rules, a hunt of them peaked at 0.93-0.94 GB (0.99-1.04 GB with 384 MB).
SCRATCH_MEMORY_MB = 320

#: Lines per collector batch: two batches are in flight (one parsed, one being parsed); two
#: batches make one DuckDB row group (smaller batches peaked 250 MB lower than 100,000 lines).
BATCH_LINES = 61_440


@dataclass
class HuntReport:
    """What one hunt read, stored, dead-lettered and detected, and how long each step took.

    ``ingest_seconds`` runs from the first line read to the last batch stored (rule loading and
    the prefilter scan overlap it); ``detect_seconds`` covers what follows: the rest of the
    prefilter scan (``prefilter_wait_seconds``), the rule queries and the correlations.
    ``rules_seconds`` is how long loading and compiling the rules took, on its own thread.
    """

    rules: RuleSet
    result: EngineResult
    lines: int = 0
    events: int = 0
    dead_letters: int = 0
    bytes_read: int = 0
    ingest_seconds: float = 0.0
    detect_seconds: float = 0.0
    rules_seconds: float = 0.0
    prefilter_wait_seconds: float = 0.0
    dead_samples: list[str] = field(default_factory=list)

    @property
    def detections(self) -> list[Detection]:
        """All detections, in time order."""
        return sorted(self.result.detections, key=lambda d: (d.timestamp, d.rule_id))


def hunt(
    paths: Sequence[Path],
    rule_dirs: Sequence[Path],
    settings: Settings,
    *,
    fmt: str = "auto",
    logsource: str = "webserver",
    keep_db: Path | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_rule: Callable[[str], None] | None = None,
    on_rules_loaded: Callable[[RuleSet], None] | None = None,
) -> tuple[HuntReport, DuckDBStore]:
    """Hunt ``paths`` with the rules under ``rule_dirs``; return the report and the store.

    The store is a scratch store (:func:`open_scratch_store`); the caller closes it.
    """
    store = open_scratch_store(keep_db)
    pseudo = Pseudonymiser(pseudonymisation_key(settings))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hunt-rules") as loader:
        loading = loader.submit(_load, rule_dirs, store.dialect, logsource)
        try:
            report, scan = _ingest(paths, fmt, store, pseudo, loading, on_bytes, on_rules_loaded)
        except BaseException:
            store.close()
            raise
    started = time.perf_counter()
    cands = None
    if scan is not None:
        try:
            cands = scan.result()
        finally:
            scan.close()
    report.prefilter_wait_seconds = time.perf_counter() - started
    report.result = run_rules(store, report.rules, MatchWindow(), on_rule_done=on_rule, candidates=cands)
    report.detect_seconds = time.perf_counter() - started
    return report, store


def open_scratch_store(keep_db: Path | None = None) -> DuckDBStore:
    """Open the throw-away DuckDB store of one hunt: in memory (capped), or the file ``keep_db``.

    Event ids of file inputs are unique by construction, so the store does not check them.
    """
    if keep_db is not None:
        return DuckDBStore(keep_db, unique_ids=False)
    store = DuckDBStore(":memory:", unique_ids=False)
    store.limit_memory(SCRATCH_MEMORY_MB)
    return store


def _load(rule_dirs: Sequence[Path], dialect: str, logsource: str) -> tuple[RuleSet, float]:
    started = time.perf_counter()
    rules = load_rules(rule_dirs, dialect=dialect).for_categories({logsource})
    return rules, time.perf_counter() - started


def _ingest(
    paths: Sequence[Path],
    fmt: str,
    store: DuckDBStore,
    pseudo: Pseudonymiser,
    loading: Future[tuple[RuleSet, float]],
    on_bytes: Callable[[int], None] | None,
    on_rules_loaded: Callable[[RuleSet], None] | None,
) -> tuple[HuntReport, CandidateScan | None]:
    """Parse and store every file; feed each stored batch to the prefilter once rules are in."""
    report = HuntReport(rules=RuleSet(), result=EngineResult())
    scan: CandidateScan | None = None
    # The prefilter needs each event's ingest sequence: the scratch store numbers a batch
    # contiguously in its order, which is checked batch by batch. Should a batch not be stored
    # whole, feeding stops and the engine scans the store afterwards instead.
    feeding = True
    loaded = False

    def rules_in() -> None:
        nonlocal loaded
        report.rules, report.rules_seconds = loading.result()
        loaded = True
        if on_rules_loaded:
            on_rules_loaded(report.rules)

    # Events are stored in whole row groups of the store where it has them (much cheaper).
    unit = store.append_rows
    gathered: list[pa.Table] = []
    started = time.perf_counter()
    try:
        for path in paths:
            done_before = report.bytes_read
            size = path.stat().st_size

            def progress(consumed: int, _base: int = done_before) -> None:
                if on_bytes:
                    on_bytes(_base + consumed)

            batches = read_access_log(path, fmt, pseudo, batch_lines=BATCH_LINES, on_progress=progress)  # type: ignore[arg-type]
            for batch in batches:
                report.lines += batch.lines_read
                store.append_dead_letters(batch.dead_letters)
                report.dead_letters += len(batch.dead_letters)
                report.dead_samples.extend(
                    f"{d.source}:{d.line}: {d.reason}" for d in batch.dead_letters[: 5 - len(report.dead_samples)]
                )
                gathered.append(batch.events)
                rows = sum(t.num_rows for t in gathered)
                if rows >= unit:
                    if feeding and not loaded:  # by the first append, rules are usually in
                        rules_in()
                        scan = _start_scan(report.rules)
                    whole = pa.concat_tables(gathered)
                    cut = rows - rows % unit
                    gathered = [whole.slice(cut)] if cut < rows else []
                    scan, feeding = _store(store, whole.slice(0, cut), scan, feeding, report)
            report.bytes_read = done_before + size
        if gathered:
            if feeding and not loaded:
                rules_in()
                scan = _start_scan(report.rules)
            scan, feeding = _store(store, pa.concat_tables(gathered), scan, feeding, report)
    except BaseException:
        if scan is not None:
            scan.close()
        raise
    report.ingest_seconds = time.perf_counter() - started
    if not loaded:
        rules_in()
    return report, scan


def _store(
    store: DuckDBStore, events: pa.Table, scan: CandidateScan | None, feeding: bool, report: HuntReport
) -> tuple[CandidateScan | None, bool]:
    """Append events; feed them to the prefilter when their ingest sequence is known."""
    before = store.max_seq()
    stored = store.append_events(events)
    report.events += stored
    if scan is not None:
        if stored != events.num_rows or store.max_seq() != before + stored:
            scan.close()  # numbering not as expected: the engine scans the store afterwards
            return None, False
        if stored:
            _feed(scan, before, events)
    return scan, feeding


def _start_scan(rules: RuleSet) -> CandidateScan | None:
    needles = {r.id: r.needles for r in rules.detections if r.needles}
    return CandidateScan(needles) if needles else None


def _feed(scan: CandidateScan, before: int, events: pa.Table) -> None:
    table = events.select(scan.fields)
    at = before + 1
    for batch in table.to_batches():
        scan.feed(np.arange(at, at + batch.num_rows, dtype=np.int64), batch)
        at += batch.num_rows
