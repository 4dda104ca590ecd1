"""Render every Grafana dashboard's panels to a PNG from a real, short MarketGuard run.

``python dashboards/render.py [OUT_DIR]`` starts the real service (LocalServer: HTTP ingest,
DuckDB store, scheduled detection engine over ``rules/``), sends a short demo scenario over
HTTP, scrapes ``/metrics`` after every batch, reads alerts and incidents through the API,
then draws each dashboard (``dashboards/grafana/*.json``) with matplotlib into
``docs/dashboards/<uid>.png``. Besides the access log, the run sends gateway JSON events with
fraud campaigns, checkout traffic ending in an outage and sellers' support tickets, evaluates
the SLOs and seller SLA once, and has on-call
acknowledge and resolve a few incidents' tickets over the API, so the fraud, seller-breach and
MTTA/MTTR panels have data. Prometheus panels are drawn from the scraped samples; panels
on the Elasticsearch datasources are computed from the same events/alerts/incidents the
ES backend indexes. A panel whose metric the service does not expose yet says so.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from marketguard.app.localserver import LocalServer
from marketguard.app.scenario import generate
from marketguard.app.scenario.fraud import generate_fraud
from marketguard.app.scenario.sla import generate_sla
from marketguard.app.services import build_services
from marketguard.config import load_settings
from marketguard.store import MatchWindow

__all__ = ["Run", "drive", "render_all", "metric_names", "main"]

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "dashboards" / "grafana"
BATCH = 500
BAD_LINES = "\n".join(["this is not a combined log line"] * 3 + ['{"broken": json'])


@dataclass
class Run:
    """What one scenario run left behind: /metrics text, scraped samples, cases and events."""

    metrics_text: str = ""
    scrapes: list[tuple[float, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def metric_names(metrics_text: str) -> set[str]:
    """Every family and sample name in a Prometheus text exposition."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        if family.type == "counter":  # the parser drops _total from a counter family's name
            names.add(f"{family.name}_total")
        if family.type == "histogram":  # a labelled histogram without children has no samples
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
        names.update(s.name for s in family.samples)
    return names


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text) if fam.name.startswith("marketguard_")
        for s in fam.samples
    }


def drive(normal: int = 3_000, *, workdir: Path | None = None, keep_open: Any = None, slo_traffic: bool = True) -> Run:
    """Run a short scenario through the real service and record what it exposed.

    ``slo_traffic`` adds six hours of checkout traffic for the SLO panels (the slowest part).

    ``keep_open`` is called with (server url, run) while the server is still up, so a caller
    (the Prometheus scrape test) can point a real Prometheus at it.
    """
    tmp = Path(workdir or tempfile.mkdtemp(prefix="mg-render-"))
    settings = load_settings(data_dir=tmp / "data", rules_dirs=[REPO / "rules"], rule_interval_s=0.5)
    services = build_services(settings)
    ingest = services.keys.create("render-gateway", "ingest")
    analyst = services.keys.create("render-analyst", "analyst")
    oncall = services.keys.create("render-oncall", "oncall")
    scenario = generate(normal, seed=11)
    run = Run()
    with LocalServer(services) as server:
        run.url = server.url
        with httpx.Client(base_url=server.url, timeout=60) as client:
            _send(client, ingest, scenario.lines, run)
            _send_fraud_and_support(client, ingest, services, scenario.start, run, slo_traffic)
            _wait_for_engine(services)
            _work_tickets(client, oncall, services, run)
            run.metrics_text = client.get("/metrics").text
            run.scrapes.append((time.time(), _samples(run.metrics_text)))
            headers = {"Authorization": f"Bearer {analyst}"}
            run.alerts = client.get("/api/v1/alerts", params={"limit": 500}, headers=headers).json()["items"]
            run.incidents = client.get("/api/v1/incidents", params={"limit": 500}, headers=headers).json()["items"]
        run.events = services.store.query_events(MatchWindow()).to_pylist()
        if keep_open is not None:
            keep_open(server.url, run)
    return run


