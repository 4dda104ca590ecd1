"""Burn-rate maths of the SLO engine on synthetic per-minute series with hand-computed answers.

Unless a test says otherwise: 99.9 % over 30 days (error budget 0.001), the workbook's default
policies, ``now`` on a minute boundary, and traffic on every minute of the 30 days before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from correlator.slo import (
    SloSpec,
    burn_rate_series,
    evaluate_slo,
    evaluate_slos,
    load_slos,
    slo_detections,
    slo_series,
)
from marketguard.errors import RuleError
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.duckdb import DuckDBStore

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS30 = 30 * 24 * 60


def spec(**over: object) -> SloSpec:
    base: dict[str, object] = {
        "kind": "slo", "id": "checkout-availability", "title": "Checkout availability",
        "service": "checkout", "sli": {"type": "availability"}, "objective": 99.9, "period": "30d",
    }
    base.update(over)
    return SloSpec.model_validate(base)


def series(total: int, bad: int = 0, minutes: int = DAYS30, end: datetime = NOW) -> pd.DataFrame:
    """``minutes`` buckets ending at ``end`` (exclusive), ``total`` requests and ``bad`` errors each."""
    index = pd.date_range(end - timedelta(minutes=minutes), periods=minutes, freq="min", tz=UTC)
    return pd.DataFrame({"good": total - bad, "total": total}, index=index)


def outage(frame: pd.DataFrame, start: datetime, minutes: int) -> pd.DataFrame:
    """Every request fails during ``minutes`` from ``start``."""
    out = frame.copy()
    hit = (out.index >= start) & (out.index < start + timedelta(minutes=minutes))
    out.loc[hit, "good"] = 0
    return out


def test_steady_budget_rate_burns_exactly_one() -> None:
    """1 error in 1000 requests on a 99.9 % SLO burns at 1.0 in every window: the budget lasts
    exactly the period, nothing fires (the policy needs strictly more), nothing remains."""
    status = evaluate_slo(spec(), series(1000, 1), NOW)
    assert {k: w.burn_rate for k, w in status.windows.items()} == pytest.approx(
        {"5m": 1.0, "30m": 1.0, "1h": 1.0, "2h": 1.0, "6h": 1.0, "1d": 1.0, "3d": 1.0}
    )
    assert status.alerts == ()
    assert status.attainment == pytest.approx(0.999)
    assert status.budget_remaining == pytest.approx(0.0, abs=1e-9)
    assert status.total == 1000 * DAYS30


def test_no_errors_keeps_the_whole_budget() -> None:
    status = evaluate_slo(spec(), series(100), NOW)
    assert status.budget_remaining == 1.0 and status.attainment == 1.0
    assert all(w.burn_rate == 0.0 for w in status.windows.values())
    assert slo_detections(spec(), status) == []


def test_five_minute_outage_pages_on_both_policies() -> None:
    """100 req/min, the last 5 minutes all fail (500 bad requests).

    5m: 500/500 → 1000×; 1h: 500/6000 → 83.3×; 30m: 500/3000 → 166.7×; 6h: 500/36000 → 13.9×;
    2h: 500/12000 → 41.7×; 1d: 500/144000 → 3.47×; 3d: 500/432000 → 1.157×.
    Page (1h&5m > 14.4, 6h&30m > 6) and ticket (1d&2h > 3, 3d&6h > 1) all fire.
    Budget: 4,320,000 requests × 0.001 = 4320 allowed; 1 − 500/4320 = 0.88426.
    """
    status = evaluate_slo(spec(), outage(series(100), NOW - timedelta(minutes=5), 5), NOW)
    burns = {k: w.burn_rate for k, w in status.windows.items()}
    assert burns == pytest.approx({"5m": 1000.0, "30m": 500 / 3000 / 0.001, "1h": 500 / 6000 / 0.001,
                                   "2h": 500 / 12000 / 0.001, "6h": 500 / 36000 / 0.001,
                                   "1d": 500 / 144000 / 0.001, "3d": 500 / 432000 / 0.001})
    fired = {(a.severity, a.long_window, a.short_window) for a in status.alerts}
    assert fired == {
        ("page", timedelta(hours=1), timedelta(minutes=5)),
        ("page", timedelta(hours=6), timedelta(minutes=30)),
        ("ticket", timedelta(days=1), timedelta(hours=2)),
        ("ticket", timedelta(days=3), timedelta(hours=6)),
    }
    assert status.severity == "page"
    assert status.budget_remaining == pytest.approx(1 - 500 / 4320)


def test_short_windows_reset_the_alerts_after_recovery() -> None:
    """The same outage seen 10 and 40 minutes after it ended.

    +10m: 5m window clean → the 1h/5m page stops; 30m still 166.7× and 6h 13.9× → 6h/30m pages.
    +40m: 30m window clean → no page; 2h 41.7× and 1d 3.47× → ticket only.
    """
    frame = outage(series(100, end=NOW + timedelta(hours=1)), NOW - timedelta(minutes=5), 5)
    later = evaluate_slo(spec(), frame, NOW + timedelta(minutes=10))
    assert {(a.severity, a.short_window) for a in later.alerts} >= {("page", timedelta(minutes=30))}
    assert ("page", timedelta(minutes=5)) not in {(a.severity, a.short_window) for a in later.alerts}
    assert later.windows["5m"].burn_rate == 0.0
    much_later = evaluate_slo(spec(), frame, NOW + timedelta(minutes=40))
    assert much_later.severity == "ticket"
    assert much_later.windows["2h"].burn_rate == pytest.approx(500 / 12000 / 0.001)


def test_brief_spike_pages_only_when_the_long_window_agrees() -> None:
    """One failing minute out of 100 req/min: 5m burns 200× but 1h only 16.7×: pages (> 14.4).
    The same minute on 200 req/min traffic with 100 errors: 1h = 100/12000 → 8.3×: no page."""
    one = outage(series(100), NOW - timedelta(minutes=1), 1)
    assert evaluate_slo(spec(), one, NOW).windows["1h"].burn_rate == pytest.approx(100 / 6000 / 0.001)
    assert any(a.short_window == timedelta(minutes=5) for a in evaluate_slo(spec(), one, NOW).alerts)
    half = series(200)
    half.loc[half.index[-1], "good"] = 100
    status = evaluate_slo(spec(), half, NOW)
    assert status.windows["5m"].burn_rate == pytest.approx(100 / 1000 / 0.001)
    assert status.windows["1h"].burn_rate == pytest.approx(100 / 12000 / 0.001)
    assert not any(a.long_window == timedelta(hours=1) for a in status.alerts)


def test_low_traffic_guard() -> None:
    """Two requests in the last 5 minutes, both failing: burn 1000× but under min_events (10)."""
    index = pd.DatetimeIndex([NOW - timedelta(minutes=3), NOW - timedelta(minutes=2)], tz=UTC)
    frame = pd.DataFrame({"good": [0, 0], "total": [1, 1]}, index=index)
    status = evaluate_slo(spec(), frame, NOW)
    assert status.windows["5m"].burn_rate == pytest.approx(1000.0)
    assert not status.windows["5m"].enough and status.alerts == ()
    assert evaluate_slo(spec(min_events=2), frame, NOW).severity == "page"


def test_budget_overspent_is_negative() -> None:
    """2 errors per 1000 over the whole period: budget remaining 1 − 2 = −1, attainment 99.8 %."""
    status = evaluate_slo(spec(), series(1000, 2), NOW)
    assert status.budget_remaining == pytest.approx(-1.0)
    assert status.attainment == pytest.approx(0.998)
    assert status.severity == "ticket"  # 2× everywhere: only the 3d/6h ticket (1×) fires


def test_partial_minute_and_old_data_are_ignored() -> None:
    """Buckets at or after floor(now) and before now − period do not count; no traffic → None."""
    index = pd.DatetimeIndex([NOW, NOW - timedelta(days=31)], tz=UTC)
    frame = pd.DataFrame({"good": [0, 0], "total": [50, 50]}, index=index)
    status = evaluate_slo(spec(), frame, NOW + timedelta(seconds=30))
    assert status.total == 0 and status.attainment is None and status.budget_remaining == 1.0


def test_custom_policy_and_levels() -> None:
    custom = spec(alerts=[{"severity": "page", "long_window": "10m", "short_window": "2m", "burn_rate": 2}],
                  period="1d", levels={"page": "critical"})
    status = evaluate_slo(custom, outage(series(100, minutes=1440), NOW - timedelta(minutes=2), 2), NOW)
    assert set(status.windows) == {"2m", "10m"} and status.severity == "page"
    (det,) = slo_detections(custom, status)
    assert det.rule_level == "critical" and det.kind == "slo_burn_rate"
    assert det.group == (("service.name", "checkout"),)
    assert det.evidence["slo.burn_rates"]["2m"] == pytest.approx(1000.0)
    assert det.evidence["slo.error_budget_remaining"] == pytest.approx(1 - 200 / (144000 * 0.001))
    assert det.tags == ("marketguard.type.availability",)


def test_burn_rate_series_matches_point_evaluations() -> None:
    frame = outage(series(100, end=NOW + timedelta(hours=1)), NOW - timedelta(minutes=5), 5)
    rates = burn_rate_series(spec(), frame, NOW - timedelta(minutes=30), NOW + timedelta(minutes=30))
    assert len(rates) == 60
    for moment in (NOW, NOW + timedelta(minutes=10), NOW + timedelta(minutes=30)):
        point = evaluate_slo(spec(), frame, moment)
        assert rates.loc[pd.Timestamp(moment)].to_dict() == pytest.approx(
            {k: w.burn_rate for k, w in point.windows.items()}
        )


def test_thirty_days_times_fifty_services_is_fast() -> None:
    """The brief's budget: 30 days × 50 services of per-minute data well under a second."""
    import time

    rng = np.random.default_rng(7)
    frames = [series(int(rng.integers(50, 500)), int(rng.integers(0, 2))) for _ in range(50)]
    started = time.perf_counter()
    for frame in frames:
        evaluate_slo(spec(), frame, NOW)
    assert time.perf_counter() - started < 1.0


