"""The ingest writer: commit before acknowledging, bounded queue, drain on stop, store failures."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from collectors.accesslog import ParsedBatch, parse_lines
from collectors.privacy import Pseudonymiser
from marketguard.app.ingest import (
    Backpressure,
    IngestResult,
    IngestWriter,
    WriterStopped,
    reason_label,
)
from marketguard.config import Settings, load_settings
from marketguard.errors import StoreError
from marketguard.metrics import REGISTRY
from marketguard.store.duckdb import DuckDBStore

if TYPE_CHECKING:  # the fixture's class lives in this directory's conftest
    from conftest import BlockingStore

P = Pseudonymiser(b"test-key")
LINE = '203.0.113.{n} - - [01/May/2024:12:00:{s:02d} +0000] "GET /api/cart/{n} HTTP/1.1" 200 512 "-" "curl/8.0"'


def batch(n: int, *, source: str = "http:t:1", bad: int = 0) -> ParsedBatch:
    lines = [LINE.format(n=i, s=i % 60) for i in range(n)] + ["not a log line"] * bad
    return parse_lines(lines, "combined", source=source, pseudonymiser=P)


def settings_with(tmp_path: Path, queue: int = 4) -> Settings:
    return load_settings(data_dir=tmp_path, ingest_queue_batches=queue, ingest_retry_after_s=7)


def test_acknowledged_batch_is_committed_to_the_file(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    store = DuckDBStore(settings.duckdb_path)
    writer = IngestWriter(store, settings)
    writer.start()
    result = writer.submit(batch(5, bad=2), source="http:t").result(timeout=10)
    assert (result.accepted_new, result.duplicates, result.dead_lettered) == (5, 0, 2)
    again = writer.submit(batch(5, bad=2), source="http:t").result(timeout=10)
    assert (again.accepted_new, again.duplicates, again.dead_lettered) == (0, 5, 0)  # a replay
    writer.stop()
    store.close()
    reopened = DuckDBStore(settings.duckdb_path)
    assert reopened.count_events() == 5
    assert [d["reason"] for d in reopened.dead_letters()][0].startswith("expected combined log format")
    assert len(reopened.dead_letters()) == 2
    reopened.close()


def test_full_queue_raises_backpressure_instead_of_buffering(tmp_path: Path, blocking_store: BlockingStore) -> None:
    store = blocking_store
    writer = IngestWriter(store, settings_with(tmp_path, queue=1))  # type: ignore[arg-type]
    writer.start()
    before = REGISTRY.get_sample_value("marketguard_ingest_backpressure_total") or 0
    first = writer.submit(batch(1), source="http:t")
    assert store.entered.wait(5)  # the writer holds batch 1; the queue is empty again
    second = writer.submit(batch(1), source="http:t")
    assert writer.queue_depth == 1
    with pytest.raises(Backpressure) as refused:
        writer.submit(batch(1), source="http:t")
    assert refused.value.retry_after == 7
    assert REGISTRY.get_sample_value("marketguard_ingest_backpressure_total") == before + 1
    assert not first.done() and not second.done()
    store.release.set()
    assert first.result(5).accepted_new == 1 and second.result(5).accepted_new == 1
    writer.stop()


def test_stop_commits_everything_already_queued(tmp_path: Path, blocking_store: BlockingStore) -> None:
    store = blocking_store
    writer = IngestWriter(store, settings_with(tmp_path, queue=8))  # type: ignore[arg-type]
    writer.start()
    futures = [writer.submit(batch(2, source=f"http:t:{i}"), source="http:t") for i in range(5)]
    assert store.entered.wait(5)
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # stop waits for the queued batches
    with pytest.raises(WriterStopped):
        writer.submit(batch(1), source="http:t")
    store.release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert all(f.done() and f.result().accepted_new == 2 for f in futures)
    assert sum(t.num_rows for t in store.events) == 10


def test_store_failure_resolves_the_future_and_the_writer_carries_on(tmp_path: Path, blocking_store: BlockingStore) -> None:
    store = blocking_store
    store.fail = True
    store.release.set()
    writer = IngestWriter(store, settings_with(tmp_path))  # type: ignore[arg-type]
    writer.start()
    with pytest.raises(StoreError, match="disk full"):
        writer.submit(batch(1), source="http:t").result(5)
    store.fail = False
    assert writer.submit(batch(3), source="http:t").result(5).accepted_new == 3
    writer.stop()


def test_submit_refused_before_start(tmp_path: Path, blocking_store: BlockingStore) -> None:
    writer = IngestWriter(blocking_store, settings_with(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(WriterStopped):
        writer.submit(batch(1), source="http:t")


def test_metrics_count_ingested_and_rejected_by_normalised_reason(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    store = DuckDBStore(settings.duckdb_path)
    writer = IngestWriter(store, settings)
    writer.start()
    labels = {"source": "http:metrics-test", "dataset": "api.access"}
    rejected = {"source": "http:metrics-test", "reason": "expected_combined_log_format"}
    writer.submit(batch(4, bad=3), source="http:metrics-test").result(10)
    writer.stop()
    store.close()
    assert REGISTRY.get_sample_value("marketguard_ingest_events_total", labels) == 4
    assert REGISTRY.get_sample_value("marketguard_ingest_rejected_total", rejected) == 3
    assert REGISTRY.get_sample_value("marketguard_dead_letters_total", {"source": "http:metrics-test"}) == 3
    assert (REGISTRY.get_sample_value("marketguard_ingest_lag_seconds_count") or 0) >= 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("invalid JSON: Expecting value at column 1", "invalid_json"),
        ("empty line", "empty_line"),
        ("missing timestamp: expected one of @timestamp, time", "missing_timestamp"),
        ("field 'http.response.status_code': expected int, got 'abc'", "field"),
        ("expected a 3-digit status code, got 'x'", "expected_a_digit_status_code_got"),
        ("expected ' \"' opening the request field at column 57", "expected_opening_the_request_field_at_column"),
        ("missing '[' opening the timestamp", "missing_opening_the_timestamp"),
        ("::", "other"),
    ],
)
def test_reason_labels_are_low_cardinality(reason: str, label: str) -> None:
    assert reason_label(reason) == label


class GatedStore(DuckDBStore):
    """The real DuckDB store whose first append waits for the test, so that batches queue up
    behind it; it counts appends, and refuses any append holding a ``poison`` event."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()
        self.appends: list[int] = []  # rows handed to each append

    def append_events(self, events: pa.Table) -> int:
        self.entered.set()
        assert self.release.wait(10), "test never released the store"
        self.appends.append(events.num_rows)
        if "poison" in events.column("log.file.path").to_pylist():
            raise StoreError("poisoned batch")
        return super().append_events(events)


