"""Elasticsearch index management: templates, lifecycle policy and the event index or stream.

Everything is derived from :data:`marketguard.schema.EVENT_FIELDS`, so a field added to the
schema is mapped here too. Mappings are explicit and ``dynamic: strict``: a document with an
unknown top-level field is rejected (and dead-lettered by the store), never silently mapped.
Only ``labels.*`` (fields outside the schema, which Sigma rules may still name) is dynamic,
and every leaf there becomes a lower-cased ``keyword``.

Text fields are ``keyword`` with a lowercase normalizer: Sigma matching is case-insensitive,
and the rule backend lower-cases its values (:mod:`correlator.sigma.elasticsearch`). Numeric
fields carry a ``.text`` keyword sub-field so that a Sigma string or wildcard compared with a
number matches its text, as on DuckDB. ``event.id`` (the sort tie-breaker) stays exact.

:func:`setup` is idempotent: it PUTs the same templates and policy again (a no-op in effect)
and creates the event stream or first index only when missing. Servers differ:

* data streams where the server supports them (Elasticsearch), otherwise a write alias over
  ``<prefix>-events-000001`` (OpenSearch, osmem);
* an ILM policy (hot, rollover, delete after the retention) where ILM exists; the same policy
  is kept as JSON in ``deploy/elasticsearch/ilm-policy.json`` for operators.

Beside the events, :data:`RECORD_MAPPINGS` holds the explicit mappings (``dynamic: strict``) of
every plain index the rest of the product keeps on the cluster: alerts, incidents and their
timeline and dedupe keys, tickets, the audit trail, API keys, scheduler leases, playbook state
and fraud baselines. This table is the one source of those mappings (the stores only name the
kind they use); :func:`setup` creates each index that is missing and adds newly mapped fields
to one that exists, so the stores never create one themselves (also kept as ``deploy/elasticsearch/record-indices.json``). Composite values
(comments, details…) are stored JSON text that is neither indexed nor aggregated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from marketguard.errors import StoreError
from marketguard.schema import EVENT_FIELDS

__all__ = [
    "SEQ_FIELD", "LABELS_JSON_FIELD", "EXACT_FIELDS", "Capabilities", "IndexNames",
    "event_mappings", "ilm_policy", "component_templates", "detect", "setup", "RECORD_MAPPINGS"]

#: The ingest sequence number (``_seq`` of the protocol) inside an event document.
SEQ_FIELD = "marketguard.seq"
#: The ``labels`` column as given (JSON text), returned as is by reads.
LABELS_JSON_FIELD = "marketguard.labels"
#: Text fields compared exactly (sort keys, ids), never lower-cased.
EXACT_FIELDS = frozenset({"event.id"})
#: Longest keyword indexed (characters; Lucene's term limit is 32 766 bytes of UTF-8).
IGNORE_ABOVE = 8191
NORMALIZER = "marketguard_lowercase"

_LC = {"type": "keyword", "normalizer": NORMALIZER, "ignore_above": IGNORE_ABOVE}
_NUMERIC_TEXT = {"text": {"type": "keyword", "ignore_above": 256}}


def _field_mapping(name: str, dtype: pa.DataType) -> dict[str, Any]:
    if pa.types.is_timestamp(dtype):
        return {"type": "date_nanos"}
    if pa.types.is_integer(dtype):
        kind = "integer" if dtype == pa.int32() else "long"
        return {"type": kind, "fields": _NUMERIC_TEXT}
    if pa.types.is_floating(dtype):
        return {"type": "double", "fields": _NUMERIC_TEXT}
    if name in EXACT_FIELDS:
        return {"type": "keyword"}
    return dict(_LC)


def _labels_templates() -> list[dict[str, Any]]:
    return [
        {f"labels_{kind}": {"path_match": "labels.*", "match_mapping_type": kind, "mapping": dict(_LC)}}
        for kind in ("string", "long", "double", "boolean")
    ]


def event_mappings() -> dict[str, Any]:
    """The explicit event mapping: flat ECS names as object paths, ``dynamic: strict``."""
    props: dict[str, Any] = {}
    for name, dtype in EVENT_FIELDS.items():
        if name == "labels":
            continue
        _put(props, name, _field_mapping(name, dtype))
    _put(props, SEQ_FIELD, {"type": "long"})
    _put(props, LABELS_JSON_FIELD, {"type": "keyword", "index": False, "doc_values": False})
    props["labels"] = {"type": "object", "dynamic": True}
    return {"dynamic": "strict", "dynamic_templates": _labels_templates(), "properties": props}


def _put(props: dict[str, Any], dotted: str, mapping: dict[str, Any]) -> None:
    head, *rest = dotted.split(".")
    if not rest:
        props[head] = mapping
        return
    node = props.setdefault(head, {"properties": {}})
    _put(node["properties"], ".".join(rest), mapping)


def ilm_policy(retention_days: int = 30, rollover_size: str = "50gb", rollover_age: str = "1d") -> dict[str, Any]:
    """Hot (rollover by size or age) then delete ``retention_days`` after rollover."""
    return {
        "policy": {
            "phases": {
                "hot": {"actions": {"rollover": {"max_primary_shard_size": rollover_size, "max_age": rollover_age}}},
                "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
            },
            "_meta": {"managed_by": "marketguard", "description": "MarketGuard events: hot, then delete"},
        }
    }


@dataclass(frozen=True)
class IndexNames:
    """Every index, alias and template name under one prefix."""

    prefix: str = "marketguard"

    @property
    def events(self) -> str:
        """The name events are written to and read from (data stream or alias)."""
        return f"{self.prefix}-events"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}-deadletters"

    @property
    def state(self) -> str:
        """Checkpoints and the store's sequence counter."""
        return f"{self.prefix}-state"

    def index(self, kind: str) -> str:
        """The index of another kind of document (``alerts``, ``apikeys``…)."""
        return f"{self.prefix}-{kind}"