def _send(client: httpx.Client, key: str, lines: list[str], run: Run) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/plain"}
    for start in range(0, len(lines), BATCH):
        body = "\n".join(lines[start : start + BATCH])
        if start == BATCH:  # one partly broken batch, so rejection series exist
            body += "\n" + BAD_LINES
        resp = client.post("/api/v1/logs", params={"format": "combined"}, content=body,
                           headers={**headers, "X-Batch-Id": f"render-{start}"})
        resp.raise_for_status()
        run.scrapes.append((time.time(), _samples(client.get("/metrics").text)))
        time.sleep(0.3)


def _send_fraud_and_support(client: httpx.Client, key: str, services: Any, start: Any, run: Run,
                            slo_traffic: bool = True) -> None:
    """Gateway JSON events with fraud campaigns (fraud alerts by family), then six hours of
    checkout traffic ending in an outage and sellers' support tickets, and one SLO / seller-SLA
    evaluation (burn rates, breaches), scraping after each step."""
    headers = {"Authorization": f"Bearer {key}"}
    events = generate_fraud(seed=11, normal=600, start=start).events
    for first in range(0, len(events), BATCH * 2):
        body = "".join(json.dumps(e) + "\n" for e in events[first : first + BATCH * 2])
        resp = client.post("/api/v1/logs", content=body, headers={
            **headers, "Content-Type": "application/x-ndjson", "X-Batch-Id": f"render-fraud-{first}"})
        resp.raise_for_status()
        run.scrapes.append((time.time(), _samples(client.get("/metrics").text)))
        time.sleep(0.1)
    sla = generate_sla(11)
    if slo_traffic:
        body = "".join(json.dumps(e) + "\n" for e in sla.api_events)
        client.post("/api/v1/logs", content=body, headers={
            **headers, "Content-Type": "application/x-ndjson", "X-Batch-Id": "render-checkout"}).raise_for_status()
    client.post("/api/v1/support-events", json=sla.support_events, headers=headers).raise_for_status()
    _wait_for_engine(services)
    services.run_sla()  # one SLO and seller-SLA evaluation now rather than on its interval
    run.scrapes.append((time.time(), _samples(client.get("/metrics").text)))


def _work_tickets(client: httpx.Client, key: str, services: Any, run: Run, limit: int = 6) -> None:
    """On-call acknowledges, then resolves, the tickets of a few incidents (MTTA, MTTR).

    The tickets are the ones the ``open_ticket`` playbook step opens (routing policy, same
    idempotency key), opened here so the run need not wait for every playbook's notifications.
    """
    ids = []
    for incident in services.cases.incidents(None, None, limit).items:
        detail = services.cases.incident(incident.id)
        for new in services.ticket_policy.plan(detail.incident, detail.alerts, now=datetime.now(UTC)):
            ids.append(services.tickets.open(new, actor="playbook:render").ticket.id)
    headers = {"Authorization": f"Bearer {key}"}
    for status in ("acknowledged", "resolved"):
        time.sleep(0.5)
        for ticket_id in ids:
            client.patch(f"/api/v1/tickets/{ticket_id}", json={"status": status}, headers=headers).raise_for_status()
        run.scrapes.append((time.time(), _samples(client.get("/metrics").text)))


