"""How a ticket's composite fields travel as JSON text, the same in every backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from marketguard.cases.tickets import Comment, Link, StepFailure, Ticket

__all__ = ["utc", "to_json", "open_key", "json_fields", "from_json_fields"]

_LISTS = ("links", "comments", "failed_steps")


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC (None stays None)."""
    return value.astimezone(UTC) if value is not None else None


def to_json(value: Any) -> str:
    """JSON text; datetimes as ISO-8601, anything else unknown as ``str``."""
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def open_key(incident_id: str, queue: str, kind: str) -> str:
    """The key a ticket is opened under: one ticket per (incident, queue, kind)."""
    return json.dumps([incident_id, queue, kind])


def json_fields(t: Ticket) -> dict[str, str]:
    """The ticket's entities, details, links, comments and failed steps as JSON text."""
    fields = {"entities": to_json(dict(t.entities)), "details": to_json(dict(t.details))}
    fields |= {name: to_json([asdict(x) for x in getattr(t, name)]) for name in _LISTS}
    return fields


def from_json_fields(src: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`json_fields`, read from a row or document."""
    return {
        "entities": json.loads(src["entities"]),
        "details": json.loads(src["details"]),
        "links": tuple(Link(**x) for x in json.loads(src["links"])),
        "comments": tuple(Comment(**{**x, "time": datetime.fromisoformat(x["time"])}) for x in json.loads(src["comments"])),
        "failed_steps": tuple(
            StepFailure(**{**x, "time": datetime.fromisoformat(x["time"])}) for x in json.loads(src["failed_steps"])
        ),
    }