@dataclass(frozen=True)
class Capabilities:
    """What the server offers beyond the common core."""

    flavor: str  # "elasticsearch" or "opensearch"
    version: str
    data_streams: bool
    ilm: bool


def detect(client: Elasticsearch) -> Capabilities:
    """Ask the server what it is and probe the optional APIs (a 404 on a probe means "exists")."""
    try:
        info = client.info()
    except ApiError as exc:
        raise StoreError(f"Elasticsearch answered {exc.meta.status} to GET /: {exc.message}") from exc
    version = info.get("version", {})
    flavor = "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"
    return Capabilities(
        flavor, str(version.get("number", "?")),
        _probe(lambda: client.indices.get_data_stream(name="marketguard-probe-none")),
        _probe(lambda: client.ilm.get_lifecycle(name="marketguard-probe-none")),
    )


def _probe(call: Any) -> bool:
    try:
        call()
    except NotFoundError as exc:
        return "no handler" not in str(exc.message) and exc.meta.status == 404
    except ApiError:
        return False
    return True


def component_templates(names: IndexNames, shards: int = 1, replicas: int | None = None) -> dict[str, dict[str, Any]]:
    """Component templates: settings (normalizer, shards) and the event mapping."""
    settings: dict[str, Any] = {
        "number_of_shards": shards,
        "analysis": {"normalizer": {NORMALIZER: {"type": "custom", "filter": ["lowercase"]}}},
    }
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    return {
        f"{names.prefix}-settings": {"template": {"settings": settings}},
        f"{names.prefix}-events-mappings": {"template": {"mappings": event_mappings()}},
    }


def setup(
    client: Elasticsearch,
    names: IndexNames,
    caps: Capabilities | None = None,
    *,
    retention_days: int = 30,
    shards: int = 1,
    replicas: int | None = None,
) -> Capabilities:
    """Create or update templates, policy and the event stream/index; safe to run again."""
    caps = caps or detect(client)
    try:
        for name, body in component_templates(names, shards, replicas).items():
            client.cluster.put_component_template(name=name, template=body["template"])
        _put_events_template(client, names, caps, retention_days)
        caps = _create_events(client, names, caps, retention_days)
        _create_plain(client, names.dead_letters, _DEAD_LETTER_MAPPING)
        _create_plain(client, names.state, _STATE_MAPPING)
        for kind, mapping in RECORD_MAPPINGS.items():
            _create_plain(client, names.index(kind), mapping)
    except ApiError as exc:
        raise StoreError(f"Elasticsearch setup failed ({exc.meta.status}): {exc.message}: {exc.body}") from exc
    return caps


def _put_events_template(client: Elasticsearch, names: IndexNames, caps: Capabilities, retention_days: int) -> None:
    settings: dict[str, Any] = {}
    if caps.ilm:
        client.ilm.put_lifecycle(name=names.events, policy=ilm_policy(retention_days)["policy"])
        settings["index.lifecycle.name"] = names.events
        if not caps.data_streams:
            settings["index.lifecycle.rollover_alias"] = names.events
    client.indices.put_index_template(
        name=names.events, index_patterns=[f"{names.events}*"], priority=200,
        composed_of=[f"{names.prefix}-settings", f"{names.prefix}-events-mappings"],
        template={"settings": settings} if settings else None,
        data_stream={} if caps.data_streams else None, meta={"managed_by": "marketguard"},
    )


def _create_events(client: Elasticsearch, names: IndexNames, caps: Capabilities, retention_days: int) -> Capabilities:
    """Create the data stream, or the first index behind a write alias; return what was used."""
    if client.indices.exists_alias(name=names.events):
        return replace(caps, data_streams=False)
    if client.indices.exists(index=names.events):
        return caps
    if caps.data_streams:
        try:
            client.indices.create_data_stream(name=names.events)
            return caps
        except ApiError as exc:
            if exc.meta.status not in (400, 404, 405, 501) or "already_exists" in str(exc.message):
                raise
            caps = replace(caps, data_streams=False)  # announced but refused: fall back
            _put_events_template(client, names, caps, retention_days)
    client.indices.create(index=f"{names.events}-000001", aliases={names.events: {"is_write_index": True}})
    return caps


