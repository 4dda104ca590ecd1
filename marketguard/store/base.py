"""The storage protocol every backend implements.

Everything above the store (collectors, correlator, playbooks, app) talks to this protocol
only; :func:`marketguard.store.open_store` is the one place that picks an implementation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from marketguard.schema import DeadLetter

__all__ = ["Store", "MatchWindow"]


class MatchWindow:
    """Which events a rule query looks at: an ingest-sequence range and/or an event-time range.

    Bounds are half-open on the left and closed on the right: ``(after, upto]``.
    ``None`` means unbounded on that side. ``seqs`` restricts the window further to the given
    ingest sequence numbers (the prefilter's candidates).
    """

    __slots__ = ("seq_after", "seq_upto", "time_after", "time_upto", "dataset", "seqs")

    def __init__(
        self,
        *,
        seq_after: int | None = None,
        seq_upto: int | None = None,
        time_after: datetime | None = None,
        time_upto: datetime | None = None,
        dataset: str | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None:
        self.seq_after = seq_after
        self.seq_upto = seq_upto
        self.time_after = time_after
        self.time_upto = time_upto
        self.dataset = dataset
        self.seqs = seqs

    def only(self, seqs: Sequence[int]) -> MatchWindow:
        """The same window restricted to the given ingest sequence numbers."""
        return MatchWindow(
            seq_after=self.seq_after, seq_upto=self.seq_upto, time_after=self.time_after,
            time_upto=self.time_upto, dataset=self.dataset, seqs=seqs,
        )


@runtime_checkable
class Store(Protocol):
    """Durable home of events, dead letters and engine checkpoints."""

    #: Query dialect rules must be compiled to (a key of the correlator's backend registry).
    dialect: str

    def append_events(self, events: pa.Table) -> int:
        """Durably append events (``EVENT_SCHEMA``); return how many were new.

        Events whose ``event.id`` is already stored are skipped, so replays are idempotent.
        """
        ...

    def append_dead_letters(self, items: Sequence[DeadLetter]) -> None:
        """Durably keep input that could not be parsed, with where and why."""
        ...

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the most recent dead letters, newest first."""
        ...

    def count_events(self, dataset: str | None = None) -> int:
        """Return how many events are stored (of one dataset if given)."""
        ...

    def max_seq(self) -> int:
        """Return the ingest sequence number of the newest stored event (0 when empty)."""
        ...

    def query_events(
        self, window: MatchWindow, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> pa.Table:
        """Return events in ``window`` ordered by (``@timestamp``, ``event.id``)."""
        ...

    def match(self, query: str, window: MatchWindow, columns: Sequence[str]) -> pa.Table:
        """Return ``columns`` of the events in ``window`` that satisfy a compiled rule query."""
        ...

    def scan(
        self, window: MatchWindow, columns: Sequence[str], batch_rows: int = 262_144
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``_seq`` and ``columns`` of the events in ``window``, in no particular order."""
        ...

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        """Return a named engine checkpoint, or None if never set."""
        ...

    def set_checkpoint(self, name: str, value: dict[str, Any]) -> None:
        """Durably set a named engine checkpoint."""
        ...

    def close(self) -> None:
        """Flush and release the backend."""
        ...
