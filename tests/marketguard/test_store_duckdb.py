"""The DuckDB store: durable appends, idempotent replays, windows, checkpoints, dead letters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA, DeadLetter
from marketguard.store import MatchWindow
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(ids: list[str], *, start: datetime = T0, url: str = "/api/v1/items") -> pa.Table:
    n = len(ids)
    cols = {name: pa.nulls(n, typ) for name, typ in EVENT_FIELDS.items()}
    cols["event.id"] = pa.array(ids, pa.string())
    cols["event.dataset"] = pa.array(["api.access"] * n)
    cols["@timestamp"] = pa.array([start + timedelta(seconds=i) for i in range(n)], EVENT_FIELDS["@timestamp"])
    cols["url.original"] = pa.array([f"{url}/{i}" for i in range(n)])
    return pa.table(cols).cast(EVENT_SCHEMA)


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "mg.duckdb")
    yield s
    s.close()


def test_append_returns_new_rows_and_replay_inserts_nothing(store):
    batch = events([f"e{i}" for i in range(100)])
    assert store.append_events(batch) == 100
    assert store.append_events(batch) == 0
    assert store.count_events() == 100


def test_a_batch_repeating_an_event_stores_it_once(store):
    batch = pa.concat_tables([events(["a", "b"]), events(["a"])])
    assert store.append_events(batch) == 2
    assert sorted(r[0] for r in store.sql('SELECT "event.id" FROM events')) == ["a", "b"]


def test_ingest_sequence_follows_append_order(store):
    store.append_events(events(["x1", "x2"]))
    store.append_events(events(["y1"], start=T0 - timedelta(days=3)))  # a late event
    assert store.max_seq() == 3
    late = store.query_events(MatchWindow(seq_after=2), columns=["event.id"])
    assert late.column(0).to_pylist() == ["y1"]


def test_events_survive_reopening_the_file(tmp_path):
    path = tmp_path / "mg.duckdb"
    s = DuckDBStore(path)
    s.append_events(events(["a", "b", "c"]))
    s.set_checkpoint("rule:x", {"seq": 3})
    s.close()
    again = DuckDBStore(path)
    assert again.count_events() == 3
    assert again.max_seq() == 3
    assert again.get_checkpoint("rule:x") == {"seq": 3}
    again.close()


def test_match_is_bounded_by_time_window_and_ordered(store):
    store.append_events(events([f"e{i}" for i in range(10)]))
    window = MatchWindow(time_after=T0 + timedelta(seconds=2), time_upto=T0 + timedelta(seconds=5))
    got = store.match("\"url.original\" ILIKE '/API/V1/items/%'", window, ["event.id"])
    assert got.column(0).to_pylist() == ["e3", "e4", "e5"]


def test_dead_letters_keep_source_line_and_reason(store):
    store.append_dead_letters([DeadLetter("access.log", 7, "missing closing quote", "raw")])
    [row] = store.dead_letters()
    assert (row["source"], row["line"], row["reason"]) == ("access.log", 7, "missing closing quote")
    assert store.count_dead_letters() == 1


def test_checkpoint_is_replaced_not_duplicated(store):
    store.set_checkpoint("c", {"v": 1})
    store.set_checkpoint("c", {"v": 2})
    assert store.get_checkpoint("c") == {"v": 2}
    assert store.get_checkpoint("missing") is None


def test_appends_and_reads_do_not_wait_for_a_write_in_progress(store):
    """While another thread holds the writer lock (a case-store write, say), events are still
    appended and every read answers: only writes of the same tables wait for one another."""
    store.append_events(events(["a0", "a1"]))
    store.set_checkpoint("engine", {"seq": 1})
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock:
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        with ThreadPoolExecutor(1) as pool:
            work = pool.submit(lambda: (
                store.append_events(events(["b0", "b1", "b2"], start=T0 + timedelta(hours=1))),
                store.count_events(),
                store.match('"url.original" LIKE \'%/1\'', MatchWindow(seq_after=2), ["event.id"]).column(0).to_pylist(),
                sum(b.num_rows for b in store.scan(MatchWindow(), ["event.id"])),
                store.get_checkpoint("engine"),
                store.max_seq(),
            ))
            assert work.result(timeout=10) == (3, 5, ["b1"], 5, {"seq": 1}, 5)
    finally:
        done.set()
        holder.join()