def _create_plain(client: Elasticsearch, name: str, mappings: dict[str, Any]) -> None:
    """Create the index, or on an existing one add the fields a newer version maps (a field
    mapped differently fails loudly; the same mapping again changes nothing)."""
    if client.indices.exists(index=name):
        client.indices.put_mapping(index=name, dynamic=mappings.get("dynamic"), properties=mappings["properties"])
        return
    try:
        client.indices.create(index=name, mappings=mappings, settings={"number_of_shards": 1})
    except ApiError as exc:
        if "resource_already_exists" not in str(exc.message):
            raise


_DEAD_LETTER_MAPPING = {
    "dynamic": "strict",
    "properties": {
        "received": {"type": "date_nanos"},
        "source": {"type": "keyword"},
        "line": {"type": "long"},
        "reason": {"type": "keyword", "ignore_above": IGNORE_ABOVE},
        "raw": {"type": "keyword", "index": False, "doc_values": False},
    },
}
_STATE_MAPPING = {
    "dynamic": "strict",
    "properties": {
        "value": {"type": "keyword", "index": False, "doc_values": False},
        "seq": {"type": "long"},
        "updated": {"type": "date_nanos"},
    },
}

_K: dict[str, Any] = {"type": "keyword"}
_D: dict[str, Any] = {"type": "date_nanos"}
_L: dict[str, Any] = {"type": "long"}
_I: dict[str, Any] = {"type": "integer"}
_F: dict[str, Any] = {"type": "double"}
_STORED: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}


def _strict(**props: dict[str, Any]) -> dict[str, Any]:
    return {"dynamic": "strict", "properties": props}


_ENTITY: dict[str, Any] = {"entity_values": _K, "entity_pairs": _K, "severity_rank": _I}

#: Index kind (``<prefix>-<kind>``) -> explicit mapping of the record indices beside the events.
RECORD_MAPPINGS: dict[str, dict[str, Any]] = {
    "alerts": _strict(
        id=_K, rule_id=_K, rule_title=_STORED, rule_level=_K, rule_author=_STORED, rule_license=_STORED, tags=_K,
        kind=_K, type=_K, group_key=_K, first_seen=_D, last_seen=_D, window_start=_D, window_end=_D,
        event_ids=_STORED, event_count=_L, entities=_STORED, count=_L, value=_F, status=_K, created=_D, updated=_D,
        incident_id=_K, **_ENTITY,
    ),
    "incidents": _strict(
        id=_K, title=_STORED, type=_K, severity=_K, level=_K, entities=_STORED, links=_STORED, link_keys=_K,
        alert_ids=_STORED, rule_ids=_STORED, first_seen=_D, last_seen=_D, status=_K, created=_D, updated=_D,
        merged_into=_K, **_ENTITY,
    ),
    "timeline": _strict(incident_id=_K, seq=_L, time=_D, kind=_K, text=_STORED, alert_id=_K, recorded=_D),
    "alertkeys": _strict(key=_K, alert_id=_K, recorded=_D),
    "apikeys": _strict(name=_K, role=_K, hash=_K, created=_D, revoked=_D),
    "leases": _strict(name=_K, holder=_K, term=_L, expires_at=_D),
    "consolesessions": _strict(hash=_K, key_name=_K, key_role=_K, csrf=_STORED, created=_D, expires=_D),
    "tickets": _strict(
        id=_K, open_key=_K, incident_id=_K, queue=_K, kind=_K, title=_STORED, priority=_K, severity=_K,
        impact=_K, status=_K, assignee=_K, created=_D, updated=_D, ack_due=_D, resolve_due=_D,
        acknowledged_at=_D, resolved_at=_D, closed_at=_D, reopened=_I, entities=_STORED, links=_STORED,
        comments=_STORED, failed_steps=_STORED, details=_STORED, pending_audit=_STORED,
    ),
    "audit": _strict(
        seq=_L, time=_D, actor=_K, action=_K, object=_K, details=_STORED, prev_hash=_K, hash=_K, key=_K,
    ),
    "playbooksteps": _strict(
        playbook_id=_K, incident_id=_K, step_index=_I, kind=_K, status=_K, attempts=_I, output=_STORED,
        error=_STORED, updated=_D,
    ),
    "containment": _strict(
        id=_K, incident_id=_K, action=_K, target=_K, requested_by=_K, requested_at=_D, status=_K,
        playbook_id=_K, decided_by=_K, decided_at=_D, reason=_STORED, result=_STORED,
    ),
    "gdprclocks": _strict(
        incident_id=_K, aware_at=_D, deadline=_D, reminder_hours=_F, ticket_id=_K, notified_at=_D,
        authority_ref=_K, delay_reasons=_STORED,
    ),
    "gdprreminders": _strict(incident_id=_K, hours=_F, fired_at=_D),
    "baselinecounts": _strict(signal=_K, entity=_K, bucket=_L, count=_L),
    "baselineknown": _strict(signal=_K, entity=_K, attribute=_K, value=_K, first_seen=_L),
    "baselinealerts": _strict(signal=_K, entity=_K, bucket=_L, run=_L),
}
