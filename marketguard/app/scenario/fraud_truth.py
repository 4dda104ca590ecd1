"""Ground truth of the fraud scenario and its scoring: the :class:`FraudScenario` (events and,
per family, its attack instances) and precision and recall per family (:func:`score`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["FAMILIES", "FraudScenario", "FamilyScore", "family_of", "score", "index_by_trace_id"]

FAMILIES = ("click", "card_testing", "account_takeover", "promo_abuse")
_FAMILY_TAG = "marketguard.fraud."


@dataclass
class FraudScenario:
    """Events in time order, and per fraud family its attack instances (event index sets)."""

    events: list[dict[str, Any]]
    instances: dict[str, list[frozenset[int]]]
    start: datetime
    end: datetime

    @property
    def truth(self) -> dict[str, set[int]]:
        """Family -> indices of every event of its attacks."""
        return {f: set().union(*self.instances.get(f, [])) for f in FAMILIES}


@dataclass(frozen=True)
class FamilyScore:
    """Precision and recall of one fraud family."""

    family: str
    alerts: int
    true_alerts: int
    instances: int
    detected: int

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.instances if self.instances else 1.0


def family_of(tags: Iterable[str]) -> str | None:
    """The fraud family a rule's tags name (``marketguard.fraud.<family>``), if any."""
    for tag in tags:
        if tag.startswith(_FAMILY_TAG) and tag[len(_FAMILY_TAG) :] in FAMILIES:
            return tag[len(_FAMILY_TAG) :]
    return None


def score(
    scenario: FraudScenario,
    alerts: Iterable[tuple[Iterable[str], Iterable[str]]],
    index_of: Mapping[str, int],
) -> dict[str, FamilyScore]:
    """Precision and recall per family from ``(tags, event ids)`` of each alert.

    ``index_of`` maps an event id to its index in :attr:`FraudScenario.events` (see
    :func:`index_by_trace_id`); alerts without a fraud family tag are ignored.
    """
    truth = scenario.truth
    found: dict[str, list[set[int]]] = {f: [] for f in FAMILIES}
    for tags, ids in alerts:
        family = family_of(tags)
        if family:
            found[family].append({index_of[i] for i in ids if i in index_of})
    out = {}
    for family in FAMILIES:
        hit = set().union(*found[family])
        out[family] = FamilyScore(
            family=family,
            alerts=len(found[family]),
            true_alerts=sum(1 for s in found[family] if s & truth[family]),
            instances=len(scenario.instances[family]),
            detected=sum(1 for inst in scenario.instances[family] if inst & hit),
        )
    return out


def index_by_trace_id(event_ids: Iterable[str], trace_ids: Iterable[str | None]) -> dict[str, int]:
    """Event id -> scenario index, from stored events' ``event.id`` and ``trace.id`` columns
    (the scenario numbers its events ``req-<seed>-<index>``)."""
    out = {}
    for eid, trace in zip(event_ids, trace_ids, strict=True):
        if trace and trace.startswith("req-"):
            out[eid] = int(trace.rsplit("-", 1)[1])
    return out
