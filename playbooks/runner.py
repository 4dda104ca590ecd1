"""Run the playbooks an incident triggers, step by step, idempotently.

* **Selection**: every loaded playbook whose trigger matches the incident runs, in file order.
* **Idempotency**: each step's outcome is recorded under ``(playbook id, incident id, step
  index)``; a recorded step is skipped on later runs (its output is restored for the steps
  after it), so running twice changes nothing the second time. The steps' own effects are
  idempotent too (tickets per incident+queue+kind, action ids hash their target, clocks per
  incident), so a crash between effect and record does not duplicate work.
* **Failures**: a step that raises is retried with exponential backoff (``retries`` of the
  step, delays from ``backoff``; ``sleep`` is injectable). When it still fails it is recorded as
  ``failed`` in the step log, on every ticket of the incident
  (:meth:`~marketguard.cases.tickets.TicketStore.record_step_failure`) and in the audit trail
  (``playbook.step_failed``); later steps still run. A failed step is not re-attempted by
  later runs: fixing it is a human decision, visible on the ticket.
* The runner never raises for a step: it logs, counts (``marketguard_playbook_steps_total``)
  and records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marketguard.cases import IncidentDetail
from marketguard.cases.tickets import StepFailure
from marketguard.errors import ConfigError
from marketguard.metrics import METRICS, Metrics
from playbooks.model import Playbook, StepSpec
from playbooks.retry import Backoff, retry_call
from playbooks.state import StepLog, StepRecord
from playbooks.steps import Responders, StepContext, step_for

__all__ = ["PlaybookRunner", "RunResult", "StepOutcome", "check_references"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutcome:
    """What happened to one step in one run: ``done``/``failed`` now, or ``skipped`` (recorded before)."""

    playbook_id: str
    index: int
    kind: str
    status: str
    attempts: int = 0
    error: str | None = None


@dataclass(frozen=True)
class RunResult:
    """The playbooks an incident matched and every step's outcome in this run."""

    incident_id: str
    playbooks: tuple[str, ...] = ()
    steps: tuple[StepOutcome, ...] = field(default=())

    @property
    def changed(self) -> bool:
        """True when this run did (or failed) anything, False when everything was recorded already."""
        return any(s.status != "skipped" for s in self.steps)

    @property
    def failed(self) -> tuple[StepOutcome, ...]:
        """Steps that failed in this run."""
        return tuple(s for s in self.steps if s.status == "failed")


def check_references(playbooks: Iterable[Playbook], responders: Responders) -> list[str]:
    """Problems a playbook set has against the configured stage (unknown notifiers, no containment)."""
    problems = []
    names = set(responders.dispatcher.notifiers)
    for book in playbooks:
        for i, spec in enumerate(book.steps):
            notifier = getattr(spec, "notifier", None)
            if notifier and notifier not in names:
                problems.append(f"{book.source}: steps[{i}] ({spec.kind}): unknown notifier {notifier!r}; configured: {', '.join(sorted(names)) or 'none'}")
            if spec.kind == "contain" and responders.containment is None:
                problems.append(f"{book.source}: steps[{i}] (contain): containment is not configured")
            if spec.kind == "gdpr_clock" and responders.gdpr is None:
                problems.append(f"{book.source}: steps[{i}] (gdpr_clock): the GDPR clock is not configured")
    return problems


def _merge(facts: dict[str, Any], output: dict[str, Any]) -> None:
    for key, value in output.items():
        if key == "ticket_ids":
            facts[key] = [*facts.get(key, []), *(v for v in value if v not in facts.get(key, []))]
        elif key == "notified":
            facts[key] = {**facts.get(key, {}), **value}
        else:
            facts[key] = value


