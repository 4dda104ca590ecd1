"""Behaviour of the security rule pack: every rule against its own test cases, then the pack
against the demo scenario's normal traffic (must stay silent) and attack campaigns (must fire).

A case file ``tests/rules/cases/security/<rule-file-stem>.yml`` holds ``positive:`` and
``negative:`` lists of flat ECS events (see ``rules/README.md``):

* detection rules: every positive event must match a detection rule of the file, no negative may;
* correlation rules: ``positive`` is one sequence that must give at least one hit of every
  correlation rule in the file, ``negative`` one sequence that must give none.

Events run through the real path: an Arrow table of ``EVENT_SCHEMA`` appended to a
``DuckDBStore``, compiled rule queries via ``store.match``, correlation windows via
``correlator.correlation.evaluate``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from correlator.correlation import CorrelationHit, evaluate
from correlator.engine import run_rules
from correlator.rules import CorrelationRule, DetectionRule, RuleSet, load_rules
from marketguard.app.scenario.campaigns import CAMPAIGNS, Campaign
from marketguard.app.scenario.traffic import Request, format_combined, normal_request
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
RULE_DIR = REPO / "rules" / "security"
CASE_DIR = REPO / "tests" / "rules" / "cases" / "security"
DEFAULT_TIME = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


# -- case files -> events ---------------------------------------------------------------------
def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _duration(text: str, where: str) -> timedelta:
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"{where}: 'every' must look like 500ms, 5s, 2m or 1h, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _timestamp(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ValueError(f"{where}: '@timestamp' is not ISO-8601: {value!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"{where}: '@timestamp' needs a UTC offset (e.g. 'Z'): {value!r}")
    return moment.astimezone(UTC)


def expand_events(items: Sequence[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Expand a case list into plain events.

    An item ``{repeat: N, every: 5s, first: 1000, event: {...}}`` stands for N copies of
    ``event`` whose ``@timestamp`` advances by ``every`` and in whose strings ``{n}`` becomes
    ``first + k`` (k = 0..N-1): sequences for correlation rules without 60 hand-written events.
    """
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{here}: an event must be a mapping, got {type(item).__name__}")
        if "repeat" not in item:
            out.append(dict(item))
            continue
        extra = set(item) - {"repeat", "every", "first", "event"}
        if extra or "event" not in item:
            raise ValueError(
                f"{here}: a repeat block has repeat, every, first and event; got {sorted(item)}"
            )
        template = item["event"]
        start = _timestamp(template.get("@timestamp", DEFAULT_TIME), here)
        step = _duration(item.get("every", "1s"), here)
        for k in range(int(item["repeat"])):
            number = str(int(item.get("first", 0)) + k)
            event = {
                key: value.replace("{n}", number) if isinstance(value, str) else value
                for key, value in template.items()
            }
            event["@timestamp"] = start + step * k
            out.append(event)
    return out


def _combined_line(event: dict[str, Any], moment: datetime) -> str:
    """The access-log line the collector would have kept as ``event.original``."""
    request = Request(
        ts=moment,
        ip=event.get("source.ip") or "-",
        method=event.get("http.request.method") or "-",
        target=event.get("url.original") or "-",
        status=event.get("http.response.status_code") or 0,
        size=event.get("http.response.body.bytes") or 0,
        referrer=event.get("http.request.referrer") or "-",
        ua=event.get("user_agent.original") or "-",
        user=event.get("user.name") or "-",
    )
    return format_combined(request)