def queued_behind_a_held_batch(tmp_path: Path, *batches: ParsedBatch) -> tuple[GatedStore, list[Future[IngestResult]]]:
    store = GatedStore(tmp_path / "gated.duckdb")
    writer = IngestWriter(store, settings_with(tmp_path, queue=8))
    writer.start()
    held = writer.submit(batch(2, source="http:held"), source="http:t")
    assert store.entered.wait(5)
    futures = [held, *(writer.submit(b, source="http:t") for b in batches)]
    store.release.set()
    for f in futures:
        f.exception(10)
    writer.stop()
    return store, futures


def test_batches_waiting_together_are_committed_in_one_append_each_with_its_own_result(tmp_path: Path) -> None:
    store, futures = queued_behind_a_held_batch(
        tmp_path,
        batch(5, source="http:a", bad=1),
        batch(5, source="http:a", bad=1),  # the same request again: a retry, queued behind it
        batch(3, source="http:b"),
        batch(4, source="http:held"),  # 2 events already stored by the held batch, 2 new
    )
    results = [f.result() for f in futures]
    assert store.appends == [2, 5 + 5 + 3 + 4]  # the held batch, then one group
    assert [(r.accepted_new, r.duplicates, r.dead_lettered) for r in results] == [
        (2, 0, 0), (5, 0, 1), (0, 5, 0), (3, 0, 0), (2, 2, 0),
    ]
    assert store.count_events() == 2 + 5 + 3 + 2
    assert store.count_dead_letters() == 1  # the retry's rejected line is not kept twice
    store.close()


def test_a_failing_batch_in_a_group_is_refused_alone(tmp_path: Path) -> None:
    store, futures = queued_behind_a_held_batch(
        tmp_path, batch(3, source="http:a"), batch(2, source="poison", bad=1), batch(4, source="http:b"),
    )
    assert futures[1].result().accepted_new == 3
    with pytest.raises(StoreError, match="poisoned"):
        futures[2].result()
    assert futures[3].result().accepted_new == 4
    assert store.appends == [2, 3 + 2 + 4, 3, 2, 4]  # the group failed whole, then one by one
    assert store.count_events() == 2 + 3 + 4
    assert store.count_dead_letters() == 0  # the refused batch left nothing behind
    store.close()
