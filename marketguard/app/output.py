"""Rendering detections for people (tables) and scripts (JSON lines, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from correlator.detections import Detection
from correlator.engine import summarise
from marketguard.types import severity_rank

__all__ = ["write_jsonl", "write_csv", "detections_table", "summary_table", "LEVEL_STYLE"]

LEVEL_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
}

CSV_FIELDS = (
    "@timestamp", "rule.id", "rule.title", "rule.level", "rule.kind", "event.id", "source.ip",
    "http.request.method", "url.original", "http.response.status_code", "user_agent.original",
    "log.file.path", "log.file.line", "correlation.value",
)


def write_jsonl(detections: Sequence[Detection], out: IO[str] | None = None) -> None:
    """One JSON object per detection, ECS-style keys."""
    out = out or sys.stdout
    for d in detections:
        out.write(json.dumps(d.as_record(), default=str, ensure_ascii=False) + "\n")


def write_csv(detections: Sequence[Detection], out: IO[str] | None = None) -> None:
    """CSV with a fixed header of the most useful fields."""
    out = out or sys.stdout
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for d in detections:
        writer.writerow(d.as_record())


def _level(level: str) -> str:
    return f"[{LEVEL_STYLE.get(level, '')}]{level}[/]"


def detections_table(detections: Sequence[Detection], limit: int = 50) -> Table:
    """The most severe detections first, at most ``limit`` rows."""
    table = Table(title=f"Detections (top {min(limit, len(detections))} of {len(detections)})", expand=False)
    for col in ("time (UTC)", "level", "rule", "source.ip", "request / group"):
        table.add_column(col, overflow="fold")
    ranked = sorted(detections, key=lambda d: (-severity_rank(d.rule_level), d.timestamp))
    for d in ranked[:limit]:
        what: Any = d.evidence.get("url.original") if d.kind == "event" else (
            f"{d.kind} = {d.value:g} in {d.window_start:%H:%M:%S}–{d.window_end:%H:%M:%S}"
        )
        table.add_row(
            f"{d.timestamp:%Y-%m-%d %H:%M:%S}", _level(d.rule_level), d.rule_title,
            str(d.evidence.get("source.ip") or ""), str(what or "")[:120],
        )
    return table


def summary_table(detections: Sequence[Detection], title: str = "Detections by rule") -> Table:
    """Count of detections per rule with its level, most severe first."""
    table = Table(title=title)
    table.add_column("level")
    table.add_column("rule")
    table.add_column("detections", justify="right")
    rows = sorted(summarise(detections), key=lambda r: (-severity_rank(r[2]), -r[3], r[1]))
    for _rid, title_, level, count in rows:
        table.add_row(_level(level), title_, f"{count:,}")
    by_level: dict[str, int] = {}
    for d in detections:
        by_level[d.rule_level] = by_level.get(d.rule_level, 0) + 1
    table.caption = "  ".join(f"{lvl}: {n:,}" for lvl, n in sorted(by_level.items(), key=lambda kv: -severity_rank(kv[0])))
    return table


def print_to(console: Console, *renderables: Any) -> None:
    """Print renderables on a console (kept for symmetry with scripts' outputs)."""
    for r in renderables:
        console.print(r)
