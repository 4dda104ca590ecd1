"""Load Sigma rule directories into compiled, typed rules.

Every invalid rule is reported with its file and reason and the rest still load: one broken
rule must never blind the others. Detection rules are compiled once for the store's dialect;
correlation rules are kept as data for the engine, which evaluates their windows itself so
that every backend gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule, SigmaExtendedCorrelationCondition
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from correlator.prefilter import Needles, rule_needles
from correlator.sigma import BACKENDS, WEB_FIELD_MAPPING, marketguard_pipeline

__all__ = ["DetectionRule", "CorrelationRule", "RuleFailure", "RuleSet", "load_rules"]

_DRL_MARKER = "LICENSE.Detection.Rules.md"


@dataclass(frozen=True)
class RuleFailure:
    """A rule file (or one rule in it) that could not be used, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class DetectionRule:
    """A single-event Sigma rule compiled for one store dialect."""

    id: str
    title: str
    level: str
    file: str
    query: str
    name: str | None = None
    author: str | None = None
    license: str | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    product: str | None = None
    service: str | None = None
    standalone: bool = True  # False when only a correlation rule may alert on it
    needles: Needles | None = None  # necessary literals for the prefilter (None: always query)


@dataclass(frozen=True)
class CorrelationRule:
    """A Sigma correlation rule, kept as data for the engine's sliding windows.

    ``group_by`` and ``value_field`` are ECS names. ``aliases`` maps an alias to the ECS field it
    stands for in each referenced rule (rule id -> field).
    """

    id: str
    title: str
    level: str
    file: str
    type: str
    rules: tuple[str, ...]
    timespan: timedelta
    group_by: tuple[str, ...]
    op: str
    count: float | None
    value_field: str | None = None
    percentile: int | None = None
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    generate: bool = False
    name: str | None = None
    author: str | None = None
    license: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class RuleSet:
    """Everything loaded from rule directories, with what failed."""

    detections: list[DetectionRule] = field(default_factory=list)
    correlations: list[CorrelationRule] = field(default_factory=list)
    failures: list[RuleFailure] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        """Number of usable rules (detections and correlations)."""
        return len(self.detections) + len(self.correlations)

    def for_categories(self, categories: Iterable[str]) -> RuleSet:
        """Return the rules whose log source fits events of the given Sigma categories.

        A correlation rule fits when every rule it references fits.
        """
        cats = set(categories)
        dets = [r for r in self.detections if r.category in cats]
        ids = {r.id for r in dets}
        cors = [c for c in self.correlations if all(x in ids for x in c.rules)]
        return RuleSet(dets, cors, list(self.failures))


def _ecs(name: str) -> str:
    return WEB_FIELD_MAPPING.get(name, name)


def _license_of(rule_license: str | None, path: Path) -> str | None:
    if rule_license:
        return rule_license
    for parent in path.resolve().parents:
        if (parent / _DRL_MARKER).exists():
            return "DRL-1.1"
    return None


