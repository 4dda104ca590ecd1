"""What the correlator reports: one detection per matching event or correlation hit.

A core type: the correlator produces detections, :mod:`marketguard.cases` records them as alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Detection", "EVIDENCE_FIELDS"]

#: Event fields every detection carries as evidence (and hunt output shows).
EVIDENCE_FIELDS: tuple[str, ...] = (
    "event.id",
    "@timestamp",
    "event.ingested",
    "source.ip",
    "user.id",
    "user.name",
    "http.request.method",
    "url.original",
    "http.response.status_code",
    "user_agent.original",
    "marketplace.seller_id",
    "service.name",
    "trace.id",
    "log.file.path",
    "log.file.line",
)


@dataclass(frozen=True)
class Detection:
    """A rule that fired: on one event (detection rules) or on a window (correlation rules)."""

    rule_id: str
    rule_title: str
    rule_level: str
    rule_author: str | None
    rule_license: str | None
    kind: str  # "event" or the correlation type
    timestamp: datetime
    event_ids: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    group: tuple[tuple[str, str | None], ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None
    value: float | None = None
    tags: tuple[str, ...] = ()

    def as_record(self) -> dict[str, Any]:
        """Flat JSON-ready record (ECS-style keys) for output and storage."""
        rec: dict[str, Any] = {
            "rule.id": self.rule_id,
            "rule.title": self.rule_title,
            "rule.level": self.rule_level,
            "rule.author": self.rule_author,
            "rule.license": self.rule_license,
            "rule.kind": self.kind,
            "@timestamp": self.timestamp.isoformat(),
            "event.id": self.event_ids[0] if len(self.event_ids) == 1 else None,
        }
        for key, value in self.evidence.items():
            if key in ("event.id", "@timestamp"):
                continue
            rec[key] = value.isoformat() if isinstance(value, datetime) else value
        if self.kind != "event":
            rec["correlation.group"] = {k: v for k, v in self.group}
            rec["correlation.window_start"] = self.window_start.isoformat() if self.window_start else None
            rec["correlation.window_end"] = self.window_end.isoformat() if self.window_end else None
            rec["correlation.value"] = self.value
            rec["correlation.event_ids"] = list(self.event_ids)
        return rec
