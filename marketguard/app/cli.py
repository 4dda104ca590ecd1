"""The ``marketguard`` command line."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from marketguard.app.cli_common import DataDirOpt, err, fail, settings_for
from marketguard.config import load_settings
from marketguard.errors import MarketGuardError

__all__ = ["app", "main"]

app = typer.Typer(
    name="marketguard",
    help="MarketGuard: collect API logs, detect attacks, fraud and SLA breaches, respond.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
es_app = typer.Typer(help="The Elasticsearch backend.", no_args_is_help=True)
rules_app = typer.Typer(help="Work with Sigma rule directories.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(config_app, name="config")
app.add_typer(es_app, name="es")

class Fmt(StrEnum):
    auto = "auto"
    combined = "combined"
    nginx_json = "nginx-json"
    jsonl = "jsonl"


class HuntOutput(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class CheckOutput(StrEnum):
    table = "table"
    json = "json"


@app.command()
def hunt(
    paths: Annotated[list[Path], typer.Argument(help="Log files to hunt (plain or .gz).", show_default=False)],
    rules: Annotated[list[Path], typer.Option("--rules", "-r", help="Sigma rule directory (repeatable).")],
    fmt: Annotated[Fmt, typer.Option("--format", "-f", help="Input format; auto detects per file.")] = Fmt.auto,
    output: Annotated[HuntOutput, typer.Option("--output", "-o", help="table for people; jsonl or csv (one detection per line) for scripts.")] = HuntOutput.table,
    logsource: Annotated[str, typer.Option("--logsource", help="Sigma logsource category of the input: webserver (inbound API/web logs) or proxy (outbound proxy logs).")] = "webserver",
    keep_db: Annotated[Path | None, typer.Option("--keep-db", help="Keep the parsed events in this DuckDB file instead of memory.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Hunt through log files offline with Sigma rules.

    Parses each file with the same collector as the live service (personal data pseudonymised),
    stores it in a scratch DuckDB store and runs every rule whose logsource fits. Lines that
    cannot be parsed are dead-lettered and counted. Exit code 0 when the hunt ran (with or
    without detections), 2 on bad usage or unreadable input.
    """
    from marketguard.app.hunt_cli import run_hunt

    run_hunt(paths, rules, fmt.value, output.value, logsource, keep_db, settings_for(data_dir))


@rules_app.command("check")
def rules_check(
    dirs: Annotated[list[Path], typer.Argument(help="Rule directories or files.")],
    output: Annotated[CheckOutput, typer.Option("--output", "-o", help="table, or json: {\"loaded\": N, \"failed\": [{\"file\", \"reason\"}]}")] = CheckOutput.table,
) -> None:
    """Validate and compile Sigma rules; list every rule that cannot be used, with the reason."""
    from correlator.rules import load_rules

    for d in dirs:
        if not d.exists():
            fail(f"{d}: no such file or directory")
    rs = load_rules(dirs)
    if output is CheckOutput.json:
        print(json.dumps({"loaded": rs.loaded, "failed": [{"file": f.file, "reason": f.reason} for f in rs.failures]}))
        return
    con = Console()
    con.print(f"[bold]{rs.loaded}[/] rules loaded ({len(rs.detections)} detection, {len(rs.correlations)} correlation), [bold]{len(rs.failures)}[/] failed")
    for f in rs.failures:
        con.print(f"[red]FAILED[/] {f.file}: {f.reason}", highlight=False, soft_wrap=True)


@es_app.command("setup")
def es_setup(data_dir: DataDirOpt = None) -> None:
    """Create or update index templates, ILM policy and data streams (or aliases); idempotent.

    Uses MARKETGUARD_STORE=elasticsearch and MARKETGUARD_ES_URL (plus credentials) from the
    configuration; prints what the cluster supports.
    """
    from marketguard.store import open_store

    settings = settings_for(data_dir)
    if settings.store != "elasticsearch":
        fail("set MARKETGUARD_STORE=elasticsearch (and MARKETGUARD_ES_URL) to set up Elasticsearch")
    try:
        store = open_store(settings)
    except MarketGuardError as exc:
        fail(str(exc))
        raise
    print(json.dumps(getattr(store, "capabilities", {}), default=str, indent=2))
    store.close()


@config_app.command("show")
def config_show(data_dir: DataDirOpt = None) -> None:
    """Print the effective configuration as JSON, secrets masked."""
    print(json.dumps(settings_for(data_dir).masked(), indent=2, default=str))


