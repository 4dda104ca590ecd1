"""Run compiled rules over a store window and turn matches into detections.

The same function serves offline hunting and (with checkpointed windows) the live service:
detection rules are queried through the :class:`~marketguard.store.Store` protocol, and
correlation windows are computed here, identically for every backend.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from correlator.correlation import evaluate
from correlator.prefilter import candidates
from correlator.rules import CorrelationRule, DetectionRule, RuleSet
from marketguard.detections import EVIDENCE_FIELDS, Detection
from marketguard.errors import StoreError
from marketguard.schema import EVENT_FIELDS
from marketguard.store import MatchWindow, Store

__all__ = ["RuleRun", "EngineResult", "run_rules", "correlate", "match_frame", "columns_for", "summarise"]

log = logging.getLogger(__name__)


@dataclass
class RuleRun:
    """How one rule fared in one evaluation."""

    rule_id: str
    matches: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class EngineResult:
    """Detections of one evaluation, with per-rule statistics."""

    detections: list[Detection] = field(default_factory=list)
    runs: dict[str, RuleRun] = field(default_factory=dict)
    matched: dict[str, pa.Table] = field(default_factory=dict)  # rule id -> matching events

    @property
    def errors(self) -> dict[str, str]:
        """Rule id -> error message, for rules that failed."""
        return {k: r.error for k, r in self.runs.items() if r.error}


def columns_for(rules: RuleSet) -> list[str]:
    cols = list(EVIDENCE_FIELDS)
    for corr in rules.correlations:
        wanted = list(corr.group_by) + ([corr.value_field] if corr.value_field else [])
        for mapping in corr.aliases.values():
            wanted.extend(mapping.values())
        cols.extend(c for c in wanted if c in EVENT_FIELDS and c not in cols)
    return cols


def run_rules(
    store: Store,
    rules: RuleSet,
    window: MatchWindow,
    *,
    threads: int = 1,
    prefilter: bool = True,
    correlate: bool = True,
    on_rule_done: Callable[[str], None] | None = None,
    candidates: Mapping[str, np.ndarray] | None = None,
) -> EngineResult:
    """Evaluate every rule in ``rules`` over ``window`` of ``store``.

    With ``prefilter`` (the default), rules made of literals are first narrowed to candidate
    events by one multi-pattern scan per field (:mod:`correlator.prefilter`); the store's query
    still decides. ``threads`` > 1 runs rule queries concurrently; DuckDB already uses every
    core for one query, and on two cores one thread measured faster (7.1 s vs 10.1 s for 110
    rules over a million events). A rule that fails is recorded and does not stop the others.
    ``candidates`` (rule id -> ``_seq``s, from a :class:`~correlator.prefilter.CandidateScan`
    the caller fed while storing the window's events) replaces the prefilter's own scan.
    """
    result = EngineResult()
    columns = columns_for(rules)
    matched: dict[str, pa.Table] = {}
    if not prefilter:
        cands: Mapping[str, np.ndarray] = {}
    else:
        cands = candidates if candidates is not None else _candidates(store, rules, window)

    def one(rule: DetectionRule) -> tuple[DetectionRule, pa.Table | None, RuleRun]:
        run = RuleRun(rule.id)
        started = time.perf_counter()
        try:
            if rule.id in cands and len(cands[rule.id]) == 0:
                return rule, None, run  # no event holds any of the rule's literals
            where = window.only(cands[rule.id].tolist()) if rule.id in cands else window
            table = store.match(rule.query, where, columns)
            run.matches = table.num_rows
        except StoreError as exc:
            table, run.error = None, str(exc)
            log.error("rule %s (%s) failed: %s", rule.id, rule.file, exc)
        run.seconds = time.perf_counter() - started
        return rule, table, run

    with contextlib.ExitStack() as stack:
        if threads > 1:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=threads))
            outcomes: Iterable[tuple[DetectionRule, pa.Table | None, RuleRun]] = pool.map(one, rules.detections)
        else:  # in the caller's thread: no pool to start per call, and its CPU time is the caller's
            outcomes = map(one, rules.detections)
        for rule, table, run in outcomes:
            result.runs[rule.id] = run
            if table is not None and table.num_rows:
                matched[rule.id] = table
                if rule.standalone:
                    result.detections.extend(_event_detections(rule, table))
            if on_rule_done:
                on_rule_done(rule.id)
    result.matched = matched
    for corr in rules.correlations if correlate else ():
        result.runs[corr.id] = _run_correlation(corr, matched, result.detections)
        if on_rule_done:
            on_rule_done(corr.id)
    return result


def _candidates(store: Store, rules: RuleSet, window: MatchWindow) -> dict[str, np.ndarray]:
    needles = {r.id: r.needles for r in rules.detections if r.needles}
    if not needles:
        return {}
    fields = sorted({f for need in needles.values() for f, _ in need})
    try:
        return candidates(store.scan(window, fields), needles)
    except StoreError as exc:
        log.warning("prefilter scan failed, querying every rule in full: %s", exc)
        return {}


def _event_detections(rule: DetectionRule, table: pa.Table) -> list[Detection]:
    evidence_cols = [c for c in EVIDENCE_FIELDS if c in table.column_names]
    rows = table.select(evidence_cols).to_pylist()
    tags = rule.tags
    return [
        Detection(
            rule_id=rule.id,
            rule_title=rule.title,
            rule_level=rule.level,
            rule_author=rule.author,
            rule_license=rule.license,
            kind="event",
            timestamp=row["@timestamp"],
            event_ids=(row["event.id"],),
            evidence=row,
            tags=tags,
        )
        for row in rows
    ]


def match_frame(corr: CorrelationRule, matched: dict[str, pa.Table]) -> pd.DataFrame | None:
    """The matches of a correlation's referenced rules as one frame with a ``_rule`` column."""
    frames = []
    for rid in corr.rules:
        if rid in matched and matched[rid].num_rows:
            frame = matched[rid].to_pandas()
            frame["_rule"] = rid
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def correlate(
    corr: CorrelationRule, frame: pd.DataFrame, out: list[Detection], *, since: datetime | None = None
) -> RuleRun:
    """Evaluate one correlation over its matches; append its detections to ``out``."""
    run = RuleRun(corr.id)
    started = time.perf_counter()
    try:
        hits = evaluate(corr, frame, since=since)
    except Exception as exc:  # a broken rule must not stop the others
        run.error = f"{type(exc).__name__}: {exc}"
        log.error("correlation %s (%s) failed: %s", corr.id, corr.file, exc)
        hits = []
    run.matches = len(hits)
    out.extend(
        Detection(
            rule_id=corr.id,
            rule_title=corr.title,
            rule_level=corr.level,
            rule_author=corr.author,
            rule_license=corr.license,
            kind=corr.type,
            timestamp=hit.window_end,
            event_ids=hit.event_ids,
            evidence={k: v for k, v in hit.group if k in EVENT_FIELDS},
            group=hit.group,
            window_start=hit.window_start,
            window_end=hit.window_end,
            value=hit.value,
            tags=corr.tags,
        )
        for hit in hits
    )
    run.seconds = time.perf_counter() - started
    return run


def _run_correlation(
    corr: CorrelationRule, matched: dict[str, pa.Table], out: list[Detection]
) -> RuleRun:
    frame = match_frame(corr, matched)
    return correlate(corr, frame, out) if frame is not None else RuleRun(corr.id)


def summarise(detections: Sequence[Detection]) -> list[tuple[str, str, str, int]]:
    """(rule id, title, level, count) per rule, most detections first."""
    counts: dict[str, tuple[str, str, str, int]] = {}
    for d in detections:
        rid, title, level, n = counts.get(d.rule_id, (d.rule_id, d.rule_title, d.rule_level, 0))
        counts[d.rule_id] = (rid, title, level, n + 1)
    return sorted(counts.values(), key=lambda r: (-r[3], r[1]))
