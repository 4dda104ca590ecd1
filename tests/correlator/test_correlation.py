"""Sliding-window correlation: window edges, grouping, aliases, every type, de-duplication, since."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from correlator.correlation import CorrelationHit, evaluate, hits_to_matches, required_lookback
from correlator.rules import CorrelationRule
from marketguard.errors import RuleError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
IP = "source.ip"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(
    rule: str, seconds: float, event_id: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"_rule": rule, "@timestamp": at(seconds), "event.id": event_id, **(fields or {})}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["@timestamp"] = pd.to_datetime(df["@timestamp"], utc=True)
    return df


def corr(
    type_: str = "event_count",
    *,
    rules: tuple[str, ...] = ("a",),
    span: float = 10,
    group_by: tuple[str, ...] = (IP,),
    op: str = "gte",
    count: float | None = 3,
    **extra: Any,
) -> CorrelationRule:
    return CorrelationRule(
        id=f"corr-{type_}",
        title=type_,
        level="high",
        file="test.yml",
        type=type_,
        rules=rules,
        timespan=timedelta(seconds=span),
        group_by=group_by,
        op=op,
        count=count,
        **extra,
    )


def burst(
    times: list[float],
    ip: str = "1.1.1.1",
    rule: str = "a",
    prefix: str = "e",
    fields: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    return [ev(rule, t, f"{prefix}{i}", {IP: ip, **(fields or {})}) for i, t in enumerate(times)]


# --- window edges -------------------------------------------------------------------------------


def test_events_exactly_one_timespan_apart_share_a_window() -> None:
    hits = evaluate(corr(), frame(burst([0, 5, 10])))
    assert [(h.window_start, h.window_end, h.event_ids, h.value) for h in hits] == [
        (at(0), at(10), ("e0", "e1", "e2"), 3.0)
    ]


def test_event_just_outside_the_timespan_is_not_counted() -> None:
    assert evaluate(corr(), frame(burst([0, 5, 10.000001]))) == []


def test_exactly_n_inside_one_outside_counts_only_the_inside() -> None:
    hits = evaluate(corr(count=3), frame(burst([0, 10.5, 12, 20.5])))
    assert [h.event_ids for h in hits] == [("e1", "e2", "e3")]
    assert evaluate(corr(count=4), frame(burst([0, 10.5, 12, 20.5]))) == []


@pytest.mark.parametrize(
    ("op", "count", "expected"),
    [
        ("gt", 3, 0),
        ("gt", 2, 1),
        ("gte", 3, 1),
        ("gte", 4, 0),
        ("eq", 3, 1),
    ],
)
def test_threshold_boundaries(op: str, count: int, expected: int) -> None:
    assert len(evaluate(corr(op=op, count=count), frame(burst([0, 1, 2])))) == expected


def test_out_of_order_input_gives_the_same_hits() -> None:
    rows = burst([0, 1, 1, 2, 30, 31, 31, 32]) + burst([0, 0, 1, 5], ip="2.2.2.2", prefix="x")
    expected = evaluate(corr(), frame(rows))
    assert len(expected) == 3
    rng = np.random.default_rng(7)
    for _ in range(5):
        shuffled = [rows[i] for i in rng.permutation(len(rows))]
        assert evaluate(corr(), frame(shuffled)) == expected


def test_simultaneous_events_are_ordered_by_event_id() -> None:
    hits = evaluate(corr(), frame(burst([3, 3, 3])[::-1]))
    assert hits[0].event_ids == ("e0", "e1", "e2")
    assert hits[0].window_start == hits[0].window_end == at(3)


def test_hits_are_tz_aware_utc_and_sorted_by_end_then_group() -> None:
    rows = burst([0, 1, 2], ip="9.9.9.9") + burst([0, 1, 2], ip="1.1.1.1", prefix="x")
    hits = evaluate(corr(), frame(rows))
    assert [h.group for h in hits] == [((IP, "1.1.1.1"),), ((IP, "9.9.9.9"),)]
    assert all(
        h.window_end.tzinfo is not None and h.window_end.utcoffset() == timedelta(0) for h in hits
    )


# --- grouping -----------------------------------------------------------------------------------


def test_groups_are_counted_separately() -> None:
    rows = burst([0, 1], ip="1.1.1.1") + burst([0.5, 1.5, 2], ip="2.2.2.2", prefix="x")
    hits = evaluate(corr(), frame(rows))
    assert [(h.group, h.event_ids) for h in hits] == [(((IP, "2.2.2.2"),), ("x0", "x1", "x2"))]


def test_several_group_by_fields_combine_with_and() -> None:
    rows = [
        ev("a", t, f"e{t}", {IP: "1.1.1.1", "user.name": u})
        for t, u in [(0, "ann"), (1, "bob"), (2, "ann"), (3, "ann")]
    ]
    hits = evaluate(corr(group_by=(IP, "user.name")), frame(rows))
    assert [h.group for h in hits] == [((IP, "1.1.1.1"), ("user.name", "ann"))]


def test_null_group_values_group_together() -> None:
    rows = burst([0, 1]) + [
        ev("a", 2, "n0", {IP: None}),
        ev("a", 3, "n1", {}),
        ev("a", 4, "n2", {IP: None}),
    ]
    hits = evaluate(corr(), frame(rows))
    assert [(h.group, h.event_ids) for h in hits] == [(((IP, None),), ("n0", "n1", "n2"))]


def test_missing_group_column_is_null_not_a_crash() -> None:
    hits = evaluate(corr(group_by=("user.name",)), frame(burst([0, 1, 2])))
    assert [h.group for h in hits] == [(("user.name", None),)]


def test_group_values_compare_as_text() -> None:
    rows = [
        ev("a", 0, "e0", {"code": 500}),
        ev("a", 1, "e1", {"code": "500"}),
        ev("a", 2, "e2", {"code": 500.0}),
    ]
    hits = evaluate(corr(group_by=("code",)), frame(rows))
    assert [h.group for h in hits] == [(("code", "500"),)]


def test_no_group_by_is_one_global_group() -> None:
    rows = burst([0, 1], ip="1.1.1.1") + burst([2], ip="2.2.2.2", prefix="x")
    assert [h.group for h in evaluate(corr(group_by=()), frame(rows))] == [()]


ALIASES = {
    "internal_ip": {"err": "destination.ip", "conn": "source.ip"},
    "remote_ip": {"err": "source.ip", "conn": "destination.ip"},
}


def _alias_rule() -> CorrelationRule:
    return corr(
        "temporal",
        rules=("err", "conn"),
        group_by=("internal_ip", "remote_ip"),
        count=2,
        aliases=ALIASES,
    )


def test_alias_joins_rules_whose_fields_differ() -> None:
    rows = [
        ev("err", 0, "e1", {"source.ip": "203.0.113.5", "destination.ip": "10.0.0.1"}),
        ev("conn", 4, "c1", {"source.ip": "10.0.0.1", "destination.ip": "203.0.113.5"}),
    ]
    hits = evaluate(_alias_rule(), frame(rows))
    assert [(h.group, h.event_ids, h.value) for h in hits] == [
        ((("internal_ip", "10.0.0.1"), ("remote_ip", "203.0.113.5")), ("e1", "c1"), 2.0)
    ]


def test_frames_concatenated_with_repeated_index_labels_work() -> None:
    err = frame([ev("err", 0, "e1", {"source.ip": "203.0.113.5", "destination.ip": "10.0.0.1"})])
    conn = frame([ev("conn", 4, "c1", {"source.ip": "10.0.0.1", "destination.ip": "203.0.113.5"})])
    assert [h.event_ids for h in evaluate(_alias_rule(), pd.concat([err, conn]))] == [("e1", "c1")]


def test_alias_without_matching_values_does_not_join() -> None:
    rows = [
        ev("err", 0, "e1", {"source.ip": "203.0.113.5", "destination.ip": "10.0.0.1"}),
        ev("conn", 4, "c1", {"source.ip": "203.0.113.5", "destination.ip": "10.0.0.1"}),
    ]
    assert evaluate(_alias_rule(), frame(rows)) == []


# --- every type: positive and negative ----------------------------------------------------------


def test_event_count_counts_an_event_matching_two_rules_once() -> None:
    rule = corr(rules=("a", "b"))
    both = burst([0, 1], rule="a") + burst([0, 1], rule="b")  # same two events, two rules
    assert evaluate(rule, frame(both)) == []
    assert len(evaluate(rule, frame(both + burst([2], rule="b", prefix="x")))) == 1


def test_value_count_counts_distinct_non_null_values() -> None:
    rule = corr("value_count", value_field="url.path")
    paths = ["/a", "/b", "/a", None, "/b"]
    rows = [ev("a", i, f"e{i}", {IP: "1.1.1.1", "url.path": p}) for i, p in enumerate(paths)]
    assert evaluate(rule, frame(rows)) == []
    hits = evaluate(rule, frame(rows + [ev("a", 6, "e6", {IP: "1.1.1.1", "url.path": "/c"})]))
    assert [(h.value, h.event_ids[-1]) for h in hits] == [(3.0, "e6")]


def test_value_count_forgets_values_that_left_the_window() -> None:
    rule = corr("value_count", value_field="url.path")
    rows = [
        ev("a", t, f"e{t}", {IP: "1.1.1.1", "url.path": p})
        for t, p in [(0, "/a"), (8, "/b"), (11, "/c")]
    ]
    assert evaluate(rule, frame(rows)) == []


def test_temporal_needs_every_rule_inside_the_window() -> None:
    rule = corr("temporal", rules=("a", "b", "c"), count=None)
    rows = (
        burst([0], rule="a", prefix="a")
        + burst([3], rule="c", prefix="c")
        + burst([5], rule="b", prefix="b")
    )
    hits = evaluate(rule, frame(rows))
    assert [(h.event_ids, h.value) for h in hits] == [(("a0", "c0", "b0"), 3.0)]
    late = (
        burst([0], rule="a", prefix="a")
        + burst([3], rule="c", prefix="c")
        + burst([10.5], rule="b", prefix="b")
    )
    assert evaluate(rule, frame(late)) == []


def test_temporal_with_count_needs_that_many_distinct_rules() -> None:
    rule = corr("temporal", rules=("a", "b", "c"), count=2)
    assert (
        len(
            evaluate(
                rule, frame(burst([0], rule="a", prefix="a") + burst([1], rule="c", prefix="c"))
            )
        )
        == 1
    )
    assert evaluate(rule, frame(burst([0, 1, 2], rule="a"))) == []


def test_temporal_ordered_requires_the_given_order() -> None:
    rule = corr("temporal_ordered", rules=("fail", "ok"), count=None)
    good = burst([0], rule="fail", prefix="f") + burst([5], rule="ok", prefix="s")
    bad = burst([5], rule="fail", prefix="f") + burst([0], rule="ok", prefix="s")
    assert [(h.event_ids, h.value) for h in evaluate(rule, frame(good))] == [(("f0", "s0"), 2.0)]
    assert evaluate(rule, frame(bad)) == []


def test_temporal_ordered_counts_simultaneous_events_as_ordered() -> None:
    rule = corr("temporal_ordered", rules=("fail", "ok"), count=None)
    rows = burst([5], rule="ok", prefix="s") + burst([5], rule="fail", prefix="f")
    assert [h.event_ids for h in evaluate(rule, frame(rows))] == [("f0", "s0")]


def test_temporal_ordered_finds_the_order_among_noise() -> None:
    rule = corr("temporal_ordered", rules=("a", "b", "c"), count=None, span=20)
    seq = [("b", 0), ("c", 1), ("a", 2), ("c", 3), ("b", 4), ("a", 5), ("c", 6)]
    rows = [ev(r, t, f"{r}{t}", {IP: "1.1.1.1"}) for r, t in seq]
    hits = evaluate(rule, frame(rows))
    assert [(h.window_end, h.value) for h in hits] == [(at(6), 3.0)]
    assert evaluate(rule, frame(rows[:-1])) == []


def test_value_sum_over_numeric_values_only() -> None:
    rule = corr("value_sum", op="gt", count=1000, value_field="http.response.body.bytes")
    sizes = [400, "n/a", None, 500]
    rows = [
        ev("a", i, f"e{i}", {IP: "1.1.1.1", "http.response.body.bytes": s})
        for i, s in enumerate(sizes)
    ]
    assert evaluate(rule, frame(rows)) == []
    more = rows + [ev("a", 5, "e5", {IP: "1.1.1.1", "http.response.body.bytes": "101"})]
    assert [h.value for h in evaluate(rule, frame(more))] == [1001.0]


def test_value_avg() -> None:
    rule = corr("value_avg", op="gt", count=500, value_field="bytes")
    low = [ev("a", i, f"e{i}", {IP: "1.1.1.1", "bytes": b}) for i, b in enumerate([100, 900])]
    high = [ev("a", i, f"e{i}", {IP: "1.1.1.1", "bytes": b}) for i, b in enumerate([100, 1000])]
    assert evaluate(rule, frame(low)) == []
    assert [h.value for h in evaluate(rule, frame(high))] == [550.0]


def test_value_percentile_uses_the_rule_percentile() -> None:
    rule = corr("value_percentile", op="gt", count=900, value_field="ms", percentile=90)
    values = [100] * 8 + [1000, 1000]  # p90 (linear) = 1000; p50 = 100
    rows = [ev("a", i * 0.5, f"e{i}", {IP: "1.1.1.1", "ms": v}) for i, v in enumerate(values)]
    assert [h.value for h in evaluate(rule, frame(rows))] == [1000.0]
    median_rule = corr("value_percentile", op="gt", count=900, value_field="ms", percentile=50)
    assert evaluate(median_rule, frame(rows)) == []


def test_value_median() -> None:
    rule = corr("value_median", op="gte", count=300, value_field="ms")
    rows = [ev("a", i, f"e{i}", {IP: "1.1.1.1", "ms": v}) for i, v in enumerate([100, 1000, 200])]
    assert evaluate(rule, frame(rows[:2])) != []  # median of (100, 1000) = 550
    rule_high = corr("value_median", op="gte", count=600, value_field="ms")
    assert evaluate(rule_high, frame(rows)) == []  # medians: 100, 550, 200


# --- de-duplication and lt ---------------------------------------------------------------------


def test_a_long_burst_gives_one_hit() -> None:
    hits = evaluate(corr(), frame(burst([i * 0.1 for i in range(300)])))  # 30 s non-stop
    assert [(h.event_ids, h.window_end) for h in hits] == [(("e0", "e1", "e2"), at(0.2))]


def test_three_times_n_in_one_timespan_is_one_hit() -> None:
    assert len(evaluate(corr(count=10), frame(burst([i * 0.3 for i in range(30)])))) == 1


def test_the_group_hits_again_after_a_quiet_timespan() -> None:
    rows = burst([0, 1, 2, 3]) + burst([13.5, 14, 15], prefix="x")
    hits = evaluate(corr(), frame(rows))
    assert [h.event_ids for h in hits] == [("e0", "e1", "e2"), ("x0", "x1", "x2")]
    close = burst([0, 1, 2, 3]) + burst([12.5, 13, 14], prefix="x")  # window at 12.5 still holds e3
    assert [h.event_ids for h in evaluate(corr(), frame(close))] == [("e0", "e1", "e2")]


def test_lt_is_judged_on_the_trailing_window_of_each_event() -> None:
    rule = corr(op="lt", count=3)
    hits = evaluate(rule, frame(burst([0, 1, 2, 3, 100])))
    assert [(h.window_end, h.value) for h in hits] == [(at(0), 1.0), (at(100), 1.0)]
    assert evaluate(rule, frame(burst([0, 0, 0]))) == []


# --- since and overlapping re-evaluation -------------------------------------------------------


def _random_rows(seed: int, n: int = 400) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 300, n)).round(1)
    return [
        ev(
            str(rng.choice(["a", "b"])),
            float(t),
            f"e{i:04d}",
            {IP: f"10.0.0.{rng.integers(0, 4)}", "v": int(rng.integers(0, 8))},
        )
        for i, t in enumerate(times)
    ]


@pytest.mark.parametrize(
    "rule",
    [
        corr(count=4),
        corr(op="lt", count=2),
        corr("value_count", value_field="v", count=4),
        corr("temporal_ordered", rules=("a", "b"), count=None, span=3),
        corr("value_avg", value_field="v", op="gt", count=5),
    ],
    ids=lambda r: f"{r.type}-{r.op}",
)
def test_since_on_an_overlapping_range_gives_the_same_hits(rule: CorrelationRule) -> None:
    rows = _random_rows(3)
    full = evaluate(rule, frame(rows))
    assert full, "the fixture must produce hits"
    for since_s in (40.0, 97.3, 150.0, 222.2):
        since = at(since_s)
        start = since - required_lookback(rule)
        part = [r for r in rows if r["@timestamp"] > start]
        assert evaluate(rule, frame(part), since=since) == [h for h in full if h.window_end > since]


# --- reference implementation on random data ---------------------------------------------------


def _oracle_measure(rule: CorrelationRule, window: list[dict[str, Any]]) -> float:
    if rule.type == "event_count":
        return float(len(window))
    if rule.type == "value_count":
        return float(len({str(r["v"]) for r in window if r["v"] is not None}))
    if rule.type == "temporal":
        return float(len({r["_rule"] for r in window}))
    if rule.type == "temporal_ordered":
        done = 0
        for r in sorted(window, key=lambda r: (r["@timestamp"], rule.rules.index(r["_rule"]))):
            done += done < len(rule.rules) and r["_rule"] == rule.rules[done]
        return float(done)
    nums = sorted(float(r["v"]) for r in window)
    if not nums:
        return math.nan
    if rule.type == "value_sum":
        return sum(nums)
    if rule.type == "value_avg":
        return sum(nums) / len(nums)
    pos = (len(nums) - 1) * (rule.percentile or 50) / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return nums[lo] + (nums[hi] - nums[lo]) * (pos - lo)


def _oracle(rule: CorrelationRule, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    span, out = rule.timespan, []
    rows = [r for r in rows if r["_rule"] in rule.rules]
    ops = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}
    for ip in sorted({r[IP] for r in rows}):
        group = [r for r in rows if r[IP] == ip]
        last_ok = None
        for end in sorted({r["@timestamp"] for r in group}):
            window = [r for r in group if end - span <= r["@timestamp"] <= end]
            m = _oracle_measure(rule, window)
            if math.isnan(m) or not ops[rule.op](m, float(rule.count or len(rule.rules))):
                continue
            if last_ok is None or end - last_ok > span:
                out.append((end, ip, len(window), round(m, 9)))
            last_ok = end
    return sorted(out)


@pytest.mark.parametrize(
    "rule",
    [
        corr(count=5),
        corr(op="lte", count=2),
        corr("value_count", value_field="v", count=4),
        corr("value_sum", value_field="v", count=12),
        corr("value_avg", value_field="v", op="lt", count=2),
        corr("value_percentile", value_field="v", percentile=75, count=6),
        corr("value_median", value_field="v", count=5),
        corr("temporal", rules=("a", "b"), count=None, span=2),
        corr("temporal_ordered", rules=("b", "a"), count=None, span=2),
    ],
    ids=lambda r: f"{r.type}-{r.op}",
)
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_a_brute_force_reference(rule: CorrelationRule, seed: int) -> None:
    """Vectorised windows agree with a literal reading of the documented semantics."""
    rows = _random_rows(seed, n=300)
    got = [
        (h.window_end, h.group[0][1], len(h.event_ids), round(h.value, 9))
        for h in evaluate(rule, frame(rows))
    ]
    expected = _oracle(rule, rows)
    assert expected, "the fixture must produce hits"
    assert sorted(got) == expected


# --- robustness, errors, chaining, speed -------------------------------------------------------


def test_empty_or_unusable_input_gives_no_hits() -> None:
    assert evaluate(corr(), pd.DataFrame()) == []
    assert evaluate(corr(), frame(burst([0, 1, 2], rule="other"))) == []
    bad = pd.DataFrame(
        {
            "_rule": ["a"] * 3,
            "@timestamp": ["junk", None, "2024-05-01T12:00:00Z"],
            "event.id": ["x", "y", "z"],
            IP: ["1.1.1.1"] * 3,
        }
    )
    assert evaluate(corr(count=1), bad)[0].event_ids == ("z",)


@pytest.mark.parametrize(
    "rule",
    [
        corr("value_percentile", value_field="v"),  # no percentile
        corr("value_sum"),  # no field
        corr(op="between"),
        corr("sequence"),
    ],
)
def test_a_rule_the_engine_cannot_evaluate_raises_rule_error(rule: CorrelationRule) -> None:
    with pytest.raises(RuleError, match="test.yml"):
        evaluate(rule, frame(burst([0])))


def test_hits_can_feed_a_chained_correlation() -> None:
    inner = corr(count=3)
    hits = evaluate(inner, frame(burst([0, 1, 2])))
    chained = hits_to_matches(inner.id, hits)
    assert list(chained[IP]) == ["1.1.1.1"] and chained["@timestamp"].iloc[0] == at(2)
    assert isinstance(hits[0], CorrelationHit)


def test_a_million_matches_in_a_few_seconds() -> None:
    n = 1_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "_rule": "a",
            "@timestamp": pd.Timestamp(T0)
            + pd.to_timedelta(rng.integers(0, 86_400_000, n), unit="ms"),
            "event.id": np.char.add("e", np.arange(n).astype(str)).astype(object),
            IP: np.char.add("10.0.", rng.integers(0, 20_000, n).astype(str)).astype(object),
            "v": rng.integers(0, 500, n),
        }
    )
    for rule in (corr(count=4, span=300), corr("value_count", value_field="v", count=4, span=300)):
        started = time.perf_counter()
        hits = evaluate(rule, df)
        assert hits and time.perf_counter() - started < 10
