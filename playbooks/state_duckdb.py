"""The response stage's state in the store's DuckDB file.

Tables: ``playbook_steps`` (primary key playbook, incident, step index), ``containment_actions``,
``gdpr_clocks`` and ``gdpr_reminders`` (primary key incident, hours). Writes hold the store's
writer lock; "insert unless present" relies on primary keys, so concurrent runners cannot
record one step twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple, fields
from datetime import UTC, datetime
from typing import Any

import duckdb

from marketguard.errors import StoreError
from marketguard.store.duckdb import DuckDBStore
from playbooks.state import GdprClockRecord, PendingAction, StepRecord

__all__ = ["DuckDBStepLog", "DuckDBActionStore", "DuckDBClockStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS playbook_steps (playbook_id VARCHAR, incident_id VARCHAR,"
    " step_index INTEGER, kind VARCHAR, status VARCHAR, attempts INTEGER, output VARCHAR,"
    " error VARCHAR, updated TIMESTAMPTZ, PRIMARY KEY (playbook_id, incident_id, step_index))",
    "CREATE TABLE IF NOT EXISTS containment_actions (id VARCHAR PRIMARY KEY, incident_id VARCHAR,"
    " action VARCHAR, target VARCHAR, requested_by VARCHAR, requested_at TIMESTAMPTZ,"
    " status VARCHAR, playbook_id VARCHAR, decided_by VARCHAR, decided_at TIMESTAMPTZ,"
    " reason VARCHAR, result VARCHAR)",
    "CREATE TABLE IF NOT EXISTS gdpr_clocks (incident_id VARCHAR PRIMARY KEY, aware_at TIMESTAMPTZ,"
    " deadline TIMESTAMPTZ, reminder_hours VARCHAR, ticket_id VARCHAR, notified_at TIMESTAMPTZ,"
    " authority_ref VARCHAR, delay_reasons VARCHAR)",
    "CREATE TABLE IF NOT EXISTS gdpr_reminders (incident_id VARCHAR, hours DOUBLE,"
    " fired_at TIMESTAMPTZ, PRIMARY KEY (incident_id, hours))",
)
_ACTION_COLS = tuple(f.name for f in fields(PendingAction))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class _Tables:
    """Shared plumbing: schema creation, locked writes, reads."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        for statement in _SCHEMA:
            self._write(statement, [])

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._store.lock:
            cur = self._store.cursor()
            try:
                rows = cur.execute(sql, list(params)).fetchall()
                return int(rows[0][0]) if rows and rows[0] and isinstance(rows[0][0], int) else 0
            except duckdb.Error as exc:
                raise StoreError(f"response state write failed: {exc}") from exc
            finally:
                cur.close()

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._store.read(sql, params, "response state read")


