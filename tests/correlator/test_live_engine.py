"""The live engine: checkpointed windows, late events, correlations across cycles, restarts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from collectors.accesslog import parse_lines
from collectors.privacy import Pseudonymiser
from correlator.live import LiveEngine
from correlator.rules import load_rules
from marketguard.config import load_settings
from marketguard.store.duckdb import DuckDBStore

PSEUDO = Pseudonymiser(b"k" * 32)
NOW = datetime.now(UTC).replace(microsecond=0)


class RecordingSink:
    """Our own test double of the engine's sink: remembers every detection it is given."""

    def __init__(self) -> None:
        self.detections = []

    def record(self, detections):
        self.detections.extend(detections)


def line(ip: str, when: datetime, target: str = "/api/v1/products/1", method: str = "GET", status: int = 200) -> str:
    return f'{ip} - - [{when:%d/%b/%Y:%H:%M:%S +0000}] "{method} {target} HTTP/1.1" {status} 10 "-" "Mozilla/5.0"'


def ingest(store: DuckDBStore, lines: list[str], source: str) -> None:
    batch = parse_lines(lines, "combined", source=source, pseudonymiser=PSEUDO)
    assert not batch.dead_letters
    store.append_events(batch.events)


@pytest.fixture
def setup(tmp_path, repo):
    settings = load_settings(data_dir=tmp_path, rules_dirs=[repo / "rules"], lookback_s=0)
    store = DuckDBStore(tmp_path / "mg.duckdb")
    rules = load_rules([repo / "rules"])
    yield settings, store, rules
    store.close()


def titles(sink: RecordingSink) -> list[str]:
    return sorted(d.rule_title for d in sink.detections)


def test_each_event_is_evaluated_once_across_cycles(setup):
    settings, store, rules = setup
    sink = RecordingSink()
    engine = LiveEngine(store, rules, sink, settings)
    ingest(store, [line("203.0.113.1", NOW, "/static/../../../etc/passwd")], "a")
    first = engine.run_once()
    assert first.detections > 0
    count = len(sink.detections)
    assert engine.run_once().detections == 0  # nothing new, nothing repeated
    ingest(store, [line("203.0.113.2", NOW, "/.git/config")], "b")
    engine.run_once()
    new = sink.detections[count:]
    assert new and all(d.evidence["source.ip"] == "203.0.113.2" for d in new)


def test_a_restart_resumes_from_the_checkpoint(setup, tmp_path):
    settings, store, rules = setup
    sink = RecordingSink()
    ingest(store, [line("203.0.113.1", NOW, "/.env")], "a")
    LiveEngine(store, rules, sink, settings).run_once()
    before = len(sink.detections)
    store.close()
    reopened = DuckDBStore(tmp_path / "mg.duckdb")
    try:
        LiveEngine(reopened, rules, sink, settings).run_once()
        assert len(sink.detections) == before  # nothing evaluated twice
    finally:
        reopened.close()


def test_late_events_days_old_are_still_evaluated(setup):
    settings, store, rules = setup
    sink = RecordingSink()
    engine = LiveEngine(store, rules, sink, settings)
    ingest(store, [line("198.51.100.1", NOW)], "a")
    engine.run_once()
    ingest(store, [line("203.0.113.9", NOW - timedelta(days=3), "/.env")], "replayed-buffer")
    engine.run_once()
    assert any(d.evidence["source.ip"] == "203.0.113.9" for d in sink.detections)


def failed_logins(ip: str, start: datetime, n: int) -> list[str]:
    return [line(ip, start + timedelta(seconds=i), "/api/v1/login", "POST", 401) for i in range(n)]


def test_a_correlation_spanning_two_cycles_fires_once(setup):
    settings, store, rules = setup
    sink = RecordingSink()
    engine = LiveEngine(store, rules, sink, settings)
    ingest(store, failed_logins("203.0.113.50", NOW, 12), "a")
    engine.run_once()
    assert not [d for d in sink.detections if d.kind == "event_count"]
    ingest(store, failed_logins("203.0.113.50", NOW + timedelta(seconds=12), 12), "b")
    engine.run_once()
    ingest(store, failed_logins("203.0.113.50", NOW + timedelta(seconds=24), 5), "c")
    engine.run_once()
    hits = [d for d in sink.detections if d.kind == "event_count"]
    assert len(hits) == 1
    assert dict(hits[0].group)["source.ip"] == "203.0.113.50"


def test_a_late_half_of_a_window_correlates_with_the_stored_half_after_restart(setup):
    settings, store, rules = setup
    old = NOW - timedelta(days=1)
    ingest(store, failed_logins("203.0.113.77", old, 12), "gateway-1")
    LiveEngine(store, rules, RecordingSink(), settings).run_once()  # first half, checkpointed
    sink = RecordingSink()
    fresh = LiveEngine(store, rules, sink, settings)  # a restarted engine has no buffer
    ingest(store, failed_logins("203.0.113.77", old + timedelta(seconds=30), 12), "gateway-2")
    fresh.run_once()
    assert [d for d in sink.detections if d.kind == "event_count"]


def test_a_failing_rule_is_reported_and_the_others_run(setup):
    settings, store, rules = setup
    broken = replace(rules.detections[0], id="broken-rule", query="no_such_column = 1", needles=None)
    bad = replace(rules, detections=[broken, *rules.detections])
    sink = RecordingSink()
    engine = LiveEngine(store, bad, sink, settings)
    ingest(store, [line("203.0.113.3", NOW, "/.env")], "a")
    engine.run_once()
    assert engine.status["broken-rule"].error
    assert sink.detections


def test_a_value_count_correlation_sees_its_value_field(setup):
    settings, store, rules = setup
    sink = RecordingSink()
    engine = LiveEngine(store, rules, sink, settings)
    lines = [line("203.0.113.88", NOW + timedelta(seconds=i), f"/api/v1/orders/{1000 + i}") for i in range(40)]
    ingest(store, lines[:20], "a")
    engine.run_once()
    ingest(store, lines[20:], "b")
    engine.run_once()
    assert [d for d in sink.detections if d.kind == "value_count"]
