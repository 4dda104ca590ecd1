"""A correlation's buffer of matches in the live engine, kept in event-time buckets.

The live engine holds, per correlation rule, the matches of its referenced rules over at least
the rule's lookback (plus ``lookback_s`` for late events): at a high event rate, an hour of
them. Each cycle adds its new matches, reads back those from some moment on, and forgets those
that fell out of the lookback. In one growing frame, each of these steps copied or scanned every
row held, so a cycle's cost grew with the buffer. In buckets of event time, each step costs
what the rows it concerns cost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

__all__ = ["MatchBuffer"]

_EPOCH = pd.Timestamp(0, tz="UTC")

#: Frames a bucket gathers (one per cycle that added to it) before they are joined into one.
PIECES = 8


class MatchBuffer:
    """Matches (one row per event and referenced rule: ``@timestamp``, ``event.id``, ``_rule``
    and fields) in buckets of ``width`` of event time."""

    def __init__(self, width: timedelta) -> None:
        self._width = pd.Timedelta(width)
        self._buckets: dict[int, list[pd.DataFrame]] = {}

    def __len__(self) -> int:
        return sum(len(piece) for pieces in self._buckets.values() for piece in pieces)

    def _bucket(self, moment: datetime | pd.Timestamp) -> int:
        return int((pd.Timestamp(moment) - _EPOCH) // self._width)

    def add(self, frame: pd.DataFrame, *, dedupe: bool = False) -> None:
        """Add matches; with ``dedupe``, a row whose event and rule are held already is dropped
        (for matches read again: a re-run window, or older matches loaded from the store)."""
        if frame.empty:
            return
        keys = ((frame["@timestamp"] - _EPOCH) // self._width).to_numpy()
        for key, part in frame.groupby(keys, sort=False):
            pieces = self._buckets.setdefault(int(key), [])
            pieces.append(part)
            if dedupe or len(pieces) > PIECES:
                joined = pd.concat(pieces, ignore_index=True)
                if dedupe:
                    joined = joined.drop_duplicates(subset=["event.id", "_rule"])
                self._buckets[int(key)] = [joined]

    def since(self, moment: datetime) -> pd.DataFrame | None:
        """The matches at or after ``moment`` (None when there are none)."""
        first = self._bucket(moment)
        parts = []
        for key in sorted(k for k in self._buckets if k >= first):
            for piece in self._buckets[key]:
                parts.append(piece[piece["@timestamp"] >= moment] if key == first else piece)
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else None

    def latest(self) -> pd.Timestamp | None:
        """The newest match time held (None when empty)."""
        if not self._buckets:
            return None
        return max(piece["@timestamp"].max() for piece in self._buckets[max(self._buckets)])

    def prune(self, keep_from: datetime) -> None:
        """Forget the buckets that end before ``keep_from`` (the one holding it stays whole)."""
        first = self._bucket(keep_from)
        for key in [k for k in self._buckets if k < first]:
            del self._buckets[key]
