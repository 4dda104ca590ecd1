"""Where reports read from: the stores behind their protocols, gathered once.

A report never opens a database itself and never asks which backend it runs on: the
composition root hands it a :class:`ReportSources` built from the running service
(:func:`sources_from_services`) or from a data directory's store (:func:`sources_from_store`,
for the CLI and the demo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from marketguard.cases import CaseFilters, CaseStore, Incident, Page, open_cases
from marketguard.cases.audit import AuditLog, open_audit
from marketguard.cases.routing import TicketPolicy, load_policy
from marketguard.cases.tickets import Ticket, TicketFilters, TicketStore, open_tickets
from marketguard.config import Settings
from marketguard.store import Store
from playbooks.state import ActionStore, ClockStore, open_response_state

T = TypeVar("T")

__all__ = ["ReportSources", "sources_from_store", "sources_from_services", "repo_relative"]

_SHIPPED = Path(__file__).resolve().parents[3]


def repo_relative(path: Path) -> Path:
    """A relative data path (routing policy, rule dirs) as given, else from the source tree."""
    if path.is_absolute() or path.exists():
        return path
    shipped = _SHIPPED / path
    return shipped if shipped.exists() else path


@dataclass
class ReportSources:
    """Every store a report reads, behind its protocol, plus the policy and spec directories."""

    store: Store
    cases: CaseStore
    tickets: TicketStore
    audit: AuditLog
    policy: TicketPolicy
    actions: ActionStore | None = None
    clocks: ClockStore | None = None
    rules_dirs: Sequence[Path] = field(default_factory=list)

    def all_incidents(self, filters: CaseFilters | None = None) -> Iterator[Incident]:
        """Every incident matching ``filters``, walking the pages."""
        return _walk(lambda cursor: self.cases.incidents(filters, cursor, 500))

    def all_tickets(self, filters: TicketFilters | None = None) -> Iterator[Ticket]:
        """Every ticket matching ``filters`` (staff view), walking the pages."""
        return _walk(lambda cursor: self.tickets.list(filters, cursor, 500))


def _walk(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a cursor-paged listing."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        cursor = page.next_cursor
        if not cursor:
            return


def sources_from_store(store: Store, settings: Settings) -> ReportSources:
    """The report sources beside an open store (CLI, demo): cases, tickets, audit, response state."""
    audit = open_audit(store)
    state = open_response_state(store)
    return ReportSources(
        store=store, cases=open_cases(store, settings), tickets=open_tickets(store, audit), audit=audit,
        policy=load_policy(repo_relative(settings.routing_file)), actions=state.actions, clocks=state.clocks,
        rules_dirs=[repo_relative(d) for d in settings.rules_dirs],
    )


def sources_from_services(services: Any) -> ReportSources:
    """The report sources of a running service (:class:`marketguard.app.services.Services`)."""
    response = services.response
    return ReportSources(
        store=services.store, cases=services.cases, tickets=services.tickets, audit=services.audit,
        policy=services.ticket_policy,
        actions=response.containment.actions if response is not None else None,
        clocks=response.gdpr.clocks if response is not None else None,
        rules_dirs=[repo_relative(d) for d in services.settings.rules_dirs],
    )