# -- specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"objective": 100}, "objective"),
        ({"sli": {"type": "latency"}}, "threshold_ms"),
        ({"sli": {"type": "availability", "source": "probe", "route": "/x"}}, "route"),
        ({"period": "2h"}, "period"),
        ({"alerts": [{"severity": "page", "long_window": "5m", "short_window": "1h", "burn_rate": 1}]}, "short_window"),
        ({"period": "30 days"}, "duration"),
        ({"servce": "typo"}, "servce"),
    ],
)
def test_invalid_specs_name_file_and_reason(tmp_path: Path, over: dict[str, object], reason: str) -> None:
    import yaml

    doc = {"kind": "slo", "id": "x", "title": "x", "service": "s", "sli": {"type": "availability"},
           "objective": 99.0, **over}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(RuleError) as err:
        load_slos([tmp_path])
    assert str(path) in str(err.value) and reason in str(err.value)


def test_duplicate_ids_and_unknown_kinds_are_refused(tmp_path: Path) -> None:
    doc = "kind: slo\nid: a\ntitle: A\nservice: s\nsli: {type: availability}\nobjective: 99\n"
    (tmp_path / "a.yml").write_text(doc + "---\n" + doc)
    with pytest.raises(RuleError, match="duplicate slo id 'a'"):
        load_slos([tmp_path])
    (tmp_path / "a.yml").write_text("kind: sloo\nid: a\n")
    with pytest.raises(RuleError, match="kind must be one of"):
        load_slos([tmp_path])


