"""Policy for every rule file under ``rules/``: it loads, ids are unique, metadata is complete,
and every security rule ships with test cases. Each test reports ALL offenders in one message.

Which YAML files are Sigma rules: everything under ``rules/`` except pySigma pipeline files in
``rules/pipelines/`` and, under ``rules/sla/``, SLO/SLA spec files (YAML without a ``detection``
or ``correlation`` document), which have their own tests.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from correlator.rules import RuleSet, load_rules
from correlator.sigma import WEB_FIELD_MAPPING
from marketguard.schema import EVENT_FIELDS

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
SECURITY = RULES / "security"
CASES = REPO / "tests" / "rules" / "cases" / "security"
SIGMAHQ = Path(__file__).resolve().parents[2].parent / "shared/corpora/sigmahq"

MIN_SECURITY_RULES = 15
STATUSES = {"experimental", "test", "stable"}
LEVELS = {"informational", "low", "medium", "high", "critical"}
COMMON_KEYS = (
    "title",
    "id",
    "status",
    "description",
    "author",
    "license",
    "date",
    "level",
    "falsepositives",
)
SECURITY_LOGSOURCE = {"category": "webserver", "product": "marketguard"}


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


def _is_sigma_doc(doc: dict[str, Any]) -> bool:
    return "detection" in doc or "correlation" in doc


def sigma_files(root: Path = RULES) -> list[Path]:
    """The Sigma rule files under ``root`` (see the module docstring for what is left out)."""
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    out = []
    for path in files:
        parts = path.relative_to(root).parts
        if parts[0] == "pipelines":
            continue
        if parts[0] == "sla":
            try:
                if not any(_is_sigma_doc(d) for d in _docs(path)):
                    continue
            except yaml.YAMLError:
                pass  # unreadable: let the loader report it
        out.append(path)
    return out


def _rule_docs(files: list[Path]) -> list[tuple[Path, int, dict[str, Any]]]:
    """(file, document index, document) for every rule document of readable files."""
    out = []
    for path in files:
        try:
            docs = _docs(path)
        except yaml.YAMLError:
            continue  # reported by test_every_rule_file_loads
        out.extend((path, i, d) for i, d in enumerate(docs) if _is_sigma_doc(d))
    return out


@pytest.fixture(scope="module")
def loaded() -> RuleSet:
    """Every Sigma file under rules/, loaded together (correlations may reference other files)."""
    return load_rules(sigma_files())


def test_every_rule_file_loads(loaded: RuleSet) -> None:
    """load_rules reports no failure for any file under rules/."""
    problems = [f"  {_rel(Path(f.file))}: {f.reason}" for f in loaded.failures]
    assert not problems, f"{len(problems)} rule load failures:\n" + "\n".join(problems)


def test_rule_ids_and_names_are_unique() -> None:
    """Ids are UUIDs used once across rules/ (and not taken from SigmaHQ); names are unique."""
    ids: dict[str, list[str]] = defaultdict(list)
    names: dict[str, list[str]] = defaultdict(list)
    problems = []
    for path, index, doc in _rule_docs(sigma_files()):
        where = f"{_rel(path)}#{index}"
        rid = str(doc.get("id", ""))
        try:
            uuid.UUID(rid)
        except ValueError:
            problems.append(f"  {where}: id {rid!r} is not a UUID")
        ids[rid].append(where)
        if doc.get("name"):
            names[str(doc["name"])].append(where)
    problems += [
        f"  id {rid} used {len(w)} times: {', '.join(w)}" for rid, w in ids.items() if len(w) > 1
    ]
    problems += [
        f"  name {n!r} used {len(w)} times: {', '.join(w)}" for n, w in names.items() if len(w) > 1
    ]
    if SIGMAHQ.is_dir():
        upstream = {str(d.get("id")) for _, _, d in _rule_docs(sorted(SIGMAHQ.rglob("*.yml")))}
        problems += [
            f"  id {rid} is a SigmaHQ rule's id ({', '.join(w)})"
            for rid, w in ids.items()
            if rid in upstream
        ]
    assert not problems, "rule id/name problems:\n" + "\n".join(problems)


def _metadata_problems(path: Path, index: int, doc: dict[str, Any]) -> list[str]:
    where = f"{_rel(path)}#{index} ({doc.get('title', '?')})"
    out = [f"  {where}: missing {key}" for key in COMMON_KEYS if not doc.get(key)]
    if doc.get("status") and doc["status"] not in STATUSES:
        out.append(f"  {where}: status {doc['status']!r} not in {sorted(STATUSES)}")
    if doc.get("level") and doc["level"] not in LEVELS:
        out.append(f"  {where}: level {doc['level']!r} not in {sorted(LEVELS)}")
    if doc.get("date") and not isinstance(doc["date"], (date, datetime)):
        out.append(f"  {where}: date {doc['date']!r} is not YYYY-MM-DD")
    if "detection" in doc and not doc.get("logsource"):
        out.append(f"  {where}: detection rule without logsource")
    if path.is_relative_to(SECURITY):
        out += _security_problems(where, doc)
    return out


def _security_problems(where: str, doc: dict[str, Any]) -> list[str]:
    out = []
    if doc.get("author") != "MarketGuard":
        out.append(f"  {where}: author must be 'MarketGuard', got {doc.get('author')!r}")
    if doc.get("license") != "Apache-2.0":
        out.append(f"  {where}: license must be 'Apache-2.0', got {doc.get('license')!r}")
    rid = str(doc.get("id", ""))
    try:
        if uuid.UUID(rid).version != 4:
            out.append(f"  {where}: id must be a UUID4")
    except ValueError:
        pass  # reported by test_rule_ids_and_names_are_unique
    tags = [str(t) for t in doc.get("tags") or []]
    if not any(t.startswith("attack.t") and t[8:9].isdigit() for t in tags):
        out.append(f"  {where}: needs at least one ATT&CK technique tag (attack.tNNNN), got {tags}")
    if "detection" in doc and doc.get("logsource") != SECURITY_LOGSOURCE:
        out.append(f"  {where}: logsource must be {SECURITY_LOGSOURCE}, got {doc.get('logsource')}")
    return out


def test_rules_carry_required_metadata() -> None:
    """Every rule has title, UUID id, status, description, author, license, date, level and
    false positives; security rules also MarketGuard/Apache-2.0, a UUID4, ATT&CK technique tags
    and the webserver/marketguard log source."""
    problems = [
        p for path, i, doc in _rule_docs(sigma_files()) for p in _metadata_problems(path, i, doc)
    ]
    assert not problems, f"{len(problems)} metadata problems:\n" + "\n".join(problems)


def _selection_fields(detection: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for name, item in detection.items():
        if name in ("condition", "timeframe"):
            continue
        maps = item if isinstance(item, list) else [item]
        for entry in maps:
            if isinstance(entry, dict):
                fields.update(str(spec).split("|")[0] for spec in entry)
    return {f for f in fields if f}


def test_security_rules_use_schema_fields() -> None:
    """Security rules name only event-schema fields (ECS or mapped Sigma taxonomy names).

    The backend reads any other name from the ``labels`` JSON, so a typo such as
    ``url.orginal`` would compile into a rule that silently never matches.
    """
    problems = []
    for path, index, doc in _rule_docs(sigma_files(SECURITY)):
        if not isinstance(doc.get("detection"), dict):
            continue
        for field in sorted(_selection_fields(doc["detection"])):
            if WEB_FIELD_MAPPING.get(field, field) not in EVENT_FIELDS:
                problems.append(
                    f"  {_rel(path)}#{index} ({doc.get('title')}): field {field!r} is not in the event schema"
                )
    assert not problems, "unknown fields:\n" + "\n".join(problems)


def test_every_security_rule_has_cases() -> None:
    """Each rules/security/<stem>.yml has tests/rules/cases/security/<stem>.yml with at least
    one positive and one negative; no case file is left without its rule."""
    problems = []
    rule_stems = {p.stem for p in SECURITY.glob("*.yml")}
    for stem in sorted(rule_stems):
        case = CASES / f"{stem}.yml"
        if not case.is_file():
            problems.append(f"  rules/security/{stem}.yml: no case file {_rel(case)}")
            continue
        try:
            data = yaml.safe_load(case.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            problems.append(f"  {_rel(case)}: invalid YAML: {' '.join(str(exc).split())}")
            continue
        for part in ("positive", "negative"):
            if not isinstance(data, dict) or not data.get(part):
                problems.append(f"  {_rel(case)}: needs at least one '{part}' event")
    problems += [
        f"  {_rel(c)}: no rule file rules/security/{c.stem}.yml"
        for c in sorted(CASES.glob("*.yml"))
        if c.stem not in rule_stems
    ]
    assert not problems, "security rule cases:\n" + "\n".join(problems)


def test_security_pack_size(loaded: RuleSet) -> None:
    """At least 15 alerting rules (standalone detections and correlations) in rules/security."""

    def in_pack(file: str) -> bool:
        return Path(file).resolve().is_relative_to(SECURITY.resolve())

    alerting = [r.title for r in loaded.detections if r.standalone and in_pack(r.file)]
    alerting += [c.title for c in loaded.correlations if in_pack(c.file)]
    assert len(alerting) >= MIN_SECURITY_RULES, (
        f"rules/security has {len(alerting)} alerting rules, want >= {MIN_SECURITY_RULES}: {sorted(alerting)}"
    )


def test_sigmahq_corpus_loads() -> None:
    """All 142 SigmaHQ web rules of the shared corpus load and compile with no failure."""
    assert SIGMAHQ.is_dir(), f"the SigmaHQ corpus is expected beside the repo at {SIGMAHQ}"
    files = sorted(SIGMAHQ.rglob("*.yml"))
    rules = load_rules([SIGMAHQ])
    problems = [f"  {_rel(Path(f.file))}: {f.reason}" for f in rules.failures]
    assert not problems, f"{len(problems)} SigmaHQ rules fail to load:\n" + "\n".join(problems)
    assert len(files) == 142, f"expected the 142-rule corpus, found {len(files)} files"
    assert rules.loaded == len(files), f"{rules.loaded} rules loaded from {len(files)} files"
