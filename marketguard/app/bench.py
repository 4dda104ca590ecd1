"""``make bench``: measured, never asserted. Prints events/s, rules, detections and peak RSS.

The hunt runs in a child process so that its peak memory is measured alone (the log
generator's memory is not counted).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["run_bench"]

TARGET_EVENTS_PER_S = 300_000
TARGET_RSS_MB = 1024


def _ensure_log(lines: int, workdir: Path, con: Console) -> Path:
    from marketguard.app.scenario import generate, write_log

    path = workdir / f"bench-{lines}.log"
    if path.exists():
        return path
    con.print(f"generating {lines:,} deterministic combined-format lines into {path} …")
    scenario = generate(lines, seed=42, duration=timedelta(hours=24), repeats=max(1, lines // 50_000))
    write_log(scenario, path)
    return path


def _child(log: str, rule_dirs: list[str]) -> None:
    from marketguard.app.hunt import hunt
    from marketguard.config import load_settings

    settings = load_settings(data_dir=Path(log).parent / "state")
    started = time.perf_counter()
    report, store = hunt([Path(log)], [Path(d) for d in rule_dirs], settings, fmt="combined")
    total = time.perf_counter() - started
    slowest = sorted(report.result.runs.values(), key=lambda r: -r.seconds)[:5]
    titles = {r.id: r.title for r in [*report.rules.detections, *report.rules.correlations]}
    store.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "lines": report.lines, "events": report.events, "dead": report.dead_letters,
        "rules": report.rules.loaded, "detections": len(report.detections),
        "ingest_s": report.ingest_seconds, "detect_s": report.detect_seconds, "total_s": total,
        "rules_load_s": report.rules_seconds, "prefilter_wait_s": report.prefilter_wait_seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "slowest": [(titles.get(r.rule_id, r.rule_id), round(r.seconds, 3)) for r in slowest],
    }))


def run_bench(*, lines: int, workdir: Path, rule_dirs: list[Path] | None, es: bool = True) -> dict[str, float]:
    """Generate (once) and hunt a ``lines``-line log; print the figures next to the targets.
    With ``es``, also the Elasticsearch path on a local osmem-server (:mod:`marketguard.app.bench_es`)."""
    from marketguard.app.demo import default_rule_dirs

    con = Console()
    workdir.mkdir(parents=True, exist_ok=True)
    log = _ensure_log(lines, workdir, con)
    dirs = [str(d) for d in (rule_dirs or default_rule_dirs())]
    con.print(f"hunting {log} with {', '.join(dirs)} …")
    proc = subprocess.run(
        [sys.executable, "-m", "marketguard.app.bench", "child", str(log), *dirs],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        con.print(proc.stderr)
        raise SystemExit(proc.returncode)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    eps = stats["events"] / stats["total_s"]
    table = Table(title="Offline hunt benchmark (DuckDB, this machine)")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    table.add_row("lines parsed", f"{stats['lines']:,}", "")
    table.add_row("rules run", str(stats["rules"]), "")
    table.add_row("detections", f"{stats['detections']:,}", "")
    table.add_row("parse + store (+ prefilter scan)", f"{stats['ingest_s']:.2f} s", "")
    table.add_row("  rule loading, overlapped", f"{stats['rules_load_s']:.2f} s", "")
    table.add_row("rule evaluation", f"{stats['detect_s']:.2f} s", "")
    table.add_row("  of which prefilter's last batches", f"{stats['prefilter_wait_s']:.2f} s", "")
    table.add_row("CPU time (user + system)", f"{stats['cpu_s']:.1f} s", "")
    table.add_row("events/s end to end", f"{eps:,.0f}", f"≥ {TARGET_EVENTS_PER_S:,}")
    table.add_row("peak RSS", f"{rss_mb:,.0f} MB", f"≤ {TARGET_RSS_MB:,} MB")
    con.print(table)
    con.print("slowest rules: " + ", ".join(f"{r} {s}s" for r, s in stats["slowest"]), highlight=False)
    con.print(
        "Other work on this machine slows the wall-clock figures; CPU time is steadier.",
        style="dim", highlight=False,
    )
    if es:
        from marketguard.app.bench_es import run_es_bench

        run_es_bench(workdir=workdir, rule_dirs=[Path(d) for d in dirs], console=con)
    return {"events_per_s": eps, "rss_mb": rss_mb}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3:])
