"""The live engine: checkpointed windows, late events, correlations across cycles, restarts."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from collectors.accesslog import parse_lines
from collectors.privacy import Pseudonymiser
from correlator.engine import run_rules
from correlator.live import STAGES, LiveEngine
from correlator.rules import load_rules
from marketguard.config import load_settings
from marketguard.store import MatchWindow
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


def test_a_cycle_reports_and_logs_its_stages(setup, caplog):
    """Each stage's wall-clock and CPU seconds are in the cycle report and in one DEBUG line
    (what ``marketguard bench`` reads); a cycle without new events logs nothing."""
    settings, store, rules = setup
    engine = LiveEngine(store, rules, RecordingSink(), settings)
    ingest(store, [line("203.0.113.9", NOW, "/static/../../../etc/passwd"), line("203.0.113.9", NOW)], "a")
    with caplog.at_level(logging.DEBUG, logger="correlator.live"):
        report = engine.run_once()
        engine.run_once()
    assert list(report.stages) == ["rules", "correlate", "baselines", "record", "checkpoint"] == list(STAGES)
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in report.stages.values())
    lines = [r.getMessage() for r in caplog.records if r.name == "correlator.live" and r.levelno == logging.DEBUG]
    assert len(lines) == 1
    fields = dict(part.split("=", 1) for part in lines[0].removeprefix("cycle ").split())
    assert fields["events"] == "2" and int(fields["detections"]) == report.detections > 0
    assert set(fields) == {"events", "detections", "seconds", *STAGES}


def test_cycle_by_cycle_correlation_over_an_hour_long_buffer_equals_one_evaluation(tmp_path, repo):
    """With an hour of matches buffered (``lookback_s`` 3600), evaluating each cycle from its
    required lookback finds exactly the hits one evaluation over every event finds: episodes
    spanning cycles, a repeat after a quiet spell, and bursts from several addresses."""
    settings = load_settings(data_dir=tmp_path, rules_dirs=[repo / "rules"], lookback_s=3600)
    store = DuckDBStore(tmp_path / "mg.duckdb")
    rules = load_rules([repo / "rules"])
    start = NOW - timedelta(minutes=50)
    lines = []
    for minute, ip, n in ((0, "203.0.113.60", 30), (4, "203.0.113.60", 30), (20, "203.0.113.60", 25),
                          (21, "203.0.113.61", 40), (45, "203.0.113.61", 12)):
        lines += failed_logins(ip, start + timedelta(minutes=minute), n)
    lines += [line("203.0.113.62", start + timedelta(minutes=30, seconds=i), f"/api/v1/orders/{i}") for i in range(40)]
    lines.sort(key=lambda text: text.split("[", 1)[1])
    sink = RecordingSink()
    engine = LiveEngine(store, rules, sink, settings)
    for k in range(0, len(lines), 15):
        ingest(store, lines[k : k + 15], f"gw-{k}")
        engine.run_once()
    whole = run_rules(store, rules, MatchWindow())

    def hits(detections):
        return sorted((d.rule_id, d.group, d.window_start, d.window_end) for d in detections if d.kind != "event")

    assert hits(sink.detections) == hits(whole.detections)
    assert len({h[0] for h in hits(whole.detections)}) >= 2
    store.close()


def test_a_cycle_whose_recording_failed_is_run_again_with_the_same_detections(setup, tmp_path):
    """The sink fails once (say, the case store's disk is full): the checkpoint stays, the next
    cycle evaluates the same events with its buffers already fed, and finds what one clean
    cycle finds, correlation values included."""
    settings, store, rules = setup

    class FailingOnce(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.failed = False

        def record(self, detections):
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            super().record(detections)

    lines = failed_logins("203.0.113.70", NOW, 30) + [line("203.0.113.71", NOW, "/.env")]
    ingest(store, lines, "a")
    sink = FailingOnce()
    engine = LiveEngine(store, rules, sink, settings)
    with pytest.raises(OSError):
        engine.run_once()
    engine.run_once()
    other = DuckDBStore(tmp_path / "clean.duckdb")
    ingest(other, lines, "a")
    clean = RecordingSink()
    LiveEngine(other, rules, clean, settings).run_once()
    other.close()

    def seen(detections):
        return sorted((d.rule_id, d.event_ids, d.value) for d in detections)

    assert seen(sink.detections) == seen(clean.detections)
    assert any(d.kind == "event_count" for d in clean.detections)


def test_one_cycle_spanning_more_than_the_buffer_keeps_finds_its_old_correlations(setup):
    """A gateway's replayed day arrives with today's traffic in one cycle: the burst hours
    before the newest event (beyond what the buffer keeps afterwards) still correlates."""
    settings, store, rules = setup
    sink = RecordingSink()
    burst = failed_logins("203.0.113.80", NOW - timedelta(hours=3), 25)
    ingest(store, [*burst, *failed_logins("203.0.113.81", NOW, 2)], "replay")
    LiveEngine(store, rules, sink, settings).run_once()
    hits = [d for d in sink.detections if d.kind == "event_count"]
    assert [dict(d.group)["source.ip"] for d in hits] == ["203.0.113.80"]