@app.command()
def demo(
    data_dir: DataDirOpt = None,
    normal: Annotated[int, typer.Option(help="Benign requests in the scenario.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Scenario seed (same seed, same traffic).")] = 7,
) -> None:
    """Replay a realistic marketplace scenario with injected attacks through the real pipeline
    and print what was detected against the scenario's ground truth."""
    from marketguard.app.demo import run_demo

    run_demo(settings_for(data_dir or Path(".marketguard/demo")), normal=normal, seed=seed)


@app.command()
def bench(
    lines: Annotated[int, typer.Option(help="Lines of combined-format log to generate and hunt.")] = 1_000_000,
    workdir: Annotated[Path, typer.Option(help="Where generated data is kept between runs.")] = Path("bench-data"),
    rules: Annotated[list[Path] | None, typer.Option("--rules", help="Rule directories (default: SigmaHQ web rules + ours).")] = None,
    offline: Annotated[bool, typer.Option(help="Run the offline hunt benchmark.")] = True,
    live: Annotated[bool, typer.Option(help="Run the live HTTP ingest + detection benchmark.")] = True,
    live_seconds: Annotated[float, typer.Option(help="How long the live benchmark sends traffic.")] = 20.0,
    only: Annotated[str | None, typer.Option("--only", help="Run only this benchmark: offline, live, otlp or slo.")] = None,
    es: Annotated[bool, typer.Option("--es/--no-es", help="With the offline benchmark, also the Elasticsearch path on a local osmem-server (wire-level figures, not a cluster's).")] = True,
) -> None:
    """Benchmarks, measured and printed (never asserted).

    Offline: generate a deterministic log and hunt it end to end (events/s, peak memory).
    Live: sustained HTTP ingest into `marketguard serve` with every web rule active
    (accepted events/s, detection latency p50/p99 from event timestamp to stored alert).
    OTLP (`--only otlp`; the live run measures it too): spans/s and service CPU through /v1/traces.
    """
    if only not in (None, "offline", "live", "otlp", "slo"):
        fail(f"--only takes offline, live, otlp or slo, not {only!r}")
    if offline and only in (None, "offline"):
        from marketguard.app.bench import run_bench

        run_bench(lines=lines, workdir=workdir, rule_dirs=rules, es=es)
    if live and only in (None, "live"):
        from marketguard.app.bench_live import run_live_bench

        run_live_bench(workdir, seconds=live_seconds)
    if only == "otlp":
        from marketguard.app.bench_otlp import run_otlp_bench

        run_otlp_bench(workdir)
    if only in (None, "slo"):
        from marketguard.app.bench_slo import run_slo_bench

        run_slo_bench()


@app.command()
def serve(
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1, env MARKETGUARD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8080, env MARKETGUARD_PORT).")] = None,
    rules: Annotated[list[Path] | None, typer.Option("--rules", help="Rule directories (default: ./rules, env MARKETGUARD_RULES_DIRS).")] = None,
    monitors: Annotated[Path | None, typer.Option("--monitors", help="Uptime monitors YAML (default <data-dir>/monitors.yaml, if present).")] = None,
) -> None:
    """Run the service: HTTP API (ingest, alerts, incidents, /metrics) and the detection scheduler.

    One process on the embedded DuckDB store; stop it with Ctrl-C or SIGTERM (acknowledged
    events are already committed; queued ones are flushed before exit).
    """
    import uvicorn

    from marketguard.app.api import create_app
    from marketguard.app.services import build_services

    try:
        settings = load_settings(data_dir=data_dir, host=host, port=port, rules_dirs=rules, monitors_file=monitors)
        services = build_services(settings)
    except MarketGuardError as exc:
        fail(str(exc))
        raise
    err.print(f"MarketGuard serving on http://{settings.host}:{settings.port} (data in {settings.data_dir}, "
              f"{services.rules.loaded} rules, {len(services.rules.failures)} failed)", highlight=False)
    uvicorn.run(create_app(services), host=settings.host, port=settings.port, log_level="info")


def _register_subcommands() -> None:
    from marketguard.app.cli_approvals import approvals_app
    from marketguard.app.cli_audit import audit_app
    from marketguard.app.cli_incidents import incidents_app
    from marketguard.app.cli_keys import keys_app
    from marketguard.app.cli_report import report_app
    from marketguard.app.cli_tickets import tickets_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(tickets_app, name="tickets")
    app.add_typer(audit_app, name="audit")
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(incidents_app, name="incidents")
    app.add_typer(report_app, name="report")


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except MarketGuardError as exc:
        err.print(f"[bold red]marketguard: error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
