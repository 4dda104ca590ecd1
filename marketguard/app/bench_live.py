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

from marketguard.app.demo import default_rule_dirs, fetch_all
from marketguard.app.localserver import free_port
from marketguard.app.scenario.traffic import format_combined, normal_request

__all__ = ["run_live_bench"]

TARGET_EPS = 20_000
TARGET_P99_S = 5.0
MARKER = "/static/../../../etc/passwd"


def _cli() -> str:
    return str(Path(sys.executable).parent / "marketguard")


def _start_server(data: Path, port: int, rules: list[Path]) -> subprocess.Popen[bytes]:
    args = [_cli(), "serve", "--data-dir", str(data), "--port", str(port)]
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


def _batch(rng: random.Random, index: int, size: int) -> tuple[str, str]:
    now = datetime.now(UTC)
    lines = [format_combined(replace(normal_request(rng, now), ts=now)) for _ in range(size - 1)]
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    lines.append(format_combined(replace(normal_request(rng, now), ts=now, ip=ip, target=f"{MARKER}?b={index}", status=404)))
    return ip, "\n".join(lines)


def _load(url: str, key: str, seconds: float, batch: int, clients: int) -> tuple[int, int, float, dict[str, float]]:
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
                ip, body = _batch(rng, index, batch)
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


def _otlp_body(rng: random.Random, spans: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    now = time.time_ns()
    batch = [
        Span(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="GET /api/v1/products/{id}", kind=2,
             start_time_unix_nano=now - 5_000_000, end_time_unix_nano=now,
             attributes=[KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))])
        for _ in range(spans)
    ]
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=batch)])
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="catalog")))
    return ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()


def _otlp_load(url: str, key: str, seconds: float, spans: int = 1_000, clients: int = 3) -> tuple[int, float]:
    sent = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}, timeout=60) as http:
            while time.monotonic() < stop_at:
                resp = http.post("/v1/traces", content=_otlp_body(rng, spans))
                if resp.status_code == 200:
                    with lock:
                        sent[0] += spans

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return sent[0], time.monotonic() - started


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
    for stale in data.glob("marketguard.duckdb*"):
        stale.unlink()
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
        accepted, throttled, elapsed, markers = _load(url, keys["ingest"], seconds, batch, clients)
        lat = _latencies(url, keys["analyst"], markers)
        spans, span_s = _otlp_load(url, keys["ingest"], min(seconds, 10.0))
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
    table.add_row("OTLP spans accepted/s (protobuf, /v1/traces)", f"{spans / span_s:,.0f}", "≥ 20,000")
    con.print(table)
    return {"spans_per_s": spans / span_s, "events_per_s": eps, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "found": len(lat), "markers": len(markers),
            "median": statistics.median(lat) if lat else None}
