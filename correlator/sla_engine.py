"""One evaluation cycle of every SLO and seller SLA, for the live service's scheduler.

:class:`SlaEngine` loads the specs once (failing fast on a bad one) and, on each
:meth:`SlaEngine.run_once`, returns the SLO statuses, the seller reports and the detections to
record in the case store. Per-minute SLO counts are cached between cycles: the first cycle reads
the whole period, later ones re-read only the minutes since the previous cycle plus
``settle`` (late events), so a cycle costs a few minutes of events, not 30 days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from correlator.seller_sla import (
    SellerSlaReport,
    SellerSlaSpec,
    evaluate_seller_sla,
    load_seller_slas,
    seller_sla_events,
)
from correlator.slo import SloSpec, SloStatus, evaluate_slo, load_slos, slo_detections, slo_series
from marketguard.detections import Detection
from marketguard.store.base import Store

__all__ = ["SlaCycle", "SlaEngine"]


@dataclass
class SlaCycle:
    """What one cycle found."""

    now: datetime
    slos: list[SloStatus] = field(default_factory=list)
    sellers: list[SellerSlaReport] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)


class SlaEngine:
    """Evaluates SLO and seller-SLA specs against a store, caching SLO minute counts."""

    def __init__(self, store: Store, slos: Sequence[SloSpec], sellers: Sequence[SellerSlaSpec],
                 *, settle: timedelta = timedelta(minutes=10)) -> None:
        self.store, self.slos, self.sellers, self.settle = store, list(slos), list(sellers), settle
        self._series: dict[str, tuple[datetime, pd.DataFrame]] = {}
        self.last: SlaCycle | None = None  # the latest cycle, for the API and the demo

    @classmethod
    def from_dirs(cls, store: Store, dirs: Sequence[Path | str], **kwargs: timedelta) -> SlaEngine:
        """Load every spec under ``dirs`` (RuleError with file and reason on a bad one)."""
        return cls(store, load_slos(dirs), load_seller_slas(dirs), **kwargs)

    def counts(self, spec: SloSpec, end: datetime) -> pd.DataFrame:
        """Per-minute counts of ``spec`` over its period before ``end``, refreshed incrementally."""
        start = end - spec.horizon
        cached = self._series.get(spec.id)
        if cached is None or cached[0] - self.settle <= start or cached[0] > end:
            frame = slo_series(self.store, spec, start, end)
        else:
            since = pd.Timestamp(cached[0] - self.settle).floor("min").to_pydatetime()
            fresh = slo_series(self.store, spec, since, end)
            old = cached[1]
            frame = pd.concat([old[(old.index >= start) & (old.index < since)], fresh])
        self._series[spec.id] = (end, frame)
        return frame

    def run_once(self, now: datetime) -> SlaCycle:
        """Evaluate every spec at ``now``. A spec that fails is logged by the caller's wrapper;
        here a store error propagates so the scheduler can count and retry the cycle."""
        cycle = SlaCycle(now)
        end = pd.Timestamp(now).floor("min").to_pydatetime()
        for spec in self.slos:
            status = evaluate_slo(spec, self.counts(spec, end), end)
            cycle.slos.append(status)
            cycle.detections.extend(slo_detections(spec, status))
        for sla in self.sellers:
            report = evaluate_seller_sla(sla, seller_sla_events(self.store, sla, now), now)
            cycle.sellers.append(report)
            cycle.detections.extend(report.detections)
        self.last = cycle
        return cycle