def build_events(events: Sequence[dict[str, Any]], source: str) -> pa.Table:
    """Turn flat ECS dicts into an ``EVENT_SCHEMA`` table, as the collector would store them.

    ``event.id`` is a hash of source, position and content; ``event.dataset`` defaults to
    ``api.access``; ``url.path``/``url.query`` are split from ``url.original`` and
    ``event.original`` is rendered as a combined log line when the case does not give them.
    Unknown field names are an error, so a typo cannot make a negative case pass vacuously.
    """
    columns: dict[str, list[Any]] = {name: [] for name in EVENT_FIELDS}
    for index, raw in enumerate(events):
        where = f"{source}[{index}]"
        unknown = sorted(set(raw) - set(EVENT_FIELDS))
        if unknown:
            raise ValueError(f"{where}: fields not in marketguard.schema.EVENT_FIELDS: {unknown}")
        event = dict(raw)
        moment = _timestamp(event.get("@timestamp", DEFAULT_TIME + timedelta(seconds=index)), where)
        event["@timestamp"] = moment
        target = event.get("url.original")
        if target is not None:
            path, sep, query = str(target).partition("?")
            event.setdefault("url.path", path)
            event.setdefault("url.query", query if sep else None)
            event.setdefault("event.original", _combined_line(event, moment))
        event.setdefault("event.dataset", "api.access")
        content = json.dumps({k: str(v) for k, v in sorted(raw.items())}, sort_keys=True)
        event.setdefault(
            "event.id", hashlib.sha256(f"{source}#{index}#{content}".encode()).hexdigest()[:32]
        )
        for name in EVENT_FIELDS:
            columns[name].append(event.get(name))
    return pa.table(columns, schema=EVENT_SCHEMA)


def _store_with(table: pa.Table) -> DuckDBStore:
    store = DuckDBStore(":memory:")
    store.append_events(table)
    return store


_DESCRIBED = [
    "http.request.method",
    "url.original",
    "http.response.status_code",
    "user_agent.original",
    "source.ip",
]


def _describe(row: dict[str, Any]) -> str:
    return (
        f"{row.get('http.request.method')} {row.get('url.original')!r} status={row.get('http.response.status_code')}"
        f" ua={row.get('user_agent.original')!r} ip={row.get('source.ip')}"
    )


# -- running rules ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def security_rules() -> RuleSet:
    """The security pack, loaded once; a pack that does not load fails every test here."""
    rules = load_rules([RULE_DIR])
    assert not rules.failures, "rules/security does not load:\n" + "\n".join(
        f"  {f.file}: {f.reason}" for f in rules.failures
    )
    return rules


def matched_ids(store: DuckDBStore, rule: DetectionRule) -> set[str]:
    """event.id of every stored event the rule matches."""
    return set(store.match(rule.query, MatchWindow(), ["event.id"]).column("event.id").to_pylist())


def correlation_hits(
    store: DuckDBStore, rules: RuleSet, corr: CorrelationRule
) -> list[CorrelationHit]:
    """Run a correlation's referenced rules over the store and evaluate its windows (as the engine does)."""
    by_id = {r.id: r for r in rules.detections}
    wanted = ["event.id", "@timestamp", *corr.group_by]
    if corr.value_field:
        wanted.append(corr.value_field)
    for mapping in corr.aliases.values():
        wanted.extend(mapping.values())
    columns = list(dict.fromkeys(c for c in wanted if c in EVENT_FIELDS))
    frames = []
    for rid in corr.rules:
        frame = store.match(by_id[rid].query, MatchWindow(), columns).to_pandas()
        frame["_rule"] = rid
        frames.append(frame)
    return evaluate(corr, pd.concat(frames, ignore_index=True))


def _rules_of(rules: RuleSet, rule_file: Path) -> tuple[list[DetectionRule], list[CorrelationRule]]:
    target = rule_file.resolve()
    dets = [r for r in rules.detections if Path(r.file).resolve() == target]
    cors = [c for c in rules.correlations if Path(c.file).resolve() == target]
    return dets, cors


def _has_correlation(rule_file: Path) -> bool:
    docs = yaml.safe_load_all(rule_file.read_text(encoding="utf-8"))
    return any(isinstance(d, dict) and "correlation" in d for d in docs)


def _load_case(case_file: Path) -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load(case_file.read_text(encoding="utf-8")) or {}
    unknown = set(data) - {"positive", "negative"}
    assert not unknown, f"{_rel(case_file)}: unknown top-level keys {sorted(unknown)}"
    return {
        part: expand_events(data.get(part) or [], f"{_rel(case_file)}:{part}")
        for part in ("positive", "negative")
    }


CASE_FILES = sorted(CASE_DIR.glob("*.yml"))
DETECTION_CASES = (
    [c for c in CASE_FILES if not _has_correlation(RULE_DIR / c.name)] if RULE_DIR.is_dir() else []
)
CORRELATION_CASES = [c for c in CASE_FILES if c not in DETECTION_CASES]


