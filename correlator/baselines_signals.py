"""The fraud signals the behavioural baselines judge: their three kinds (volume, ratio,
novelty), the signals MarketGuard ships, and the detection every signal raises.

See :mod:`correlator.baselines` for what each kind means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from marketguard.detections import Detection

__all__ = [
    "ACTION",
    "NS",
    "VolumeSignal",
    "RatioSignal",
    "NoveltySignal",
    "FRAUD_VOLUME_SIGNALS",
    "FRAUD_RATIO_SIGNALS",
    "FRAUD_NOVELTY_SIGNALS",
    "window_ns",
    "signal_detection",
]

#: The field naming what an event is (``ad_click``, ``login_failed``...).
ACTION = "event.action"
#: Nanoseconds per second (event times are compared in ns since the epoch).
NS = 1_000_000_000


def window_ns(window: timedelta) -> int:
    """A signal's window in nanoseconds."""
    return int(window.total_seconds() * NS)


@dataclass(frozen=True)
class VolumeSignal:
    """Events of one action per entity, judged against the entity's own history."""

    id: str
    title: str
    family: str
    action: str
    entity: tuple[str, ...]
    window: timedelta = timedelta(minutes=10)
    history: int = 12
    factor: float = 5.0
    min_count: int = 20
    level: str = "high"

    @property
    def hop_ns(self) -> int:
        """The hop between window starts (half a window), in nanoseconds."""
        return window_ns(self.window) // 2


@dataclass(frozen=True)
class RatioSignal:
    """``count(other) / count(base)`` per entity over a trailing window, with a minimum base."""

    id: str
    title: str
    family: str
    base: dict[str, str]
    other: dict[str, str]
    entity: tuple[str, ...]
    op: str  # "gte" or "lte"
    threshold: float
    min_count: int
    window: timedelta = timedelta(hours=1)
    level: str = "medium"


@dataclass(frozen=True)
class NoveltySignal:
    """A ``success`` event from an attribute value new to the entity, after ``min_failures``."""

    id: str
    title: str
    family: str
    entity: str
    attributes: tuple[str, ...]
    success: str
    failure: str
    min_failures: int = 3
    window: timedelta = timedelta(minutes=30)
    level: str = "high"


_CLICKS_AS = VolumeSignal(
    id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c01",
    title="Click Fraud - Click Volume of an Autonomous System on a Campaign Far Above Its Baseline",
    family="click", action="ad_click", entity=("source.as.number", "marketplace.ad.campaign_id"),
    min_count=25,
)  # fmt: skip
_CLICKS_DEVICE = VolumeSignal(
    id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c02",
    title="Click Fraud - Click Volume of a Device on a Campaign Far Above Its Baseline",
    family="click", action="ad_click", entity=("user_agent.device.id", "marketplace.ad.campaign_id"),
)  # fmt: skip
FRAUD_VOLUME_SIGNALS: tuple[VolumeSignal, ...] = (_CLICKS_AS, _CLICKS_DEVICE)

FRAUD_RATIO_SIGNALS: tuple[RatioSignal, ...] = (
    RatioSignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c03",
        title="Click Fraud - Clicks Without Preceding Ad Impressions",
        family="click", base={ACTION: "ad_click"}, other={ACTION: "ad_impression"},
        entity=("source.ip", "marketplace.ad.campaign_id"), op="lte", threshold=0.2, min_count=8,
    ),
    RatioSignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c04",
        title="Card Testing - High Share of Declined Authorisations From One Address",
        family="card_testing", base={ACTION: "payment_authorization"},
        other={ACTION: "payment_authorization", "marketplace.payment.result": "declined"},
        entity=("source.ip",), op="gte", threshold=0.6, min_count=10, level="high",
    ),
)  # fmt: skip


FRAUD_NOVELTY_SIGNALS: tuple[NoveltySignal, ...] = (
    NoveltySignal(
        id="b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c05",
        title="Account Takeover - Failed Logins Then Success From a New Country or Network",
        family="account_takeover", entity="user.id",
        attributes=("client.geo.country_iso_code", "source.as.number"),
        success="login_success", failure="login_failed",
    ),
)  # fmt: skip



def signal_detection(
    signal: VolumeSignal | RatioSignal | NoveltySignal, kind: str, **fields: Any
) -> Detection:
    """A fraud :class:`Detection` of ``signal`` (its rule fields and fraud tags) with ``fields``."""
    return Detection(
        rule_id=signal.id, rule_title=signal.title, rule_level=signal.level,
        rule_author="MarketGuard", rule_license="Apache-2.0", kind=kind,
        tags=("marketguard.type.fraud", f"marketguard.fraud.{signal.family}"), **fields,
    )  # fmt: skip
