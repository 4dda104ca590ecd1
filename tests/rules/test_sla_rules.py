"""The SLA pack under ``rules/sla/``: Sigma availability/latency rules and the SLO/SLA specs.

* Every Sigma file of ``rules/sla/`` has ``tests/rules/cases/sla/<stem>.yml`` (same format as
  the security cases, see ``rules/README.md``): the positive sequence gives at least one hit of
  every correlation of the file, the negative sequence none, and no base rule alerts on its own.
  Events run through the real path: a DuckDB store and ``correlator.engine.run_rules``.
* The availability rules group by ``service.name`` and carry ``marketguard.type.availability``
  (that is what makes the case store fold them into one incident per service).
* Every spec document loads (``load_slos`` / ``load_seller_slas``) and ids are unique.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from correlator.engine import run_rules
from correlator.rules import RuleSet, load_rules
from correlator.seller_sla import load_seller_slas
from correlator.slo import load_slos
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
SLA = REPO / "rules" / "sla"
CASES = REPO / "tests" / "rules" / "cases" / "sla"
_STEP = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _is_sigma(path: Path) -> bool:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    return any("detection" in d or "correlation" in d for d in docs)


SIGMA_FILES = sorted(p for p in SLA.rglob("*.yml") if _is_sigma(p))


def expand(items: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Plain events from a case list; ``{repeat, every, first, event}`` blocks expand."""
    out: list[dict[str, Any]] = []
    for item in items:
        if "repeat" not in item:
            out.append(dict(item))
            continue
        match = _STEP.match(str(item.get("every", "1s")))
        assert match, f"{where}: bad 'every' {item.get('every')!r}"
        step = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        start = datetime.fromisoformat(item["event"]["@timestamp"])
        for k in range(int(item["repeat"])):
            n = str(int(item.get("first", 0)) + k)
            event = {key: v.replace("{n}", n) if isinstance(v, str) else v for key, v in item["event"].items()}
            event["@timestamp"] = (start + step * k).isoformat()
            out.append(event)
    return out


def build(events: list[dict[str, Any]], source: str) -> pa.Table:
    """An EVENT_SCHEMA table; unknown fields are an error so a typo cannot pass vacuously."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_FIELDS}
    for index, raw in enumerate(events):
        unknown = sorted(set(raw) - set(EVENT_FIELDS))
        assert not unknown, f"{source}[{index}]: fields not in the schema: {unknown}"
        event = dict(raw)
        event["@timestamp"] = datetime.fromisoformat(str(event["@timestamp"])).astimezone(UTC)
        if "url.original" in event:
            event.setdefault("url.path", str(event["url.original"]).partition("?")[0])
        content = json.dumps({k: str(v) for k, v in sorted(raw.items())})
        event.setdefault("event.id", hashlib.sha256(f"{source}#{index}#{content}".encode()).hexdigest()[:32])
        for name in EVENT_FIELDS:
            cols[name].append(event.get(name))
    return pa.table(cols, schema=EVENT_SCHEMA)


@pytest.fixture(scope="module")
def sla_rules() -> RuleSet:
    rules = load_rules(SIGMA_FILES)
    assert not rules.failures, "\n".join(f"{f.file}: {f.reason}" for f in rules.failures)
    return rules


def test_the_pack_is_complete(sla_rules: RuleSet) -> None:
    """Three cross-source availability correlations and two value_percentile latency rules."""
    types = sorted(c.type for c in sla_rules.correlations)
    assert types.count("event_count") >= 3 and types.count("value_percentile") >= 2
    assert not [d.title for d in sla_rules.detections if d.standalone], "base rules must not alert alone"


def test_availability_rules_group_by_service(sla_rules: RuleSet) -> None:
    problems = [
        f"  {c.title}: group_by={c.group_by} tags={c.tags}"
        for c in sla_rules.correlations
        if "service.name" not in c.group_by or "marketguard.type.availability" not in c.tags
    ]
    assert not problems, "availability rules must group by service.name:\n" + "\n".join(problems)


def test_every_sigma_file_has_cases() -> None:
    missing = [_rel(p) for p in SIGMA_FILES if not (CASES / p.name).is_file()]
    orphans = [_rel(c) for c in CASES.glob("*.yml") if not (SLA / c.name).is_file()]
    assert not missing and not orphans, f"without cases: {missing}; cases without rule: {orphans}"


@pytest.mark.parametrize("rule_file", SIGMA_FILES, ids=_rel)
def test_rule_cases(rule_file: Path, sla_rules: RuleSet) -> None:
    """Positive sequence: a hit of every correlation of the file; negative: no detection at all."""
    target = rule_file.resolve()
    corrs = [c for c in sla_rules.correlations if Path(c.file).resolve() == target]
    dets = [d for d in sla_rules.detections if Path(d.file).resolve() == target]
    case = yaml.safe_load((CASES / rule_file.name).read_text(encoding="utf-8"))
    problems = []
    for part in ("positive", "negative"):
        store = DuckDBStore(":memory:")
        try:
            store.append_events(build(expand(case[part], part), f"{rule_file.name}:{part}"))
            result = run_rules(store, RuleSet(dets, corrs, []), MatchWindow())
        finally:
            store.close()
        assert not result.errors, result.errors
        fired = {d.rule_id for d in result.detections}
        if part == "positive":
            problems += [f"  '{c.title}': positive sequence gave no hit" for c in corrs if c.id not in fired]
        else:
            problems += [
                f"  '{d.rule_title}': negative hit group={dict(d.group)} value={d.value}" for d in result.detections
            ]
    assert not problems, f"{_rel(rule_file)}:\n" + "\n".join(problems)


def test_specs_load_with_unique_ids() -> None:
    slos, slas = load_slos([SLA]), load_seller_slas([SLA])
    ids = [s.id for s in slos] + [s.id for s in slas]
    assert len(ids) == len(set(ids)), ids
    assert {"checkout-availability", "checkout-latency", "checkout-probe-availability"} <= {s.id for s in slos}
    kinds = {(s.sli.type, s.sli.source) for s in slos}
    assert {("availability", "api"), ("latency", "api"), ("availability", "probe")} <= kinds
    assert slas and all(any(t.specificity == 0 for t in s.targets) for s in slas)
    assert all("marketguard.type.availability" in s.tags for s in slos)
    assert all("marketguard.type.sla" in s.tags for s in slas)


def test_spec_files_stay_out_of_the_sigma_loader() -> None:
    """Spec files are *.slo / *.sla (the Sigma loader reads *.yml and *.yaml): loading all of
    rules/sla/ as Sigma reports no failure, and no YAML file there is a spec."""
    specs = sorted(p for p in SLA.rglob("*") if p.suffix in (".slo", ".sla"))
    assert len(specs) >= 2, specs
    assert not [p for p in SLA.rglob("*.y*ml") if not _is_sigma(p)]
    assert not load_rules([SLA]).failures
