"""Playbook step kinds: a name → class registry (see :mod:`playbooks.steps.base`)."""

from __future__ import annotations

from marketguard.errors import MarketGuardError
from playbooks.model import StepSpec
from playbooks.steps.assign import AssignStep
from playbooks.steps.base import Responders, Step, StepContext, StepError
from playbooks.steps.contain import ContainStep
from playbooks.steps.enrich import EnrichStep
from playbooks.steps.gdpr_clock import GdprClockStep
from playbooks.steps.notify import NotifyStep
from playbooks.steps.open_ticket import OpenTicketStep
from playbooks.steps.report import ReportStep

__all__ = ["STEPS", "spec_class", "step_for", "Step", "StepContext", "StepError", "Responders"]

#: Step kind -> step class.
STEPS: dict[str, type[Step]] = {cls.kind: cls for cls in (
    EnrichStep, OpenTicketStep, AssignStep, NotifyStep, ContainStep, GdprClockStep, ReportStep,
)}


def step_for(kind: str) -> Step:
    """An instance of the step class of ``kind``; unknown kinds list the valid ones."""
    try:
        return STEPS[kind]()
    except KeyError:
        raise MarketGuardError(f"unknown step kind {kind!r}; valid: {', '.join(STEPS)}") from None


def spec_class(kind: str) -> type[StepSpec]:
    """The ``Spec`` model of a step kind."""
    return step_for(kind).Spec
