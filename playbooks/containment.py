"""Containment with human approval: a playbook only *requests*; a person decides.

A ``contain`` step creates a :class:`~playbooks.state.PendingAction` (status ``pending``).
Someone with the ``oncall`` or ``admin`` role approves or rejects it, with a reason, through
``POST /api/v1/approvals/{id}/approve|reject``. Only an approval calls the action webhook
(``containment.url`` in ``notifiers.yaml``, e.g. the WAF or IAM automation), once: the status
moves ``pending → approved`` by compare-and-set, so two concurrent approvals cannot both
execute. The outcome moves it to ``executed`` or ``failed``. The request, the decision and the
outcome are each an audit entry (``containment.request|approve|reject|executed|failed``).

Webhook body: ``{"action_id", "action", "target", "target_field", "incident_id",
"requested_by", "approved_by", "reason"}`` with header ``Idempotency-Key: <action id>``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

import httpx

from marketguard.cases.audit import AuditLog
from marketguard.errors import MarketGuardError
from marketguard.metrics import METRICS, Metrics
from playbooks.notifiers import ActionWebhook
from playbooks.retry import Backoff, Permanent, retry_call
from playbooks.state import ActionStore, PendingAction

__all__ = ["Containment", "ContainAction", "ACTION_TARGETS", "ContainmentError", "ActionNotFound"]

ContainAction = Literal["block_ip", "suspend_seller_api_key", "force_password_reset"]

#: Action -> the entity field it acts on.
ACTION_TARGETS: dict[str, str] = {
    "block_ip": "source.ip",
    "suspend_seller_api_key": "marketplace.seller_id",
    "force_password_reset": "user.id",
}


class ContainmentError(MarketGuardError):
    """A decision was refused (already decided, no reason given)."""


class ActionNotFound(ContainmentError):
    """No pending action with this id."""


class Containment:
    """Requests, approvals and execution of containment actions."""

    def __init__(
        self,
        actions: ActionStore,
        audit: AuditLog,
        webhook: ActionWebhook | None,
        *,
        client: httpx.Client | None = None,
        retry: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics = METRICS,
    ) -> None:
        self.actions, self._audit, self._webhook = actions, audit, webhook
        self._client = client or httpx.Client(timeout=webhook.timeout_s if webhook else 10.0)
        self._retry, self._sleep, self._metrics = retry or Backoff(), sleep, metrics

    def request(self, incident_id: str, action: str, target: str, *, requested_by: str,
                playbook_id: str | None = None, now: datetime | None = None) -> PendingAction:
        """Create the pending action (idempotent: the id hashes incident, action and target)."""
        digest = hashlib.sha256(f"{incident_id}\x1f{action}\x1f{target}".encode()).hexdigest()[:16]
        pending = PendingAction(id=f"act-{digest}", incident_id=incident_id, action=action, target=target,
                                requested_by=requested_by, requested_at=now or datetime.now(UTC), playbook_id=playbook_id)
        if self.actions.add(pending):
            self._metrics.containment_actions.labels(action, "pending").inc()
            self._audit.append(actor=requested_by, action="containment.request", object=f"action:{pending.id}",
                               details={"incident": incident_id, "action": action, "target": target})
            return pending
        return self.actions.get(pending.id) or pending

    def approve(self, action_id: str, *, actor: str, reason: str, now: datetime | None = None) -> PendingAction:
        """Approve a pending action and execute it through the webhook; return its final state."""
        approved = self._decide(action_id, "approved", actor, reason, now)
        return self._execute(approved, actor)

    def reject(self, action_id: str, *, actor: str, reason: str, now: datetime | None = None) -> PendingAction:
        """Reject a pending action; the webhook is never called for it."""
        return self._decide(action_id, "rejected", actor, reason, now)

    def _decide(self, action_id: str, status: Literal["approved", "rejected"], actor: str, reason: str,
                now: datetime | None) -> PendingAction:
        if not reason.strip():
            raise ContainmentError("a reason is required to approve or reject a containment action")
        current = self.actions.get(action_id)
        if current is None:
            raise ActionNotFound(f"no containment action {action_id!r}")
        decided = replace(current, status=status, decided_by=actor, decided_at=now or datetime.now(UTC), reason=reason)
        if current.status != "pending" or not self.actions.transition(action_id, "pending", decided):
            latest = self.actions.get(action_id) or current
            raise ContainmentError(f"action {action_id} is already {latest.status} (by {latest.decided_by}); only pending actions can be decided")
        self._metrics.containment_actions.labels(current.action, status).inc()
        verb = "approve" if status == "approved" else "reject"
        self._audit.append(actor=actor, action=f"containment.{verb}", object=f"action:{action_id}",
                           details={"incident": current.incident_id, "action": current.action,
                                    "target": current.target, "reason": reason})
        return decided

    def _execute(self, approved: PendingAction, actor: str) -> PendingAction:
        if self._webhook is None:
            error: BaseException | None = ContainmentError("no containment webhook configured")
            attempts = 0
        else:
            _, tries = retry_call(lambda: self._call(approved), self._retry, sleep=self._sleep)
            error, attempts = tries.error, tries.attempts
        status: Literal["executed", "failed"] = "executed" if error is None else "failed"
        result = "ok" if error is None else str(error)[:500]
        final = replace(approved, status=status, result=result)
        self.actions.transition(approved.id, "approved", final)
        self._metrics.containment_actions.labels(approved.action, status).inc()
        self._audit.append(actor=actor, action=f"containment.{status}", object=f"action:{approved.id}",
                           details={"incident": approved.incident_id, "action": approved.action,
                                    "target": approved.target, "attempts": attempts, "result": result})
        return final

    def _call(self, a: PendingAction) -> None:
        assert self._webhook is not None
        body = {"action_id": a.id, "action": a.action, "target": a.target, "target_field": ACTION_TARGETS.get(a.action),
                "incident_id": a.incident_id, "requested_by": a.requested_by, "approved_by": a.decided_by, "reason": a.reason}
        try:
            resp = self._client.post(self._webhook.url, json=body,
                                     headers={"Idempotency-Key": a.id, **self._webhook.headers})
        except httpx.HTTPError as exc:
            raise ContainmentError(f"action webhook unreachable: {exc}") from exc
        if not resp.is_success:
            err = ContainmentError(f"action webhook answered HTTP {resp.status_code}: {resp.text[:200]}")
            if resp.status_code < 500 and resp.status_code not in (408, 429):
                raise err from Permanent()
            raise err
