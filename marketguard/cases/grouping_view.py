"""What :func:`~marketguard.cases.grouping.plan` works with: the :class:`GroupingPolicy` it
applies, the :class:`CaseView` it reads and the :class:`Changes` it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from marketguard.cases import Alert, Incident, RecordResult, TimelineEntry
from marketguard.cases.grouping_rules import Link
from marketguard.config import Settings

__all__ = ["GroupingPolicy", "CaseView", "Changes"]


@dataclass(frozen=True)
class GroupingPolicy:
    """The three knobs of grouping, from the settings."""

    suppression: timedelta
    incident_window: timedelta
    escalation_rules: int

    @classmethod
    def from_settings(cls, settings: Settings) -> GroupingPolicy:
        """Read the suppression and incident windows and the escalation threshold."""
        return cls(
            timedelta(seconds=settings.suppression_window_s),
            timedelta(seconds=settings.incident_window_s),
            settings.escalation_rules,
        )


class CaseView(Protocol):
    """The look-ups :func:`plan` needs from a backend, each one batch query."""

    def seen(self, keys: Sequence[str]) -> set[str]:
        """The dedupe keys among ``keys`` that are already recorded."""
        ...

    def open_alerts(self, pairs: set[tuple[str, str]], start: datetime, end: datetime) -> list[Alert]:
        """Open alerts of these ``(rule_id, group_json)`` pairs whose span meets [start, end]."""
        ...

    def incidents_for(self, links: set[Link], start: datetime, end: datetime, ids: set[str]) -> list[Incident]:
        """Open incidents holding any of ``links`` whose span meets [start, end], plus ``ids``."""
        ...


@dataclass
class Changes:
    """What one :func:`plan` decided; the backend writes it in one transaction."""

    keys: list[tuple[str, str]] = field(default_factory=list)  # (dedupe key, alert id)
    alerts: dict[str, Alert] = field(default_factory=dict)  # final state of new/changed alerts
    new_alerts: list[str] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)  # final state, merged ones too
    new_incidents: list[str] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)  # (absorbed, survivor), in order
    timeline: list[tuple[str, TimelineEntry]] = field(default_factory=list)

    def result(self) -> RecordResult:
        """The ids touched, as the case store reports them."""
        new_inc, new_al = set(self.new_incidents), set(self.new_alerts)
        merged = tuple(i for i, inc in self.incidents.items() if inc.status == "merged")
        return RecordResult(
            new_alerts=tuple(self.new_alerts),
            updated_alerts=tuple(a for a in self.alerts if a not in new_al),
            new_incidents=tuple(self.new_incidents),
            updated_incidents=tuple(
                i for i, inc in self.incidents.items() if i not in new_inc and inc.status != "merged"
            ),
            merged_incidents=merged,
        )

