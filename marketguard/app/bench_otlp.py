"""OTLP benchmark: protobuf trace exports accepted through ``POST /v1/traces`` of `marketguard serve`.

Several HTTP clients post ``ExportTraceServiceRequest`` bodies of 1,000 spans (one HTTP
attribute each, 20 traces of 50 spans) and count the spans of every request answered 200,
i.e. committed. Bodies are built once as templates whose trace ids and times are placeholders;
each request swaps in fresh random trace ids and the current time, so every span is new to the
store (no duplicate is counted as accepted) and as recent as a live exporter's, while the load
generator spends its CPU on sending, not on building protobuf.
The service's CPU seconds per 10,000 spans are printed beside the wall-clock rate: the
machine is shared, and CPU time is the steadier figure.
"""

from __future__ import annotations

import random
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

__all__ = ["run_otlp_bench", "otlp_load", "otlp_templates", "fresh_body", "TARGET_SPANS_PER_S"]

TARGET_SPANS_PER_S = 20_000
SPANS = 1_000
TRACES = 20
TEMPLATES = 8
DURATION_NS = 5_000_000
_T0 = 1_000_000_007_000_000_123  # placeholder start time (2001), swapped for the current time


def otlp_templates(rng: random.Random, spans: int = SPANS, traces: int = TRACES, count: int = TEMPLATES) -> list[tuple[bytes, list[bytes]]]:
    """``count`` serialized requests of ``spans`` spans, each with its ``traces`` placeholder trace ids."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    out = []
    for _ in range(count):
        holders = [rng.randbytes(16) for _ in range(traces)]
        batch = [
            Span(trace_id=holders[i % traces], span_id=rng.randbytes(8), name="GET /api/v1/products/{id}", kind=2,
                 start_time_unix_nano=_T0, end_time_unix_nano=_T0 + DURATION_NS,
                 attributes=[KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))])
            for i in range(spans)
        ]  # fmt: skip
        resource = ResourceSpans(scope_spans=[ScopeSpans(spans=batch)])
        resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="catalog")))
        out.append((ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString(), holders))
    return out


def fresh_body(rng: random.Random, template: tuple[bytes, list[bytes]]) -> bytes:
    """The template with fresh trace ids, started 5 ms ago and ended now (fixed64 times)."""
    body, holders = template
    for holder in holders:
        body = body.replace(holder, rng.randbytes(16))
    now = time.time_ns()
    body = body.replace(struct.pack("<Q", _T0), struct.pack("<Q", now - DURATION_NS))
    return body.replace(struct.pack("<Q", _T0 + DURATION_NS), struct.pack("<Q", now))


def otlp_load(url: str, key: str, seconds: float, clients: int = 3) -> tuple[int, float, int]:
    """Post template-built exports for ``seconds``; (spans accepted, wall seconds, requests refused)."""
    templates = otlp_templates(random.Random(7))
    accepted, refused = [0], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            sent = 0
            while time.monotonic() < stop_at:
                resp = http.post("/v1/traces", content=fresh_body(rng, templates[sent % len(templates)]))
                sent += 1
                with lock:
                    if resp.status_code == 200:
                        accepted[0] += SPANS
                    else:
                        refused[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return accepted[0], time.monotonic() - started, refused[0]


def run_otlp_bench(workdir: Path, *, seconds: float = 10.0, clients: int = 3) -> dict[str, Any]:
    """Start `marketguard serve` (every web rule active), load ``/v1/traces`` and print spans/s."""
    from marketguard.app.bench_live import _cli, _cpu_seconds, _start_server
    from marketguard.app.demo import default_rule_dirs
    from marketguard.app.localserver import free_port

    con = Console()
    data = workdir / "otlp"
    for stale in data.glob("marketguard.duckdb*"):
        stale.unlink(missing_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    key = subprocess.run([_cli(), "keys", "create", "--role", "ingest", "--name", f"bench-otlp-{time.time_ns()}", "--data-dir", str(data)],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    port = free_port()
    proc = _start_server(data, port, default_rule_dirs())
    try:
        con.print(f"otlp: {clients} HTTP clients × {SPANS:,}-span protobuf exports for {seconds:.0f}s against `marketguard serve` …")
        cpu_from = _cpu_seconds(proc.pid)
        spans, elapsed, refused = otlp_load(f"http://127.0.0.1:{port}", key, seconds, clients)
        cpu = _cpu_seconds(proc.pid) - cpu_from
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    rate = spans / elapsed
    per_10k = cpu / spans * 10_000 if spans else float("nan")
    table = Table(title="OTLP/HTTP trace ingest (protobuf, /v1/traces on 127.0.0.1, DuckDB, this machine)")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    table.add_row("spans accepted", f"{spans:,} in {elapsed:.1f}s ({refused} requests refused)", "")
    table.add_row("OTLP spans accepted/s", f"{rate:,.0f}", f"≥ {TARGET_SPANS_PER_S:,}")
    table.add_row("service CPU per 10,000 spans", f"{per_10k:.3f} s", "")
    con.print(table)
    return {"spans": spans, "seconds": elapsed, "spans_per_s": rate, "refused": refused, "service_cpu_s": cpu, "cpu_s_per_10k": per_10k}
