"""The pure rules of grouping: dedupe and group keys, spans, entities and links, the incident
type and the escalated severity (see :mod:`marketguard.cases.grouping`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from marketguard.detections import Detection
from marketguard.schema import ENTITY_FIELDS
from marketguard.types import SEVERITY_ORDER, severity_rank

__all__ = [
    "MAX_EVENT_IDS", "MAX_ENTITY_VALUES", "CONTEXT_FIELDS", "INCIDENT_TYPES", "Group", "Link",
    "utc", "stable_hash", "group_json", "group_key", "dedupe_key", "span", "entities_of",
    "links_of", "incident_type", "escalate", "add_entities", "spans_near",
]

MAX_EVENT_IDS = 100
MAX_ENTITY_VALUES = 50
CONTEXT_FIELDS: frozenset[str] = frozenset({"service.name"})
INCIDENT_TYPES = ("security", "fraud", "availability", "sla")
_TYPE_TAG = "marketguard.type."

Group = tuple[tuple[str, str | None], ...]
Link = tuple[str, str]


def utc(moment: datetime) -> datetime:
    """The same instant in UTC (a naive time is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stable_hash(*parts: str) -> str:
    """A short stable id from ``parts`` (dedupe keys, alert and incident ids)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def group_json(group: Group) -> str:
    """Canonical text of a group key (stored, compared and hashed)."""
    return json.dumps([[k, v] for k, v in group], separators=(",", ":"))


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def group_key(d: Detection) -> Group:
    """A correlation's group; for a single-event rule the event's primary entity."""
    if d.kind != "event":
        return tuple((k, _text(v)) for k, v in d.group)
    for name in ENTITY_FIELDS:
        value = _text(d.evidence.get(name))
        if value is not None:
            return ((name, value),)
    return ()


def dedupe_key(d: Detection) -> str:
    """``(rule.id, event.id)`` for single-event detections, ``(rule.id, group, window_start)``."""
    if d.kind == "event":
        event = d.event_ids[0] if d.event_ids else utc(d.timestamp).isoformat()
        return stable_hash("event", d.rule_id, event)
    start = utc(d.window_start or d.timestamp).isoformat()
    return stable_hash("corr", d.rule_id, group_json(group_key(d)), start)


def span(d: Detection) -> tuple[datetime, datetime]:
    """The event-time span of a detection: its window, or its event's time."""
    start = utc(d.window_start or d.timestamp)
    end = utc(d.window_end or d.timestamp)
    return (start, end) if start <= end else (end, start)


def entities_of(d: Detection) -> dict[str, list[str]]:
    """Entity field -> values named by the detection's evidence and group."""
    out: dict[str, list[str]] = {}
    pairs = list(d.evidence.items()) + list(d.group)
    for name, value in pairs:
        text = _text(value)
        if name in ENTITY_FIELDS and text is not None and text not in out.get(name, []):
            out.setdefault(name, []).append(text)
    return out


def links_of(group: Group, entities: dict[str, list[str]]) -> set[Link]:
    """The (field, value) pairs by which an alert joins incidents (see the module docstring)."""
    grouped = {(k, v) for k, v in group if v is not None}
    return {
        (name, value)
        for name, values in entities.items()
        for value in values
        if name not in CONTEXT_FIELDS or (name, value) in grouped
    }


def incident_type(tags: Iterable[str], title: str) -> str:
    """The incident type a rule's tags and title imply (see the module docstring)."""
    tags = list(tags)
    for tag in tags:
        if tag.lower().startswith(_TYPE_TAG) and tag[len(_TYPE_TAG):].lower() in INCIDENT_TYPES:
            return tag[len(_TYPE_TAG):].lower()
    words = set(re.findall(r"[a-z0-9]+", " ".join([*tags, title]).lower()))
    if "fraud" in words:
        return "fraud"
    if words & {"availability", "slo"}:
        return "availability"
    return "sla" if "sla" in words else "security"


def escalate(level: str, distinct_rules: int, threshold: int) -> str:
    """The incident severity: ``level``, one step higher when ``threshold`` rules agree."""
    rank = severity_rank(level) + (1 if distinct_rules >= threshold else 0)
    return SEVERITY_ORDER[min(rank, len(SEVERITY_ORDER) - 1)]


def add_entities(dst: dict[str, list[str]], src: dict[str, list[str]]) -> None:
    """Add the values of ``src`` to ``dst``, at most :data:`MAX_ENTITY_VALUES` per field."""
    for name, values in src.items():
        have = dst.setdefault(name, [])
        for value in values:
            if value not in have and len(have) < MAX_ENTITY_VALUES:
                have.append(value)


def spans_near(a0: datetime, a1: datetime, b0: datetime, b1: datetime, gap: timedelta) -> bool:
    """True when the spans [a0, a1] and [b0, b1] are at most ``gap`` apart."""
    return a0 <= b1 + gap and a1 >= b0 - gap

