"""The response stage's state in indices beside the Elasticsearch store.

Indices (mappings in :data:`marketguard.store.es_setup.RECORD_MAPPINGS`): ``playbooksteps``
(``_id`` = playbook, incident, step index), ``containment`` (``_id`` = action id),
``gdprclocks`` (``_id`` = incident) and ``gdprreminders`` (``_id`` = incident, hours).

"Insert unless present" is ``op_type=create`` on the natural key, so two service instances
cannot record one step, action, clock or reminder twice. Containment transitions and clock
updates are compare-and-swap writes (``if_seq_no``/``if_primary_term``).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from marketguard.store._es_docs import iso
from marketguard.store._es_records import EsRecords, parse_time
from marketguard.store.elasticsearch import ElasticsearchStore
from playbooks.state import GdprClockRecord, PendingAction, StepRecord

__all__ = ["ElasticsearchStepLog", "ElasticsearchActionStore", "ElasticsearchClockStore"]

_ACTION_COLS = tuple(f.name for f in fields(PendingAction))
_ACTION_TIMES = ("requested_at", "decided_at")


def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _key(*parts: object) -> str:
    return json.dumps([str(p) for p in parts])


class ElasticsearchStepLog:
    """:class:`~playbooks.state.StepLog` in ``<prefix>-playbooksteps``."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._rec = EsRecords(store.client, store.names.index("playbooksteps"), "playbook step")

    def steps(self, playbook_id: str, incident_id: str) -> dict[int, StepRecord]:
        """Recorded steps by index."""
        query = {"bool": {"filter": [{"term": {"playbook_id": playbook_id}}, {"term": {"incident_id": incident_id}}]}}
        out = {}
        for s in self._rec.search_all(query, [{"step_index": "asc"}]):
            out[int(s["step_index"])] = StepRecord(
                s["playbook_id"], s["incident_id"], int(s["step_index"]), s["kind"], s["status"], int(s["attempts"]),
                json.loads(s["output"]), s.get("error"), parse_time(s["updated"]))  # type: ignore[arg-type]
        return out

    def record(self, record: StepRecord) -> bool:
        """Insert the outcome unless the step is already recorded."""
        doc = {"playbook_id": record.playbook_id, "incident_id": record.incident_id, "step_index": record.step_index,
               "kind": record.kind, "status": record.status, "attempts": record.attempts,
               "output": json.dumps(record.output, default=str), "error": record.error, "updated": _t(record.updated)}
        return self._rec.create(_key(record.playbook_id, record.incident_id, record.step_index), doc)


def _action_doc(action: PendingAction) -> dict[str, Any]:
    doc = {c: getattr(action, c) for c in _ACTION_COLS}
    return doc | {c: _t(getattr(action, c)) for c in _ACTION_TIMES}


def _action(src: dict[str, Any]) -> PendingAction:
    data = {c: src.get(c) for c in _ACTION_COLS}
    return PendingAction(**(data | {c: parse_time(src.get(c)) for c in _ACTION_TIMES}))


class ElasticsearchActionStore:
    """:class:`~playbooks.state.ActionStore` in ``<prefix>-containment``."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._rec = EsRecords(store.client, store.names.index("containment"), "containment action")

    def add(self, action: PendingAction) -> bool:
        """Insert unless the id exists."""
        return self._rec.create(action.id, _action_doc(action))

    def get(self, action_id: str) -> PendingAction | None:
        """One action."""
        found = self._rec.get(action_id)
        return _action(found[0]) if found else None

    def list(self, status: str | None = None, incident_id: str | None = None) -> list[PendingAction]:
        """Actions newest first."""
        terms = [{"term": {c: v}} for c, v in (("status", status), ("incident_id", incident_id)) if v is not None]
        hits = self._rec.search_all({"bool": {"filter": terms}}, [{"requested_at": "desc"}, {"id": "asc"}])
        return [_action(s) for s in hits]

    def transition(self, action_id: str, expected: str, new: PendingAction) -> bool:
        """Compare-and-set on status: only an action still in ``expected`` is replaced."""
        doc = _action_doc(replace(new, id=action_id))
        _, wrote = self._rec.swap(action_id, lambda cur: doc if cur is not None and cur["status"] == expected else None)
        return wrote


class ElasticsearchClockStore:
    """:class:`~playbooks.state.ClockStore` in ``<prefix>-gdprclocks`` and ``<prefix>-gdprreminders``."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self._clocks = EsRecords(store.client, store.names.index("gdprclocks"), "GDPR clock")
        self._fired = EsRecords(store.client, store.names.index("gdprreminders"), "GDPR reminder")

    def start(self, clock: GdprClockRecord) -> bool:
        """Insert unless the incident has a clock."""
        doc = {"incident_id": clock.incident_id, "aware_at": _t(clock.aware_at), "deadline": _t(clock.deadline),
               "reminder_hours": [float(h) for h in clock.reminder_hours], "ticket_id": clock.ticket_id,
               "notified_at": _t(clock.notified_at), "authority_ref": clock.authority_ref,
               "delay_reasons": clock.delay_reasons}
        return self._clocks.create(clock.incident_id, doc)

    def get(self, incident_id: str) -> GdprClockRecord | None:
        """One clock with its fired reminders."""
        found = self._clocks.get(incident_id)
        return self._clock(found[0]) if found else None

    def open_clocks(self) -> list[GdprClockRecord]:
        """Clocks without a recorded notification, earliest deadline first."""
        query = {"bool": {"must_not": {"exists": {"field": "notified_at"}}}}
        return [self._clock(s) for s in self._clocks.search_all(query, [{"deadline": "asc"}, {"incident_id": "asc"}])]

    def fire(self, incident_id: str, hours: float, at: datetime) -> bool:
        """Mark a reminder raised (once)."""
        doc = {"incident_id": incident_id, "hours": float(hours), "fired_at": _t(at)}
        return self._fired.create(_key(incident_id, float(hours)), doc)

    def update(self, clock: GdprClockRecord) -> None:
        """Store ticket id and notification / delay fields."""
        fresh = {"ticket_id": clock.ticket_id, "notified_at": _t(clock.notified_at),
                 "authority_ref": clock.authority_ref, "delay_reasons": clock.delay_reasons}
        self._clocks.swap(clock.incident_id, lambda cur: None if cur is None else cur | fresh)

    def _clock(self, src: dict[str, Any]) -> GdprClockRecord:
        fired = self._fired.search_all({"term": {"incident_id": src["incident_id"]}}, [{"hours": "asc"}])
        return GdprClockRecord(
            incident_id=src["incident_id"], aware_at=parse_time(src["aware_at"]),  # type: ignore[arg-type]
            deadline=parse_time(src["deadline"]),  # type: ignore[arg-type]
            reminder_hours=tuple(float(h) for h in src.get("reminder_hours") or ()), ticket_id=src.get("ticket_id"),
            notified_at=parse_time(src.get("notified_at")), authority_ref=src.get("authority_ref"),
            delay_reasons=src.get("delay_reasons"), fired=tuple(float(f["hours"]) for f in fired),
        )
