"""Sigma to DuckDB SQL: Sigma's matching semantics hold on real rows."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import yaml

from correlator.rules import load_rules
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store import MatchWindow
from marketguard.store.duckdb import DuckDBStore

ROWS = [
    {"event.id": "upper", "url.original": "/SHOP/Search?Q=UNION SELECT", "http.response.status_code": 200,
     "event.original": "GET /SHOP/Search?Q=UNION SELECT", "user_agent.original": "Mozilla"},
    {"event.id": "lower", "url.original": "/shop/search?q=shoes", "http.response.status_code": 404,
     "event.original": "GET /shop/search?q=shoes ${jndi:ldap://x}", "user_agent.original": "sqlmap/1.7"},
    {"event.id": "labels", "url.original": "/x", "http.response.status_code": 500,
     "event.original": "x", "labels": '{"cs-cookie": "session=abc"}'},
]


@pytest.fixture(scope="module")
def store():
    cols = {n: pa.nulls(len(ROWS), t) for n, t in EVENT_FIELDS.items()}
    for name in {k for r in ROWS for k in r}:
        cols[name] = pa.array([r.get(name) for r in ROWS], EVENT_FIELDS[name])
    cols["@timestamp"] = pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * len(ROWS), EVENT_FIELDS["@timestamp"])
    s = DuckDBStore(":memory:")
    s.append_events(pa.table(cols).cast(EVENT_SCHEMA))
    yield s
    s.close()


def matching(store, tmp_path, detection: dict) -> list[str]:
    rule = {
        "title": "t",
        "id": "5f0b0a8e-8c51-4a4b-9d0e-0a7f3e7a1c11",
        "status": "test",
        "logsource": {"category": "webserver"},
        "detection": detection,
        "level": "high",
    }
    (tmp_path / "r.yml").write_text(yaml.safe_dump(rule))
    rs = load_rules([tmp_path / "r.yml"])
    assert not rs.failures, rs.failures
    got = store.match(rs.detections[0].query, MatchWindow(), ["event.id"])
    return sorted(got.column(0).to_pylist())


def test_contains_is_case_insensitive(store, tmp_path):
    assert matching(store, tmp_path, {"sel": {"cs-uri-query|contains": "union select"}, "condition": "sel"}) == ["upper"]


def test_plain_equality_is_case_insensitive(store, tmp_path):
    assert matching(store, tmp_path, {"sel": {"url.original": "/shop/search?q=SHOES"}, "condition": "sel"}) == ["lower"]


def test_numbers_match_numeric_columns_and_strings_match_them_as_text(store, tmp_path):
    assert matching(store, tmp_path, {"sel": {"sc-status": 404}, "condition": "sel"}) == ["lower"]
    assert matching(store, tmp_path, {"sel": {"sc-status|startswith": "5"}, "condition": "sel"}) == ["labels"]


def test_keywords_search_the_original_line(store, tmp_path):
    assert matching(store, tmp_path, {"keywords": ["${jndi:"], "condition": "keywords"}) == ["lower"]


def test_sql_wildcards_in_values_are_literal(store, tmp_path):
    assert matching(store, tmp_path, {"sel": {"url.original|contains": "_"}, "condition": "sel"}) == []


def test_regex_and_not(store, tmp_path):
    detection = {"sel": {"c-useragent|re": r"^sqlmap/\d"}, "flt": {"sc-status": 200}, "condition": "sel and not flt"}
    assert matching(store, tmp_path, detection) == ["lower"]


def test_not_on_an_absent_field_keeps_the_event(store, tmp_path):
    detection = {"sel": {"url.original|contains": "/x"}, "flt": {"c-useragent|contains": "bot"}, "condition": "sel and not flt"}
    assert matching(store, tmp_path, detection) == ["labels"]  # its user agent is null


def test_fields_outside_the_schema_are_read_from_labels(store, tmp_path):
    assert matching(store, tmp_path, {"sel": {"cs-cookie|startswith": "session="}, "condition": "sel"}) == ["labels"]


def test_every_sigmahq_web_rule_compiles_and_runs(store):
    from pathlib import Path

    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "sigmahq"
    rs = load_rules([corpus])
    assert rs.failures == []
    assert len(rs.detections) + len(rs.correlations) == 142
    for rule in rs.detections:
        store.match(rule.query, MatchWindow(), ["event.id"])  # raises on invalid SQL


def test_a_broken_rule_is_reported_and_the_rest_load(tmp_path):
    (tmp_path / "good.yml").write_text(textwrap.dedent("""
        title: good
        id: 0c7d1c7e-7d0a-4c1b-8d1f-3a5a7a0e2b01
        logsource: {category: webserver}
        detection:
            sel: {cs-method: TRACE}
            condition: sel
        level: low
    """))
    (tmp_path / "bad.yml").write_text("title: bad\nid: 1\ndetection: [\n")
    (tmp_path / "z_dup.yml").write_text((tmp_path / "good.yml").read_text().replace("title: good", "title: dup"))
    rs = load_rules([tmp_path])
    assert [d.title for d in rs.detections] == ["good"]
    reasons = {f.file.rsplit("/", 1)[-1]: f.reason for f in rs.failures}
    assert set(reasons) == {"bad.yml", "z_dup.yml"}
    assert "duplicate rule id" in reasons["z_dup.yml"]
