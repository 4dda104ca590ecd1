"""Sellers' support SLAs: first-response and resolution targets, compliance and a service score.

A ``kind: seller_sla`` spec (under ``rules/sla/``) lists ``targets``; each names an optional
``category`` and ``priority`` and the ``first_response`` / ``resolution`` durations. A ticket
takes the most specific target that matches it — category and priority, then category only,
then priority only, then the catch-all (required) — the first one in file order on a tie.

**Tickets** are rebuilt from ``support.ticket`` events: ``created`` starts the clock; the first
``first_response`` (or ``resolved``, which answers too) stops the first-response clock; the
first ``resolved`` stops the resolution clock. Category, priority and seller come from the
``created`` event (else the last event naming them); tickets without ``created`` are ignored.

**Per ticket and metric** at ``now``: *met* (stopped within target), *breached* (stopped late,
or still running past the target — ``actual`` is then the time elapsed so far) or *pending*.

**Per seller**, over the tickets created in the rolling ``window`` before ``now``:

* compliance per metric = met / (met + breached) (None when nothing is decided yet);
* **service score** (0–100) = 100 × Σ wₘ·credit / Σ wₘ over the decided ticket-metrics, where
  credit = 1 when met, else ``max(0, 2 − actual/target)`` (falls linearly from 1 at the target to
  0 at twice the target, so a slightly late answer costs less than a forgotten ticket) and
  wₘ = ``score_weights`` (first response 0.6, resolution 0.4). None when nothing is decided.

Each breach becomes a :class:`~marketguard.detections.Detection` owned by the seller
(``marketplace.seller_id``), tagged ``marketguard.type.sla``; its dedupe key (group = seller,
ticket, metric; window start = ticket creation) is stable, so re-evaluation records it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from correlator._specs import Duration, validate_specs
from marketguard.detections import Detection
from marketguard.store.base import MatchWindow, Store
from marketguard.types import Severity

__all__ = [
    "SlaTarget", "SellerSlaSpec", "SellerCompliance", "SellerSlaReport", "TICKET_COLUMNS",
    "load_seller_slas", "tickets_from_events", "evaluate_seller_sla", "seller_sla_events",
]

Metric = Literal["first_response", "resolution"]
METRICS: tuple[Metric, ...] = ("first_response", "resolution")
TICKET_COLUMNS = ["@timestamp", "event.id", "ticket.id", "ticket.event", "ticket.category",
                  "ticket.priority", "marketplace.seller_id"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SlaTarget(_Frozen):
    """Targets for the tickets of one category and/or priority (neither: the catch-all)."""

    category: str | None = None
    priority: str | None = None
    first_response: Duration
    resolution: Duration | None = None
    severity: Literal["page", "ticket"] | None = None  # overrides the spec's

    @property
    def specificity(self) -> int:
        """2 for a category, 1 for a priority: category+priority > category > priority > none."""
        return 2 * (self.category is not None) + (self.priority is not None)


class SellerSlaSpec(_Frozen):
    """One seller support SLA: targets, the rolling window and how breaches alert."""

    kind: Literal["seller_sla"]
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    title: str = Field(min_length=1)
    description: str = ""
    window: Duration = timedelta(days=30)
    severity: Literal["page", "ticket"] = "ticket"
    levels: dict[Literal["page", "ticket"], Severity] = Field(
        default_factory=lambda: {"page": "high", "ticket": "medium"}
    )
    score_weights: dict[Metric, float] = Field(
        default_factory=lambda: {"first_response": 0.6, "resolution": 0.4}
    )
    targets: tuple[SlaTarget, ...] = Field(min_length=1)
    tags: tuple[str, ...] = ("marketguard.type.sla",)

    @model_validator(mode="after")
    def _catch_all(self) -> SellerSlaSpec:
        if not any(t.specificity == 0 for t in self.targets):
            raise ValueError("targets need a catch-all entry (no category, no priority)")
        if any(w < 0 for w in self.score_weights.values()) or not any(self.score_weights.values()):
            raise ValueError("score_weights must be non-negative and not all zero")
        return self

    def target_for(self, category: str | None, priority: str | None) -> SlaTarget:
        """The most specific target matching a ticket (see the module docstring)."""
        fits = [t for t in self.targets
                if t.category in (None, category) and t.priority in (None, priority)]
        return max(fits, key=lambda t: t.specificity)  # max keeps the first of equals


def load_seller_slas(dirs: Sequence[Path | str]) -> list[SellerSlaSpec]:
    """Load every ``kind: seller_sla`` document under ``dirs``; raise RuleError on a bad one."""
    return validate_specs(dirs, "seller_sla", SellerSlaSpec)


# -- tickets ----------------------------------------------------------------------------------
def tickets_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per ticket (index ``ticket.id``): created, first_response, resolved, category,
    priority, seller and its event ids, from ``support.ticket`` events (:data:`TICKET_COLUMNS`)."""
    cols = ["created", "first_response", "resolved", "category", "priority", "seller", "event_ids"]
    frame = events[events["ticket.id"].notna()].copy()
    if frame.empty:
        return pd.DataFrame(columns=cols)
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], utc=True)
    frame = frame.sort_values(["@timestamp", "event.id"], kind="stable")
    kind = frame["ticket.event"].fillna("").str.lower()
    by = frame.groupby("ticket.id", sort=True)
    out = pd.DataFrame({
        name: frame["@timestamp"].where(kind == name).groupby(frame["ticket.id"]).min()
        for name in ("created", "first_response", "resolved")
    })
    out["first_response"] = out[["first_response", "resolved"]].min(axis=1)
    created = kind == "created"
    for name, field in (("category", "ticket.category"), ("priority", "ticket.priority"),
                        ("seller", "marketplace.seller_id")):
        first_created = frame[field].where(created).groupby(frame["ticket.id"]).first()
        out[name] = first_created.combine_first(by[field].last())
    out["event_ids"] = by["event.id"].agg(tuple)
    return out[out["created"].notna()][cols]


