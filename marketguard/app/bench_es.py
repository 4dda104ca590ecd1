"""The Elasticsearch path of ``marketguard bench``, against a local osmem-server.

osmem-server (PyPI) is an in-memory, OpenSearch-compatible server running on this machine.
Its speed says nothing about an Elasticsearch cluster's: these figures are a wire-level sanity
check of the Elasticsearch store (``_bulk`` ingest, rule queries with ``search_after`` paging),
printed beside the same sample on an in-memory DuckDB store. Measured, never asserted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from elastic_transport import Urllib3HttpNode
from rich.console import Console
from rich.table import Table

from collectors.accesslog import read_access_log
from collectors.privacy import Pseudonymiser
from correlator.engine import run_rules
from correlator.rules import load_rules
from marketguard.store import MatchWindow, Store

__all__ = ["run_es_bench", "DEFAULT_LINES"]

#: Benign lines in the sample (osmem indexes ~200 documents/s here: keep the run near 30 s).
DEFAULT_LINES = 2_000
_REWRITE = {"accept", "content-type"}


class _OsmemNode(Urllib3HttpNode):
    """HTTP node that speaks plain ``application/json`` to osmem-server, which refuses the
    client's ``compatible-with=9`` media type and sends no ``X-Elastic-Product`` header.
    Only this benchmark uses it; the store talks to a real cluster as the client ships."""

    def perform_request(self, method: str, target: str, body: bytes | None = None, headers: Any = None, **kw: Any) -> Any:
        headers = self._plain(headers) if headers is not None else None
        self._headers = self._plain(self._headers)
        resp = super().perform_request(method, target, body=body, headers=headers, **kw)
        resp.meta.headers["x-elastic-product"] = "Elasticsearch"
        return resp

    @staticmethod
    def _plain(headers: Any) -> Any:
        headers = headers.copy()
        for name in list(headers):
            if name.lower() in _REWRITE and "vnd.elasticsearch" in headers[name]:
                headers[name] = "application/x-ndjson" if "x-ndjson" in headers[name] else "application/json"
        return headers


def _sample(lines: int, workdir: Path) -> list[pa.Table]:
    """A deterministic combined-format log of ``lines`` benign lines plus attack campaigns, parsed."""
    from marketguard.app.scenario import generate, write_log

    path = workdir / f"bench-es-{lines}.log"
    if not path.exists():
        write_log(generate(lines, seed=42, duration=timedelta(hours=1)), path)
    pseudo = Pseudonymiser(b"marketguard-bench-es")
    return [b.events for b in read_access_log(path, "combined", pseudo, batch_lines=5000)]


def _measure(store: Store, batches: list[pa.Table], rule_dirs: list[Path]) -> dict[str, Any]:
    started = time.perf_counter()
    stored = sum(store.append_events(b) for b in batches)
    ingest_s = time.perf_counter() - started
    rules = load_rules(rule_dirs, store.dialect).for_categories({"webserver"})
    started = time.perf_counter()
    result = run_rules(store, rules, MatchWindow())
    detect_s = time.perf_counter() - started
    found = sorted((d.rule_id, tuple(d.event_ids), str(d.window_start)) for d in result.detections)
    return {"events": stored, "ingest_s": ingest_s, "ingest_eps": stored / ingest_s, "rules": rules.loaded,
            "detect_s": detect_s, "hunt_eps": stored / detect_s, "detections": len(result.detections),
            "errors": len(result.errors), "found": found}


def _on_osmem(work: Callable[[Store], dict[str, Any]]) -> dict[str, Any]:
    from osmem_server import OsmemServer

    from marketguard.store._es_client import connect
    from marketguard.store.elasticsearch import ElasticsearchStore

    server = OsmemServer.start(addr="127.0.0.1:0", japanese=False)
    try:
        client = connect(server.url, node_class=_OsmemNode)
        store = ElasticsearchStore(client, prefix=f"mgbench-{uuid.uuid4().hex[:8]}")
        try:
            return work(store)
        finally:
            store.close()
    finally:
        server.close()


def run_es_bench(*, workdir: Path, rule_dirs: list[Path], lines: int = DEFAULT_LINES,
                 console: Console | None = None) -> dict[str, float]:
    """Ingest and hunt one sample on osmem-server and on DuckDB; print both, labelled."""
    from marketguard.store.duckdb import DuckDBStore

    con = console or Console()
    try:
        import osmem_server  # noqa: F401
    except ImportError:
        con.print("Elasticsearch path skipped: osmem-server is not installed (pip install osmem-server).")
        return {}
    workdir.mkdir(parents=True, exist_ok=True)
    batches = _sample(lines, workdir)
    con.print(f"Elasticsearch path: {sum(b.num_rows for b in batches):,} events on a local osmem-server …")
    es = _on_osmem(lambda store: _measure(store, batches, rule_dirs))
    duck_store = DuckDBStore(":memory:")
    try:
        duck = _measure(duck_store, batches, rule_dirs)
    finally:
        duck_store.close()
    es["same"] = es.pop("found") == duck.pop("found")
    table = Table(title="Elasticsearch API path on osmem-server (in-memory, this machine; NOT a real cluster)")
    for col in ("measure", "osmem-server", "DuckDB, same sample"):
        table.add_column(col)
    rows = [("events stored", "events", "{:,.0f}"), ("bulk ingest events/s", "ingest_eps", "{:,.0f}"),
            ("rules run", "rules", "{:.0f}"), ("rule evaluation", "detect_s", "{:.2f} s"),
            ("hunt events/s (rule evaluation)", "hunt_eps", "{:,.0f}"), ("detections", "detections", "{:,.0f}"),
            ("rules failed", "errors", "{:.0f}")]
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(es[key]), fmt.format(duck[key]))
    table.add_row("same detections on both", "yes" if es["same"] else "NO", "")
    con.print(table)
    con.print("osmem's speed is not Elasticsearch's: a wire-level sanity figure for the Elasticsearch store.",
              style="dim", highlight=False)
    return {f"es_{k}": v for k, v in es.items()}
