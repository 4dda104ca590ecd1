"""Offline hunting: log files -> collector -> scratch store -> rules -> detections."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collectors.accesslog import read_access_log
from collectors.privacy import Pseudonymiser
from correlator.detections import Detection
from correlator.engine import EngineResult, run_rules
from correlator.rules import RuleSet, load_rules
from marketguard.config import Settings, pseudonymisation_key
from marketguard.store import MatchWindow, Store, open_store

__all__ = ["HuntReport", "hunt", "LOGSOURCES"]

#: Sigma logsource categories an input can be declared as.
LOGSOURCES = ("webserver", "proxy")


@dataclass
class HuntReport:
    """What one hunt read, stored, dead-lettered and detected, and how long each step took."""

    rules: RuleSet
    result: EngineResult
    lines: int = 0
    events: int = 0
    dead_letters: int = 0
    bytes_read: int = 0
    ingest_seconds: float = 0.0
    detect_seconds: float = 0.0
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
) -> tuple[HuntReport, Store]:
    """Hunt ``paths`` with the rules under ``rule_dirs``; return the report and the store.

    The store is a scratch store (in memory, or ``keep_db``); the caller closes it.
    """
    store = open_store(settings, scratch=str(keep_db) if keep_db else ":memory:")
    rules = load_rules(rule_dirs, dialect=store.dialect).for_categories({logsource})
    if on_rules_loaded:
        on_rules_loaded(rules)
    pseudo = Pseudonymiser(pseudonymisation_key(settings))
    report = HuntReport(rules=rules, result=EngineResult())
    started = time.perf_counter()
    for path in paths:
        done_before = report.bytes_read
        size = path.stat().st_size

        def progress(consumed: int, _base: int = done_before) -> None:
            if on_bytes:
                on_bytes(_base + consumed)

        for batch in read_access_log(path, fmt, pseudo, on_progress=progress):  # type: ignore[arg-type]
            report.lines += batch.lines_read
            report.events += store.append_events(batch.events)
            store.append_dead_letters(batch.dead_letters)
            report.dead_letters += len(batch.dead_letters)
            report.dead_samples.extend(
                f"{d.source}:{d.line}: {d.reason}" for d in batch.dead_letters[: 5 - len(report.dead_samples)]
            )
        report.bytes_read = done_before + size
    report.ingest_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report.result = run_rules(store, rules, MatchWindow(), on_rule_done=on_rule)
    report.detect_seconds = time.perf_counter() - started
    return report, store