# -- from a real store ------------------------------------------------------------------------
def _events(rows: list[dict[str, object]]) -> pa.Table:
    cols: dict[str, list[object]] = {n: [] for n in EVENT_FIELDS}
    for i, row in enumerate(rows):
        full = {"event.id": f"e{i}", **row}
        for name in EVENT_FIELDS:
            cols[name].append(full.get(name))
    return pa.table(cols, schema=EVENT_SCHEMA)


def test_slo_series_from_duckdb() -> None:
    """Per-minute counts by service, route, status, latency threshold and monitor mapping."""
    t0 = NOW - timedelta(minutes=10)
    rows: list[dict[str, object]] = []
    for k in range(6):  # checkout: 6 requests in minute t0, two 503s, durations 100..600 ms
        rows.append({"@timestamp": t0 + timedelta(seconds=5 * k), "event.dataset": "api.access",
                     "service.name": "checkout", "url.path": "/api/v1/checkout" if k < 4 else "/api/v1/cart",
                     "http.response.status_code": 503 if k in (0, 5) else 200,
                     "event.duration": (k + 1) * 100_000_000})
    rows.append({"@timestamp": t0, "event.dataset": "api.access", "service.name": "search",
                 "http.response.status_code": 500, "url.path": "/api/v1/search"})
    rows.append({"@timestamp": t0, "event.dataset": "apm.span", "service.name": "checkout",
                 "http.response.status_code": 500})
    for k, status in enumerate(("up", "down", "down", "up")):
        rows.append({"@timestamp": t0 + timedelta(minutes=k), "event.dataset": "uptime.probe",
                     "monitor.id": "checkout-https", "monitor.status": status})
    store = DuckDBStore(":memory:")
    store.append_events(_events(rows))
    start, end = NOW - timedelta(hours=1), NOW
    avail = slo_series(store, spec(), start, end)
    assert avail.to_dict("list") == {"good": [4], "total": [6]}
    assert list(avail.index) == [pd.Timestamp(t0)]
    route = slo_series(store, spec(sli={"type": "availability", "route": "/api/v1/checkout*"}), start, end)
    assert route.to_dict("list") == {"good": [3], "total": [4]}
    latency = slo_series(store, spec(sli={"type": "latency", "threshold_ms": 300}), start, end)
    assert latency.to_dict("list") == {"good": [3], "total": [6]}
    probe = spec(sli={"type": "availability", "source": "probe", "monitors": ["checkout-https"]})
    assert slo_series(store, probe, start, end)["good"].tolist() == [1, 0, 0, 1]
    statuses, detections = evaluate_slos(store, [spec(), probe], NOW)
    assert [s.total for s in statuses] == [6, 4]
    assert detections == []  # both under min_events (10)
    empty = slo_series(store, spec(service="nothing"), start, end)
    assert empty.empty and evaluate_slo(spec(), empty, NOW).total == 0


