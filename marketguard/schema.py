"""The event schema: flat ECS field names and their Arrow types.

Every event, whatever its dataset, is one row of this schema; fields a dataset does not use
are null. Storage backends derive their tables and mappings from :data:`EVENT_FIELDS`, so
adding a field here adds it everywhere.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "EVENT_FIELDS",
    "EVENT_SCHEMA",
    "TIMESTAMP_FIELDS",
    "ENTITY_FIELDS",
    "empty_events",
    "DeadLetter",
]

_TS = pa.timestamp("us", tz="UTC")

#: ECS field name -> Arrow type, in storage column order.
EVENT_FIELDS: dict[str, pa.DataType] = {
    "@timestamp": _TS,
    "event.id": pa.string(),
    "event.dataset": pa.string(),
    "event.ingested": _TS,
    "event.original": pa.string(),
    "event.duration": pa.int64(),
    "event.outcome": pa.string(),
    "log.file.path": pa.string(),
    "log.file.line": pa.int64(),
    "source.ip": pa.string(),
    "source.as.number": pa.int64(),
    "client.geo.country_iso_code": pa.string(),
    "user.id": pa.string(),
    "user.name": pa.string(),
    "user_agent.original": pa.string(),
    "http.request.method": pa.string(),
    "http.request.referrer": pa.string(),
    "http.version": pa.string(),
    "http.response.status_code": pa.int32(),
    "http.response.body.bytes": pa.int64(),
    "url.original": pa.string(),
    "url.path": pa.string(),
    "url.query": pa.string(),
    "url.extension": pa.string(),
    "url.domain": pa.string(),
    "url.full": pa.string(),
    "service.name": pa.string(),
    "trace.id": pa.string(),
    "span.id": pa.string(),
    "parent.id": pa.string(),
    "span.name": pa.string(),
    "span.kind": pa.string(),
    "error.type": pa.string(),
    "error.message": pa.string(),
    "monitor.id": pa.string(),
    "monitor.name": pa.string(),
    "monitor.type": pa.string(),
    "monitor.status": pa.string(),
    "observer.name": pa.string(),
    "tls.server.x509.not_after": _TS,
    "ticket.id": pa.string(),
    "ticket.event": pa.string(),
    "ticket.category": pa.string(),
    "ticket.priority": pa.string(),
    "marketplace.seller_id": pa.string(),
    "marketplace.order_id": pa.string(),
    "marketplace.ad.campaign_id": pa.string(),
    "marketplace.payment.card_fingerprint": pa.string(),
    "marketplace.payment.amount": pa.float64(),
    "marketplace.payment.result": pa.string(),
    "labels": pa.string(),  # JSON object of fields outside the schema
}

EVENT_SCHEMA: pa.Schema = pa.schema([pa.field(n, t) for n, t in EVENT_FIELDS.items()])

TIMESTAMP_FIELDS: frozenset[str] = frozenset(
    n for n, t in EVENT_FIELDS.items() if pa.types.is_timestamp(t)
)

#: Fields that name an entity; alerts sharing one of them can belong to one incident.
ENTITY_FIELDS: tuple[str, ...] = (
    "source.ip",
    "user.id",
    "marketplace.seller_id",
    "service.name",
    "trace.id",
)


def empty_events() -> pa.Table:
    """Return an empty table with the event schema."""
    return EVENT_SCHEMA.empty_table()


class DeadLetter:
    """An input item that could not be turned into an event, kept with where and why.

    ``raw`` is already pseudonymised: a dead letter never stores personal data in clear.
    """

    __slots__ = ("source", "line", "reason", "raw")

    def __init__(self, source: str, line: int | None, reason: str, raw: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        self.raw = raw

    def __repr__(self) -> str:
        return f"DeadLetter({self.source!r}, line={self.line}, reason={self.reason!r})"

    def as_dict(self) -> dict[str, object]:
        """Return the dead letter as plain data."""
        return {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}
