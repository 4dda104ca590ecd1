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
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from marketguard.cases import Alert, Incident, RecordResult, TimelineEntry
from marketguard.config import Settings
from marketguard.detections import Detection
from marketguard.schema import ENTITY_FIELDS
from marketguard.types import SEVERITY_ORDER, severity_rank

__all__ = [
    "MAX_EVENT_IDS", "MAX_ENTITY_VALUES", "CONTEXT_FIELDS", "INCIDENT_TYPES", "GroupingPolicy",
    "CaseView", "Changes", "plan", "dedupe_key", "group_key", "group_json", "entities_of",
    "links_of", "span", "incident_type", "escalate", "utc",
]

MAX_EVENT_IDS = 100
MAX_ENTITY_VALUES = 50
CONTEXT_FIELDS: frozenset[str] = frozenset({"service.name"})
INCIDENT_TYPES = ("security", "fraud", "availability", "sla")
_TYPE_TAG = "marketguard.type."

Group = tuple[tuple[str, str | None], ...]
Link = tuple[str, str]


@dataclass(frozen=True)
class GroupingPolicy:
    """The three knobs of grouping, from the settings."""

    suppression: timedelta
    incident_window: timedelta
    escalation_rules: int

    @classmethod
    def from_settings(cls, settings: Settings) -> GroupingPolicy:
        """Read the suppression and incident windows and the escalation threshold."""
        return cls(
            timedelta(seconds=settings.suppression_window_s),
            timedelta(seconds=settings.incident_window_s),
            settings.escalation_rules,
        )


class CaseView(Protocol):
    """The look-ups :func:`plan` needs from a backend, each one batch query."""

    def seen(self, keys: Sequence[str]) -> set[str]:
        """The dedupe keys among ``keys`` that are already recorded."""
        ...

    def open_alerts(self, pairs: set[tuple[str, str]], start: datetime, end: datetime) -> list[Alert]:
        """Open alerts of these ``(rule_id, group_json)`` pairs whose span meets [start, end]."""
        ...

    def incidents_for(self, links: set[Link], start: datetime, end: datetime, ids: set[str]) -> list[Incident]:
        """Open incidents holding any of ``links`` whose span meets [start, end], plus ``ids``."""
        ...


@dataclass
class Changes:
    """What one :func:`plan` decided; the backend writes it in one transaction."""

    keys: list[tuple[str, str]] = field(default_factory=list)  # (dedupe key, alert id)
    alerts: dict[str, Alert] = field(default_factory=dict)  # final state of new/changed alerts
    new_alerts: list[str] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)  # final state, merged ones too
    new_incidents: list[str] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)  # (absorbed, survivor), in order
    timeline: list[tuple[str, TimelineEntry]] = field(default_factory=list)

    def result(self) -> RecordResult:
        """The ids touched, as the case store reports them."""
        new_inc, new_al = set(self.new_incidents), set(self.new_alerts)
        merged = tuple(i for i, inc in self.incidents.items() if inc.status == "merged")
        return RecordResult(
            new_alerts=tuple(self.new_alerts),
            updated_alerts=tuple(a for a in self.alerts if a not in new_al),
            new_incidents=tuple(self.new_incidents),
            updated_incidents=tuple(
                i for i, inc in self.incidents.items() if i not in new_inc and inc.status != "merged"
            ),
            merged_incidents=merged,
        )