class DuckDBStepLog(_Tables):
    """:class:`~playbooks.state.StepLog` in ``playbook_steps``."""

    def steps(self, playbook_id: str, incident_id: str) -> dict[int, StepRecord]:
        """Recorded steps by index."""
        rows = self._read(
            "SELECT playbook_id, incident_id, step_index, kind, status, attempts, output, error, updated"
            " FROM playbook_steps WHERE playbook_id = ? AND incident_id = ?", [playbook_id, incident_id])
        return {r[2]: StepRecord(*r[:6], json.loads(r[6]), r[7], _utc(r[8])) for r in rows}  # type: ignore[arg-type]

    def record(self, record: StepRecord) -> bool:
        """Insert the outcome unless the step is already recorded."""
        row = list(astuple(record))
        row[6] = json.dumps(record.output, default=str)
        return self._write("INSERT OR IGNORE INTO playbook_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row) > 0


class DuckDBActionStore(_Tables):
    """:class:`~playbooks.state.ActionStore` in ``containment_actions``."""

    def add(self, action: PendingAction) -> bool:
        """Insert unless the id exists."""
        marks = ", ".join("?" * len(_ACTION_COLS))
        return self._write(f"INSERT OR IGNORE INTO containment_actions ({', '.join(_ACTION_COLS)}) VALUES ({marks})", astuple(action)) > 0

    def get(self, action_id: str) -> PendingAction | None:
        """One action."""
        rows = self._read(f"SELECT {', '.join(_ACTION_COLS)} FROM containment_actions WHERE id = ?", [action_id])
        return _action(rows[0]) if rows else None

    def list(self, status: str | None = None, incident_id: str | None = None) -> list[PendingAction]:
        """Actions newest first."""
        where, params = ["TRUE"], []
        for col, value in (("status", status), ("incident_id", incident_id)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        rows = self._read(f"SELECT {', '.join(_ACTION_COLS)} FROM containment_actions WHERE {' AND '.join(where)}"
                          " ORDER BY requested_at DESC, id", params)
        return [_action(r) for r in rows]

    def transition(self, action_id: str, expected: str, new: PendingAction) -> bool:
        """Compare-and-set on status."""
        sets = ", ".join(f"{c} = ?" for c in _ACTION_COLS if c != "id")
        values = [getattr(new, c) for c in _ACTION_COLS if c != "id"]
        return self._write(f"UPDATE containment_actions SET {sets} WHERE id = ? AND status = ?", [*values, action_id, expected]) > 0


def _action(row: tuple[Any, ...]) -> PendingAction:
    data = dict(zip(_ACTION_COLS, row, strict=True))
    for name in ("requested_at", "decided_at"):
        data[name] = _utc(data[name])
    return PendingAction(**data)


class DuckDBClockStore(_Tables):
    """:class:`~playbooks.state.ClockStore` in ``gdpr_clocks`` and ``gdpr_reminders``."""

    _COLS = "incident_id, aware_at, deadline, reminder_hours, ticket_id, notified_at, authority_ref, delay_reasons"

    def start(self, clock: GdprClockRecord) -> bool:
        """Insert unless the incident has a clock."""
        return self._write(
            f"INSERT OR IGNORE INTO gdpr_clocks ({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [clock.incident_id, clock.aware_at, clock.deadline, json.dumps(list(clock.reminder_hours)),
             clock.ticket_id, clock.notified_at, clock.authority_ref, clock.delay_reasons]) > 0

    def get(self, incident_id: str) -> GdprClockRecord | None:
        """One clock with its fired reminders."""
        rows = self._read(f"SELECT {self._COLS} FROM gdpr_clocks WHERE incident_id = ?", [incident_id])
        return self._clock(rows[0]) if rows else None

    def open_clocks(self) -> list[GdprClockRecord]:
        """Clocks without a recorded notification, earliest deadline first."""
        rows = self._read(f"SELECT {self._COLS} FROM gdpr_clocks WHERE notified_at IS NULL ORDER BY deadline", [])
        return [self._clock(r) for r in rows]

    def fire(self, incident_id: str, hours: float, at: datetime) -> bool:
        """Mark a reminder raised (once)."""
        return self._write("INSERT OR IGNORE INTO gdpr_reminders VALUES (?, ?, ?)", [incident_id, float(hours), at]) > 0

    def update(self, clock: GdprClockRecord) -> None:
        """Store ticket id and notification / delay fields."""
        self._write(
            "UPDATE gdpr_clocks SET ticket_id = ?, notified_at = ?, authority_ref = ?, delay_reasons = ?"
            " WHERE incident_id = ?",
            [clock.ticket_id, clock.notified_at, clock.authority_ref, clock.delay_reasons, clock.incident_id])

    def _clock(self, row: tuple[Any, ...]) -> GdprClockRecord:
        fired = self._read("SELECT hours FROM gdpr_reminders WHERE incident_id = ? ORDER BY hours", [row[0]])
        return GdprClockRecord(
            incident_id=row[0], aware_at=_utc(row[1]), deadline=_utc(row[2]),  # type: ignore[arg-type]
            reminder_hours=tuple(json.loads(row[3])), ticket_id=row[4], notified_at=_utc(row[5]),
            authority_ref=row[6], delay_reasons=row[7], fired=tuple(h for (h,) in fired),
        )
