"""Charts for the reports: matplotlib (Agg, no display) drawn to PNG ``data:`` URIs.

Each function takes model records and returns a URI to put in an ``<img src>``, so the HTML
is self-contained and WeasyPrint needs no file or network access. Colours always come with a
text label (legend, axis or bar label): a chart must read in black and white too.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - after choosing the backend
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from marketguard.app.reports.model import Breakdown, RatePoint, ResponseTimes, SellerLine, SloLine  # noqa: E402

__all__ = ["SEVERITY_COLOURS", "event_rate_chart", "breakdown_chart", "response_chart", "slo_chart", "seller_chart"]

#: Severity -> colour (always shown next to the severity's name).
SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#7f1d1d", "high": "#c2410c", "medium": "#a16207", "low": "#1d4ed8", "informational": "#4b5563",
}
_ACCENT, _MUTED, _GOOD, _BAD = "#1f4e79", "#9ca3af", "#15803d", "#b91c1c"


def _uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(width: float = 7.0, height: float = 2.6) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    return fig, ax


def event_rate_chart(points: Sequence[RatePoint], first_seen: datetime, last_seen: datetime) -> str | None:
    """Events per bucket around the incident, the cited ones, and the incident span shaded."""
    if not points:
        return None
    fig, ax = _figure()
    times = [p.minute for p in points]
    width = (times[1] - times[0]) if len(times) > 1 else None
    ax.step(times, [p.events for p in points], where="post", color=_ACCENT, label="events (involved datasets)")
    bar_width = width.total_seconds() / 86400 if width else 0.0005
    ax.bar(times, [p.evidence for p in points], width=bar_width, align="edge", color=_BAD, alpha=0.8,
           label="events cited by alerts")
    ax.axvspan(first_seen, last_seen if last_seen > first_seen else first_seen, color="#fde68a", alpha=0.5,
               label="incident (first to last event)")
    ax.set_ylabel("events per bucket", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=first_seen.tzinfo))
    ax.set_xlabel(f"UTC, {first_seen:%Y-%m-%d}; bucket {int(width.total_seconds() // 60) if width else 1} min", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return _uri(fig)


def breakdown_chart(b: Breakdown, *, severity: bool = False) -> str | None:
    """Horizontal bars of a breakdown, labelled with their counts (severity bars in its colours)."""
    if not b.counts:
        return None
    labels = list(b.counts)[::-1]
    values = [b.counts[k] for k in labels]
    colours = [SEVERITY_COLOURS.get(k, _ACCENT) if severity else _ACCENT for k in labels]
    fig, ax = _figure(3.4, 0.35 * len(labels) + 0.8)
    bars = ax.barh(labels, values, color=colours)
    ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_title(f"incidents by {b.dimension}", fontsize=9)
    ax.set_xticks([])
    return _uri(fig)


def response_chart(rows: Sequence[ResponseTimes]) -> str | None:
    """MTTA and MTTR per priority next to their targets (hours, log scale)."""
    used = [r for r in rows if r.tickets]
    if not used:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.4))
    for ax, (label, actual, target) in zip(axes, (("time to acknowledge", "mtta_s", "ack_target_s"),
                                                  ("time to resolve", "mttr_s", "resolve_target_s")), strict=True):
        xs = range(len(used))
        vals = [(getattr(r, actual) or 0) / 3600 for r in used]
        tgts = [getattr(r, target) / 3600 for r in used]
        colours = [_GOOD if getattr(r, actual) is not None and v <= t else _BAD for r, v, t in zip(used, vals, tgts, strict=True)]
        ax.bar([x - 0.2 for x in xs], vals, width=0.4, color=colours, label="mean (green: within target)")
        ax.bar([x + 0.2 for x in xs], tgts, width=0.4, color=_MUTED, label="target")
        ax.set_xticks(list(xs), [r.priority for r in used], fontsize=8)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(f"{label} (hours)", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, frameon=False)
    return _uri(fig)


def slo_chart(rows: Sequence[SloLine]) -> str | None:
    """Attainment (%) of each SLO with a traffic, its objective marked."""
    used = [r for r in rows if r.attainment is not None]
    if not used:
        return None
    fig, ax = _figure(7.0, 0.4 * len(used) + 0.9)
    labels = [f"{r.service}: {r.slo_id}" for r in used]
    vals = [r.attainment * 100 for r in used if r.attainment is not None]
    ax.barh(labels, vals, color=[_GOOD if r.met else _BAD for r in used])
    for y, (v, r) in enumerate(zip(vals, used, strict=True)):  # labels right of 100 %, clear of the ticks
        ax.text(100.2, y, f"{v:.2f}% {'met' if r.met else 'MISSED'} (objective {r.objective:g}%)", fontsize=7, va="center")
    for y, r in enumerate(used):  # the objective as a black tick across its bar
        ax.plot([r.objective, r.objective], [y - 0.45, y + 0.45], color="black", linewidth=1.5)
    low = max(0.0, min(min(vals), min(r.objective for r in used)) - 2)
    ax.set_xlim(low, 100 + (100 - low) * 0.6)
    ax.set_xticks([t for t in ax.get_xticks() if low <= t <= 100])
    ax.set_xlabel("% good events (black tick: objective)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_title("SLO attainment over the period", fontsize=9)
    return _uri(fig)


def seller_chart(rows: Sequence[SellerLine]) -> str | None:
    """Seller service scores (0-100), lowest first."""
    used = sorted((r for r in rows if r.score is not None), key=lambda r: r.score or 0.0)
    if not used:
        return None
    fig, ax = _figure(5.0, 0.32 * len(used) + 0.9)
    scores = [r.score or 0.0 for r in used]
    bars = ax.barh([r.seller_id for r in used], scores, color=[_GOOD if s >= 90 else (_BAD if s < 60 else "#a16207") for s in scores])
    ax.bar_label(bars, labels=[f"{s:.0f}" for s in scores], fontsize=7, padding=2)
    ax.set_xlim(0, 110)
    ax.set_title("seller service score (0-100; green ≥ 90, red < 60)", fontsize=9)
    return _uri(fig)
