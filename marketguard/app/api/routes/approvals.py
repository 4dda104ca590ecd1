"""Routes: ``GET /api/v1/approvals``, ``POST /api/v1/approvals/{id}/approve|reject``.

Containment actions requested by playbooks wait here for a human. Staff readers (analyst,
oncall, auditor) may list them; only ``oncall`` (and ``admin``) may decide, always with a
reason. Approving calls the action webhook once; the response is the action's final state
(``executed`` or ``failed``). Deciding an action twice is 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.cases.audit import actor_of
from playbooks.containment import ActionNotFound, Containment, ContainmentError
from playbooks.state import PendingAction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["approvals"])

Reader = Annotated[Principal, Depends(require_role(*READERS))]
Approver = Annotated[Principal, Depends(require_role("oncall"))]
ActionId = Annotated[str, Path(max_length=64, description="The pending action's id (`act-…`).")]


class ActionOut(BaseModel):
    """A containment action and where it stands."""

    id: str
    incident_id: str
    action: Literal["block_ip", "suspend_seller_api_key", "force_password_reset"]
    target: str
    requested_by: str
    requested_at: datetime
    status: Literal["pending", "approved", "rejected", "executed", "failed"]
    playbook_id: str | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    result: str | None = Field(description="`ok`, or why the action webhook failed.")

    @classmethod
    def of(cls, a: PendingAction) -> ActionOut:
        """The response form of an action."""
        return cls(**{k: getattr(a, k) for k in cls.model_fields})


class Decision(BaseModel):
    """Why the action is approved or rejected (kept in the audit trail)."""

    reason: str = Field(min_length=3, max_length=2000)


def _containment(services: Services) -> Containment:
    found = getattr(services, "containment", None) or services.extras.get("containment")
    if found is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="containment is not configured")
    return found  # type: ignore[no-any-return]


@router.get("/approvals", response_model=list[ActionOut], summary="Containment actions awaiting or past approval")
async def list_actions(
    services: ServicesDep, _: Reader,
    status_: Annotated[Literal["pending", "approved", "rejected", "executed", "failed"] | None,
                       Query(alias="status", description="Only actions with this status.")] = None,
    incident_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ActionOut]:
    """Actions newest first, optionally filtered by status and incident."""
    actions = await run_in_threadpool(_containment(services).actions.list, status_, incident_id)
    return [ActionOut.of(a) for a in actions]


async def _decide(services: Services, principal: Principal, action_id: str, reason: str, approve: bool) -> ActionOut:
    service = _containment(services)
    decide = service.approve if approve else service.reject
    try:
        done = await run_in_threadpool(lambda: decide(action_id, actor=actor_of(principal), reason=reason))
    except ActionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except ContainmentError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return ActionOut.of(done)


@router.post("/approvals/{action_id}/approve", response_model=ActionOut, summary="Approve and execute a containment action")
async def approve(services: ServicesDep, principal: Approver, action_id: ActionId,
                  decision: Annotated[Decision, Body()]) -> ActionOut:
    """Approve a pending action; the action webhook is called once and the outcome returned."""
    return await _decide(services, principal, action_id, decision.reason, True)


@router.post("/approvals/{action_id}/reject", response_model=ActionOut, summary="Reject a containment action")
async def reject(services: ServicesDep, principal: Approver, action_id: ActionId,
                 decision: Annotated[Decision, Body()]) -> ActionOut:
    """Reject a pending action; it will never be executed."""
    return await _decide(services, principal, action_id, decision.reason, False)
