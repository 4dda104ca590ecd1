"""SLO and seller-SLA status from the latest evaluation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from marketguard.app.api.deps import READERS, ServicesDep, require_role
from marketguard.auth import Principal

router = APIRouter(prefix="/api/v1", tags=["sla"])


SellerOrStaff = Annotated[Principal, Depends(require_role(*READERS, "seller"))]


class WindowOut(BaseModel):
    """Burn rate over one trailing window."""

    window: str
    burn_rate: float
    good: int
    total: int


class SloOut(BaseModel):
    """One SLO at the last evaluation."""

    slo_id: str
    service: str
    evaluated_at: datetime
    objective: float
    attainment: float | None
    budget_remaining: float
    windows: list[WindowOut]
    alert: str | None


class SellerSlaOut(BaseModel):
    """One seller's support-SLA compliance and service score (0-100)."""

    sla_id: str
    seller_id: str
    tickets: int
    compliance: dict[str, float | None]
    score: float | None


@router.get("/slos", response_model=list[SloOut], summary="SLO attainment, error budget and burn rates",
            dependencies=[Depends(require_role(*READERS))])
def list_slos(services: ServicesDep) -> list[SloOut]:
    """Every SLO at the latest evaluation (empty before the first one)."""
    cycle = services.sla.last if services.sla is not None else None
    if cycle is None:
        return []
    return [
        SloOut(slo_id=s.slo_id, service=s.service, evaluated_at=s.now, objective=s.objective,
               attainment=s.attainment, budget_remaining=s.budget_remaining, alert=s.severity,
               windows=[WindowOut(window=k, burn_rate=w.burn_rate, good=w.good, total=w.total) for k, w in s.windows.items()])
        for s in cycle.slos
    ]


@router.get("/sellers/{seller_id}/sla", response_model=list[SellerSlaOut], summary="A seller's support SLA and score")
def seller_sla(seller_id: str, services: ServicesDep, principal: SellerOrStaff) -> list[SellerSlaOut]:
    """Staff see any seller; a ``seller:<id>`` key sees only its own (others: 404)."""
    if principal.seller_id is not None and principal.seller_id != seller_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no SLA report for seller {seller_id!r}")
    cycle = services.sla.last if services.sla is not None else None
    reports = cycle.sellers if cycle is not None else []
    found = [(r.sla_id, r.sellers[seller_id]) for r in reports if seller_id in r.sellers]
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no SLA report for seller {seller_id!r}")
    return [SellerSlaOut(sla_id=sid, seller_id=seller_id, tickets=c.tickets, compliance=c.compliance, score=c.score)
            for sid, c in found]