class PlaybookRunner:
    """Runs matching playbooks on incidents (see the module docstring).

    With ``strict`` (the default) a playbook naming an unconfigured notifier, or a contain /
    gdpr_clock step without its service, is a :class:`ConfigError` here, at load time;
    otherwise such problems are logged and the steps fail (recorded) when they run.
    """

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        responders: Responders,
        steps: StepLog,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics = METRICS,
        strict: bool = True,
    ) -> None:
        problems = check_references(playbooks, responders)
        if problems and strict:
            raise ConfigError("playbooks refer to what is not configured:\n  " + "\n  ".join(problems))
        for problem in problems:
            log.warning("%s", problem)
        self.playbooks, self.responders, self._log = list(playbooks), responders, steps
        self._backoff = backoff or Backoff(base_delay_s=1.0, max_delay_s=30.0)
        self._sleep, self._metrics = sleep, metrics

    def select(self, detail: IncidentDetail) -> list[Playbook]:
        """The playbooks whose trigger matches the incident."""
        return [p for p in self.playbooks if p.matches(detail)]

    def run(self, incident: IncidentDetail | str) -> RunResult:
        """Run every matching playbook on the incident (an id is looked up in the case store)."""
        detail = self.responders.cases.incident(incident) if isinstance(incident, str) else incident
        if detail is None:
            return RunResult(str(incident))
        outcomes: list[StepOutcome] = []
        books = self.select(detail)
        for book in books:
            outcomes.extend(self._run_book(book, detail))
        return RunResult(detail.incident.id, tuple(b.id for b in books), tuple(outcomes))

    def run_many(self, incident_ids: Iterable[str]) -> list[RunResult]:
        """Run on several incidents (e.g. ``RecordResult.new_incidents + updated_incidents``)."""
        return [self.run(i) for i in dict.fromkeys(incident_ids)]

    def _now(self) -> datetime:
        return self.responders.clock() if self.responders.clock else datetime.now(UTC)

    def _run_book(self, book: Playbook, detail: IncidentDetail) -> list[StepOutcome]:
        done = self._log.steps(book.id, detail.incident.id)
        facts: dict[str, Any] = {}
        out = []
        for index, spec in enumerate(book.steps):
            record = done.get(index)
            if record is not None:
                if record.status == "done":
                    _merge(facts, record.output)
                out.append(StepOutcome(book.id, index, spec.kind, "skipped", record.attempts, record.error))
                continue
            ctx = StepContext(self.responders, book, detail, index, self._now(), facts)
            out.append(self._run_step(spec, ctx))
        return out

    def _run_step(self, spec: StepSpec, ctx: StepContext) -> StepOutcome:
        step = step_for(spec.kind)
        policy = self._backoff.model_copy(update={"attempts": spec.retries + 1})
        output, tries = retry_call(lambda: step.run(spec, ctx), policy, sleep=self._sleep)
        inc_id, book = ctx.detail.incident.id, ctx.playbook
        if tries.error is None:
            output = output or {}
            _merge(ctx.facts, output)
            self._log.record(StepRecord(book.id, inc_id, ctx.index, spec.kind, "done", tries.attempts, output, None, self._now()))
            self._metrics.playbook_steps.labels(spec.kind, "done").inc()
            self._audit(ctx, "playbook.step", {"playbook": book.id, "step": ctx.index, "kind": spec.kind,
                                               "name": spec.name, "attempts": tries.attempts})
            return StepOutcome(book.id, ctx.index, spec.kind, "done", tries.attempts)
        error = f"{type(tries.error).__name__}: {tries.error}"
        log.warning("playbook %s step %d (%s) failed on %s after %d attempts: %s", book.id, ctx.index, spec.kind, inc_id, tries.attempts, error)
        self._metrics.playbook_steps.labels(spec.kind, "failed").inc()
        self._log.record(StepRecord(book.id, inc_id, ctx.index, spec.kind, "failed", tries.attempts, {}, error, self._now()))
        self._audit(ctx, "playbook.step_failed", {"playbook": book.id, "step": ctx.index, "kind": spec.kind,
                                                  "name": spec.name, "attempts": tries.attempts, "error": error})
        self._on_tickets(ctx, spec, error, tries.attempts)
        return StepOutcome(book.id, ctx.index, spec.kind, "failed", tries.attempts, error)

    def _audit(self, ctx: StepContext, action: str, details: dict[str, Any]) -> None:
        try:
            self.responders.audit.append(actor=ctx.actor, action=action, object=f"incident:{ctx.detail.incident.id}", details=details)
        except Exception:  # noqa: BLE001 - never lose the run over the audit trail; logged loudly
            log.exception("audit append failed: %s %s", action, details)

    def _on_tickets(self, ctx: StepContext, spec: StepSpec, error: str, attempts: int) -> None:
        failure = StepFailure(self._now(), ctx.playbook.id, f"{ctx.index}:{spec.kind}" + (f" ({spec.name})" if spec.name else ""), error[:1000], attempts)
        try:
            for tid in ctx.ticket_ids():
                self.responders.tickets.record_step_failure(tid, failure, actor=ctx.actor)
        except Exception:  # noqa: BLE001 - the step log and audit already hold the failure
            log.exception("could not record the failed step on the tickets of %s", ctx.detail.incident.id)
