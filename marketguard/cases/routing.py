"""Who owns an incident, how urgent it is and by when it is due: ownership routing as data.

One YAML file (``playbooks/routing.yaml``; every section optional, defaults below) holds:

* ``impact``: how an incident's entities make its impact ``low``/``medium``/``high`` —
  ``high`` when it touches a critical service (payments, checkout), personal data, or at
  least ``users.high`` users / ``sellers.high`` sellers; ``medium`` from ``users.medium`` /
  ``sellers.medium``; else ``low``.
* ``priority``: the severity × impact matrix (``severity: {low: P3, medium: P2, high: P1}``).
* ``sla``: per priority, the response (``ack``) and ``resolve`` durations (``15m``, ``4h``, ``3d``).
* ``routes``: ordered rules; **every** rule that matches adds its queues, so an incident can
  open tickets for several owners. A rule matches when every condition it names holds
  (``types``, ``tags`` — a rule tag equal to or starting with ``<tag>.``, ``services``,
  ``entities`` — entity fields present, ``without_entities`` — fields absent,
  ``min_severity``, ``personal_data``). A queue
  ``seller:{marketplace.seller_id}`` expands to one queue per seller of the incident.
  When no rule matches, ``default_queue`` owns it.

:meth:`TicketPolicy.plan` turns an incident into the :class:`~marketguard.cases.tickets.NewTicket`
values to open. Loading fails fast with the file and the offending item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marketguard.cases import Alert, Incident
from marketguard.cases.tickets import Link, NewTicket
from marketguard.errors import ConfigError
from marketguard.types import OWNER_QUEUE_PATTERN, SEVERITY_ORDER, Priority, Severity, severity_rank

__all__ = [
    "Impact", "ImpactPolicy", "Sla", "RouteRule", "TicketPolicy", "Route", "load_policy",
    "DEFAULT_POLICY_FILE", "parse_duration",
]

Impact = Literal["low", "medium", "high"]
IMPACTS: tuple[Impact, ...] = ("low", "medium", "high")
DEFAULT_POLICY_FILE = Path("playbooks/routing.yaml")
SELLER_TEMPLATE = "seller:{marketplace.seller_id}"
_QUEUE = re.compile(OWNER_QUEUE_PATTERN)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"15m"``, ``"4h"``, ``"3d"`` -> timedelta; anything else is refused."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a positive duration like 15m, 4h or 3d, got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Thresholds(_Frozen):
    """Counts from which impact is medium / high."""

    medium: int = Field(ge=1)
    high: int = Field(ge=1)


class ImpactPolicy(_Frozen):
    """How entity criticality sets an incident's impact."""

    critical_services: tuple[str, ...] = ("payments", "payment", "checkout", "payment-gateway")
    personal_data_tags: tuple[str, ...] = ("marketguard.personal_data", "attack.collection", "attack.t1530")
    users: Thresholds = Thresholds(medium=10, high=100)
    sellers: Thresholds = Thresholds(medium=2, high=5)

    def of(self, incident: Incident, tags: Iterable[str]) -> Impact:
        """The impact of an incident given its alerts' rule tags."""
        services = {s.lower() for s in incident.entities.get("service.name", [])}
        if services & {s.lower() for s in self.critical_services} or self.personal_data(tags):
            return "high"
        users = len(incident.entities.get("user.id", []))
        sellers = len(incident.entities.get("marketplace.seller_id", []))
        if users >= self.users.high or sellers >= self.sellers.high:
            return "high"
        if users >= self.users.medium or sellers >= self.sellers.medium:
            return "medium"
        return "low"

    def personal_data(self, tags: Iterable[str]) -> bool:
        """True when a rule tag marks personal data."""
        return any(_tag_matches(t, p) for t in tags for p in self.personal_data_tags)


