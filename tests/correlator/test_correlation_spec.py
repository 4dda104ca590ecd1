"""The examples of the Sigma correlation specification (v2.1), evaluated on hand-built events.

Each YAML below is copied from sigma-correlation-rules-specification.md. Most tests parse it with
pySigma and evaluate it directly (field names as in the spec); the last ones go through
``correlator.rules.load_rules`` to check the loader hands the engine what the spec says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sigma.correlations import SigmaCorrelationRule

from correlator.correlation import evaluate, hits_to_matches
from correlator.rules import CorrelationRule, load_rules
from marketguard.errors import RuleError

T0 = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


def spec_rule(text: str) -> CorrelationRule:
    """A spec example parsed by pySigma; rule references stay as written (names or ids)."""
    parsed = SigmaCorrelationRule.from_yaml(text)
    cond = parsed.condition
    return CorrelationRule(
        id=str(parsed.id or parsed.title),
        title=parsed.title,
        level="high",
        file="spec.yml",
        type=parsed.type.name.lower(),
        rules=tuple(r.reference for r in parsed.rules or []),
        timespan=timedelta(seconds=parsed.timespan.seconds),
        group_by=tuple(parsed.group_by or ()),
        op=cond.op.name.lower(),
        count=cond.count,
        value_field=cond.fieldref,
        percentile=cond.percentile,
        aliases={a.alias: {r.reference: f for r, f in a.mapping.items()} for a in parsed.aliases},
    )


def frame(rows: list[tuple[str, float, dict[str, Any]]]) -> pd.DataFrame:
    """Rows of (rule, seconds after T0, fields); event ids are e0, e1, … in row order."""
    df = pd.DataFrame(
        [
            {"_rule": rule, "@timestamp": T0 + timedelta(seconds=s), "event.id": f"e{i}", **fields}
            for i, (rule, s, fields) in enumerate(rows)
        ]
    )
    df["@timestamp"] = pd.to_datetime(df["@timestamp"], utc=True)
    return df


EVENT_COUNT = """
title: Many failed logins
id: 0e95725d-7320-415d-80f7-004da920fc11
correlation:
    type: event_count
    rules:
        - 5638f7c0-ac70-491d-8465-2a65075e0d86
    group-by:
        - ComputerName
    timespan: 1h
    condition:
        gte: 100
"""
FAILED = "5638f7c0-ac70-491d-8465-2a65075e0d86"


def test_event_count_100_failed_logins_in_an_hour() -> None:
    rule = spec_rule(EVENT_COUNT)
    step = 3599 / 99  # 100 events spanning 59 min 59 s
    rows = [(FAILED, i * step, {"ComputerName": "dc1"}) for i in range(100)]
    rows += [(FAILED, i, {"ComputerName": "dc2"}) for i in range(60)]
    hits = evaluate(rule, frame(rows))
    assert [(h.group, h.value, len(h.event_ids)) for h in hits] == [
        ((("ComputerName", "dc1"),), 100.0, 100)
    ]
    assert evaluate(rule, frame(rows[1:100])) == []
    spread = [(FAILED, i * 3601 / 99, {"ComputerName": "dc1"}) for i in range(100)]
    assert evaluate(rule, frame(spread)) == []


VALUE_COUNT = """
title: Failed login
id: 0e95725d-7320-415d-80f7-004da920fc12
correlation:
    type: value_count
    rules:
        - 5638f7c0-ac70-491d-8465-2a65075e0d86
    group-by:
        - ComputerName
        - WorkstationName
    timespan: 1d
    condition:
        field: User
        gte: 100
"""


def test_value_count_100_distinct_users_per_source_and_destination_in_a_day() -> None:
    rule = spec_rule(VALUE_COUNT)
    host = {"ComputerName": "dc1", "WorkstationName": "ws7"}
    rows = [(FAILED, i * 600, {**host, "User": f"user{i}"}) for i in range(100)]
    hits = evaluate(rule, frame(rows))
    assert [(h.group, h.value) for h in hits] == [
        ((("ComputerName", "dc1"), ("WorkstationName", "ws7")), 100.0)
    ]
    repeated = rows[:99] + [(FAILED, 99 * 600, {**host, "User": "user0"})]
    assert evaluate(rule, frame(repeated)) == []
    split = rows[:99] + [(FAILED, 99 * 600, {**host, "WorkstationName": "ws8", "User": "user99"})]
    assert evaluate(rule, frame(split)) == []


TEMPORAL = """
title: Recon
correlation:
    type: temporal
    rules:
        - recon_cmd_a
        - recon_cmd_b
        - recon_cmd_c
    group-by:
        - ComputerName
        - User
    timespan: 5m
