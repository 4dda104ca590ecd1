"""How alerts become incidents, the planner's second half: joining the open incidents an alert
links to, merging several into the oldest, escalating the severity, and the timeline of each."""

from __future__ import annotations

from datetime import datetime

from marketguard.cases import Alert, Incident, TimelineEntry
from marketguard.cases.grouping_rules import (
    Link,
    add_entities,
    escalate,
    links_of,
    spans_near,
    stable_hash,
)
from marketguard.cases.grouping_view import Changes, GroupingPolicy
from marketguard.types import severity_rank

__all__ = ["IncidentPlanning"]


class IncidentPlanning:
    """The incident steps of the planner: attach, open, join, merge, escalate, finish."""

    policy: GroupingPolicy
    now: datetime
    changes: Changes
    incidents: dict[str, Incident]
    by_link: dict[Link, set[str]]
    redirect: dict[str, str]
    members: dict[str, set[str]]

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
                if inc.status == "open" and spans_near(
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
            id="in-" + stable_hash(alert.id), title=alert.rule_title, type=alert.type,
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
        add_entities(inc.entities, entities)
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