class Sla(_Frozen):
    """A priority's response and resolution times."""

    ack: timedelta
    resolve: timedelta

    @field_validator("ack", "resolve", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class RouteRule(_Frozen):
    """One routing rule: conditions (all named ones must hold) and the queues it adds."""

    id: str
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    without_entities: tuple[str, ...] = ()
    min_severity: Severity | None = None
    personal_data: bool | None = None
    queues: tuple[str, ...] = Field(min_length=1)
    kind: str = "response"

    @field_validator("queues")
    @classmethod
    def _queues(cls, queues: tuple[str, ...]) -> tuple[str, ...]:
        for q in queues:
            if q != SELLER_TEMPLATE and not _QUEUE.match(q):
                raise ValueError(f"unknown queue {q!r}: expected operator:secops|sre|payments|dpo, seller:<id> or {SELLER_TEMPLATE}")
        return queues

    def matches(self, incident: Incident, tags: Sequence[str], personal: bool) -> bool:
        """True when every condition this rule names holds for the incident."""
        services = {s.lower() for s in incident.entities.get("service.name", [])}
        return all((
            not self.types or incident.type in self.types,
            not self.tags or any(_tag_matches(t, p) for t in tags for p in self.tags),
            not self.services or bool(services & {s.lower() for s in self.services}),
            not self.entities or all(incident.entities.get(f) for f in self.entities),
            not any(incident.entities.get(f) for f in self.without_entities),
            self.min_severity is None or severity_rank(incident.severity) >= severity_rank(self.min_severity),
            self.personal_data is None or self.personal_data == personal,
        ))


def _default_matrix() -> dict[str, dict[str, Priority]]:
    return {
        "critical": {"low": "P2", "medium": "P1", "high": "P1"},
        "high": {"low": "P3", "medium": "P2", "high": "P1"},
        "medium": {"low": "P3", "medium": "P3", "high": "P2"},
        "low": {"low": "P4", "medium": "P4", "high": "P3"},
        "informational": {"low": "P4", "medium": "P4", "high": "P4"},
    }


def _default_sla() -> dict[str, Sla]:
    hours = {"P1": (0.25, 4), "P2": (1, 24), "P3": (4, 72), "P4": (24, 336)}
    return {p: Sla(ack=timedelta(hours=a), resolve=timedelta(hours=r)) for p, (a, r) in hours.items()}


class Route(_Frozen):
    """One owner an incident routes to, and which rules sent it there."""

    queue: str
    kind: str
    rules: tuple[str, ...]


class TicketPolicy(_Frozen):
    """Impact, priority matrix, SLAs and routing rules: everything that decides a ticket."""

    impact: ImpactPolicy = ImpactPolicy()
    priority: dict[Severity, dict[Impact, Priority]] = Field(default_factory=_default_matrix)
    sla: dict[Priority, Sla] = Field(default_factory=_default_sla)
    routes: tuple[RouteRule, ...] = ()
    default_queue: str = Field("operator:secops", pattern=OWNER_QUEUE_PATTERN)

    @model_validator(mode="after")
    def _complete(self) -> TicketPolicy:
        missing = [f"{s}×{i}" for s in SEVERITY_ORDER for i in IMPACTS if i not in self.priority.get(s, {})]
        if missing:
            raise ValueError(f"priority matrix lacks {', '.join(missing)}")
        if lacking := [p for p in ("P1", "P2", "P3", "P4") if p not in self.sla]:
            raise ValueError(f"sla lacks {', '.join(lacking)}")
        ids = [r.id for r in self.routes]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"duplicate route ids: {', '.join(dup)}")
        return self

    def priority_of(self, severity: str, impact: Impact) -> Priority:
        """The matrix cell for a severity (unknown = informational) and impact."""
        level = severity if severity in self.priority else "informational"
        return self.priority[level][impact]  # type: ignore[index]

    def due(self, priority: Priority, created: datetime) -> tuple[datetime, datetime]:
        """(acknowledge by, resolve by) for a ticket of ``priority`` created at ``created``."""
        sla = self.sla[priority]
        return created + sla.ack, created + sla.resolve

    def route(self, incident: Incident, tags: Sequence[str] = ()) -> list[Route]:
        """Every owner queue the incident routes to (at least the default queue)."""
        personal = self.impact.personal_data(tags)
        found: dict[tuple[str, str], list[str]] = {}
        for rule in self.routes:
            if rule.matches(incident, tags, personal):
                for queue in _expand(rule.queues, incident):
                    found.setdefault((queue, rule.kind), []).append(rule.id)
        if not found:
            found[(self.default_queue, "response")] = ["default"]
        return [Route(queue=q, kind=k, rules=tuple(r)) for (q, k), r in found.items()]

    def plan(self, incident: Incident, alerts: Sequence[Alert] = (), *, now: datetime) -> list[NewTicket]:
        """The tickets an incident should open (one per route), with priority and due times."""
        tags = sorted({t for a in alerts for t in a.tags})
        impact = self.impact.of(incident, tags)
        priority = self.priority_of(incident.severity, impact)
        ack_due, resolve_due = self.due(priority, now)
        links = (Link("incident", incident.id), *(Link("alert", a) for a in incident.alert_ids))
        return [
            NewTicket(
                incident_id=incident.id, queue=r.queue, kind=r.kind, title=incident.title,
                priority=priority, ack_due=ack_due, resolve_due=resolve_due,
                severity=incident.severity, impact=impact, entities=dict(incident.entities),
                links=links, details={"routed_by": list(r.rules), "incident_type": incident.type},
            )
            for r in self.route(incident, tags)
        ]


def _tag_matches(tag: str, pattern: str) -> bool:
    tag, pattern = tag.lower(), pattern.lower()
    return tag == pattern or tag.startswith(pattern + ".")


def _expand(queues: Iterable[str], incident: Incident) -> list[str]:
    out: list[str] = []
    for q in queues:
        targets = [f"seller:{s}" for s in incident.entities.get("marketplace.seller_id", [])] if q == SELLER_TEMPLATE else [q]
        out.extend(t for t in targets if _QUEUE.match(t) and t not in out)
    return out


def load_policy(path: Path | None = DEFAULT_POLICY_FILE) -> TicketPolicy:
    """The policy in ``path`` (defaults when None or the file does not exist). Fails fast."""
    if path is None or not path.is_file():
        return TicketPolicy()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with impact/priority/sla/routes, got {type(data).__name__}")
    try:
        return TicketPolicy(**data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {where}") from None
