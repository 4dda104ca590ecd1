"""How detections become alerts and alerts become incidents: pure logic, no storage.

Every backend applies these rules through :func:`plan`, giving it a :class:`CaseView` (a few
batch look-ups) and writing back the :class:`Changes` it returns.

* **Dedupe key** (idempotency): ``(rule.id, event.id)`` for single-event detections,
  ``(rule.id, group, window_start)`` for correlations. A detection whose key is recorded
  changes nothing, so re-evaluated windows and replays after a restart never double-count.
* **Group key**: a correlation's group-by values; for a single-event rule the event's
  *primary entity*: ``source.ip``, else the first present field of
  :data:`~marketguard.schema.ENTITY_FIELDS`, else the empty key.
* **Suppression**: a detection of the same rule and group key whose event-time span lies
  within ``suppression_window_s`` of an open alert's ``[first_seen, last_seen]`` increments that
  alert (count, span, event ids, entities) instead of opening another.
* **Entities and links**: an alert's entities are the values of the entity fields of its
  events (correlations: of the group-by fields that are entity fields), at most
  :data:`MAX_ENTITY_VALUES` per field. Every entity *links* incidents except the fields in
  :data:`CONTEXT_FIELDS` (``service.name``: every request of a service carries it), which link
  only when they are part of the alert's group key, i.e. when the rule is about that service.
  An incident shows at most :data:`MAX_ENTITY_VALUES` values per field but keeps every link.
* **Incidents**: an alert joins every open incident that shares a link with it and whose
  ``[first_seen, last_seen]`` lies within ``incident_window_s`` of the alert's span. Several
  such incidents are merged into the oldest (created first); the others become ``merged``
  and point to it; the survivor's timeline says so.
* **Severity**: the highest alert level, raised one step (at most critical) when at least
  ``escalation_rules`` distinct rules are in the incident. Title and type come from the most
  severe alert (the first one at that level).
* **Type**: a ``marketguard.type.<security|fraud|availability|sla>`` tag decides; otherwise
  the words of the tags and title: ``fraud`` → fraud, ``availability``/``slo`` →
  availability, ``sla`` → sla; otherwise security.

Modules: the pure rules (:mod:`~marketguard.cases.grouping_rules`), the policy, view and
changes (:mod:`~marketguard.cases.grouping_view`), suppression
(:mod:`~marketguard.cases.grouping_alerts`) and incidents, merges and escalation
(:mod:`~marketguard.cases.grouping_incidents`); this one plans a batch with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from marketguard.cases import Alert, Incident
from marketguard.cases.grouping_alerts import AlertSuppression
from marketguard.cases.grouping_incidents import IncidentPlanning
from marketguard.cases.grouping_rules import (
    CONTEXT_FIELDS,
    INCIDENT_TYPES,
    MAX_ENTITY_VALUES,
    MAX_EVENT_IDS,
    Group,
    Link,
    dedupe_key,
    entities_of,
    escalate,
    group_json,
    group_key,
    incident_type,
    links_of,
    span,
    utc,
)
from marketguard.cases.grouping_view import CaseView, Changes, GroupingPolicy
from marketguard.detections import Detection

__all__ = [
    "MAX_EVENT_IDS", "MAX_ENTITY_VALUES", "CONTEXT_FIELDS", "INCIDENT_TYPES", "GroupingPolicy",
    "CaseView", "Changes", "plan", "dedupe_key", "group_key", "group_json", "entities_of",
    "links_of", "span", "incident_type", "escalate", "utc", "Group", "Link",
]


def plan(detections: Sequence[Detection], view: CaseView, policy: GroupingPolicy, now: datetime) -> Changes:
    """Decide how ``detections`` change the alerts and incidents ``view`` shows."""
    return _Planner(view, policy, utc(now)).run(detections)


class _Planner(AlertSuppression, IncidentPlanning):
    """One batch of detections planned against one view."""

    def __init__(self, view: CaseView, policy: GroupingPolicy, now: datetime) -> None:
        self.view, self.policy, self.now = view, policy, now
        self.changes = Changes()
        self.by_pair: dict[tuple[str, str], list[Alert]] = {}
        self.incidents: dict[str, Incident] = {}
        self.by_link: dict[Link, set[str]] = {}
        self.redirect: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}  # incident id -> its alert ids, for membership tests

    def run(self, detections: Sequence[Detection]) -> Changes:
        fresh = self._fresh(detections)
        if not fresh:
            return self.changes
        self._load_alerts(fresh)
        touched: dict[str, Alert] = {}
        for key, d in fresh:
            alert = self._suppress_or_open(d)
            self.changes.keys.append((key, alert.id))
            touched[alert.id] = alert
        self._load_incidents(list(touched.values()))
        for alert in sorted(touched.values(), key=lambda a: (a.first_seen, a.id)):
            self._attach(alert)
        self._finish()
        return self.changes