"""


def test_temporal_three_recon_commands_in_any_order_within_5_minutes() -> None:
    rule = spec_rule(TEMPORAL)
    who = {"ComputerName": "pc1", "User": "eve"}
    rows = [("recon_cmd_c", 0, who), ("recon_cmd_a", 100, who), ("recon_cmd_b", 300, who)]
    hits = evaluate(rule, frame(rows))
    assert [(h.event_ids, h.value) for h in hits] == [(("e0", "e1", "e2"), 3.0)]
    late = rows[:2] + [("recon_cmd_b", 301, who)]
    assert evaluate(rule, frame(late)) == []
    other_user = rows[:2] + [("recon_cmd_b", 300, {**who, "User": "bob"})]
    assert evaluate(rule, frame(other_user)) == []


TEMPORAL_ORDERED = """
title: Failed logins then success
correlation:
    type: temporal_ordered
    rules:
        - many_failed_logins
        - successful_login
    group-by:
        - User
    timespan: 1h
"""


def test_temporal_ordered_failed_logins_followed_by_success() -> None:
    rule = spec_rule(TEMPORAL_ORDERED)
    ordered = [
        ("many_failed_logins", 0, {"User": "ann", "ComputerName": "a"}),
        ("successful_login", 1800, {"User": "ann", "ComputerName": "b"}),
    ]
    assert [h.group for h in evaluate(rule, frame(ordered))] == [(("User", "ann"),)]
    reversed_ = [
        ("successful_login", 0, {"User": "ann"}),
        ("many_failed_logins", 1800, {"User": "ann"}),
    ]
    assert evaluate(rule, frame(reversed_)) == []


VALUE_SUM = """
title: Possible Exfiltration to Website
correlation:
    type: value_sum
    rules:
        - website_access
    group-by:
        - SourceIP
        - User
    timespan: 1h
    condition:
        field: bytes_sent
        gt: 1000000
"""


def test_value_sum_exfiltration_over_a_million_bytes_in_an_hour() -> None:
    rule = spec_rule(VALUE_SUM)
    who = {"SourceIP": "10.1.1.1", "User": "mallory"}
    rows = [("website_access", i * 600, {**who, "bytes_sent": 250_000}) for i in range(4)]
    assert evaluate(rule, frame(rows)) == []  # exactly 1,000,000 is not greater
    more = rows + [("website_access", 1900, {**who, "bytes_sent": 1})]
    assert [h.value for h in evaluate(rule, frame(more))] == [1_000_001.0]


VALUE_AVG = """
title: Suspicious average network traffic
correlation:
    type: value_avg
    rules:
        - rule_a_id
    group-by:
        - SourceIP
        - User
    timespan: 24h
    condition:
        field: BytesOut
        gt: 500
"""


def test_value_avg_average_bytes_out_over_500_in_a_day() -> None:
    rule = spec_rule(VALUE_AVG)
    who = {"SourceIP": "10.1.1.1", "User": "mallory"}
    rows = [("rule_a_id", i * 3600, {**who, "BytesOut": b}) for i, b in enumerate([400, 500, 600])]
    assert evaluate(rule, frame(rows)) == []  # averages 400, 450, 500
    assert [
        h.value
        for h in evaluate(rule, frame(rows + [("rule_a_id", 4 * 3600, {**who, "BytesOut": 700})]))
    ] == [550.0]


VALUE_PERCENTILE = """
title: A computer spawned a processes name in the last 24h than 1% of all the processes.
correlation:
    type: value_percentile
    rules:
        - process_creation
    group-by:
        - ComputerName
    timespan: 24h
    condition:
        field: image
        lte: 1
"""


def test_value_percentile_without_percentile_is_a_rule_error() -> None:
    """Like pySigma's backends, the engine needs ``condition.percentile`` (the spec omits it)."""
    with pytest.raises(RuleError, match="percentile"):
        evaluate(spec_rule(VALUE_PERCENTILE), frame([("process_creation", 0, {"image": 1})]))


def test_value_percentile_with_percentile() -> None:
    rule = spec_rule(VALUE_PERCENTILE.replace("lte: 1", "lte: 1\n        percentile: 10"))
    rows = [
        ("process_creation", i, {"ComputerName": "pc1", "image": v})
        for i, v in enumerate([5, 3, 1, 1])
    ]
    hits = evaluate(rule, frame(rows))  # p10 per trailing window: 5, 3.2, 1.4, 1.0
    assert [(h.window_end, h.value) for h in hits] == [(T0 + timedelta(seconds=3), 1.0)]


ALIASES = """
title: internal error then connection back
correlation:
    type: temporal
    rules:
        - internal_error
        - new_network_connection
    group-by:
        - internal_ip
        - remote_ip
    timespan: 10s
    aliases:
        internal_ip:
            internal_error: destination.ip
            new_network_connection: source.ip
        remote_ip:
            internal_error: source.ip
            new_network_connection: destination.ip
"""


