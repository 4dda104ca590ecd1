"""Live benchmark: sustained HTTP ingest into `marketguard serve` with every web rule active.

The service runs as its own process (`marketguard serve`); this process generates traffic
with several concurrent HTTP clients. Every batch carries one path-traversal marker whose
event time is its send time, so detection latency is measured as *event timestamp → alert
stored* (the alert's ``created``) for every marker.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from marketguard.app.bench_otlp import TARGET_SPANS_PER_S, otlp_load
from marketguard.app.demo import default_rule_dirs, fetch_all
from marketguard.app.localserver import free_port
from marketguard.app.scenario.traffic import format_combined, normal_request

__all__ = ["run_live_bench"]

TARGET_EPS = 20_000
TARGET_P99_S = 5.0
MARKER = "/static/../../../etc/passwd"


def _cli() -> str:
    return str(Path(sys.executable).parent / "marketguard")


#: Runs ``marketguard serve`` with the engine's DEBUG cycle lines (per-stage timings) written
#: to the file named by the first argument; the service itself is configured as usual.
_SERVE_WITH_CYCLE_LOG = """
import logging, sys
handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
engine_log = logging.getLogger("correlator.live")
engine_log.setLevel(logging.DEBUG)
engine_log.addHandler(handler)
sys.argv = ["marketguard", *sys.argv[2:]]
from marketguard.app.cli import main
main()
"""


def _start_server(data: Path, port: int, rules: list[Path]) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", _SERVE_WITH_CYCLE_LOG, str(data / "engine-cycles.log"),
            "serve", "--data-dir", str(data), "--port", str(port)]
    for r in rules:
        args += ["--rules", str(r)]
    env = {**os.environ, "MARKETGUARD_RULE_INTERVAL_S": "0.5", "MARKETGUARD_INGEST_QUEUE_BATCHES": "16"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("marketguard serve did not start")


#: Normal traffic is drawn once into this many batch bodies, which the clients send in turn with
#: the current time stamped in: formatting 2,000 lines per request cost the load generator
#: about 30 ms of CPU, taken from the two cores the service under test runs on.
TEMPLATES = 16
_STAMP_AT = datetime(2000, 1, 1, tzinfo=UTC)
_STAMP = "[" + _STAMP_AT.strftime("%d/%b/%Y:%H:%M:%S +0000") + "]"


def _templates(rng: random.Random, size: int, count: int = TEMPLATES) -> list[str]:
    """``count`` bodies of ``size - 1`` normal lines, each time stamp left as :data:`_STAMP`."""
    return [
        "\n".join(format_combined(replace(normal_request(rng, _STAMP_AT), ts=_STAMP_AT)) for _ in range(size - 1))
        for _ in range(count)
    ]


def _batch(rng: random.Random, index: int, template: str) -> tuple[str, str]:
    """A request body: a template stamped with the current time, plus one marker line."""
    now = datetime.now(UTC)
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    marker = format_combined(replace(normal_request(rng, now), ts=now, ip=ip, target=f"{MARKER}?b={index}", status=404))
    return ip, template.replace(_STAMP, "[" + now.strftime("%d/%b/%Y:%H:%M:%S +0000") + "]") + "\n" + marker


def _load(url: str, key: str, seconds: float, batch: int, clients: int) -> tuple[int, int, float, dict[str, float]]:
    templates = _templates(random.Random(42), batch)
    accepted, throttled, markers = [0], [0], {}
    lock = threading.Lock()
    counter = iter(range(1, 10**9))
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}", "Content-Type": "text/plain"}, timeout=60) as http:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(counter)
                ip, body = _batch(rng, index, templates[index % len(templates)])
                resp = http.post("/api/v1/logs", content=body, headers={"X-Batch-Id": f"b{index}"})
                with lock:
                    if resp.status_code == 429:
                        throttled[0] += 1
                        continue
                    resp.raise_for_status()
                    accepted[0] += resp.json()["accepted"]
                    markers[ip] = time.time()

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return accepted[0], throttled[0], time.monotonic() - started, markers


def _latencies(url: str, key: str, markers: dict[str, float], timeout: float = 90) -> list[float]:
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        while time.monotonic() < deadline and len(found) < len(markers):
            for alert in fetch_all(http, "/api/v1/alerts"):
                ip = (alert.get("group") or {}).get("source.ip")
                if ip in markers and ip not in found:
                    created = datetime.fromisoformat(alert["created"]).timestamp()
                    first = datetime.fromisoformat(alert["first_seen"]).timestamp()
                    found[ip] = created - first
            time.sleep(0.5)
    return sorted(found.values())


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_live_bench(workdir: Path, *, seconds: float = 20.0, batch: int = 2_000, clients: int = 3) -> dict[str, Any]:
    """Run the live scenario and print accepted events/s and detection latency p50/p99."""
    con = Console()
    data = workdir / "live"
    for stale in [*data.glob("marketguard.duckdb*"), data / "engine-cycles.log"]:
        stale.unlink(missing_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    keys = {role: subprocess.run([_cli(), "keys", "create", "--role", role, "--name", f"bench-{role}-{time.time_ns()}", "--data-dir", str(data)],
                                 capture_output=True, text=True, check=True).stdout.strip() for role in ("ingest", "analyst")}
    port = free_port()
    rules = default_rule_dirs()
    proc = _start_server(data, port, rules)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['analyst']}"}) as http:
            active = len(http.get("/api/v1/rules").json()["items"])
        con.print(f"live: {clients} HTTP clients × {batch:,}-line batches for {seconds:.0f}s against `marketguard serve` with {active} active rules …")
        load_from, cpu_from = time.time(), _cpu_seconds(proc.pid)
        accepted, throttled, elapsed, markers = _load(url, keys["ingest"], seconds, batch, clients)
        lat = _latencies(url, keys["analyst"], markers)
        load_to, cpu_to = time.time(), _cpu_seconds(proc.pid)
        spans, span_s, _ = otlp_load(url, keys["ingest"], min(seconds, 10.0))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    eps = accepted / elapsed
    table = Table(title="Live service benchmark (HTTP on 127.0.0.1, DuckDB, this machine)")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    table.add_row("active rules", str(active), "≥ 100")
    table.add_row("events accepted", f"{accepted:,} in {elapsed:.1f}s ({throttled} requests answered 429)", "")
    table.add_row("accepted events/s", f"{eps:,.0f}", f"≥ {TARGET_EPS:,}")
    table.add_row("alerts found for markers", f"{len(lat)} of {len(markers)}", "all")
    table.add_row("detection latency p50", f"{_pct(lat, 0.5):.2f} s", "")
    table.add_row("detection latency p99", f"{_pct(lat, 0.99):.2f} s", f"≤ {TARGET_P99_S:.0f} s")
    table.add_row("OTLP spans accepted/s (protobuf, /v1/traces)", f"{spans / span_s:,.0f}", f"≥ {TARGET_SPANS_PER_S:,}")
    con.print(table)
    stages = _cycle_summary(data / "engine-cycles.log", load_from, load_to)
    _print_cycles(con, stages, cpu_to - cpu_from, load_to - load_from)
    return {"stages": stages, "service_cpu_s": cpu_to - cpu_from,"spans_per_s": spans / span_s, "events_per_s": eps, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "found": len(lat), "markers": len(markers),
            "median": statistics.median(lat) if lat else None}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _cycle_summary(path: Path, start: float, end: float) -> dict[str, Any]:
    """Totals of the engine cycles logged between ``start`` and ``end`` (epoch seconds):
    cycles, events, slowest cycle, and wall/CPU seconds per stage."""
    out: dict[str, Any] = {"cycles": 0, "events": 0, "seconds": 0.0, "slowest_s": 0.0, "stages": {}}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        created, _, text = line.partition(" cycle ")
        try:
            if not start <= float(created) <= end:
                continue
            values = dict(part.split("=", 1) for part in text.split())
        except ValueError:
            continue
        out["cycles"] += 1
        out["events"] += int(values.pop("events"))
        values.pop("detections", None)
        cycle = float(values.pop("seconds"))
        out["seconds"] += cycle
        out["slowest_s"] = max(out["slowest_s"], cycle)
        for stage, pair in values.items():
            wall, cpu = (float(x) for x in pair.split("/"))
            total = out["stages"].setdefault(stage, [0.0, 0.0])
            total[0], total[1] = total[0] + wall, total[1] + cpu
    return out


def _print_cycles(con: Console, summary: dict[str, Any], service_cpu: float, span: float) -> None:
    table = Table(title="Engine cycles during load and until the last alert (service DEBUG log)")
    for col in ("stage", "wall s", "engine-thread CPU s"):
        table.add_column(col)
    for stage, (wall, cpu) in summary["stages"].items():
        table.add_row(stage, f"{wall:.2f}", f"{cpu:.2f}")
    cycles = max(1, summary["cycles"])
    table.add_row("all cycles", f"{summary['seconds']:.2f}", "")
    con.print(table)
    con.print(
        f"{summary['cycles']} cycles over {summary['events']:,} events (mean {summary['seconds'] / cycles:.2f} s,"
        f" slowest {summary['slowest_s']:.2f} s); service CPU {service_cpu:.1f} s in {span:.1f} s wall."
        " Other work on this machine slows the wall-clock figures; CPU time is steadier.",
        highlight=False,
    )
