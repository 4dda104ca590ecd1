"""Playbooks as typed, frozen data: a trigger and ordered steps, loaded from YAML.

A playbook file is one mapping::

    id: credential-stuffing
    title: Credential stuffing against buyer accounts
    trigger: {types: [security], tags_any: [attack.t1110], min_severity: medium,
              entity_kinds: [source.ip]}
    steps:
      - {kind: enrich, lookback_minutes: 60}
      - {kind: open_ticket, queue: "operator:secops"}
      - {kind: notify, notifier: slack-secops, template: "${severity}: ${title}"}

Each step's fields are defined by its kind's ``Spec`` (see :mod:`playbooks.steps`). Loading is
strict and fails fast: every error names the file and, for a step, its index and kind.
Files named in :data:`CONFIG_FILES` (notifier and routing configuration) live beside the playbooks and are
not playbooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marketguard.cases import IncidentDetail
from marketguard.errors import MarketGuardError
from marketguard.schema import ENTITY_FIELDS
from marketguard.types import Severity, severity_rank

__all__ = [
    "PlaybookError", "StepSpec", "Trigger", "Playbook", "load_playbook", "load_playbooks",
    "CONFIG_FILES", "playbook_files", "describe_validation",
]

#: YAML files in the playbook directory that configure the stage instead of being playbooks.
CONFIG_FILES = frozenset({"notifiers.yaml", "routing.yaml"})
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
IncidentKind = str


class PlaybookError(MarketGuardError):
    """A playbook cannot be loaded; the message names the file and the step."""

    def __init__(self, file: str, reason: str, *, step: int | None = None, kind: str | None = None):
        where = file if step is None else f"{file}: steps[{step}]" + (f" ({kind})" if kind else "")
        super().__init__(f"{where}: {reason}")
        self.file, self.reason, self.step = file, reason, step


class StepSpec(BaseModel):
    """Fields every step has; each step kind extends it with its own."""

    model_config = _STRICT

    kind: str
    name: str | None = Field(None, description="Optional label shown in tickets and the audit trail.")
    retries: int = Field(3, ge=0, le=10, description="Extra attempts after a failure, with exponential backoff.")


class Trigger(BaseModel):
    """When a playbook applies: every given condition must hold (lists are any-of)."""

    model_config = _STRICT

    types: list[str] = Field(default_factory=list, description="Incident types (security, fraud, availability, sla).")
    tags_any: list[str] = Field(default_factory=list, description="Alert tags; `attack.t1110` also matches `attack.t1110.001`.")
    rules_any: list[str] = Field(default_factory=list, description="Rule ids or names of the incident's alerts.")
    min_severity: Severity = "informational"
    entity_kinds: list[str] = Field(default_factory=list, description="Entity fields the incident must have (any of).")

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if t not in ("security", "fraud", "availability", "sla")]
        if bad:
            raise ValueError(f"unknown incident type(s) {bad}; valid: security, fraud, availability, sla")
        return value

    @field_validator("entity_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        bad = [k for k in value if k not in ENTITY_FIELDS]
        if bad:
            raise ValueError(f"unknown entity kind(s) {bad}; valid: {', '.join(ENTITY_FIELDS)}")
        return value

    def matches(self, detail: IncidentDetail) -> bool:
        """True when the incident satisfies every condition of the trigger."""
        inc = detail.incident
        if self.types and inc.type not in self.types:
            return False
        if severity_rank(inc.severity) < severity_rank(self.min_severity):
            return False
        if self.entity_kinds and not any(inc.entities.get(k) for k in self.entity_kinds):
            return False
        if self.tags_any and not _any_tag(self.tags_any, (t for a in detail.alerts for t in a.tags)):
            return False
        if self.rules_any:
            rules = {r for a in detail.alerts for r in (a.rule_id, a.rule_title)} | set(inc.rule_ids)
            return any(r in rules for r in self.rules_any)
        return True


def _any_tag(wanted: Sequence[str], tags: Iterable[str]) -> bool:
    have = {t.lower() for t in tags}
    return any(w.lower() == t or t.startswith(w.lower() + ".") for w in wanted for t in have)


class Playbook(BaseModel):
    """A validated playbook: id, trigger and ordered steps."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str = Field(min_length=3)
    description: str = ""
    trigger: Trigger
    steps: tuple[StepSpec, ...] = Field(min_length=1)
    source: str = ""

    def matches(self, detail: IncidentDetail) -> bool:
        """True when this playbook's trigger selects the incident."""
        return self.trigger.matches(detail)


def describe_validation(exc: ValidationError) -> str:
    """One line per pydantic error: `field.path: message`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
    )


def _parse_step(raw: Any, index: int, file: str) -> StepSpec:
    from playbooks.steps import spec_class

    if not isinstance(raw, dict):
        raise PlaybookError(file, f"expected a mapping with a 'kind', got {type(raw).__name__}", step=index)
    kind = raw.get("kind")
    try:
        cls = spec_class(str(kind))
    except MarketGuardError as exc:
        raise PlaybookError(file, str(exc), step=index) from None
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise PlaybookError(file, describe_validation(exc), step=index, kind=str(kind)) from None


def load_playbook(path: Path) -> Playbook:
    """Load and validate one playbook file. Raises :class:`PlaybookError`."""
    file = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlaybookError(file, f"cannot read YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PlaybookError(file, "expected a mapping with id, title, trigger and steps")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PlaybookError(file, "'steps' must be a non-empty list")
    specs = tuple(_parse_step(s, i, file) for i, s in enumerate(steps))
    try:
        return Playbook.model_validate({**raw, "steps": specs, "source": file})
    except ValidationError as exc:
        raise PlaybookError(file, describe_validation(exc)) from None


def playbook_files(directory: Path) -> list[Path]:
    """The playbook files of a directory (``*.yaml``/``*.yml`` except :data:`CONFIG_FILES`)."""
    files = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted(p for p in files if p.name not in CONFIG_FILES)


def load_playbooks(directory: Path) -> list[Playbook]:
    """Load every playbook of a directory; duplicate ids are an error naming both files."""
    seen: dict[str, str] = {}
    books = []
    for path in playbook_files(directory):
        book = load_playbook(path)
        if book.id in seen:
            raise PlaybookError(str(path), f"duplicate playbook id {book.id!r} (also in {seen[book.id]})")
        seen[book.id] = str(path)
        books.append(book)
    return books
