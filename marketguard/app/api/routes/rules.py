"""Rule status: what runs, how long it takes, what failed, what is behind schedule."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from marketguard.app.api.deps import READERS, ServicesDep, require_role

router = APIRouter(prefix="/api/v1", tags=["rules"])


class RuleOut(BaseModel):
    """One rule's state in the live engine."""

    id: str
    title: str
    level: str
    kind: str
    file: str
    last_run: datetime | None
    last_seconds: float
    matches_total: int
    error: str | None
    behind_schedule: bool


class FailedRuleOut(BaseModel):
    """A rule file that could not be loaded, and why."""

    file: str
    reason: str


class RulesOut(BaseModel):
    """Every loaded rule's status, and the rules that failed to load."""

    items: list[RuleOut]
    failed: list[FailedRuleOut]


@router.get("/rules", response_model=RulesOut, summary="Status of every detection and correlation rule",
            dependencies=[Depends(require_role(*READERS))])
def list_rules(services: ServicesDep) -> RulesOut:
    """Loaded rules with their last run, duration, matches, error and schedule status."""
    engine = services.engine
    statuses = list(engine.status.values()) if engine is not None else []
    return RulesOut(
        items=[RuleOut(**vars(s)) for s in statuses],
        failed=[FailedRuleOut(file=f.file, reason=f.reason) for f in services.rules.failures],
    )