def _wait_for_engine(services: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (services.store.get_checkpoint("engine") or {}).get("seq", 0) >= services.store.max_seq():
            return
        time.sleep(0.1)
    raise TimeoutError("the detection engine did not catch up")


# -- drawing ---------------------------------------------------------------------------------------
_METRIC = re.compile(r"\b(marketguard_[a-z0-9_]+)")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_MATCHER = re.compile(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"')
_AGGREGATION = re.compile(r"\b(?:sum|max|min|avg|count|topk|bottomk)\s*\(")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _series(run: Run, expr: str, legend: str = "") -> dict[str, tuple[list[float], list[float]]]:
    """Approximate a panel expression on the scraped samples: its metric and label matchers,
    summed ``by`` its grouping labels (an expression without aggregation keeps the series its
    ``legend`` names apart); counters become rates, ``histogram_quantile`` a quantile of the
    bucket increments between scrapes, ``time() - x`` an age."""
    names = _METRIC.findall(expr)
    if not names:
        return {}
    name = names[0]
    grouping = _BY.search(expr)
    labels = grouping.group(1).split(",") if grouping else ([] if _AGGREGATION.search(expr) else _LEGEND.findall(legend))
    by = [x.strip() for x in labels if x.strip() and x.strip() != "le"]
    matchers = [(k, op, v) for k, op, v in _MATCHER.findall(expr) if not v.startswith("$")]
    quantile = re.search(r"histogram_quantile\(\s*([0-9.]+)", expr)
    raw: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * len(run.scrapes))
    for i, (_, samples) in enumerate(run.scrapes):
        for (sname, labels), value in samples.items():
            lab = dict(labels)
            if sname == name and all(_match(lab.get(k, ""), op, v) for k, op, v in matchers):
                key = ", ".join(lab.get(b, "") for b in by) or name.removesuffix("_bucket")
                raw[(key, lab.get("le", ""))][i] += value
    times = [t for t, _ in run.scrapes]
    if quantile:
        return _quantiles(raw, times, float(quantile.group(1)))
    out = {key: (times, values) for (key, _), values in raw.items()}
    if name.endswith("_total") or "rate(" in expr or "increase(" in expr:
        return {k: _rate(ts, vs) for k, (ts, vs) in out.items()}
    if "time() -" in expr:
        return {k: (ts, [max(0.0, t - v) if v else 0.0 for t, v in zip(ts, vs, strict=True)]) for k, (ts, vs) in out.items()}
    return out


def _quantiles(raw: dict[tuple[str, str], list[float]], times: list[float], q: float) -> dict[str, tuple[list[float], list[float]]]:
    """Prometheus' histogram_quantile over the bucket increments between consecutive scrapes."""
    groups: dict[str, list[tuple[float, list[float]]]] = defaultdict(list)
    for (key, le), values in raw.items():
        groups[key].append((float(le), values))
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key, buckets in groups.items():
        buckets.sort()
        ts, vs = [], []
        for i in range(1, len(times)):
            counts = [(le, v[i] - v[i - 1]) for le, v in buckets]
            total = counts[-1][1]
            if total <= 0:
                continue
            rank, lower, below = q * total, 0.0, 0.0
            for le, count in counts:
                if count >= rank:
                    upper = le if le != float("inf") else lower
                    vs.append(lower + (upper - lower) * (rank - below) / max(count - below, 1e-9))
                    ts.append(times[i])
                    break
                lower, below = le, count
        out[key] = (ts, vs)
    return out


def _match(value: str, op: str, want: str) -> bool:
    if op == "=":
        return value == want
    if op == "!=":
        return value != want
    return re.fullmatch(want, value) is not None


def _rate(ts: list[float], vs: list[float]) -> tuple[list[float], list[float]]:
    pairs = list(zip(ts, vs, strict=True))
    return [b[0] for a, b in zip(pairs, pairs[1:], strict=False)], [
        max(0.0, (b[1] - a[1]) / max(b[0] - a[0], 1e-9)) for a, b in zip(pairs, pairs[1:], strict=False)
    ]


def _docs(run: Run, target: dict[str, Any]) -> list[dict[str, Any]]:
    uid = str(target.get("datasource", {}).get("uid", ""))
    docs = run.alerts if "alerts" in uid else run.incidents if "incidents" in uid else run.events
    return [d for d in docs if _lucene(d, target.get("query", ""))]


def _lucene(doc: dict[str, Any], query: str) -> bool:
    """The conjunctive ``field:value`` / ``field:>=N`` subset our dashboards use."""
    for term in filter(None, (t.strip() for t in query.split(" AND "))):
        fname, _, want = term.partition(":")
        value = doc.get(fname.strip())
        want = want.strip().strip('"')
        if want[:2] in (">=", "<=") or want[:1] in (">", "<"):
            op = want[:2] if want[1:2] == "=" else want[:1]
            if value is None or not eval_compare(float(value), op, float(want[len(op):])):
                return False
        elif str(value) != want:
            return False
    return True


def eval_compare(a: float, op: str, b: float) -> bool:
    """``a op b`` for the comparison operators of a Lucene range shorthand."""
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]


