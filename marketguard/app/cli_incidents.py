"""``marketguard incidents``: list incidents (to find the ids that reports and tickets refer to).

Reads the data directory of a stopped service (DuckDB allows one writing process). ``-o json``
prints a JSON array of incidents, newest ``last_seen`` first, data only.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from marketguard.app.cli_common import DataDirOpt, data_store, fail, settings_for
from marketguard.app.output import LEVEL_STYLE
from marketguard.cases import CaseFilters, Incident, open_cases
from marketguard.types import Severity

__all__ = ["incidents_app", "parse_time"]

incidents_app = typer.Typer(help="Incidents: list them to find ids for reports and tickets.", no_args_is_help=True)


class Output(StrEnum):
    table = "table"
    json = "json"


class Status(StrEnum):
    open = "open"
    closed = "closed"
    merged = "merged"


class Kind(StrEnum):
    security = "security"
    fraud = "fraud"
    availability = "availability"
    sla = "sla"


def parse_time(value: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO-8601 option as a UTC time (no offset = UTC); a bare date with ``end_of_day`` means
    the last microsecond of that day, so ``--to 2026-11-30`` includes the 30th."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name} {value!r} is not an ISO-8601 date or time (e.g. 2026-11-01 or 2026-11-01T12:00:00Z)")
        raise  # unreachable
    if end_of_day and len(value.strip()) == 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999_999)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(i: Incident) -> dict[str, Any]:
    data = asdict(i)
    data["links"] = sorted([list(pair) for pair in i.links])
    return data


@incidents_app.command("list")
def list_incidents(
    status: Annotated[Status | None, typer.Option("--status", help="Only this status (merged ones only when asked).")] = None,
    severity: Annotated[str | None, typer.Option("--severity", help="Minimum severity: high = high and critical.")] = None,
    kind: Annotated[Kind | None, typer.Option("--type", help="Only this incident type.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="An entity value, or field=value.")] = None,
    time_from: Annotated[str | None, typer.Option("--from", help="last_seen at or after (ISO-8601, UTC if no offset).")] = None,
    time_to: Annotated[str | None, typer.Option("--to", help="last_seen at or before (a bare date includes that day).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    output: Annotated[Output, typer.Option("--output", "-o", help="table for people; json for scripts.")] = Output.table,
    data_dir: DataDirOpt = None,
) -> None:
    """List incidents, newest last_seen first."""
    from marketguard.types import SEVERITY_ORDER

    if severity is not None and severity not in SEVERITY_ORDER:
        fail(f"--severity {severity!r}: expected one of {', '.join(SEVERITY_ORDER)}")
    sev: Severity | None = severity  # type: ignore[assignment]
    filters = CaseFilters(parse_time(time_from, "--from"), parse_time(time_to, "--to", end_of_day=True), sev,
                          status.value if status else None, entity, type=kind.value if kind else None)
    settings = settings_for(data_dir)
    with data_store(settings) as store:
        items = open_cases(store, settings).incidents(filters, None, limit).items
    if output is Output.json:
        print(json.dumps([_json(i) for i in items], default=str))
        return
    table = Table(title=f"{len(items)} incident(s), first seen in UTC", box=box.SIMPLE_HEAD, pad_edge=False)
    widths = {"id": max((len(i.id) for i in items), default=2), "severity": 8, "type": 12, "status": 6,
              "alerts": 6, "first seen": 11}
    for col, width in widths.items():  # ids stay whole: they are copied into `marketguard report incident`
        table.add_column(col, no_wrap=True, min_width=width, justify="right" if col == "alerts" else "left")
    table.add_column("title", overflow="fold", ratio=1)
    for i in items:
        table.add_row(i.id, f"[{LEVEL_STYLE.get(i.severity, '')}]{i.severity}[/]", i.type, i.status, str(len(i.alert_ids)),
                      f"{i.first_seen:%m-%d %H:%M}", i.title)
    Console().print(table)
