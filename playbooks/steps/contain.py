"""``contain``: request a containment action per target entity; a human must approve it.

Actions and the entity field each acts on (:data:`ACTION_TARGETS`): ``block_ip`` →
``source.ip``, ``suspend_seller_api_key`` → ``marketplace.seller_id``,
``force_password_reset`` → ``user.id``. Nothing is executed here: see
:mod:`playbooks.containment`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from playbooks.containment import ACTION_TARGETS, ContainAction
from playbooks.model import StepSpec
from playbooks.steps.base import Step, StepContext, StepError

__all__ = ["ContainStep", "ContainSpec"]


class ContainSpec(StepSpec):
    """The action, the entity field it targets (defaults from the action), a target cap."""

    kind: Literal["contain"]
    action: ContainAction
    target: str | None = None
    max_targets: int = Field(10, ge=1, le=100)
    if_present: bool = Field(True, description="Without a target entity the step is done with nothing requested; false makes that a failure.")

    @model_validator(mode="after")
    def _target(self) -> ContainSpec:
        expected = ACTION_TARGETS[self.action]
        if self.target is not None and self.target != expected:
            raise ValueError(f"action {self.action} acts on {expected}, not {self.target}")
        return self


class ContainStep(Step):
    """Creates one pending action per target value of the incident."""

    kind = "contain"
    Spec = ContainSpec

    def run(self, spec: ContainSpec, ctx: StepContext) -> dict[str, Any]:
        """Return ``{"pending_actions": [ids]}``."""
        service = ctx.deps.containment
        if service is None:
            raise StepError("containment is not configured (no action webhook in notifiers.yaml)", permanent=True)
        field = ACTION_TARGETS[spec.action]
        targets = ctx.detail.incident.entities.get(field, [])[: spec.max_targets]
        if not targets and spec.if_present:
            return {"pending_actions": [], "contain_skipped": f"no {field} in the incident"}
        if not targets:
            raise StepError(f"incident has no {field} to {spec.action}", permanent=True)
        ids = [service.request(ctx.detail.incident.id, spec.action, t, requested_by=ctx.actor,
                               playbook_id=ctx.playbook.id, now=ctx.now).id for t in targets]
        text = f"Containment requested ({spec.action}) for {', '.join(targets)}: awaiting approval ({', '.join(ids)})."
        for tid in ctx.ticket_ids():
            ctx.deps.tickets.comment(tid, text, actor=ctx.actor, internal=True, now=ctx.now)
        return {"pending_actions": ids}
