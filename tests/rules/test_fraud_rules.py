"""Behaviour of the fraud rule pack: every rule file against its own cases, then the whole pack
(Sigma rules and behavioural baselines) against a sale-day peak of normal traffic, which must not
alert.

A case file ``tests/rules/cases/fraud/<rule-file-stem>.yml`` holds ``positive:`` and
``negative:`` lists of gateway JSON records (the ECS flat dicts a gateway posts, with
``event.action`` and ``marketplace.*`` fields); ``repeat`` blocks expand as in the security
cases. Every fraud file holds correlations: the positive list is one sequence that must make
every correlation of the file alert, the negative list one sequence on which none may, and no
base rule may alert on its own. Events take the real path: ``collectors.accesslog.parse_records``
(pseudonymisation, labels), a ``DuckDBStore``, ``correlator.engine.run_rules``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.accesslog import parse_records
from collectors.privacy import Pseudonymiser
from correlator.baselines import InMemoryBaselines, run_baselines
from correlator.engine import run_rules
from correlator.rules import RuleSet, load_rules
from marketguard.app.scenario.fraud import generate_fraud
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
RULE_DIR = REPO / "rules" / "fraud"
CASE_DIR = REPO / "tests" / "rules" / "cases" / "fraud"
FAMILY_TAGS = {
    f"marketguard.fraud.{f}" for f in ("click", "card_testing", "account_takeover", "promo_abuse")
}
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _duration(text: str) -> timedelta:
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text[: -len(unit)]) * _UNITS[unit])
    raise ValueError(f"'every' must look like 500ms, 5s, 2m or 1h, got {text!r}")


def expand(items: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Plain records from a case list; ``{repeat, every, first, event}`` makes N copies whose
    ``@timestamp`` advances by ``every`` and whose ``{n}`` becomes ``first + k``."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if "repeat" not in item:
            out.append(dict(item))
            continue
        assert set(item) <= {"repeat", "every", "first", "event"}, (
            f"{where}[{index}]: {sorted(item)}"
        )
        template = item["event"]
        start = datetime.fromisoformat(str(template["@timestamp"]).replace("Z", "+00:00"))
        step = _duration(str(item.get("every", "1s")))
        for k in range(int(item["repeat"])):
            n = str(int(item.get("first", 0)) + k)
            record = {
                key: value.replace("{n}", n) if isinstance(value, str) else value
                for key, value in template.items()
            }
            record["@timestamp"] = (start + step * k).astimezone(UTC).isoformat()
            out.append(record)
    return out


def store_of(records: list[dict[str, Any]], source: str) -> DuckDBStore:
    """A store holding the records as the collector turns them into events."""
    batch = parse_records(records, source=source, pseudonymiser=Pseudonymiser(b"test-key" * 4))
    assert not batch.dead_letters, f"{source}: dead letters {batch.dead_letters}"
    store = DuckDBStore(":memory:")
    store.append_events(batch.events)
    return store


@pytest.fixture(scope="module")
def fraud_rules() -> RuleSet:
    """The fraud pack, loaded once."""
    rules = load_rules([RULE_DIR])
    assert not rules.failures, "rules/fraud does not load:\n" + "\n".join(
        f"  {f.file}: {f.reason}" for f in rules.failures
    )
    return rules


def _file_rules(rules: RuleSet, rule_file: Path) -> RuleSet:
    target = rule_file.resolve()
    dets = [r for r in rules.detections if Path(r.file).resolve() == target]
    cors = [c for c in rules.correlations if Path(c.file).resolve() == target]
    return RuleSet(dets, cors, [])


CASE_FILES = sorted(CASE_DIR.glob("*.yml"))


def test_every_fraud_rule_has_cases_and_family_tags() -> None:
    """Each rules/fraud file has a case file with positives and negatives, and every rule in it
    is tagged marketguard.type.fraud plus one marketguard.fraud.<family>."""
    problems = []
    for rule_file in sorted(RULE_DIR.glob("*.yml")):
        case = CASE_DIR / rule_file.name
        if not case.is_file():
            problems.append(f"  {_rel(rule_file)}: no case file {_rel(case)}")
        else:
            data = yaml.safe_load(case.read_text(encoding="utf-8")) or {}
            problems += [
                f"  {_rel(case)}: no {p}" for p in ("positive", "negative") if not data.get(p)
            ]
        for doc in yaml.safe_load_all(rule_file.read_text(encoding="utf-8")):
            tags = set(doc.get("tags") or [])
            if "marketguard.type.fraud" not in tags or len(tags & FAMILY_TAGS) != 1:
                problems.append(f"  {_rel(rule_file)} ({doc.get('title')}): tags {sorted(tags)}")
    problems += [
        f"  {_rel(c)}: no rule file" for c in CASE_FILES if not (RULE_DIR / c.name).is_file()
    ]
    assert not problems, "fraud rule policy:\n" + "\n".join(problems)


@pytest.mark.parametrize("case_file", CASE_FILES, ids=_rel)
def test_fraud_rule_cases(case_file: Path, fraud_rules: RuleSet) -> None:
    """The positive sequence makes every correlation of the file alert, the negative none; base
    rules never alert alone."""
    rules = _file_rules(fraud_rules, RULE_DIR / case_file.name)
    assert rules.correlations, f"{_rel(case_file)}: no correlation rule in the rule file"
    data = yaml.safe_load(case_file.read_text(encoding="utf-8"))
    problems = []
    for part, expect in (("positive", True), ("negative", False)):
        records = expand(data[part], f"{_rel(case_file)}:{part}")
        result = run_rules(store_of(records, f"{case_file.name}:{part}"), rules, MatchWindow())
        if result.errors:
            problems.append(f"  {part}: engine errors {result.errors}")
        alone = sorted({d.rule_title for d in result.detections if d.kind == "event"})
        if alone:
            problems.append(f"  {part}: base rules alerted alone: {alone}")
        for corr in rules.correlations:
            fired = [d for d in result.detections if d.rule_id == corr.id]
            if bool(fired) != expect:
                groups = [dict(d.group) for d in fired]
                problems.append(f"  {part}: '{corr.title}' gave {len(fired)} detections {groups}")
    assert not problems, f"{_rel(case_file)}:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def sale_day() -> DuckDBStore:
    """Six hours of normal traffic with a 4x sale peak (the fraud scenario without its attacks)."""
    scenario = generate_fraud(seed=5, normal=8_000)
    attacks = set().union(*scenario.truth.values())
    records = [e for i, e in enumerate(scenario.events) if i not in attacks]
    return store_of(records, "sale-day")


def test_sale_day_peak_raises_no_fraud_alert(sale_day: DuckDBStore, fraud_rules: RuleSet) -> None:
    """Click surges, many cards behind carrier NAT, mistyped passwords, shared family cards and
    password resets of a sale day: no fraud rule and no baseline alerts."""
    result = run_rules(sale_day, fraud_rules, MatchWindow())
    assert not result.errors
    baseline = run_baselines(sale_day, InMemoryBaselines(), MatchWindow())
    problems = [
        f"  {d.rule_title}: group {dict(d.group)} value {d.value} evidence {d.evidence}"
        for d in [*result.detections, *baseline]
    ]
    assert not problems, "the sale-day peak alerted:\n" + "\n".join(problems)