# -- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SellerCompliance:
    """One seller over the window: counts, compliance per metric and the service score."""

    seller_id: str
    tickets: int
    met: dict[str, int]
    breached: dict[str, int]
    compliance: dict[str, float | None]
    score: float | None


@dataclass(frozen=True)
class SellerSlaReport:
    """A seller SLA at ``now``: per-seller compliance and the breaches as detections."""

    sla_id: str
    now: datetime
    sellers: dict[str, SellerCompliance]
    detections: list[Detection]


def _metric_frame(spec: SellerSlaSpec, tickets: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Long frame: one row per (ticket, tracked metric) with target, actual and state."""
    cache: dict[tuple[str | None, str | None], SlaTarget] = {}
    keys = [(_opt(c), _opt(p)) for c, p in zip(tickets["category"], tickets["priority"], strict=True)]
    targets = [cache.get(k) or cache.setdefault(k, spec.target_for(*k)) for k in keys]
    rows = []
    for metric, stop in (("first_response", "first_response"), ("resolution", "resolved")):
        tgt = pd.Series([getattr(t, metric) for t in targets], index=tickets.index, dtype=object)
        tracked = tgt.notna()
        part = tickets[tracked].copy()
        part["metric"] = metric
        part["target_s"] = [t.total_seconds() for t in tgt[tracked]]
        part["severity"] = [t.severity or spec.severity for t, ok in zip(targets, tracked, strict=True) if ok]
        done = part[stop].notna()
        part["open"] = ~done
        part["actual_s"] = ((part[stop].where(done, now)) - part["created"]).dt.total_seconds()
        part["state"] = np.where(part["actual_s"] > part["target_s"], "breached",
                                 np.where(done, "met", "pending"))
        part["stopped"] = part[stop]
        rows.append(part)
    return pd.concat(rows)


def _opt(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _compliance(spec: SellerSlaSpec, seller: str, rows: pd.DataFrame, n_tickets: int) -> SellerCompliance:
    met = {m: int(((rows["metric"] == m) & (rows["state"] == "met")).sum()) for m in METRICS}
    breached = {m: int(((rows["metric"] == m) & (rows["state"] == "breached")).sum()) for m in METRICS}
    compliance = {m: (met[m] / (met[m] + breached[m]) if met[m] + breached[m] else None) for m in METRICS}
    decided = rows[rows["state"] != "pending"]
    weights = decided["metric"].map(lambda m: spec.score_weights.get(m, 0.0)).astype(float)
    credit = np.where(decided["state"] == "met", 1.0,
                      np.clip(2.0 - decided["actual_s"] / decided["target_s"], 0.0, 1.0))
    score = 100.0 * float((weights * credit).sum() / weights.sum()) if weights.sum() > 0 else None
    return SellerCompliance(seller, n_tickets, met, breached, compliance, score)


def evaluate_seller_sla(spec: SellerSlaSpec, events: pd.DataFrame, now: datetime) -> SellerSlaReport:
    """Compliance, score and breach detections per seller for tickets created in the window."""
    now_ts = pd.Timestamp(now).tz_convert(UTC) if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz=UTC)
    tickets = tickets_from_events(events)
    tickets = tickets[(tickets["created"] > now_ts - spec.window) & (tickets["created"] <= now_ts)]
    tickets = tickets[tickets["seller"].notna()]
    if tickets.empty:
        return SellerSlaReport(spec.id, now_ts.to_pydatetime(), {}, [])
    rows = _metric_frame(spec, tickets, now_ts)
    sellers = {
        str(s): _compliance(spec, str(s), part, int(tickets["seller"].eq(s).sum()))
        for s, part in rows.groupby("seller", sort=True)
    }
    detections = [_detection(spec, tid, row, sellers[str(row["seller"])])
                  for tid, row in rows[rows["state"] == "breached"].iterrows()]
    return SellerSlaReport(spec.id, now_ts.to_pydatetime(), sellers, detections)


def _detection(spec: SellerSlaSpec, ticket_id: Any, row: pd.Series, seller: SellerCompliance) -> Detection:
    created = row["created"].to_pydatetime()
    deadline = created + timedelta(seconds=float(row["target_s"]))
    metric = str(row["metric"])
    evidence = {
        "marketplace.seller_id": str(row["seller"]), "ticket.id": str(ticket_id),
        "ticket.category": _opt(row["category"]), "ticket.priority": _opt(row["priority"]),
        "sla.metric": metric, "sla.target_s": float(row["target_s"]),
        "sla.actual_s": float(row["actual_s"]), "sla.open": bool(row["open"]),
        "sla.deadline": deadline, "sla.compliance": seller.compliance[metric],
        "seller.service_score": seller.score,
    }
    label = metric.replace("_", " ")
    return Detection(
        rule_id=spec.id, rule_title=f"Seller SLA breach: {label} ({spec.title})",
        rule_level=spec.levels.get(row["severity"], "medium"), rule_author="MarketGuard",
        rule_license=None, kind="seller_sla", timestamp=deadline, event_ids=tuple(row["event_ids"]),
        evidence=evidence,
        group=(("marketplace.seller_id", str(row["seller"])), ("ticket.id", str(ticket_id)),
               ("sla.metric", metric)),
        window_start=created,
        window_end=row["stopped"].to_pydatetime() if not row["open"] else deadline,
        value=float(row["actual_s"]), tags=tuple(spec.tags),
    )


def seller_sla_events(store: Store, spec: SellerSlaSpec, now: datetime) -> pd.DataFrame:
    """The ``support.ticket`` events a report at ``now`` needs: created in the window, plus later
    lifecycle events up to ``now`` (read through the Store protocol)."""
    window = MatchWindow(time_after=now - spec.window, time_upto=now, dataset="support.ticket")
    frames = [b.to_pandas() for b in store.scan(window, TICKET_COLUMNS)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=TICKET_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TICKET_COLUMNS]
