"""What only the Elasticsearch store has: setup, bulk outcomes, start-up errors, rule translation."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import yaml

from correlator.rules import load_rules
from correlator.sigma._lucene_regex import RegexNotSupported, to_lucene
from marketguard.auth.elasticsearch import ElasticsearchKeyStore
from marketguard.cases.elasticsearch import ElasticsearchCaseStore
from marketguard.config import Settings
from marketguard.errors import StoreError
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store import MatchWindow
from marketguard.store._es_bulk import bulk_create
from marketguard.store._es_client import check_access, connect
from marketguard.store.es_setup import (
    RECORD_MAPPINGS,
    IndexNames,
    component_templates,
    ilm_policy,
    setup,
)
from marketguard.store.lease_elasticsearch import ElasticsearchLeaseStore

REAL_CLUSTER = bool(os.environ.get("MARKETGUARD_ES_URL"))


def _table(rows: list[dict]) -> pa.Table:
    full = [{n: None for n in EVENT_FIELDS} | {"@timestamp": datetime(2026, 1, 1, tzinfo=UTC)} | r for r in rows]
    return pa.Table.from_pylist(full, schema=EVENT_SCHEMA)


def test_setup_is_idempotent_and_falls_back_without_data_streams(es_client, open_store):
    store = open_store("elasticsearch")
    before = es_client.indices.get_mapping(index=store.names.events).body
    caps = setup(es_client, store.names)
    assert es_client.indices.get_mapping(index=store.names.events).body == before
    mapping = next(iter(before.values()))["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["url"]["properties"]["original"]["normalizer"] == "marketguard_lowercase"
    if not REAL_CLUSTER:  # osmem: no data streams, no ILM -> write alias over a numbered index
        assert (caps.data_streams, caps.ilm) == (False, False)
        assert es_client.indices.exists_alias(name=store.names.events)


def test_a_rejected_document_is_dead_lettered_with_the_reason(open_store):
    store = open_store("elasticsearch")
    rows = [{"event.id": "a", "labels": json.dumps({"shop": "x"})},
            {"event.id": "b", "labels": json.dumps({"shop": {"nested": "y"}}), "log.file.path": "in.log", "log.file.line": 7}]
    assert store.append_events(_table(rows)) == 1
    assert store.count_events() == 1
    (dead,) = store.dead_letters()
    assert (dead["source"], dead["line"]) == ("in.log", 7)
    assert "rejected by Elasticsearch" in dead["reason"] and "shop" in dead["reason"]


class _FakeBulkClient:
    """Answers ``bulk`` with scripted per-item statuses (tests our retry logic, not a cluster)."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script, self.calls = script, []

    def bulk(self, operations: bytes, refresh: bool) -> dict:
        lines = operations.decode().splitlines()[::2]
        ids = [json.loads(line)["create"]["_id"] for line in lines]
        self.calls.append(ids)
        statuses = self.script.pop(0)
        return {"items": [{"create": {"_id": i, "status": s, **({"error": {"type": "x", "reason": "bad"}} if s == 400 else {})}}
                          for i, s in zip(ids, statuses, strict=True)]}


def test_bulk_retries_throttled_items_counts_duplicates_and_reports_rejections():
    fake = _FakeBulkClient([[201, 409, 429, 400, 503], [429, 201], [201]])
    sleeps: list[float] = []
    docs = [(f"d{i}", {"n": i}) for i in range(5)]
    out = bulk_create(fake, "idx", docs, sleep=sleeps.append, initial_backoff=0.1)  # type: ignore[arg-type]
    assert out.created == ["d0", "d4", "d2"] and out.duplicates == ["d1"]
    assert out.rejected == [("d3", "x: bad")]
    assert fake.calls == [["d0", "d1", "d2", "d3", "d4"], ["d2", "d4"], ["d2"]]
    assert sleeps == [0.1, 0.2]


def test_bulk_batches_are_bounded_by_count_and_bytes():
    fake = _FakeBulkClient([[201] * 3, [201] * 3, [201]])
    docs = [(f"d{i}", {"pad": "x" * 100}) for i in range(7)]
    bulk_create(fake, "idx", docs, max_docs=3, max_bytes=10_000)  # type: ignore[arg-type]
    assert [len(c) for c in fake.calls] == [3, 3, 1]
    fake = _FakeBulkClient([[201] * 2] * 4)
    bulk_create(fake, "idx", [(f"d{i}", {"pad": "x" * 100}) for i in range(8)], max_bytes=400)  # type: ignore[arg-type]
    assert [len(c) for c in fake.calls] == [2, 2, 2, 2]


