"""Where the behavioural baselines keep their state between runs: the :class:`Baselines`
protocol (per-window counts, alerts already raised, first-seen values) and an in-memory one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

__all__ = ["Baselines", "InMemoryBaselines"]


class Baselines(Protocol):
    """Where per-window counts live between runs (:mod:`correlator.baselines_duckdb`,
    :mod:`correlator.baselines_elasticsearch`)."""

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        """Add ``counts`` (columns entity, bucket, count) to the stored counts."""
        ...

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        """Stored counts (entity, bucket, count) of buckets ``first..last`` inclusive."""
        ...

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        """Record an alert for an entity's window; False if an earlier run already recorded it
        (a replay of the same ``run`` — same ingest window start — may record it again)."""
        ...

    def counted(self) -> int:
        """The ingest sequence number up to which events have been counted (0: none)."""
        ...

    def set_counted(self, seq: int) -> None:
        """Remember that events up to ``seq`` have been counted."""
        ...

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        """Merge first-seen times (entity, attribute, value, first_seen in ns): the minimum wins."""
        ...

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        """First-seen times (entity, attribute, value, first_seen) of the given entities."""
        ...


@dataclass
class InMemoryBaselines:
    """A :class:`Baselines` in a dict, for unit tests and one-shot hunts."""

    data: dict[tuple[str, str, int], int] = field(default_factory=dict)
    fired: dict[tuple[str, str, int], int] = field(default_factory=dict)
    seen: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    seq: int = 0

    def add(self, signal: str, counts: pd.DataFrame) -> None:
        for entity, bucket, count in counts[["entity", "bucket", "count"]].itertuples(index=False):
            key = (signal, str(entity), int(bucket))
            self.data[key] = self.data.get(key, 0) + int(count)

    def counts(self, signal: str, first: int, last: int) -> pd.DataFrame:
        rows = [
            (e, b, c) for (s, e, b), c in self.data.items() if s == signal and first <= b <= last
        ]
        return pd.DataFrame(rows, columns=["entity", "bucket", "count"])

    def alerted(self, signal: str, entity: str, bucket: int, run: int) -> bool:
        return self.fired.setdefault((signal, entity, bucket), run) == run

    def counted(self) -> int:
        return self.seq

    def set_counted(self, seq: int) -> None:
        self.seq = max(self.seq, seq)

    def learn(self, signal: str, seen: pd.DataFrame) -> None:
        for entity, attribute, value, first in seen.itertuples(index=False):
            key = (signal, str(entity), str(attribute), str(value))
            self.seen[key] = min(self.seen.get(key, int(first)), int(first))

    def known(self, signal: str, entities: Sequence[str]) -> pd.DataFrame:
        wanted = set(entities)
        rows = [
            (e, a, v, t) for (s, e, a, v), t in self.seen.items() if s == signal and e in wanted
        ]
        return pd.DataFrame(rows, columns=["entity", "attribute", "value", "first_seen"])