def test_sla_engine_incremental_counts_equal_a_full_read() -> None:
    """The live cycle caches minute counts: after new (and late) events, the cached series and
    the status equal a fresh full read; minute-aligned events are counted exactly once."""
    from correlator.sla_engine import SlaEngine

    store = DuckDBStore(":memory:")
    rows = [{"@timestamp": NOW - timedelta(minutes=m), "event.dataset": "api.access", "service.name": "checkout",
             "http.response.status_code": 500 if m < 3 else 200} for m in range(1, 120)]
    store.append_events(_events(rows))
    engine = SlaEngine(store, [spec()], [])
    first = engine.run_once(NOW)
    assert first.slos[0].total == 119 and first.slos[0].severity == "page"
    assert len(first.detections) == 1 and first.detections[0].rule_id == "checkout-availability"
    later_rows = [{"event.id": f"late{m}", "@timestamp": NOW + timedelta(minutes=m), "event.dataset": "api.access",
                   "service.name": "checkout", "http.response.status_code": 200} for m in range(0, 5)]
    later_rows.append({"event.id": "late-old", "@timestamp": NOW - timedelta(minutes=2, seconds=30),
                       "event.dataset": "api.access", "service.name": "checkout", "http.response.status_code": 200})
    store.append_events(_events(later_rows))
    moment = NOW + timedelta(minutes=5, seconds=20)
    cycle = engine.run_once(moment)
    full = evaluate_slo(spec(), slo_series(store, spec(), moment - timedelta(days=30), moment), moment)
    assert cycle.slos[0].total == full.total == 125
    assert cycle.slos[0].windows["5m"] == full.windows["5m"]
    cached = engine.counts(spec(), pd.Timestamp(moment).floor("min").to_pydatetime())
    assert cached["total"].sum() == 125


def test_bench_runs_and_reports() -> None:
    """The `make bench` entry point (small size here): every fifth service has an outage."""
    import io

    from rich.console import Console

    from marketguard.app.bench_slo import run_slo_bench

    out = io.StringIO()
    result = run_slo_bench(services=5, days=4, console=Console(file=out))
    assert "SLO engine: 5 services" in out.getvalue()
    assert result["services"] == 5 and result["paging"] == 1 and result["evaluate_s"] < 5
