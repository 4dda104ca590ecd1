"""The :class:`~correlator.baselines.Baselines` store in the event store's DuckDB file.

Tables beside the events: ``baseline_counts`` (signal, entity, bucket → count, added to on
every run), ``baseline_known`` (signal, entity, attribute, value → first seen, in ns),
``baseline_alerts`` (which entity windows already alerted and in which run, so a window that
keeps growing over several runs alerts once) and ``baseline_state`` (the ingest sequence number
counted so far, so a replayed window is never counted twice). Writes hold the store's writer lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import duckdb
import pandas as pd

__all__ = ["DuckDBBaselines"]


class _DuckDBStoreLike(Protocol):
    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    @property
    def lock(self) -> threading.RLock: ...


class DuckDBBaselines:
    """Per-window counts of baseline signals, persisted with the events."""

    def __init__(self, store: _DuckDBStoreLike) -> None:
        self._store = store
        with store.lock:
            cur = store.cursor()
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS baseline_counts (signal VARCHAR, entity VARCHAR,"
                    " bucket BIGINT, count BIGINT, PRIMARY KEY (signal, entity, bucket))"
                )
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS baseline_known (signal VARCHAR, entity VARCHAR,"
                    " attribute VARCHAR, value VARCHAR, first_seen BIGINT,"
                    " PRIMARY KEY (signal, entity, attribute, value))"
                )
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS baseline_alerts (signal VARCHAR, entity VARCHAR,"
                    " bucket BIGINT, run BIGINT, PRIMARY KEY (signal, entity, bucket))"
                )
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS baseline_state (name VARCHAR PRIMARY KEY, seq BIGINT)"
                )
            finally:
                cur.close()

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        """Add counts (entity, bucket, count) to the stored ones, in one statement."""
        if counts.empty:
            return
        frame = counts[["entity", "bucket", "count"]].assign(signal=signal)
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.register("_baseline_in", frame)
                cur.execute(
                    "INSERT INTO baseline_counts SELECT signal, entity, bucket, count FROM _baseline_in"
                    " ON CONFLICT (signal, entity, bucket) DO UPDATE SET count = count + EXCLUDED.count"
                )
            finally:
                cur.close()

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        """Stored counts of buckets ``first..last`` (inclusive)."""
        cur = self._store.cursor()
        try:
            return cur.execute(
                "SELECT entity, bucket, count FROM baseline_counts"
                " WHERE signal = ? AND bucket BETWEEN ? AND ?",
                [signal, first, last],
            ).df()
        finally:
            cur.close()

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        """Record that an entity's window alerted in ``run``; False if another run had."""
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.execute(
                    "INSERT INTO baseline_alerts VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [signal, entity, bucket, run],
                )
                rows: list[Any] = cur.execute(
                    "SELECT run FROM baseline_alerts WHERE signal = ? AND entity = ? AND bucket = ?",
                    [signal, entity, bucket],
                ).fetchall()
            finally:
                cur.close()
        return bool(rows) and rows[0][0] == run

    def counted(self) -> int:
        """The ingest sequence number up to which events were counted."""
        cur = self._store.cursor()
        try:
            rows = cur.execute("SELECT seq FROM baseline_state WHERE name = 'counted'").fetchall()
        finally:
            cur.close()
        return int(rows[0][0]) if rows else 0

    def set_counted(self, seq: int) -> None:
        """Remember that events up to ``seq`` were counted."""
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.execute(
                    "INSERT INTO baseline_state VALUES ('counted', ?) ON CONFLICT (name)"
                    " DO UPDATE SET seq = greatest(seq, EXCLUDED.seq)",
                    [seq],
                )
            finally:
                cur.close()

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        """Merge first-seen times of entity attribute values; the earliest time wins."""
        if seen.empty:
            return
        frame = seen[["entity", "attribute", "value", "first_seen"]].assign(signal=signal)
        frame = frame.astype({"entity": str, "attribute": str, "value": str, "first_seen": "int64"})
        with self._store.lock:
            cur = self._store.cursor()
            try:
                cur.register("_known_in", frame)
                cur.execute(
                    "INSERT INTO baseline_known SELECT signal, entity, attribute, value, first_seen"
                    " FROM _known_in ON CONFLICT (signal, entity, attribute, value)"
                    " DO UPDATE SET first_seen = least(first_seen, EXCLUDED.first_seen)"
                )
            finally:
                cur.close()

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        """First-seen times (entity, attribute, value, first_seen in ns) of the entities."""
        cur = self._store.cursor()
        try:
            cur.register("_wanted", pd.DataFrame({"entity": list(entities)}, dtype=object))
            return cur.execute(
                "SELECT entity, attribute, value, first_seen FROM baseline_known"
                " WHERE signal = ? AND entity IN (SELECT entity FROM _wanted)",
                [signal],
            ).df()
        finally:
            cur.close()