# -- per-rule cases ---------------------------------------------------------------------------
@pytest.mark.parametrize("case_file", DETECTION_CASES, ids=_rel)
def test_detection_rule_cases(case_file: Path, security_rules: RuleSet) -> None:
    """Every positive event matches the file's rule; no negative event does."""
    rule_file = RULE_DIR / case_file.name
    dets, _ = _rules_of(security_rules, rule_file)
    assert dets, f"{_rel(case_file)}: no loaded detection rule in {_rel(rule_file)}"
    case = _load_case(case_file)
    src = _rel(case_file)
    pos = build_events(case["positive"], f"{src}:positive")
    neg = build_events(case["negative"], f"{src}:negative")
    store = _store_with(pa.concat_tables([pos, neg]))
    hits: set[str] = set()
    for rule in dets:
        hits |= matched_ids(store, rule)
    problems = [
        f"  positive[{i}] not matched: {_describe(row)}"
        for i, row in enumerate(pos.to_pylist())
        if row["event.id"] not in hits
    ] + [
        f"  negative[{i}] matched: {_describe(row)}"
        for i, row in enumerate(neg.to_pylist())
        if row["event.id"] in hits
    ]
    # The engine (prefilter on, as in production) must find exactly what the query finds.
    engine = run_rules(store, RuleSet(dets, [], []), MatchWindow())
    engine_ids = {eid for d in engine.detections for eid in d.event_ids}
    if engine.errors or engine_ids != hits:
        problems.append(
            f"  the engine (with prefilter) disagrees with the rule query: errors={engine.errors},"
            f" only engine={sorted(engine_ids - hits)}, only query={sorted(hits - engine_ids)}"
        )
    assert not problems, f"{src} ({', '.join(r.title for r in dets)}):\n" + "\n".join(problems)


@pytest.mark.parametrize("case_file", CORRELATION_CASES, ids=_rel)
def test_correlation_rule_cases(case_file: Path, security_rules: RuleSet) -> None:
    """The positive sequence gives a hit of every correlation in the file; the negative gives none."""
    rule_file = RULE_DIR / case_file.name
    _, cors = _rules_of(security_rules, rule_file)
    assert cors, f"{_rel(case_file)}: no loaded correlation rule in {_rel(rule_file)}"
    case = _load_case(case_file)
    src = _rel(case_file)
    pos_store = _store_with(build_events(case["positive"], f"{src}:positive"))
    neg_store = _store_with(build_events(case["negative"], f"{src}:negative"))
    problems = []
    for corr in cors:
        if not correlation_hits(pos_store, security_rules, corr):
            problems.append(f"  '{corr.title}': positive sequence gave no hit")
        for hit in correlation_hits(neg_store, security_rules, corr):
            problems.append(
                f"  '{corr.title}': negative sequence hit group={dict(hit.group)} value={hit.value}"
                f" window={hit.window_start.isoformat()}..{hit.window_end.isoformat()}"
            )
    problems += _engine_problems(pos_store, security_rules, rule_file, cors, expect_hits=True)
    problems += _engine_problems(neg_store, security_rules, rule_file, cors, expect_hits=False)
    assert not problems, f"{src}:\n" + "\n".join(problems)


def _engine_problems(
    store: DuckDBStore,
    rules: RuleSet,
    rule_file: Path,
    cors: list[CorrelationRule],
    *,
    expect_hits: bool,
) -> list[str]:
    """The engine end to end: correlations alert (or not), their base rules never alert alone."""
    dets, _ = _rules_of(rules, rule_file)
    result = run_rules(store, RuleSet(dets, cors, []), MatchWindow())
    which = "positive" if expect_hits else "negative"
    problems = [f"  engine error on the {which} sequence: {result.errors}"] if result.errors else []
    alone = sorted({d.rule_title for d in result.detections if d.kind == "event"})
    if alone:
        problems.append(f"  base rules alerted on their own ({which} sequence): {alone}")
    for corr in cors:
        fired = [d for d in result.detections if d.rule_id == corr.id]
        if bool(fired) != expect_hits:
            problems.append(
                f"  engine: '{corr.title}' gave {len(fired)} detections on the {which} sequence"
            )
    return problems


