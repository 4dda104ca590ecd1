"""The relevance filter of the behavioural baselines: which stored events a set of signals can
use, decided in Arrow before any per-row work, and which fields they read."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from correlator.baselines_signals import ACTION, NoveltySignal, RatioSignal, VolumeSignal
from marketguard.schema import EVENT_FIELDS

__all__ = ["Relevance", "signal_fields"]


def signal_fields(
    volume: Sequence[VolumeSignal], ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]
) -> list[str]:
    """Every field the signals read (their entities, selectors and attributes), sorted."""
    names = {ACTION}
    for v in volume:
        names.update(v.entity)
    for r in ratios:
        names.update(r.entity, r.base, r.other)
    for n in novelty:
        names.update((n.entity, *n.attributes))
    return sorted(names)


class Relevance:
    """Which stored events a set of signals can use, decided in Arrow before any per-row work.

    A superset: an event is kept when one of the signals' ``field: value`` selectors may hold
    for it (a schema column equal to the value ignoring case; for a field kept in ``labels``,
    the value occurring in the labels text), or when it names a novelty signal's entity (it
    teaches that entity's attributes). The signals' own selection still decides.
    """

    def __init__(
        self, volume: Sequence[VolumeSignal], ratios: Sequence[RatioSignal], novelty: Sequence[NoveltySignal]
    ) -> None:
        pairs = {(ACTION, v.action) for v in volume}
        pairs |= {(n, val) for r in ratios for spec in (r.base, r.other) for n, val in spec.items()}
        pairs |= {(ACTION, val) for n in novelty for val in (n.success, n.failure)}
        self.pairs = sorted(pairs)
        self.present = sorted({n.entity for n in novelty})

    def mask(self, table: pa.Table) -> pa.ChunkedArray | None:
        """True for the rows to keep; None when every row must be kept."""
        conditions = []
        for name, value in self.pairs:
            if name in EVENT_FIELDS:
                column = pc.cast(table.column(name), pa.string())
                conditions.append(pc.equal(pc.utf8_lower(column), value.lower()))
            elif value.isascii() and value.isprintable() and not set(value) & {'"', "\\"}:
                conditions.append(pc.match_substring(table.column("labels"), value, ignore_case=True))
            else:
                return None  # JSON may escape the value: no safe test on the labels text
        for name in self.present:
            if name not in EVENT_FIELDS:
                return None
            conditions.append(pc.is_valid(table.column(name)))
        if not conditions:
            return None
        return pc.fill_null(functools.reduce(pc.or_kleene, conditions), False)

