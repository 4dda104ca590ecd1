"""Constrained types shared by every stage, defined once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

__all__ = [
    "Dataset", "LogFormat", "Severity", "SEVERITY_ORDER", "severity_rank", "Priority", "PRIORITY_ORDER",
    "TicketStatus", "OPERATOR_QUEUES", "OWNER_QUEUE_PATTERN", "OwnerQueue",
]

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

#: Ticket priorities, most urgent first.
Priority = Literal["P1", "P2", "P3", "P4"]

PRIORITY_ORDER: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")

#: A ticket's workflow states (see :mod:`marketguard.cases.tickets` for the transitions).
TicketStatus = Literal["new", "acknowledged", "in_progress", "resolved", "closed"]

#: The operator's own queues; sellers' queues are ``seller:<id>``.
OPERATOR_QUEUES: tuple[str, ...] = ("operator:secops", "operator:sre", "operator:payments", "operator:dpo")

#: Pattern every owner queue matches: an operator queue or ``seller:<id>``.
OWNER_QUEUE_PATTERN = r"^(operator:(secops|sre|payments|dpo)|seller:[A-Za-z0-9_.-]{1,64})$"

#: An owner queue (validated by pydantic models that use it).
OwnerQueue = Annotated[str, StringConstraints(pattern=OWNER_QUEUE_PATTERN)]
