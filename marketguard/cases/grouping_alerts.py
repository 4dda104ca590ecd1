"""Suppression: how fresh detections become alerts, the planner's first half. A detection whose
dedupe key is recorded changes nothing; one near an open alert of its rule and group folds into
it; any other opens an alert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from marketguard.cases import Alert
from marketguard.cases.grouping_rules import (
    MAX_EVENT_IDS,
    add_entities,
    dedupe_key,
    entities_of,
    group_json,
    group_key,
    incident_type,
    span,
    spans_near,
    stable_hash,
    utc,
)
from marketguard.cases.grouping_view import CaseView, Changes, GroupingPolicy
from marketguard.detections import Detection
from marketguard.types import SEVERITY_ORDER, severity_rank

__all__ = ["AlertSuppression"]


class AlertSuppression:
    """The alert steps of the planner: dedupe, suppress into an open alert, or open one."""

    view: CaseView
    policy: GroupingPolicy
    now: datetime
    changes: Changes
    by_pair: dict[tuple[str, str], list[Alert]]

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
            if a.status == "open" and spans_near(start, end, a.first_seen, a.last_seen, self.policy.suppression)
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
            id="al-" + stable_hash(d.rule_id, gjson, dedupe_key(d)), rule_id=d.rule_id,
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
        add_entities(alert.entities, entities_of(d))
        alert.value = d.value if d.value is not None else alert.value
        alert.updated = self.now

