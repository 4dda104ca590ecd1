"""Template filters: times in UTC, ratios as percentages."""

from __future__ import annotations

from datetime import UTC, datetime

from jinja2 import Environment

__all__ = ["when", "pct", "install"]


def when(moment: datetime | None) -> str:
    """``2026-11-20 09:00 UTC`` (a time without offset is taken as UTC); ``—`` for none."""
    if moment is None:
        return "—"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def pct(ratio: float | None, digits: int = 1) -> str:
    """A 0–1 ratio as a percentage with ``digits`` decimals; ``n/a`` for none."""
    return "n/a" if ratio is None else f"{ratio * 100:,.{digits}f} %"


def install(env: Environment) -> None:
    """Register the filters on a Jinja environment."""
    env.filters["when"] = when
    env.filters["pct"] = pct
