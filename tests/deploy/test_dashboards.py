"""Grafana dashboards and Kibana saved objects: structure, and cross-checks against the real
service (/metrics of a live run), the event schema, the ES mappings and the case models."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from marketguard.cases import Alert, Incident
from marketguard.schema import EVENT_FIELDS

REPO = Path(__file__).resolve().parents[2]
GRAFANA_FILES = sorted((REPO / "dashboards" / "grafana").glob("*.json"))
KIBANA_FILES = sorted((REPO / "dashboards" / "kibana").glob("*.ndjson"))
METRIC = re.compile(r"\b(marketguard_[a-z0-9_]+)")
KQL_FIELD = re.compile(r"([@A-Za-z_][\w.@]*)\s*(?::|>=|<=|>|<)")
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "barchart", "gauge", "piechart", "text", "row"}
REQUIRED_VARS = {"datasource", "service", "seller", "severity"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _es_event_fields() -> set[str]:
    """Dotted field names of the ES event mapping (marketguard.store.es_setup), sub-fields included."""
    try:
        from marketguard.store.es_setup import event_mappings
    except ImportError:  # the ES backend is optional: the schema alone then decides
        return set(EVENT_FIELDS)
    out: set[str] = set()

    def walk(props: dict[str, Any], prefix: str) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if "properties" in spec:
                walk(spec["properties"], f"{path}.")
            else:
                out.add(path)
                out.update(f"{path}.{sub}" for sub in spec.get("fields", {}))

    walk(event_mappings()["properties"], "")
    return out


#: Fields each index family really has: events from the schema AND the ES mapping; cases from their models.
EVENT_OK = set(EVENT_FIELDS) & _es_event_fields()
CASE_FIELDS = {
    "alerts": {f.name for f in dataclasses.fields(Alert)},
    "incidents": {f.name for f in dataclasses.fields(Incident)},
    "events": EVENT_OK,
}


def _events_index() -> str:
    try:
        from marketguard.store.es_setup import IndexNames
    except ImportError:
        return "marketguard-events"
    return IndexNames().events


# -- Grafana -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", GRAFANA_FILES, ids=_ids(GRAFANA_FILES))
def test_grafana_dashboard_structure(path: Path) -> None:
    """Stable uid, templated datasources and variables, unique ids, sane gridPos, refIds."""
    dash = _load(path)
    assert dash["uid"] == f"mg-{path.stem}", "uid must be stable: mg-<file stem>"
    assert "id" not in dash or dash["id"] is None, "provisioned dashboards must not pin a database id"
    assert dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert REQUIRED_VARS <= set(variables), f"missing variables {REQUIRED_VARS - set(variables)}"
    ds_vars = {n for n, v in variables.items() if v["type"] == "datasource"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    problems = []
    for panel in dash["panels"]:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        grid = panel["gridPos"]
        if not (all(isinstance(grid[k], int) for k in "xywh") and grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0):
            problems.append(f"{where}: bad gridPos {grid}")
        if panel["type"] not in PANEL_TYPES:
            problems.append(f"{where}: unknown panel type {panel['type']}")
        refs = [t.get("refId") for t in panel.get("targets", [])]
        if not refs or len(refs) != len(set(refs)) or not all(refs):
            problems.append(f"{where}: refIds must be present and unique, got {refs}")
        for ds in [panel["datasource"]] + [t["datasource"] for t in panel.get("targets", [])]:
            uid = ds.get("uid", "")
            if not (uid.startswith("${") and uid[2:-1] in ds_vars):
                problems.append(f"{where}: datasource {ds} is not a templated datasource variable")
        for target in panel.get("targets", []):
            kind = target["datasource"]["type"]
            if kind == "prometheus" and not target.get("expr"):
                problems.append(f"{where}: prometheus target without expr")
            if kind == "elasticsearch" and not (target.get("metrics") and target.get("bucketAggs") and target.get("timeField")):
                problems.append(f"{where}: elasticsearch target needs metrics, bucketAggs and timeField")
    assert not _overlaps(dash["panels"]), f"overlapping panels: {_overlaps(dash['panels'])}"
    assert not problems, "\n".join(problems)


def _overlaps(panels: list[dict[str, Any]]) -> list[tuple[int, int]]:
    cells: dict[tuple[int, int], int] = {}
    clashes = []
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells and cells[(x, y)] != p["id"]:
                    clashes.append((cells[(x, y)], p["id"]))
                cells[(x, y)] = p["id"]
    return sorted(set(clashes))


def test_grafana_uids_unique_and_expected() -> None:
    uids = [_load(p)["uid"] for p in GRAFANA_FILES]
    assert len(uids) == len(set(uids))
    assert {"mg-soc-overview", "mg-detection-health", "mg-slos", "mg-sellers", "mg-fraud"} <= set(uids)


def _promql(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else "")
    return exprs


@pytest.mark.parametrize("path", GRAFANA_FILES, ids=_ids(GRAFANA_FILES))
def test_grafana_promql_metrics_exist(path: Path, known_metrics: set[str]) -> None:
    """Every marketguard_* name in a panel or variable query is in the live /metrics (or pending)."""
    used = {m for e in _promql(_load(path)) for m in METRIC.findall(e)}
    assert used, "a dashboard should query MarketGuard's metrics"
    unknown = sorted(used - known_metrics)
    assert not unknown, f"not exposed by the service and not in pending-metrics.yml: {unknown}"


def _es_targets(dash: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            if t["datasource"]["type"] == "elasticsearch":
                out.append((t["datasource"]["uid"][len("${ds_"):-1], t))
    return out


def _es_fields(target: dict[str, Any]) -> set[str]:
    fields = {target["timeField"], *KQL_FIELD.findall(target.get("query", ""))}
    fields.update(a["field"] for a in target["bucketAggs"] if a.get("field"))
    fields.update(m["field"] for m in target["metrics"] if m.get("field"))
    return fields


@pytest.mark.parametrize("path", GRAFANA_FILES, ids=_ids(GRAFANA_FILES))
def test_grafana_es_fields_exist(path: Path) -> None:
    """Fields of ES panels exist: events in EVENT_FIELDS and the ES mapping, cases in their models."""
    bad = [
        f"{kind}: {field}"
        for kind, target in _es_targets(_load(path))
        for field in _es_fields(target)
        if field not in CASE_FIELDS[kind]
    ]
    assert not bad, f"unknown fields: {bad}"


def test_pending_metrics_are_used_and_not_yet_exposed(
    pending_metrics: dict[str, dict[str, Any]], live_metric_names: set[str]
) -> None:
    """pending-metrics.yml lists only names something uses; exposed ones should leave the list."""
    used = {m for p in GRAFANA_FILES for e in _promql(_load(p)) for m in METRIC.findall(e)}
    used |= {m for p in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml") for m in METRIC.findall(p.read_text())}
    base = {re.sub(r"_(bucket|sum|count)$", "", u) for u in used} | used
    unused = sorted(set(pending_metrics) - base)
    assert not unused, f"pending metrics nothing uses: {unused}"
    landed = sorted(set(pending_metrics) & live_metric_names)
    if landed:
        warnings.warn(f"now exposed, remove from pending-metrics.yml: {landed}", stacklevel=1)


# -- Kibana --------------------------------------------------------------------------------------
def _objects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("path", KIBANA_FILES, ids=_ids(KIBANA_FILES))
def test_kibana_saved_objects_resolve(path: Path) -> None:
    """Every object is importable in shape and every reference (incl. panels) resolves in the file."""
    objects = _objects(path)
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate saved-object ids"
    present = set(keys)
    problems = []
    for obj in objects:
        assert {"id", "type", "attributes", "references"} <= set(obj), obj.get("id")
        assert obj["attributes"].get("title"), obj["id"]
        names = {r["name"] for r in obj["references"]}
        for ref in obj["references"]:
            if (ref["type"], ref["id"]) not in present:
                problems.append(f"{obj['id']}: reference {ref} does not resolve in {path.name}")
        meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
        if "searchSourceJSON" in meta:
            source = json.loads(meta["searchSourceJSON"])
            if "indexRefName" in source and source["indexRefName"] not in names:
                problems.append(f"{obj['id']}: indexRefName {source['indexRefName']} has no reference")
        if obj["type"] == "dashboard":
            for panel in json.loads(obj["attributes"]["panelsJSON"]):
                if panel["panelRefName"] not in names:
                    problems.append(f"{obj['id']}: panel {panel['panelIndex']} reference missing")
        if obj["type"] == "visualization":
            json.loads(obj["attributes"]["visState"])
    assert any(o["type"] == "dashboard" for o in objects), "each file ships a dashboard"
    assert not problems, "\n".join(problems)


def _view_kind(title: str) -> str:
    for kind in ("alerts", "incidents", "events"):
        if f"-{kind}" in title:
            return kind
    raise AssertionError(f"data view {title} is not a MarketGuard index")


def _kibana_fields(obj: dict[str, Any]) -> set[str]:
    attrs = obj["attributes"]
    fields: set[str] = set(attrs.get("columns", []))
    fields.update(s[0] for s in attrs.get("sort", []))
    meta = attrs.get("kibanaSavedObjectMeta", {})
    if "searchSourceJSON" in meta:
        fields.update(KQL_FIELD.findall(json.loads(meta["searchSourceJSON"]).get("query", {}).get("query", "")))
    if "visState" in attrs:
        for agg in json.loads(attrs["visState"])["aggs"]:
            if agg["params"].get("field"):
                fields.add(agg["params"]["field"])
    return fields


@pytest.mark.parametrize("path", KIBANA_FILES, ids=_ids(KIBANA_FILES))
def test_kibana_fields_exist(path: Path) -> None:
    """Fields in data views, searches and visualizations exist for the index they read."""
    objects = _objects(path)
    views = {o["id"]: o["attributes"] for o in objects if o["type"] == "index-pattern"}
    bad = []
    for view in views.values():
        kind = _view_kind(view["title"])
        if view["timeFieldName"] not in CASE_FIELDS[kind]:
            bad.append(f"{view['title']}: time field {view['timeFieldName']}")
        if kind == "events" and not fnmatch.fnmatch(_events_index(), view["title"]):
            bad.append(f"{view['title']} does not match the ES event index {_events_index()}")
    for obj in objects:
        for ref in obj["references"]:
            if ref["type"] == "index-pattern":
                kind = _view_kind(views[ref["id"]]["title"])
                bad += [f"{obj['id']}: {f} not in {kind}" for f in _kibana_fields(obj) if f not in CASE_FIELDS[kind]]
    assert not bad, "\n".join(bad)


def test_kibana_covers_required_dashboards() -> None:
    titles = {o["attributes"]["title"] for p in KIBANA_FILES for o in _objects(p) if o["type"] == "dashboard"}
    for topic in ("incidents", "security alerts", "fraud", "API traffic"):
        assert any(topic.lower() in t.lower() for t in titles), topic


# -- rendered PNGs -------------------------------------------------------------------------------
def test_render_draws_every_dashboard(render: Any, demo_run: Any, tmp_path: Path, pending_metrics: dict[str, Any]) -> None:
    """dashboards/render.py draws one PNG per dashboard from the real run, most panels with data."""
    written = render.render_all(demo_run, tmp_path, set(pending_metrics))
    assert sorted(p.name for p in written) == sorted(f"{_load(p)['uid']}.png" for p in GRAFANA_FILES)
    assert all(p.stat().st_size > 10_000 for p in written)
    assert demo_run.alerts and demo_run.incidents, "the demo run should detect something"


def test_docs_pngs_exist_for_every_dashboard() -> None:
    for path in GRAFANA_FILES:
        png = REPO / "docs" / "dashboards" / f"{_load(path)['uid']}.png"
        assert png.is_file(), f"{png} missing: run `python dashboards/render.py`"


@pytest.mark.parametrize("path", GRAFANA_FILES, ids=_ids(GRAFANA_FILES))
def test_grafana_datasource_variables_match_provisioning(path: Path) -> None:
    """Each datasource variable selects exactly one provisioned datasource of its type."""
    import yaml

    provisioned = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/marketguard.yml").read_text())["datasources"]
    for var in _load(path)["templating"]["list"]:
        if var["type"] != "datasource":
            continue
        pattern = var.get("regex", "").strip("/") or ".*"
        matches = [d["name"] for d in provisioned if d["type"] == var["query"] and re.fullmatch(pattern, d["name"])]
        assert len(matches) == 1, f"${var['name']} ({var['query']}, /{pattern}/) selects {matches}"


# -- PromQL against the real metric types ----------------------------------------------------------
RATE_OF = re.compile(r"\b(?:rate|irate|increase)\(\s*(marketguard_[a-z0-9_]+)")
QUANTILE_OF = re.compile(r"histogram_quantile\(\s*[0-9.]+\s*,.*?(marketguard_[a-z0-9_]+)", re.S)
#: Metrics issue 8 moved from pending-metrics.yml into the service.
LANDED = ("marketguard_seller_sla_breaches_total", "marketguard_incident_acknowledge_seconds",
          "marketguard_incident_resolve_seconds", "marketguard_fraud_alerts_total")


def _types(metrics_text: str) -> dict[str, str]:
    """Sample name -> type of its family in a real /metrics text (counters as ``<name>_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, str] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.type == "counter":
            out[f"{family.name}_total"] = "counter"
        elif family.type == "histogram":
            out.update({f"{family.name}_{s}": "histogram" for s in ("bucket", "sum", "count")})
        out.setdefault(family.name, family.type)
    return out