def test_an_unreachable_cluster_is_a_clear_start_up_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = connect(f"http://127.0.0.1:{port}", max_retries=0, request_timeout=2)
    with pytest.raises(StoreError, match="cannot reach Elasticsearch"):
        check_access(client, "marketguard")


def test_deployed_files_are_what_setup_installs(repo):
    folder = repo / "deploy" / "elasticsearch"
    deployed = json.loads((folder / "ilm-policy.json").read_text())
    assert deployed == ilm_policy()
    assert deployed["policy"]["phases"]["delete"]["actions"] == {"delete": {}}
    for name, body in component_templates(IndexNames()).items():
        assert json.loads((folder / f"component-template-{name}.json").read_text()) == body, name
    records = json.loads((folder / "record-indices.json").read_text())
    assert records == {IndexNames().index(kind): {"mappings": m} for kind, m in RECORD_MAPPINGS.items()}


def test_setup_creates_every_record_index_strict_and_again_changes_nothing(es_client, open_store):
    store = open_store("elasticsearch")
    assert {"alerts", "incidents", "timeline", "alertkeys", "apikeys", "leases", "tickets", "audit"} <= set(RECORD_MAPPINGS)
    names = [store.names.index(kind) for kind in RECORD_MAPPINGS]
    before = {n: es_client.indices.get_mapping(index=n).body for n in names}
    setup(es_client, store.names)
    # the stores open on the set-up cluster without creating or changing any index
    ElasticsearchCaseStore(store, Settings())
    ElasticsearchKeyStore(store).create("k", "analyst")
    ElasticsearchLeaseStore(store).acquire("scheduler", "me", 5.0)
    assert {n: es_client.indices.get_mapping(index=n).body for n in names} == before
    for kind, mapping in RECORD_MAPPINGS.items():
        stored = next(iter(before[store.names.index(kind)].values()))["mappings"]
        assert stored["dynamic"] == "strict" and set(stored["properties"]) == set(mapping["properties"]), kind
    with pytest.raises(Exception, match="strict|dynamic|not allowed"):
        es_client.index(index=store.names.index("tickets"), id="x", document={"surprise": 1})


def test_setup_adds_newly_mapped_fields_to_a_record_index_of_an_older_version(es_client, open_store):
    prefix = f"mgtest-{uuid.uuid4().hex[:10]}"
    current = RECORD_MAPPINGS["tickets"]["properties"]
    older = {"dynamic": "strict", "properties": {k: v for k, v in current.items() if k != "pending_audit"}}
    es_client.indices.create(index=f"{prefix}-tickets", mappings=older)
    store = open_store("elasticsearch", prefix=prefix)
    stored = next(iter(es_client.indices.get_mapping(index=store.names.index("tickets")).body.values()))["mappings"]
    assert set(stored["properties"]) == set(current) and stored["dynamic"] == "strict"


# -- Sigma semantics, side by side ------------------------------------------------------------
ROWS = [
    {"event.id": "upper", "url.original": "/SHOP/Search?Q=UNION SELECT", "http.response.status_code": 200,
     "event.original": "GET /SHOP/Search?Q=UNION SELECT", "user_agent.original": "Mozilla", "url.path": "/Login"},
    {"event.id": "lower", "url.original": "/shop/search?q=shoes;id", "http.response.status_code": 404,
     "event.original": "GET /shop/search?q=shoes ${jndi:ldap://x}", "user_agent.original": "sqlmap/1.7", "url.path": "/logins"},
    {"event.id": "labels", "url.original": "/x", "http.response.status_code": 503,
     "event.original": "x", "labels": '{"cs-cookie": "Session=ABC"}', "source.ip": "10.1.2.3"},
]

DETECTIONS = {
    "contains": {"sel": {"cs-uri-query|contains": "union select"}, "condition": "sel"},
    "equals": {"sel": {"url.original": "/shop/search?q=SHOES;ID"}, "condition": "sel"},
    "wildcards": {"sel": {"c-useragent": ["SQLMAP*", "*zill?"]}, "condition": "sel"},
    "number": {"sel": {"sc-status": 404}, "condition": "sel"},
    "number_as_text": {"sel": {"sc-status": "5*"}, "condition": "sel"},
    "keyword": {"keywords": ["${JNDI:"], "condition": "keywords"},
    "label": {"sel": {"cs-cookie|contains": "session=abc"}, "condition": "sel"},
    "not_absent": {"sel": {"url.original|contains": "/"}, "f": {"cs-cookie|contains": "x"}, "condition": "sel and not f"},
    "regex_anchor": {"sel": {"url.path|re|i": "^/log-?in$"}, "condition": "sel"},
    "regex_tail": {"sel": {"url.original|re|i": "(?:;|%3b)(?:id|ls)(?:\\s|$)"}, "condition": "sel"},
    "null": {"sel": {"source.ip": None}, "condition": "sel"},
    "cidr": {"sel": {"c-ip|cidr": "10.1.0.0/16"}, "condition": "sel"},
}


