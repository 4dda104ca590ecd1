"""Build the whole response stage from the cases components and two files — one call for the
composition root (:mod:`marketguard.app.services`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from marketguard.cases import CaseStore
from marketguard.cases.audit import AuditLog
from marketguard.cases.routing import TicketPolicy
from marketguard.cases.tickets import TicketStore
from marketguard.metrics import METRICS, Metrics
from marketguard.store import Store
from playbooks.containment import Containment
from playbooks.gdpr import GdprClock
from playbooks.model import load_playbooks
from playbooks.notifiers import ResponseConfig, load_response_config
from playbooks.notifiers.dispatch import Dispatcher
from playbooks.runner import PlaybookRunner
from playbooks.state import open_response_state
from playbooks.steps import Responders

__all__ = ["ResponseStage", "build_response"]

log = logging.getLogger(__name__)


@dataclass
class ResponseStage:
    """The runner and the services the API and scheduler need."""

    runner: PlaybookRunner
    dispatcher: Dispatcher
    containment: Containment
    gdpr: GdprClock


def build_response(
    store: Store, cases: CaseStore, tickets: TicketStore, policy: TicketPolicy, audit: AuditLog, *,
    playbook_dir: Path = Path("playbooks"), notifier_file: Path | None = None,
    env: Mapping[str, str] | None = None, base_url: str | None = None,
    gdpr_notifier: str | None = None, strict: bool = False, metrics: Metrics = METRICS,
    sleep: Callable[[float], None] = time.sleep,
) -> ResponseStage:
    """Load playbooks and notifiers (fail fast) and wire runner, containment and GDPR clock.

    Destinations whose ``${VAR}`` is unset are left out with a warning, so the service starts
    with what is configured; steps that need a missing one fail, recorded on the ticket. With
    ``strict`` such references are a :class:`ConfigError` instead. Without a notifier file
    (default ``<playbook_dir>/notifiers.yaml``) nothing is configured.
    """
    notifier_file = notifier_file or (playbook_dir / "notifiers.yaml")
    if notifier_file.is_file():
        config, notifiers = load_response_config(notifier_file, env=env, skip_unset=not strict)
    else:
        log.warning("no notifier configuration at %s: notifications and containment are disabled", notifier_file)
        config, notifiers, strict = ResponseConfig(), {}, False
    dispatcher = Dispatcher(notifiers, audit, retry=config.retry, sleep=sleep, metrics=metrics)
    state = open_response_state(store)
    containment = Containment(state.actions, audit, config.containment, retry=config.retry, sleep=sleep, metrics=metrics)
    gdpr = GdprClock(state.clocks, tickets, policy, audit, dispatcher=dispatcher,
                     reminder_notifier=gdpr_notifier if gdpr_notifier in notifiers else None, metrics=metrics)
    responders = Responders(store=store, cases=cases, tickets=tickets, policy=policy, audit=audit,
                            dispatcher=dispatcher, containment=containment, gdpr=gdpr, base_url=base_url)
    runner = PlaybookRunner(load_playbooks(playbook_dir), responders, state.steps,
                            metrics=metrics, strict=strict, sleep=sleep)
    return ResponseStage(runner, dispatcher, containment, gdpr)
