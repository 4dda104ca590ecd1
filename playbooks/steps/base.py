"""The step interface: a ``Spec`` (validated YAML fields) and ``run(spec, ctx) -> output``.

To add a step kind: subclass :class:`Step` in a new module of this package, give it a
``kind`` name and a ``Spec`` extending :class:`~playbooks.model.StepSpec` with
``kind: Literal["<name>"]``, and list the class in :data:`playbooks.steps.STEPS`. ``run``
returns a JSON-serialisable mapping that is stored with the step's completion and merged into
``ctx.facts`` for later steps (``ticket_ids`` lists are concatenated); it raises on failure
(a :class:`StepError` marked ``permanent`` is not retried).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from marketguard.cases import IncidentDetail
from marketguard.cases.audit import AuditLog
from marketguard.cases.routing import TicketPolicy
from marketguard.cases.tickets import TicketFilters, TicketStore
from marketguard.errors import MarketGuardError
from marketguard.store import Store
from playbooks.model import Playbook, StepSpec
from playbooks.retry import Permanent

if TYPE_CHECKING:
    from marketguard.cases import CaseStore
    from playbooks.containment import Containment
    from playbooks.gdpr import GdprClock
    from playbooks.notifiers.dispatch import Dispatcher

__all__ = ["Step", "StepContext", "Responders", "StepError", "render", "incident_vars"]


class StepError(MarketGuardError):
    """A step failed; ``permanent`` ones are recorded at once, without retries."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        if permanent:
            self.__cause__ = Permanent()


@dataclass
class Responders:
    """Everything steps act through, built once by the composition root."""

    store: Store
    cases: CaseStore
    tickets: TicketStore
    policy: TicketPolicy
    audit: AuditLog
    dispatcher: Dispatcher
    containment: Containment | None = None
    gdpr: GdprClock | None = None
    base_url: str | None = None
    clock: Callable[[], datetime] | None = None


@dataclass
class StepContext:
    """One step's view of its run: the incident, the playbook, earlier outputs, the time."""

    deps: Responders
    playbook: Playbook
    detail: IncidentDetail
    index: int
    now: datetime
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """Audit actor of playbook steps: ``playbook:<id>``."""
        return f"playbook:{self.playbook.id}"

    def ticket_ids(self) -> list[str]:
        """Tickets opened by earlier steps, else every ticket of the incident."""
        ids = list(self.facts.get("ticket_ids", []))
        if ids:
            return ids
        page = self.deps.tickets.list(TicketFilters(incident_id=self.detail.incident.id), limit=100)
        return [t.id for t in page.items]

    def link(self) -> str | None:
        """The incident's API URL when a base URL is configured."""
        base = self.deps.base_url
        return f"{base.rstrip('/')}/api/v1/incidents/{self.detail.incident.id}" if base else None


class Step:
    """Base of the step kinds (see the module docstring)."""

    kind: ClassVar[str]
    Spec: ClassVar[type[StepSpec]]

    def run(self, spec: Any, ctx: StepContext) -> dict[str, Any]:
        """Do the step; return its output."""
        raise NotImplementedError


def incident_vars(ctx: StepContext) -> dict[str, str]:
    """Template variables: ``${id} ${title} ${severity} ${type} ${entities} ${first_seen}
    ${last_seen} ${rules} ${alerts} ${playbook} ${tickets} ${link}``."""
    inc = ctx.detail.incident
    entities = "; ".join(f"{k}={', '.join(v[:5])}" for k, v in sorted(inc.entities.items()) if v)
    return {
        "id": inc.id, "title": inc.title, "severity": inc.severity, "type": inc.type,
        "entities": entities, "first_seen": inc.first_seen.isoformat(), "last_seen": inc.last_seen.isoformat(),
        "rules": ", ".join(inc.rule_ids), "alerts": str(len(inc.alert_ids)), "playbook": ctx.playbook.id,
        "tickets": ", ".join(ctx.facts.get("ticket_ids", [])), "link": ctx.link() or "",
    }


def render(template: str, ctx: StepContext) -> str:
    """``template`` with ``${name}`` variables of :func:`incident_vars` substituted."""
    return string.Template(template).safe_substitute(incident_vars(ctx))
