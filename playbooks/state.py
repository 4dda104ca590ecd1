"""What the response stage keeps between runs, as small Protocols with plain records.

* :class:`StepLog`: completion of every playbook step, keyed by
  ``(playbook id, incident id, step index)`` — the basis of idempotent re-runs.
* :class:`ActionStore`: containment requests and their approval state.
* :class:`ClockStore`: GDPR Article 33 clocks and the reminders already raised.

:mod:`playbooks.state_duckdb` implements all three in the store's DuckDB file,
:mod:`playbooks.state_elasticsearch` in indices beside the Elasticsearch store;
:func:`open_response_state` picks the one beside the event store, by its dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from marketguard.errors import ConfigError
from marketguard.store import Store

__all__ = [
    "StepRecord", "StepLog", "PendingAction", "ActionStatus", "ActionStore", "GdprClockRecord",
    "ClockStore", "StepStatus", "ResponseState", "RESPONSE_STATES", "open_response_state",
]

StepStatus = Literal["done", "failed"]
ActionStatus = Literal["pending", "approved", "rejected", "executed", "failed"]


@dataclass(frozen=True)
class StepRecord:
    """The recorded outcome of one step of one playbook on one incident."""

    playbook_id: str
    incident_id: str
    step_index: int
    kind: str
    status: StepStatus
    attempts: int
    output: dict[str, Any]
    error: str | None
    updated: datetime


class StepLog(Protocol):
    """Step completion records."""

    def steps(self, playbook_id: str, incident_id: str) -> dict[int, StepRecord]:
        """Recorded steps of one playbook run, by step index."""
        ...

    def record(self, record: StepRecord) -> bool:
        """Record a step outcome unless one is already recorded; True when written."""
        ...


@dataclass(frozen=True)
class PendingAction:
    """A containment action awaiting (or past) a human decision."""

    id: str
    incident_id: str
    action: str
    target: str
    requested_by: str
    requested_at: datetime
    status: ActionStatus = "pending"
    playbook_id: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    result: str | None = None


class ActionStore(Protocol):
    """Containment actions."""

    def add(self, action: PendingAction) -> bool:
        """Insert unless the id exists; True when inserted."""
        ...

    def get(self, action_id: str) -> PendingAction | None:
        """One action by id."""
        ...

    def list(self, status: str | None = None, incident_id: str | None = None) -> list[PendingAction]:
        """Actions, newest request first, optionally filtered."""
        ...

    def transition(self, action_id: str, expected: str, new: PendingAction) -> bool:
        """Replace the action with ``new`` only if its status is still ``expected`` (atomic)."""
        ...


@dataclass(frozen=True)
class GdprClockRecord:
    """A personal-data breach clock: aware at, deadline, its DPO ticket, and what was done."""

    incident_id: str
    aware_at: datetime
    deadline: datetime
    reminder_hours: tuple[float, ...]
    ticket_id: str | None = None
    notified_at: datetime | None = None
    authority_ref: str | None = None
    delay_reasons: str | None = None
    fired: tuple[float, ...] = field(default=())


class ClockStore(Protocol):
    """GDPR clocks."""

    def start(self, clock: GdprClockRecord) -> bool:
        """Insert unless a clock for the incident exists; True when inserted."""
        ...

    def get(self, incident_id: str) -> GdprClockRecord | None:
        """The clock of an incident, with the reminders already fired."""
        ...

    def open_clocks(self) -> list[GdprClockRecord]:
        """Clocks whose notification is not yet recorded."""
        ...

    def fire(self, incident_id: str, hours: float, at: datetime) -> bool:
        """Mark one reminder as raised; True only the first time."""
        ...

    def update(self, clock: GdprClockRecord) -> None:
        """Store the ticket id and notification / delay record of a clock."""
        ...


@dataclass(frozen=True)
class ResponseState:
    """The three state stores of the response stage, beside one event store."""

    steps: StepLog
    actions: ActionStore
    clocks: ClockStore


def _duckdb_state(store: Store) -> ResponseState:
    from playbooks.state_duckdb import DuckDBActionStore, DuckDBClockStore, DuckDBStepLog

    return ResponseState(DuckDBStepLog(store), DuckDBActionStore(store), DuckDBClockStore(store))  # type: ignore[arg-type]


def _elasticsearch_state(store: Store) -> ResponseState:
    from playbooks.state_elasticsearch import (
        ElasticsearchActionStore,
        ElasticsearchClockStore,
        ElasticsearchStepLog,
    )

    return ResponseState(ElasticsearchStepLog(store), ElasticsearchActionStore(store),  # type: ignore[arg-type]
                         ElasticsearchClockStore(store))  # type: ignore[arg-type]


#: Store dialect -> response-state factory.
RESPONSE_STATES: dict[str, Callable[[Store], ResponseState]] = {
    "duckdb": _duckdb_state, "elasticsearch": _elasticsearch_state,
}


def open_response_state(store: Store) -> ResponseState:
    """The playbook state that lives beside ``store`` (chosen by its dialect)."""
    try:
        factory = RESPONSE_STATES[store.dialect]
    except KeyError:
        raise ConfigError(
            f"no playbook state for the {store.dialect!r} store; valid: {', '.join(sorted(RESPONSE_STATES))}"
        ) from None
    return factory(store)
