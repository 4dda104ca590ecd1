"""The ``marketguard hunt`` command: progress on a terminal, results for people or scripts."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from correlator.rules import RuleSet
from marketguard.app.hunt import LOGSOURCES, hunt
from marketguard.app.output import detections_table, summary_table, write_csv, write_jsonl
from marketguard.config import Settings
from marketguard.errors import MarketGuardError

__all__ = ["run_hunt"]

err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]marketguard: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _check_inputs(paths: Sequence[Path], rule_dirs: Sequence[Path], logsource: str) -> None:
    if logsource not in LOGSOURCES:
        _fail(f"--logsource must be one of {', '.join(LOGSOURCES)}, not {logsource!r}")
    for path in paths:
        if not path.exists():
            _fail(f"{path}: no such file")
        if not path.is_file():
            _fail(f"{path}: not a regular file")
        if not os.access(path, os.R_OK):
            _fail(f"{path}: permission denied")
    for d in rule_dirs:
        if not d.exists():
            _fail(f"--rules {d}: no such file or directory")


def run_hunt(
    paths: Sequence[Path],
    rule_dirs: Sequence[Path],
    fmt: str,
    output: str,
    logsource: str,
    keep_db: Path | None,
    settings: Settings,
) -> None:
    """Run a hunt and print its results; exit 2 with a one-line reason on bad input."""
    _check_inputs(paths, rule_dirs, logsource)
    total = sum(p.stat().st_size for p in paths)
    show = err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=err, disable=not show, transient=True,
    )
    with progress:
        reading = progress.add_task("parsing", total=total)
        matching = progress.add_task("matching", total=None, visible=False)

        def loaded(rules: RuleSet) -> None:
            progress.update(matching, total=rules.loaded)

        def rule_done(_rule: str) -> None:
            progress.update(matching, advance=1, visible=True)

        try:
            report, store = hunt(
                paths, rule_dirs, settings, fmt=fmt, logsource=logsource, keep_db=keep_db,
                on_bytes=lambda n: progress.update(reading, completed=n),
                on_rule=rule_done, on_rules_loaded=loaded,
            )
        except MarketGuardError as exc:
            _fail(str(exc))
            raise  # unreachable
    store.close()
    detections = report.detections
    if output == "jsonl":
        write_jsonl(detections)
    elif output == "csv":
        write_csv(detections)
    else:
        out = Console()
        out.print(detections_table(detections))
        out.print(summary_table(detections))
    _print_footer(report, err if output != "table" else Console())


def _print_footer(report, console: Console) -> None:  # type: ignore[no-untyped-def]
    rs = report.rules
    rate = report.lines / max(report.ingest_seconds + report.detect_seconds, 1e-9)
    console.print(
        f"{report.lines:,} lines: {report.events:,} events, {report.dead_letters:,} dead-lettered · "
        f"{rs.loaded} rules ({len(rs.detections)} detection, {len(rs.correlations)} correlation) · "
        f"{len(report.detections):,} detections · {rate:,.0f} lines/s",
        highlight=False,
    )
    for sample in report.dead_samples:
        console.print(f"  dead letter: {sample}", highlight=False, soft_wrap=True)
    if rs.failures:
        console.print(f"[yellow]{len(rs.failures)} rule(s) could not be used; see `marketguard rules check`[/]")
    errors = report.result.errors
    for rid, msg in errors.items():
        console.print(f"[red]rule {rid} failed:[/] {msg}", highlight=False)
    sys.stdout.flush()
