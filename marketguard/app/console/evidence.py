"""The evidence events of an incident's alerts, read from the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from marketguard.store import MatchWindow, Store

__all__ = ["EVIDENCE_COLUMNS", "evidence_events"]

#: Columns shown for an evidence event (personal data in them is pseudonymised at the collector).
EVIDENCE_COLUMNS = (
    "@timestamp", "event.id", "event.dataset", "source.ip", "user.id", "http.request.method", "url.path",
    "http.response.status_code", "service.name", "marketplace.seller_id", "monitor.name", "error.message",
)


def evidence_events(store: Store, alerts: Iterable[Any], *, per_alert: int = 10) -> list[dict[str, Any]]:
    """Up to ``per_alert`` stored events of each alert (by its ``event_ids``), oldest first.

    Each event dict carries ``alert_id`` and ``rule_title`` besides :data:`EVIDENCE_COLUMNS`.
    """
    found: list[dict[str, Any]] = []
    for alert in alerts:
        wanted = list(alert.event_ids[:per_alert])
        if not wanted:
            continue
        start = min(t for t in (alert.first_seen, alert.window_start) if t is not None)
        end = max(t for t in (alert.last_seen, alert.window_end) if t is not None)
        window = MatchWindow(time_after=start - timedelta(milliseconds=1), time_upto=end)
        ids = pa.array(wanted, pa.string())
        rows: list[dict[str, Any]] = []
        for batch in store.scan(window, list(EVIDENCE_COLUMNS)):
            chosen = batch.filter(pc.fill_null(pc.is_in(batch.column("event.id"), value_set=ids), False))
            rows.extend(chosen.drop_columns(["_seq"]).to_pylist())
            if len(rows) >= len(wanted):
                break
        found.extend(r | {"alert_id": alert.id, "rule_title": alert.rule_title} for r in rows[:per_alert])
    found.sort(key=lambda r: (r["@timestamp"], r["event.id"]))
    return found
