"""``enrich``: recent events of the incident's entities and related incidents, from the store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from marketguard.cases import CaseFilters
from marketguard.cases.grouping import CONTEXT_FIELDS
from marketguard.store import MatchWindow
from playbooks.model import StepSpec
from playbooks.steps.base import Step, StepContext

__all__ = ["EnrichStep", "EnrichSpec"]


class EnrichSpec(StepSpec):
    """How far back to look and how much to keep."""

    kind: Literal["enrich"]
    lookback_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    max_events: int = Field(50, ge=0, le=1000, description="Event ids kept as a sample.")
    related_incidents: bool = True


class EnrichStep(Step):
    """Counts the entities' events around the incident and finds incidents sharing them."""

    kind = "enrich"
    Spec = EnrichSpec

    def run(self, spec: EnrichSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"enrichment": {"events", "event_ids", "related_incidents"}}``."""
        inc = ctx.detail.incident
        wanted = {f: v for f, v in inc.entities.items() if v and f not in CONTEXT_FIELDS}
        window = MatchWindow(time_after=inc.first_seen - timedelta(minutes=spec.lookback_minutes), time_upto=inc.last_seen)
        count, sample = 0, []
        if wanted:
            for batch in ctx.deps.store.scan(window, ["event.id", *wanted]):
                mask = None
                for name, values in wanted.items():
                    hit = pc.is_in(batch.column(name), value_set=pa.array(values, pa.string()))
                    mask = hit if mask is None else pc.or_(mask, hit)
                chosen = batch.filter(pc.fill_null(mask, False))
                count += chosen.num_rows
                sample.extend(chosen.column("event.id").to_pylist()[: max(0, spec.max_events - len(sample))])
        related: set[str] = set()
        if spec.related_incidents:
            for name, values in wanted.items():
                for value in values[:10]:
                    page = ctx.deps.cases.incidents(CaseFilters(entity=f"{name}={value}"), limit=20)
                    related.update(i.id for i in page.items if i.id != inc.id)
        return {"enrichment": {"events": count, "event_ids": sample, "related_incidents": sorted(related),
                               "lookback_minutes": spec.lookback_minutes}}