def _draw_es(ax: Any, run: Run, target: dict[str, Any]) -> bool:
    docs = _docs(run, target)
    if not docs:
        return False
    terms = next((b["field"] for b in target.get("bucketAggs", []) if b["type"] == "terms"), None)
    if not any(b["type"] == "date_histogram" for b in target.get("bucketAggs", [])):
        counts: dict[str, int] = defaultdict(int)
        for d in docs:
            if d.get(terms) is not None:  # like a terms aggregation: missing values make no bucket
                counts[str(d.get(terms))] += 1
        if not counts:
            return False
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
        ax.barh([k[:40] for k, _ in top][::-1], [v for _, v in top][::-1], color="#5794f2")
        ax.tick_params(axis="y", labelsize=6)
        return True
    tf = target.get("timeField", "@timestamp")
    metric = target["metrics"][0]
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for d in docs:
        value = 1.0 if metric["type"] == "count" else d.get(metric.get("field", ""))
        if d.get(tf) is not None and value is not None and (not terms or d.get(terms) is not None):
            per[str(d.get(terms)) if terms else metric["type"]][str(d[tf])[:16]].append(float(value))
    if not per:
        return False
    minutes = sorted({m for series in per.values() for m in series})
    pct = float(metric.get("settings", {}).get("percents", ["50"])[0])
    for label, series in sorted(per.items(), key=lambda kv: -len(kv[1]))[:6]:
        values = [_reduce(series.get(m, []), metric["type"], pct) for m in minutes]
        ax.plot(range(len(minutes)), values, label=label[:30])
    ax.set_xlabel("minute of event time", fontsize=6)
    return True


def _reduce(values: list[float], kind: str, pct: float) -> float:
    if kind == "count" or not values:
        return float(len(values))
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _draw_panel(ax: Any, run: Run, panel: dict[str, Any], pending: set[str]) -> None:
    ax.set_title(panel["title"], fontsize=8)
    ax.tick_params(labelsize=6)
    drew = False
    for target in panel.get("targets", []):
        if "expr" in target:
            series = sorted(_series(run, target["expr"], target.get("legendFormat", "")).items(),
                            key=lambda kv: -max(kv[1][1], default=0))
            for label, (ts, vs) in series[:8]:
                if ts:
                    t0 = run.scrapes[0][0]
                    legend = target.get("legendFormat", "")
                    ax.plot([x - t0 for x in ts], vs, label=(label if "{{" in legend or not legend else legend)[:30],
                            marker="o" if len(ts) == 1 else None)  # one point (a stat): still visible
                    drew = True
        else:
            drew = _draw_es(ax, run, target) or drew
    if drew and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=5, loc="upper left", framealpha=0.6)
    if not drew:
        missing = sorted({m for t in panel.get("targets", []) for m in _METRIC.findall(t.get("expr", ""))} & pending)
        note = "metric not exposed yet:\n" + "\n".join(missing) if missing else "no data in this short run"
        ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=7, color="#888", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])


def render_all(run: Run, out_dir: Path, pending: set[str] | None = None) -> list[Path]:
    """Draw one PNG per Grafana dashboard; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(GRAFANA.glob("*.json")):
        dash = json.loads(path.read_text())
        panels = [p for p in dash["panels"] if p.get("type") != "row"]
        cols = 3
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw_panel(ax, run, panel, pending or set())
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"{dash['title']} — MarketGuard demo run (x: seconds of the run)", fontsize=11)
        fig.tight_layout()
        out = out_dir / f"{dash['uid']}.png"
        fig.savefig(out, dpi=80)
        plt.close(fig)
        written.append(out)
    return written


def main() -> None:
    """Command-line entry: run the scenario, render into ``docs/dashboards`` (or argv[1])."""
    import yaml

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "dashboards"
    pending = set(yaml.safe_load((REPO / "deploy/prometheus/pending-metrics.yml").read_text())["pending"])
    run = drive()
    for path in render_all(run, out, pending):
        print(path)


if __name__ == "__main__":
    main()
