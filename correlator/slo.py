"""Service level objectives with multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5).

An SLO spec (``kind: slo`` documents under ``rules/sla/``) names an SLI over one service:

* ``availability`` from the API (``api.access``: a request is bad when its status is at least
  ``error_status_min``, 500 by default) or from probes (``uptime.probe``: bad when
  ``monitor.status`` is not ``up``; probes are selected by ``monitors`` — which maps monitor ids
  to the spec's service — or, without it, by their ``service.name``);
* ``latency``: a request is good when ``event.duration`` is at most ``threshold_ms``.

The API SLIs can be narrowed to a route (``route``: a glob on ``url.path``).

**Maths.** The events become per-minute ``good``/``total`` counts (:func:`slo_series`). Minute
buckets are labelled by their start; at ``now`` a window of length *w* holds the buckets in
``[floor(now) - w, floor(now))`` (the current, partial minute waits for the next evaluation).
The error budget is ``b = 1 - objective/100``; a window's burn rate is ``bad / total / b``. Over
the rolling ``period``: attainment ``good / total`` and budget remaining
``1 - bad / (b × total)`` (1.0 with no traffic, negative once overspent). An alert policy fires
when **both** its long and short windows burn **strictly above** its rate and **both** hold at
least ``min_events`` events (the low-traffic guard: two failed requests at night are not an
outage). Defaults: page at 14.4× over 1h and 5m, or 6× over 6h and 30m; ticket at 3× over 1d
and 2h, or 1× over 3d and 6h. Everything is cumulative sums over numpy arrays: 30 days of
per-minute counts (43,200 buckets) evaluate in a few milliseconds
(``marketguard.app.bench_slo``).

A firing SLO becomes one :class:`~marketguard.detections.Detection` (:func:`slo_detections`),
grouped by ``service.name`` so that it joins the service's availability incident.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from correlator import _burn
from correlator._specs import Duration, format_duration, validate_specs
from marketguard.detections import Detection
from marketguard.store.base import MatchWindow, Store
from marketguard.types import Severity

__all__ = [
    "BurnAlertPolicy", "SliSpec", "SloSpec", "WindowBurn", "SloAlert", "SloStatus",
    "DEFAULT_POLICY", "load_slos", "evaluate_slo", "burn_rate_series", "slo_series",
    "slo_detections", "evaluate_slos",
]

_MINUTE = timedelta(minutes=1)
_DATASETS = {"api": "api.access", "probe": "uptime.probe"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BurnAlertPolicy(_Frozen):
    """Fire ``severity`` when the long and the short window both burn above ``burn_rate``."""

    severity: Literal["page", "ticket"]
    long_window: Duration
    short_window: Duration
    burn_rate: float = Field(gt=0)

    @model_validator(mode="after")
    def _windows(self) -> BurnAlertPolicy:
        if not (_MINUTE <= self.short_window < self.long_window):
            raise ValueError("need 1m <= short_window < long_window")
        if self.long_window % _MINUTE or self.short_window % _MINUTE:
            raise ValueError("windows must be whole minutes")
        return self


DEFAULT_POLICY: tuple[BurnAlertPolicy, ...] = tuple(
    BurnAlertPolicy(severity=s, long_window=lw, short_window=sw, burn_rate=r)  # type: ignore[arg-type]
    for s, lw, sw, r in (
        ("page", "1h", "5m", 14.4), ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0), ("ticket", "3d", "6h", 1.0),
    )
)


class SliSpec(_Frozen):
    """What counts as a good and as a valid event (see the module docstring)."""

    type: Literal["availability", "latency"]
    source: Literal["api", "probe"] = "api"
    route: str | None = None
    monitors: tuple[str, ...] = ()
    threshold_ms: float | None = Field(None, gt=0)
    error_status_min: int = Field(500, ge=100, le=599)

    @model_validator(mode="after")
    def _consistent(self) -> SliSpec:
        if self.type == "latency" and self.threshold_ms is None:
            raise ValueError("a latency SLI needs threshold_ms")
        if self.type == "availability" and self.threshold_ms is not None:
            raise ValueError("threshold_ms only applies to latency SLIs")
        if self.source == "probe" and self.route is not None:
            raise ValueError("route only applies to the api source")
        if self.source == "api" and self.monitors:
            raise ValueError("monitors only apply to the probe source")
        return self


class SloSpec(_Frozen):
    """One SLO: an SLI, an objective over a rolling period, and its burn-rate alert policy."""

    kind: Literal["slo"]
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    title: str = Field(min_length=1)
    description: str = ""
    service: str = Field(min_length=1)
    sli: SliSpec
    objective: float = Field(gt=0, lt=100)
    period: Duration = timedelta(days=30)
    min_events: int = Field(10, ge=1)
    alerts: tuple[BurnAlertPolicy, ...] = DEFAULT_POLICY
    levels: dict[Literal["page", "ticket"], Severity] = Field(
        default_factory=lambda: {"page": "high", "ticket": "medium"}
    )
    tags: tuple[str, ...] = ("marketguard.type.availability",)

    @model_validator(mode="after")
    def _policy(self) -> SloSpec:
        if not self.alerts:
            raise ValueError("alerts: give at least one burn-rate policy (or omit for the defaults)")
        if self.period % _MINUTE or self.period < max(a.long_window for a in self.alerts):
            raise ValueError("period must be whole minutes and at least the longest alert window")
        return self

    @property
    def horizon(self) -> timedelta:
        """How much history an evaluation reads: the period (always >= the longest window)."""
        return self.period


def load_slos(dirs: Sequence[Path | str]) -> list[SloSpec]:
    """Load every ``kind: slo`` document under ``dirs``; raise RuleError (file#doc: reason)."""
    return validate_specs(dirs, "slo", SloSpec)


# -- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowBurn:
    """One trailing window at evaluation time."""

    window: timedelta
    good: int
    total: int
    burn_rate: float
    enough: bool  # total >= min_events: the window may alert


@dataclass(frozen=True)
class SloAlert:
    """A policy whose long and short windows both burn too fast."""

    severity: str
    long_window: timedelta
    short_window: timedelta
    threshold: float
    long_burn: float
    short_burn: float


@dataclass(frozen=True)
class SloStatus:
    """An SLO at ``now``: burn rates per window, budget over the period, firing alerts."""

    slo_id: str
    service: str
    now: datetime
    objective: float
    good: int
    total: int
    attainment: float | None  # None without traffic in the period
    budget_remaining: float  # fraction of the period's error budget left (< 0: overspent)
    windows: dict[str, WindowBurn]  # "5m", "1h", … -> burn
    alerts: tuple[SloAlert, ...]

    @property
    def severity(self) -> str | None:
        """``page`` or ``ticket`` when an alert fires (the more urgent), else None."""
        kinds = {a.severity for a in self.alerts}
        return "page" if "page" in kinds else ("ticket" if kinds else None)


def _minute_floor(moment: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(moment)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.floor("min")


def _grid(counts: pd.DataFrame, end: pd.Timestamp, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """good/total as float arrays over the ``minutes`` buckets before ``end`` (missing = 0)."""
    idx = pd.DatetimeIndex(counts.index)
    idx = idx.tz_localize(UTC) if idx.tz is None else idx
    start_ns = (end - pd.Timedelta(minutes=minutes)).value
    pos = (idx.as_unit("ns").asi8 - start_ns) // 60_000_000_000
    keep = (pos >= 0) & (pos < minutes)
    good = np.bincount(pos[keep], weights=counts["good"].to_numpy(dtype=float)[keep], minlength=minutes)
    total = np.bincount(pos[keep], weights=counts["total"].to_numpy(dtype=float)[keep], minlength=minutes)
    return good, total


def _minutes(delta: timedelta) -> int:
    return int(delta // _MINUTE)


def evaluate_slo(spec: SloSpec, counts: pd.DataFrame, now: datetime) -> SloStatus:
    """Evaluate ``spec`` at ``now`` over per-minute counts (index: minute, columns good/total)."""
    end = _minute_floor(now)
    n = _minutes(spec.horizon)
    good, total = _grid(counts, end, n)
    cum_good = np.concatenate(([0.0], np.cumsum(good)))
    cum_total = np.concatenate(([0.0], np.cumsum(total)))
    budget = _burn.budget_ratio(spec.objective)
    windows: dict[str, WindowBurn] = {}
    for w in sorted({a.long_window for a in spec.alerts} | {a.short_window for a in spec.alerts}):
        m = _minutes(w)
        g, t = cum_good[n] - cum_good[n - m], cum_total[n] - cum_total[n - m]
        burn = float(_burn.burn_rates(np.array([t - g]), np.array([t]), budget)[0])
        windows[format_duration(w)] = WindowBurn(w, int(g), int(t), burn, t >= spec.min_events)
    alerts = []
    for pol in spec.alerts:
        lw, sw = windows[format_duration(pol.long_window)], windows[format_duration(pol.short_window)]
        if lw.enough and sw.enough and lw.burn_rate > pol.burn_rate and sw.burn_rate > pol.burn_rate:
            alerts.append(SloAlert(pol.severity, pol.long_window, pol.short_window, pol.burn_rate,
                                   lw.burn_rate, sw.burn_rate))
    g_all, t_all = float(cum_good[n]), float(cum_total[n])
    remaining = 1.0 - (t_all - g_all) / (budget * t_all) if t_all > 0 else 1.0
    return SloStatus(
        slo_id=spec.id, service=spec.service, now=end.to_pydatetime(), objective=spec.objective,
        good=int(g_all), total=int(t_all), attainment=g_all / t_all if t_all > 0 else None,
        budget_remaining=remaining, windows=windows, alerts=tuple(alerts),
    )


def burn_rate_series(spec: SloSpec, counts: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """Burn rate of every alert window at each minute end in ``(start, end]`` (for dashboards and
    replays); windows under ``min_events`` are NaN."""
    end_ts, first = _minute_floor(end), _minute_floor(start)
    span = _minutes(end_ts - first)
    longest = _minutes(max(a.long_window for a in spec.alerts))
    good, total = _grid(counts, end_ts, span + longest)
    budget = _burn.budget_ratio(spec.objective)
    out: dict[str, np.ndarray] = {}
    for w in sorted({a.long_window for a in spec.alerts} | {a.short_window for a in spec.alerts}):
        m = _minutes(w)
        t = _burn.trailing_sums(total, m)
        burn = _burn.burn_rates(t - _burn.trailing_sums(good, m), t, budget)
        out[format_duration(w)] = np.where(t >= spec.min_events, burn, np.nan)[longest:]
    index = pd.date_range(first + pd.Timedelta(minutes=1), end_ts, freq="min", tz=UTC)
    return pd.DataFrame(out, index=index)


# -- from the store ---------------------------------------------------------------------------
def _columns(spec: SloSpec) -> list[str]:
    cols = ["@timestamp", "service.name"]
    if spec.sli.source == "api":
        cols += ["url.path"] + (["http.response.status_code"] if spec.sli.type == "availability" else [])
    else:
        cols += ["monitor.id"] + (["monitor.status"] if spec.sli.type == "availability" else [])
    return cols + (["event.duration"] if spec.sli.type == "latency" else [])


def _good_total(spec: SloSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Per-event ``good``/``total`` flags (0/1) of the events the SLI covers."""
    sli = spec.sli
    if sli.source == "probe" and sli.monitors:
        mask = frame["monitor.id"].isin(list(sli.monitors))
    else:
        mask = frame["service.name"] == spec.service
    if sli.route is not None:
        mask &= frame["url.path"].fillna("").str.match(fnmatch.translate(sli.route))
    if sli.type == "latency":
        duration = pd.to_numeric(frame["event.duration"], errors="coerce")
        mask &= duration.notna()
        good = duration <= sli.threshold_ms * 1e6  # type: ignore[operator]
    elif sli.source == "api":
        good = pd.to_numeric(frame["http.response.status_code"], errors="coerce").fillna(0) < sli.error_status_min
    else:
        good = frame["monitor.status"].fillna("").str.lower() == "up"
    mask = mask.fillna(False).astype(bool)
    return pd.DataFrame({"good": (good & mask).astype("int64"), "total": mask.astype("int64")})


def slo_series(store: Store, spec: SloSpec, start: datetime, end: datetime) -> pd.DataFrame:
    """Per-minute ``good``/``total`` counts of ``spec``'s events in ``[start, end)``.

    Streams the store through the :class:`~marketguard.store.base.Store` protocol (``scan``),
    so memory stays bounded and every backend works. Index: minute start (UTC). The range is
    closed on the left so that minute-aligned bounds cut exactly between buckets (event times
    have microsecond precision).
    """
    tick = timedelta(microseconds=1)
    window = MatchWindow(time_after=start - tick, time_upto=end - tick, dataset=_DATASETS[spec.sli.source])
    parts = []
    for batch in store.scan(window, _columns(spec)):
        frame = batch.to_pandas()
        if not len(frame):
            continue
        flags = _good_total(spec, frame)
        minute = pd.to_datetime(frame["@timestamp"], utc=True).dt.floor("min")
        parts.append(flags[flags["total"] > 0].groupby(minute[flags["total"] > 0]).sum())
    if not parts:
        return pd.DataFrame({"good": [], "total": []}, index=pd.DatetimeIndex([], tz=UTC), dtype="int64")
    out = pd.concat(parts).groupby(level=0).sum().sort_index()
    out.index.name = None
    return out


# -- detections -------------------------------------------------------------------------------
def slo_detections(spec: SloSpec, status: SloStatus) -> list[Detection]:
    """One detection when the SLO burns too fast (the most urgent firing policy), else none."""
    if status.severity is None:
        return []
    firing = [a for a in status.alerts if a.severity == status.severity]
    worst = max(firing, key=lambda a: a.long_burn)
    evidence: dict[str, Any] = {
        "service.name": spec.service,
        "slo.id": spec.id,
        "slo.objective": spec.objective,
        "slo.period": format_duration(spec.period),
        "slo.severity": status.severity,
        "slo.attainment": status.attainment,
        "slo.error_budget_remaining": status.budget_remaining,
        "slo.burn_rates": {k: round(w.burn_rate, 4) for k, w in status.windows.items()},
        "slo.window_events": {k: w.total for k, w in status.windows.items()},
        "slo.firing": [
            f"{a.severity}: {a.long_burn:.2f}x/{format_duration(a.long_window)} and "
            f"{a.short_burn:.2f}x/{format_duration(a.short_window)} > {a.threshold:g}x"
            for a in status.alerts
        ],
    }
    return [
        Detection(
            rule_id=spec.id, rule_title=f"SLO burn rate: {spec.title}",
            rule_level=spec.levels.get(status.severity, "high"),  # type: ignore[arg-type]
            rule_author="MarketGuard", rule_license=None, kind="slo_burn_rate",
            timestamp=status.now, event_ids=(), evidence=evidence,
            group=(("service.name", spec.service),),
            window_start=status.now - worst.long_window, window_end=status.now,
            value=worst.long_burn, tags=tuple(spec.tags),
        )
    ]


def evaluate_slos(
    store: Store, specs: Iterable[SloSpec], now: datetime
) -> tuple[list[SloStatus], list[Detection]]:
    """Read, evaluate and turn into detections every spec at ``now`` (one store scan per spec)."""
    statuses, detections = [], []
    end = _minute_floor(now).to_pydatetime()
    for spec in specs:
        status = evaluate_slo(spec, slo_series(store, spec, end - spec.horizon, end), end)
        statuses.append(status)
        detections.extend(slo_detections(spec, status))
    return statuses, detections