def _rule_files(dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
        else:
            files.extend(sorted(p for p in d.rglob("*.yml") if p.is_file()))
            files.extend(sorted(p for p in d.rglob("*.yaml") if p.is_file()))
    return files


def _parse_files(files: Sequence[Path], failures: list[RuleFailure]) -> list[tuple[Path, object]]:
    parsed: list[tuple[Path, object]] = []
    for path in files:
        try:
            collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
        except (SigmaError, ValueError, OSError, UnicodeDecodeError) as exc:
            failures.append(RuleFailure(str(path), _reason(exc)))
            continue
        except Exception as exc:  # pySigma raises assorted errors on odd YAML
            failures.append(RuleFailure(str(path), f"{type(exc).__name__}: {exc}"))
            continue
        parsed.extend((path, rule) for rule in collection.rules)
    return parsed


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def load_rules(dirs: Sequence[Path | str], dialect: str = "duckdb") -> RuleSet:
    """Load and compile every Sigma rule under ``dirs`` for the given store dialect.

    Duplicate rule ids, invalid YAML, rules pySigma rejects and rules the backend cannot
    convert are reported in :attr:`RuleSet.failures` with file and reason.
    """
    out = RuleSet()
    parsed = _parse_files(_rule_files([Path(d) for d in dirs]), out.failures)
    parsed = _drop_duplicates(parsed, out.failures)
    collection = SigmaCollection([r for _, r in parsed])  # type: ignore[misc]
    try:
        collection.resolve_rule_references()
    except SigmaError:
        pass  # unresolved references are reported per correlation rule below
    source = {id(r): p for p, r in parsed}
    backend = BACKENDS[dialect](processing_pipeline=marketguard_pipeline())
    correlations = [r for r in collection.rules if isinstance(r, SigmaCorrelationRule)]
    hidden = _referenced_without_generate(correlations)
    for rule in collection.rules:
        path = source[id(rule)]
        if isinstance(rule, SigmaRule):
            _add_detection(out, backend, rule, path, hidden)
        elif isinstance(rule, SigmaCorrelationRule):
            _add_correlation(out, rule, path)
    _drop_orphan_correlations(out)
    return out


def _drop_duplicates(parsed: list[tuple[Path, object]], failures: list[RuleFailure]) -> list[tuple[Path, object]]:
    seen: dict[str, Path] = {}
    kept = []
    for path, rule in parsed:
        rid = str(getattr(rule, "id", None) or "")
        if not rid:
            failures.append(RuleFailure(str(path), "rule has no id; every rule needs a unique UUID"))
            continue
        if rid in seen:
            failures.append(RuleFailure(str(path), f"duplicate rule id {rid} (first defined in {seen[rid]})"))
            continue
        seen[rid] = path
        kept.append((path, rule))
    return kept


def _referenced_without_generate(correlations: Sequence[SigmaCorrelationRule]) -> set[str]:
    hidden: set[str] = set()
    for corr in correlations:
        if corr.generate:
            continue
        for ref in corr.rules or []:
            target = getattr(ref, "rule", None)
            if target is not None and getattr(target, "id", None):
                hidden.add(str(target.id))
    return hidden


def _add_detection(out: RuleSet, backend: object, rule: SigmaRule, path: Path, hidden: set[str]) -> None:
    try:
        needles = rule_needles(rule)
    except Exception:  # a condition the prefilter cannot read is simply always queried
        needles = None
    # pySigma disables output of rules referenced by a correlation; we still need their query
    # (whether they alert on their own is ``standalone``).
    saved, rule._backreferences, rule._output = rule._backreferences, [], True
    try:
        try:
            queries = backend.convert_rule(rule)  # type: ignore[attr-defined]
        finally:
            rule._backreferences = saved
        if not queries:
            raise ValueError("the backend produced no query")
    except Exception as exc:
        out.failures.append(RuleFailure(str(path), f"cannot compile '{rule.title}': {_reason(exc)}"))
        return
    query = " OR ".join(f"({q})" for q in queries) if len(queries) > 1 else queries[0]
    ls = rule.logsource
    out.detections.append(
        DetectionRule(
            id=str(rule.id),
            title=rule.title,
            level=str(rule.level.name.lower()) if rule.level else "medium",
            file=str(path),
            query=query,
            name=rule.name,
            author=rule.author,
            license=_license_of(rule.license, path),
            status=str(rule.status.name.lower()) if rule.status else None,
            tags=tuple(f"{t.namespace}.{t.name}" for t in rule.tags),
            category=ls.category,
            product=ls.product,
            service=ls.service,
            standalone=str(rule.id) not in hidden,
            needles=needles,
        )
    )


def _add_correlation(out: RuleSet, rule: SigmaCorrelationRule, path: Path) -> None:
    refs: list[str] = []
    for ref in rule.rules or []:
        target = getattr(ref, "rule", None)
        if target is None:
            out.failures.append(RuleFailure(str(path), f"correlation '{rule.title}' references unknown rule '{ref.reference}'"))
            return
        refs.append(str(target.id))
    if isinstance(rule.condition, SigmaExtendedCorrelationCondition):
        out.failures.append(RuleFailure(str(path), f"correlation '{rule.title}': extended (boolean) conditions are not supported yet"))
        return
    cond = rule.condition
    if isinstance(cond.fieldref, list):
        out.failures.append(RuleFailure(str(path), f"correlation '{rule.title}': a list of condition fields is not supported yet"))
        return
    if rule.type.name.lower() == "value_percentile" and not (0 <= (getattr(cond, "percentile", None) or -1) <= 100):
        out.failures.append(RuleFailure(str(path), f"correlation '{rule.title}': value_percentile needs a condition percentile between 0 and 100"))
        return
    ids: dict[str, str] = {}
    for ref in rule.rules or []:
        target = ref.rule  # resolved above
        ids.update({ref.reference: str(target.id), str(target.id): str(target.id)})
        if target.name:
            ids[target.name] = str(target.id)
    aliases = {
        a.alias: {ids.get(getattr(r, "reference", str(r)), str(r)): _ecs(f) for r, f in a.mapping.items()}
        for a in rule.aliases.aliases.values()
    }
    out.correlations.append(
        CorrelationRule(
            id=str(rule.id),
            title=rule.title,
            level=str(rule.level.name.lower()) if rule.level else "medium",
            file=str(path),
            type=str(rule.type.name.lower()),
            rules=tuple(refs),
            timespan=timedelta(seconds=rule.timespan.seconds),
            group_by=tuple(_ecs(g) if g not in aliases else g for g in (rule.group_by or [])),
            op=str(cond.op.name.lower()),
            count=cond.count,
            value_field=_ecs(cond.fieldref) if cond.fieldref else None,
            percentile=getattr(cond, "percentile", None),
            aliases=aliases,
            generate=rule.generate,
            name=rule.name,
            author=rule.author,
            license=_license_of(rule.license, path),
            tags=tuple(f"{t.namespace}.{t.name}" for t in rule.tags),
        )
    )


def _drop_orphan_correlations(out: RuleSet) -> None:
    """A correlation over a rule that failed to compile cannot run: report it."""
    ids = {r.id for r in out.detections} | {c.id for c in out.correlations}
    keep = []
    for corr in out.correlations:
        missing = [r for r in corr.rules if r not in ids]
        if missing:
            out.failures.append(RuleFailure(corr.file, f"correlation '{corr.title}' needs rules that failed: {', '.join(missing)}"))
        else:
            keep.append(corr)
    out.correlations = keep
