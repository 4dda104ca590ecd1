"""SLO and seller scorecards, and the audit-chain status."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from marketguard.app.api.routes import audit, sla
from marketguard.app.console.deps import SessionDep, render, services_of
from marketguard.app.console.permissions import allows, call_as

__all__ = ["router"]

router = APIRouter()


async def _seller_cards(request: Request, session: SessionDep) -> list[sla.SellerSlaOut]:
    """Staff: every seller of the last evaluation; a seller: only its own (as the API scopes it)."""
    services, principal = services_of(request), session.principal
    if principal.seller_id is not None:
        sellers = [principal.seller_id]
    else:
        cycle = services.sla.last if services.sla is not None else None
        sellers = sorted({s for report in (cycle.sellers if cycle else []) for s in report.sellers})
    cards: list[sla.SellerSlaOut] = []
    for seller in sellers:
        try:
            cards.extend(await call_as(principal, sla.seller_sla, seller, services, principal))
        except HTTPException as exc:
            if exc.status_code != 404:  # no report yet for this seller: nothing to show
                raise
    return cards


@router.get("/scorecards")
async def scorecards(request: Request, session: SessionDep) -> Response:
    """SLO attainment and burn rates (staff), and seller support-SLA scorecards."""
    principal = session.principal
    slos = (await call_as(principal, sla.list_slos, services_of(request))
            if allows(principal, sla.list_slos) else None)
    cards = await _seller_cards(request, session)
    return render(request, "scorecards.html", slos=slos, cards=cards)


@router.get("/audit")
async def audit_status(request: Request, session: SessionDep) -> Response:
    """Verify the whole audit hash chain now and show the outcome."""
    result = await call_as(session.principal, audit.verify, services_of(request), session.principal)
    return render(request, "audit.html", result=result)
