"""Constrained types shared by every stage, defined once."""

from __future__ import annotations

from typing import Literal

__all__ = ["Dataset", "LogFormat", "Severity", "SEVERITY_ORDER", "severity_rank"]

#: Datasets an event can belong to (``event.dataset``).
Dataset = Literal["api.access", "apm.span", "uptime.probe", "support.ticket"]

#: Access-log formats the collector understands.
LogFormat = Literal["combined", "nginx-json", "jsonl"]

#: Sigma rule levels, used as alert severities.
Severity = Literal["informational", "low", "medium", "high", "critical"]

SEVERITY_ORDER: tuple[Severity, ...] = ("informational", "low", "medium", "high", "critical")


def severity_rank(level: str | None) -> int:
    """Return the rank of a Sigma level (0 = informational … 4 = critical; unknown = 0)."""
    try:
        return SEVERITY_ORDER.index(level)  # type: ignore[arg-type]
    except ValueError:
        return 0
