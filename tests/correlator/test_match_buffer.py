"""The live engine's per-correlation match buffer: event-time buckets that read, forget and
de-duplicate exactly like one frame would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from correlator.match_buffer import PIECES, MatchBuffer

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def matches(seconds: list[int], rule: str = "r1", prefix: str = "e") -> pd.DataFrame:
    return pd.DataFrame({
        "@timestamp": pd.to_datetime([T0 + timedelta(seconds=s) for s in seconds], utc=True).as_unit("us"),
        "event.id": [f"{prefix}{s}" for s in seconds],
        "_rule": rule,
        "source.ip": "203.0.113.1",
    })


def ids(frame: pd.DataFrame | None) -> list[str]:
    return [] if frame is None else sorted(frame["event.id"] + "/" + frame["_rule"])


def test_since_returns_exactly_the_rows_from_a_moment_whatever_the_buckets() -> None:
    buffer = MatchBuffer(timedelta(minutes=1))
    for cycle in range(30):  # more cycles than a bucket gathers before joining its pieces
        buffer.add(matches([10 * cycle, 10 * cycle + 5]))
    assert len(buffer) == 60 and 30 > PIECES
    assert ids(buffer.since(T0 + timedelta(seconds=95))) == ids(matches([s for s in range(95, 300, 5) if s % 10 in (0, 5)]))
    assert buffer.since(T0 + timedelta(hours=1)) is None
    assert buffer.latest() == pd.Timestamp(T0 + timedelta(seconds=295))


def test_late_matches_land_in_their_own_time() -> None:
    buffer = MatchBuffer(timedelta(minutes=1))
    buffer.add(matches([3600, 3601]))
    buffer.add(matches([10, 20], prefix="late"))  # a replayed gateway buffer, an hour old
    assert ids(buffer.since(T0 + timedelta(seconds=15))) == ["e3600/r1", "e3601/r1", "late20/r1"]
    assert buffer.latest() == pd.Timestamp(T0 + timedelta(seconds=3601))


def test_prune_forgets_whole_buckets_before_a_moment_and_keeps_every_row_after_it() -> None:
    buffer = MatchBuffer(timedelta(minutes=1))
    buffer.add(matches(list(range(0, 600, 10))))
    buffer.prune(T0 + timedelta(seconds=250))
    kept = buffer.since(T0)
    assert kept is not None
    assert kept["@timestamp"].min() == pd.Timestamp(T0 + timedelta(seconds=240))  # its bucket stays whole
    assert ids(buffer.since(T0 + timedelta(seconds=250))) == ids(matches(list(range(250, 600, 10))))


def test_dedupe_drops_rows_held_already_and_keeps_other_rules_of_the_same_event() -> None:
    buffer = MatchBuffer(timedelta(minutes=1))
    buffer.add(matches([0, 30, 70]))
    buffer.add(pd.concat([matches([30, 70, 90]), matches([30], rule="r2")]), dedupe=True)
    assert ids(buffer.since(T0)) == ["e0/r1", "e30/r1", "e30/r2", "e70/r1", "e90/r1"]
