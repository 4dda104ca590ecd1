"""Shared loading of the SLO and seller-SLA spec files under ``rules/sla/``.

A spec file is YAML whose documents carry a ``kind`` (``slo`` or ``seller_sla``). Spec files
are named ``*.slo`` / ``*.sla`` so that the Sigma loader (which reads every ``*.yml`` and
``*.yaml``) never sees them; ``*.yml``/``*.yaml`` files are read too, their Sigma documents
(with ``detection`` or ``correlation``) skipped, so one directory can hold both. Every problem is a :class:`~marketguard.errors.RuleError` naming the
file (and document index) and the reason: configuration fails fast and loudly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from marketguard.errors import RuleError

__all__ = ["Duration", "SPEC_KINDS", "SPEC_SUFFIXES", "parse_duration", "spec_documents", "validate_specs", "format_duration"]

SPEC_KINDS = frozenset({"slo", "seller_sla"})
SPEC_SUFFIXES = (".slo", ".sla", ".yml", ".yaml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

M = TypeVar("M", bound=BaseModel)


def parse_duration(value: Any) -> timedelta:
    """``"5m"``, ``"1h"``, ``"30d"`` (also s and w), seconds as a number, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30s, 5m, 1h, 30d; got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def format_duration(delta: timedelta) -> str:
    """The shortest exact label of a duration: ``timedelta(hours=6)`` -> ``"6h"``."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _files(dirs: Sequence[Path | str]) -> list[Path]:
    out: list[Path] = []
    for d in map(Path, dirs):
        if d.is_file():
            out.append(d)
        elif d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()))
        else:
            raise RuleError(str(d), "no such spec file or directory")
    return out


def spec_documents(dirs: Sequence[Path | str]) -> list[tuple[str, dict[str, Any]]]:
    """``(where, document)`` for every spec document under ``dirs``; ``where`` is ``file#index``."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in _files(dirs):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(path), f"invalid YAML: {' '.join(str(exc).split())}") from None
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict) or "detection" in doc or "correlation" in doc:
                continue
            where = f"{path}#{index}"
            if path.suffix in (".yml", ".yaml") and "kind" not in doc:
                continue  # not a spec: a Sigma problem the rule loader reports
            if doc.get("kind") not in SPEC_KINDS:
                raise RuleError(where, f"kind must be one of {sorted(SPEC_KINDS)}, got {doc.get('kind')!r}")
            out.append((where, doc))
    return out


def validate_specs(dirs: Sequence[Path | str], kind: str, model: type[M]) -> list[M]:
    """Validate the ``kind`` documents under ``dirs`` as ``model``; refuse duplicate ids."""
    specs: list[M] = []
    seen: dict[str, str] = {}
    for where, doc in spec_documents(dirs):
        if doc["kind"] != kind:
            continue
        try:
            spec = model.model_validate(doc)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
            )
            raise RuleError(where, reasons) from None
        sid = str(spec.id)  # type: ignore[attr-defined]  # every spec model has an id
        if sid in seen:
            raise RuleError(where, f"duplicate {kind} id {sid!r} (first defined in {seen[sid]})")
        seen[sid] = where
        specs.append(spec)
    return specs