@pytest.mark.parametrize("name", sorted(DETECTIONS))
def test_sigma_semantics_agree(name, open_store, tmp_path):
    rule = {"title": name, "id": "5f0b0a8e-8c51-4a4b-9d0e-0a7f3e7a1c11", "status": "test",
            "logsource": {"category": "webserver"}, "detection": DETECTIONS[name], "level": "high"}
    (tmp_path / "r.yml").write_text(yaml.safe_dump(rule))
    got = {}
    for backend in ("duckdb", "elasticsearch"):
        store = open_store(backend)
        store.append_events(_table(ROWS))
        rules = load_rules([tmp_path / "r.yml"], backend)
        assert not rules.failures, rules.failures
        got[backend] = sorted(store.match(rules.detections[0].query, MatchWindow(), ["event.id"]).column(0).to_pylist())
    assert got["duckdb"] == got["elasticsearch"]
    assert got["duckdb"], "every case should match something"


# -- the regex translation ------------------------------------------------------------------
def _our_regexes(repo) -> list[str]:
    out = []
    for path in sorted((repo / "rules").rglob("*.yml")):
        for m in re.finditer(r"\|re(?:\|i)?: '(.*)'$", path.read_text(), re.M):
            out.append(m.group(1).replace("''", "'"))
    return out


def test_translated_regexes_search_like_re2(repo):
    """Python's re.search stands in for RE2 and re.fullmatch for Lucene's whole-term match."""
    patterns = _our_regexes(repo)
    assert len(patterns) > 20
    rng = random.Random(6)
    alphabet = "abcxyz019 ;|&'\"=?/%()$`<>-_.*+#@\n"
    probes = ["/index.php?id=1;ls -la", "/a?x=1' or 1=1--", "/?q=${jndi:ldap://x}", "/login/", "/x?cmd=|whoami",
              "/x?a=%0d%0aset-cookie: x", "/?id=1 and 2>1", "/?a=;sleep 5;", "/?password=abc", "/?x=' or 'a' like 'a"]
    probes += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    for pattern in patterns:
        lucene = to_lucene(pattern, ignore_case=True)
        for text in probes:
            want = bool(re.search(pattern, text, re.I))
            assert bool(re.fullmatch(lucene, text.lower(), re.S)) == want, (pattern, text)


@pytest.mark.parametrize("pattern", ["a(?=b)", "(a)\\1", "a^b", "x$y", "Abc"])
def test_untranslatable_regexes_are_refused(pattern):
    with pytest.raises(RegexNotSupported):
        to_lucene(pattern)


@pytest.mark.skipif(REAL_CLUSTER, reason="needs the osmem node class")
def test_open_elasticsearch_checks_access_and_sets_up(es_client):
    from _osmem import PlainJsonNode

    from marketguard.store.elasticsearch import open_elasticsearch

    url = es_client.transport.node_pool.get().base_url
    store = open_elasticsearch(url, prefix="mgtest-open", node_class=PlainJsonNode)
    try:
        assert store.append_events(_table([{"event.id": "one"}])) == 1
        assert store.max_seq() == 1
    finally:
        store.close()
        from _stores import drop_prefix
        drop_prefix(es_client, "mgtest-open")


def test_a_stale_case_write_is_refused(open_store, tmp_path):
    """Optimistic concurrency: writing an incident read before another instance changed it fails."""
    from prometheus_client import CollectorRegistry

    from marketguard.cases.elasticsearch import ElasticsearchCaseStore
    from marketguard.config import Settings
    from marketguard.detections import Detection
    from marketguard.metrics import make_metrics

    store = open_store("elasticsearch")
    settings = Settings(data_dir=tmp_path)
    one, two = (ElasticsearchCaseStore(store, settings, metrics=make_metrics(CollectorRegistry())) for _ in range(2))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def det(rule: str, event: str) -> Detection:
        return Detection(rule, rule, "high", None, None, "event", t0, (event,), {"source.ip": "1.1.1.1", "event.id": event})

    (iid,) = one.record([det("r1", "e1")]).new_incidents
    hit = store.client.search(index=store.names.index("incidents"), seq_no_primary_term=True)["hits"]["hits"][0]
    stale = (hit["_seq_no"], hit["_primary_term"])
    assert two.record([det("r2", "e2")]).updated_incidents == (iid,)
    with pytest.raises(StoreError, match="changed concurrently"):
        one._put("incidents", iid, hit["_source"], stale)