# -- pure helpers -----------------------------------------------------------------------------
def utc(moment: datetime) -> datetime:
    """The same instant in UTC (a naive time is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hash(*parts: str) -> str:
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
        return _hash("event", d.rule_id, event)
    start = utc(d.window_start or d.timestamp).isoformat()
    return _hash("corr", d.rule_id, group_json(group_key(d)), start)


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


def _add_entities(dst: dict[str, list[str]], src: dict[str, list[str]]) -> None:
    for name, values in src.items():
        have = dst.setdefault(name, [])
        for value in values:
            if value not in have and len(have) < MAX_ENTITY_VALUES:
                have.append(value)


def _near(a0: datetime, a1: datetime, b0: datetime, b1: datetime, gap: timedelta) -> bool:
    """True when the spans [a0, a1] and [b0, b1] are at most ``gap`` apart."""
    return a0 <= b1 + gap and a1 >= b0 - gap


# -- the planner ------------------------------------------------------------------------------
def plan(detections: Sequence[Detection], view: CaseView, policy: GroupingPolicy, now: datetime) -> Changes:
    """Decide how ``detections`` change the alerts and incidents ``view`` shows."""
    return _Planner(view, policy, utc(now)).run(detections)


class _Planner:
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

    def _fresh(self, detections: Sequence[Detection]) -> list[tuple[str, Detection]]:
        unique: dict[str, Detection] = {}
        for d in detections:
            unique.setdefault(dedupe_key(d), d)
        known = self.view.seen(list(unique)) if unique else set()
        fresh = [(k, d) for k, d in unique.items() if k not in known]
        return sorted(fresh, key=lambda kd: (span(kd[1])[0], kd[0]))

    def _load_alerts(self, fresh: list[tuple[str, Detection]]) -> None:
        pairs = {(d.rule_id, group_json(group_key(d))) for _, d in fresh}
        start = min(span(d)[0] for _, d in fresh) - self.policy.suppression
        end = max(span(d)[1] for _, d in fresh) + self.policy.suppression
        for alert in self.view.open_alerts(pairs, start, end):
            self.by_pair.setdefault((alert.rule_id, group_json(alert.group)), []).append(alert)

    def _suppress_or_open(self, d: Detection) -> Alert:
        start, end = span(d)
        pair = (d.rule_id, group_json(group_key(d)))
        near = [
            a for a in self.by_pair.get(pair, [])
            if a.status == "open" and _near(start, end, a.first_seen, a.last_seen, self.policy.suppression)
        ]
        if not near:
            alert = self._new_alert(d, pair[1])
            self.by_pair.setdefault(pair, []).append(alert)
            self.changes.new_alerts.append(alert.id)
        else:
            alert = max(near, key=lambda a: (a.last_seen, a.id))
            self._fold(alert, d)
        self.changes.alerts[alert.id] = alert
        return alert

    def _new_alert(self, d: Detection, gjson: str) -> Alert:
        start, end = span(d)
        ids = list(dict.fromkeys(d.event_ids))
        return Alert(
            id="al-" + _hash(d.rule_id, gjson, dedupe_key(d)), rule_id=d.rule_id,
            rule_title=d.rule_title, rule_level=SEVERITY_ORDER[severity_rank(d.rule_level)], rule_author=d.rule_author,
            rule_license=d.rule_license, tags=tuple(d.tags), kind=d.kind,
            type=incident_type(d.tags, d.rule_title), group=group_key(d), first_seen=start,
            last_seen=end, window_start=utc(d.window_start) if d.window_start else None,
            window_end=utc(d.window_end) if d.window_end else None, event_ids=ids[:MAX_EVENT_IDS],
            event_count=len(ids), entities=entities_of(d), count=1, value=d.value, status="open",
            created=self.now, updated=self.now,
        )

    def _fold(self, alert: Alert, d: Detection) -> None:
        """Suppression: the detection increments the alert. ``event_count`` is exact while the
        stored id list is below its cap (correlation hits overlapping beyond it count twice)."""
        start, end = span(d)
        alert.count += 1
        alert.first_seen, alert.last_seen = min(alert.first_seen, start), max(alert.last_seen, end)
        if d.window_start is not None and alert.window_start is not None:
            alert.window_start = min(alert.window_start, utc(d.window_start))
        if d.window_end is not None and alert.window_end is not None:
            alert.window_end = max(alert.window_end, utc(d.window_end))
        known = set(alert.event_ids)
        new_ids = [i for i in dict.fromkeys(d.event_ids) if i not in known]
        alert.event_count += len(new_ids)
        alert.event_ids.extend(new_ids[: max(0, MAX_EVENT_IDS - len(alert.event_ids))])
        _add_entities(alert.entities, entities_of(d))
        alert.value = d.value if d.value is not None else alert.value
        alert.updated = self.now

    # -- incidents ------------------------------------------------------------------------------
    def _load_incidents(self, alerts: list[Alert]) -> None:
        links = set().union(*(links_of(a.group, a.entities) for a in alerts))
        ids = {a.incident_id for a in alerts if a.incident_id}
        start = min(a.first_seen for a in alerts) - self.policy.incident_window
        end = max(a.last_seen for a in alerts) + self.policy.incident_window
        for inc in self.view.incidents_for(links, start, end, ids):
            self._index(inc)

    def _index(self, inc: Incident) -> None:
        self.incidents[inc.id] = inc
        for link in inc.links:
            self.by_link.setdefault(link, set()).add(inc.id)

    def _resolve(self, incident_id: str) -> str:
        while incident_id in self.redirect:
            incident_id = self.redirect[incident_id]
        return incident_id

    def _attach(self, alert: Alert) -> None:
        links = links_of(alert.group, alert.entities)
        targets: dict[str, Incident] = {}
        if alert.incident_id and self._resolve(alert.incident_id) in self.incidents:
            current = self.incidents[self._resolve(alert.incident_id)]
            targets[current.id] = current
        for link in sorted(links):
            for iid in sorted(self.by_link.get(link, ())):
                inc = self.incidents[self._resolve(iid)]
                if inc.status == "open" and _near(
                    alert.first_seen, alert.last_seen, inc.first_seen, inc.last_seen, self.policy.incident_window
                ):
                    targets[inc.id] = inc
        if not targets:
            self._open_incident(alert, links)
            return
        survivor = min(targets.values(), key=lambda i: (i.created, i.first_seen, i.id))
        for other in sorted(targets.values(), key=lambda i: (i.created, i.first_seen, i.id)):
            if other is not survivor:
                self._merge(other, survivor, alert, links)
        self._join(survivor, alert, links)

    def _open_incident(self, alert: Alert, links: set[Link]) -> None:
        inc = Incident(
            id="in-" + _hash(alert.id), title=alert.rule_title, type=alert.type,
            severity=escalate(alert.rule_level, 1, self.policy.escalation_rules),
            level=alert.rule_level, entities={}, links=set(), alert_ids=[], rule_ids=[],
            first_seen=alert.first_seen, last_seen=alert.last_seen, status="open",
            created=self.now, updated=self.now,
        )
        self.changes.new_incidents.append(inc.id)
        self._index(inc)
        self._join(inc, alert, links)

    def _join(self, inc: Incident, alert: Alert, links: set[Link]) -> None:
        before = inc.severity
        if alert.id not in self._members(inc):
            inc.alert_ids.append(alert.id)
            self._members(inc).add(alert.id)
            group = ", ".join(f"{k}={v}" for k, v in alert.group) or "no group"
            self._timeline(inc, alert.first_seen, "alert", alert.id,
                           f"{alert.rule_level} alert {alert.id}: {alert.rule_title} ({group})")
        self._grow(inc, [alert.rule_id], (alert.rule_level, alert.rule_title, alert.type),
                   alert.entities, links, alert.first_seen, alert.last_seen)
        alert.incident_id = inc.id
        self._rescore(inc, before, alert)

    def _merge(self, other: Incident, survivor: Incident, alert: Alert, links: set[Link]) -> None:
        before = survivor.severity
        via = sorted(links & other.links) or sorted(links & survivor.links)
        reason = f" through {via[0][0]}={via[0][1]}" if via else ""
        members = self._members(survivor)
        survivor.alert_ids.extend(a for a in other.alert_ids if a not in members)
        members.update(other.alert_ids)
        self._grow(survivor, other.rule_ids, (other.level, other.title, other.type),
                   other.entities, other.links, other.first_seen, other.last_seen)
        other.status, other.merged_into, other.updated = "merged", survivor.id, self.now
        self.redirect[other.id] = survivor.id
        self.changes.merges.append((other.id, survivor.id))
        self.changes.incidents[other.id] = other
        self._timeline(survivor, alert.last_seen, "merged", alert.id,
                       f"merged incident {other.id} ({len(other.alert_ids)} alerts): alert {alert.id} links them{reason}")
        self._rescore(survivor, before, alert)

    def _members(self, inc: Incident) -> set[str]:
        if inc.id not in self.members:
            self.members[inc.id] = set(inc.alert_ids)
        return self.members[inc.id]

    def _grow(self, inc: Incident, rule_ids: list[str], headline: tuple[str, str, str],
              entities: dict[str, list[str]], links: set[Link], first: datetime, last: datetime) -> None:
        """Add rules, entities, links and a span to an incident; a more severe headline wins."""
        inc.rule_ids.extend(r for r in rule_ids if r not in inc.rule_ids)
        if severity_rank(headline[0]) > severity_rank(inc.level):
            inc.level, inc.title, inc.type = headline
        _add_entities(inc.entities, entities)
        for link in links - inc.links:
            inc.links.add(link)
            self.by_link.setdefault(link, set()).add(inc.id)
        inc.first_seen, inc.last_seen = min(inc.first_seen, first), max(inc.last_seen, last)

    def _rescore(self, inc: Incident, before: str, alert: Alert) -> None:
        inc.severity = escalate(inc.level, len(inc.rule_ids), self.policy.escalation_rules)
        inc.updated = self.now
        self.changes.incidents[inc.id] = inc
        if severity_rank(inc.severity) > severity_rank(before):
            why = []
            if severity_rank(inc.severity) > severity_rank(inc.level):
                why.append(f"{len(inc.rule_ids)} distinct rules agree")
            if severity_rank(inc.level) > severity_rank(before):
                why.append(f"{alert.rule_level} alert {alert.id} joined")
            self._timeline(inc, alert.last_seen, "escalated", alert.id,
                           f"severity {before} -> {inc.severity}: {'; '.join(why)}")

    def _timeline(self, inc: Incident, at: datetime, kind: str, alert_id: str, text: str) -> None:
        self.changes.timeline.append((inc.id, TimelineEntry(at, kind, text, alert_id, self.now)))

    def _finish(self) -> None:
        """Drop incidents opened and absorbed in this batch; point entries at survivors."""
        born_merged = {i for i in self.changes.new_incidents if i in self.redirect}
        self.changes.new_incidents = [i for i in self.changes.new_incidents if i not in born_merged]
        for iid in born_merged:
            self.changes.incidents.pop(iid, None)
        self.changes.timeline = [(self._resolve(i), e) for i, e in self.changes.timeline]
        for alert in self.changes.alerts.values():
            if alert.incident_id:
                alert.incident_id = self._resolve(alert.incident_id)