# -- the pack against the demo scenario ---------------------------------------------------------
def request_event(req: Request) -> dict[str, Any]:
    """A scenario request as the collector would normalise it."""
    return {
        "@timestamp": req.ts,
        "source.ip": req.ip,
        "user.name": None if req.user == "-" else req.user,
        "http.request.method": req.method,
        "url.original": req.target,
        "http.response.status_code": req.status,
        "http.response.body.bytes": req.size,
        "http.request.referrer": req.referrer,
        "user_agent.original": req.ua,
        "event.original": format_combined(req),
    }


def _normal_traffic(seed: int, count: int, start: datetime, span: timedelta) -> list[Request]:
    rng = random.Random(seed)
    step = span / count
    return [normal_request(rng, start + step * i) for i in range(count)]


def _alerts(
    store: DuckDBStore, rules: RuleSet
) -> tuple[dict[str, set[str]], dict[str, list[CorrelationHit]]]:
    """Event ids per standalone detection rule, and hits per correlation rule (title -> ...)."""
    events = {
        r.title: ids for r in rules.detections if r.standalone and (ids := matched_ids(store, r))
    }
    hits = {c.title: h for c in rules.correlations if (h := correlation_hits(store, rules, c))}
    return events, hits


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_normal_marketplace_traffic_raises_no_alert(seed: int, security_rules: RuleSet) -> None:
    """Buyers, sellers' integrations and search bots (scenario traffic.py) fire no rule of the pack."""
    requests = _normal_traffic(seed, 20_000, DEFAULT_TIME, timedelta(hours=2))
    table = build_events([request_event(r) for r in requests], f"normal-traffic-{seed}")
    store = _store_with(table)
    events, hits = _alerts(store, security_rules)
    rows = {row["event.id"]: row for row in table.select(["event.id", *_DESCRIBED]).to_pylist()}
    problems = [
        f"  {title}: {len(ids)} events, e.g. {_describe(rows[sorted(ids)[0]])}"
        for title, ids in events.items()
    ] + [f"  {title}: {len(h)} hits, e.g. group {dict(h[0].group)}" for title, h in hits.items()]
    assert not problems, f"normal traffic (seed {seed}) raised alerts:\n" + "\n".join(problems)


@pytest.mark.parametrize("campaign", CAMPAIGNS, ids=lambda c: c.name)
def test_demo_campaign_is_detected(campaign: Campaign, security_rules: RuleSet) -> None:
    """Each attack campaign of the demo, hidden in normal traffic, is caught by the pack.

    Per-line campaigns: every attack request matches some standalone rule. Campaigns detected
    as a whole: some correlation hit is made of the campaign's events only.
    """
    start = DEFAULT_TIME + timedelta(minutes=5)
    attack = campaign.make(random.Random(3), start)
    background = _normal_traffic(5, 3_000, DEFAULT_TIME, timedelta(minutes=20))
    attack_table = build_events([request_event(r) for r in attack], f"campaign-{campaign.name}")
    table = pa.concat_tables(
        [attack_table, build_events([request_event(r) for r in background], "background")]
    )
    store = _store_with(table)
    attack_ids = set(attack_table.column("event.id").to_pylist())
    events, hits = _alerts(store, security_rules)
    if campaign.per_line:
        caught = set().union(*events.values()) if events else set()
        missed = [
            f"  {_describe(row)}"
            for row in attack_table.to_pylist()
            if row["event.id"] not in caught
        ]
        assert not missed, f"campaign {campaign.name}: attack lines no rule caught:\n" + "\n".join(
            missed
        )
    else:
        whole = [
            (title, h) for title, hs in hits.items() for h in hs if set(h.event_ids) <= attack_ids
        ]
        assert whole, (
            f"campaign {campaign.name}: no correlation hit made of its events (hits: {list(hits)})"
        )
    noisy = {title: len(ids - attack_ids) for title, ids in events.items() if ids - attack_ids}
    assert not noisy, f"campaign {campaign.name}: background traffic alerted: {noisy}"