def test_aliases_join_a_destination_with_a_later_source() -> None:
    rule = spec_rule(ALIASES)
    rows = [
        ("internal_error", 0, {"source.ip": "198.51.100.9", "destination.ip": "10.0.0.5"}),
        ("new_network_connection", 10, {"source.ip": "10.0.0.5", "destination.ip": "198.51.100.9"}),
        ("new_network_connection", 5, {"source.ip": "10.0.0.6", "destination.ip": "198.51.100.9"}),
    ]
    hits = evaluate(rule, frame(rows))
    assert [(h.group, h.event_ids) for h in hits] == [
        ((("internal_ip", "10.0.0.5"), ("remote_ip", "198.51.100.9")), ("e0", "e1"))
    ]
    assert evaluate(rule, frame([rows[0], rows[2]])) == []


MULTIPLE_FAILED = """
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 10
"""
FOLLOWED_BY_SUCCESS = """
title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - User
    timespan: 10m
level: high
"""


def _chain(
    rows: list[tuple[str, float, dict[str, Any]]],
    inner: CorrelationRule,
    outer: CorrelationRule,
    inner_name: str,
) -> list[Any]:
    events = frame(rows)
    inner_hits = evaluate(inner, events[events["_rule"] == "failed_login"])
    chained = pd.concat(
        [hits_to_matches(inner_name, inner_hits), events[events["_rule"] != "failed_login"]]
    )
    return evaluate(outer, chained)


def test_chained_failed_logins_followed_by_successful_login() -> None:
    inner, outer = spec_rule(MULTIPLE_FAILED), spec_rule(FOLLOWED_BY_SUCCESS)
    fails = [("failed_login", i * 20, {"User": "ann"}) for i in range(10)]
    success = [("successful_login", 250, {"User": "ann"})]
    hits = _chain(fails + success, inner, outer, "multiple_failed_login")
    assert [(h.group, h.window_end) for h in hits] == [
        ((("User", "ann"),), T0 + timedelta(seconds=250))
    ]
    assert _chain(fails[1:] + success, inner, outer, "multiple_failed_login") == []
    early = [("successful_login", 150, {"User": "ann"})]
    assert _chain(fails + early, inner, outer, "multiple_failed_login") == []


# --- through the loader ----------------------------------------------------------------------

BASE_RULES = """
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 529
            - 4625
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
description: Detects a successful login
name: successful_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 528
            - 4624
    condition: selection
"""


def _load(tmp_path: Path, *docs: str) -> dict[str, CorrelationRule]:
    (tmp_path / "mr_spec_example.yml").write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    loaded = load_rules([tmp_path])
    assert loaded.failures == []
    return {c.title: c for c in loaded.correlations}


def test_loader_gives_the_engine_the_spec_chain(tmp_path: Path) -> None:
    rules = _load(tmp_path, FOLLOWED_BY_SUCCESS, MULTIPLE_FAILED, BASE_RULES)
    outer = rules["Correlation - Multiple Failed Logins Followed by Successful Login"]
    inner = rules["Multiple failed logons"]
    assert outer.rules == (
        "a8418a5a-5fc4-46b5-b23b-6c73beb19d41",
        "4d0a2c83-c62c-4ed4-b475-c7e23a9269b8",
    )
    assert (outer.type, outer.group_by, outer.timespan, outer.op, outer.count) == (
        "temporal_ordered",
        ("User",),
        timedelta(minutes=10),
        "gte",
        2,
    )
    assert (inner.rules, inner.op, inner.count) == (
        ("53ba33fd-3a50-4468-a5ef-c583635cfa92",),
        "gte",
        10,
    )


def test_loader_resolves_alias_rule_names_to_ids(tmp_path: Path) -> None:
    bases = BASE_RULES.replace("failed_login", "internal_error").replace(
        "successful_login", "new_network_connection"
    )
    text = ALIASES.replace(
        "title: internal error", "id: 6f1d9a70-3f7e-4b55-9a4e-0e7c9d3c1a11\ntitle: internal error"
    )
    rule = _load(tmp_path, text, bases)["internal error then connection back"]
    assert rule.aliases == {
        "internal_ip": {
            "53ba33fd-3a50-4468-a5ef-c583635cfa92": "destination.ip",
            "4d0a2c83-c62c-4ed4-b475-c7e23a9269b8": "source.ip",
        },
        "remote_ip": {
            "53ba33fd-3a50-4468-a5ef-c583635cfa92": "source.ip",
            "4d0a2c83-c62c-4ed4-b475-c7e23a9269b8": "destination.ip",
        },
    }


def test_loader_keeps_the_percentile(tmp_path: Path) -> None:
    text = VALUE_PERCENTILE.replace("- process_creation", "- failed_login").replace(
        "lte: 1", "lte: 1\n        percentile: 95"
    )
    text = "id: 0d7c3c55-0b47-4d43-9d0b-6a3a55f0c2a1\n" + text.strip()
    rule = _load(tmp_path, text, BASE_RULES)[
        "A computer spawned a processes name in the last 24h than 1% of all the processes."
    ]
    assert (rule.type, rule.percentile, rule.value_field, rule.op, rule.count) == (
        "value_percentile",
        95,
        "image",
        "lte",
        1,
    )