def _all_promql() -> list[tuple[str, str]]:
    exprs = [(p.name, e) for p in GRAFANA_FILES for e in _promql(_load(p))]
    for path in sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml")):
        exprs += [(path.name, m) for m in re.findall(r"expr: (?:\|\n)?((?:.|\n)*?)\n\s+(?:for|labels):", path.read_text())]
    return exprs


def test_promql_functions_fit_the_real_metric_types(demo_run: Any) -> None:
    """rate/increase only over counters (``_total``) or histogram samples; histogram_quantile
    only over a histogram's ``_bucket`` — checked against the types the service really exposes."""
    types = _types(demo_run.metrics_text)
    bad = []
    for where, expr in _all_promql():
        for name in RATE_OF.findall(expr):
            if types.get(name) not in ("counter", "histogram"):
                bad.append(f"{where}: rate/increase over {name} ({types.get(name, 'not exposed')})")
        for name in QUANTILE_OF.findall(expr):
            if not (name.endswith("_bucket") and types.get(name) == "histogram"):
                bad.append(f"{where}: histogram_quantile over {name} (needs a histogram's _bucket)")
    assert not bad, "\n".join(bad)
    assert all(types.get(n) for n in LANDED), "the landed metrics are exposed"


def test_incident_and_fraud_panels_have_data_in_the_demo(render: Any, demo_run: Any) -> None:
    """The fraud, seller-breach and MTTA/MTTR panels draw values from the demo run (fraud
    campaigns, a slow seller, on-call acknowledging and resolving tickets over the API)."""
    drawn = []
    for path in GRAFANA_FILES:
        for panel in _load(path)["panels"]:
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if any(m in expr for m in LANDED):
                    values = [v for _, vs in render._series(demo_run, expr).values() for v in vs]
                    assert any(v > 0 for v in values), f"{path.name}: panel {panel['title']!r} has no data"
                    drawn.append(panel["title"])
    assert len(drawn) == len(LANDED), drawn
