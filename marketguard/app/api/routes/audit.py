"""Route ``GET /api/v1/audit/verify``: prove the audit trail intact or name the first broken entry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketguard.app.api.deps import ServicesDep, require_role
from marketguard.app.api.routes.tickets import audit_of
from marketguard.auth import Principal
from marketguard.cases.audit import AuditError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Auditor = Annotated[Principal, Depends(require_role("auditor"))]


class VerifyOut(BaseModel):
    """Outcome of a chain check."""

    ok: bool
    entries: int = Field(description="Entries checked.")
    first_broken_seq: int | None = Field(description="Sequence number of the first entry that does not hold.")
    reason: str | None
    last_hash: str | None = Field(description="Hash of the last entry checked (pin it to detect truncation later).")


@router.get("/verify", response_model=VerifyOut, summary="Verify the audit hash chain")
async def verify(
    services: ServicesDep, _: Auditor,
    from_seq: Annotated[int | None, Query(ge=1)] = None, to_seq: Annotated[int | None, Query(ge=1)] = None,
) -> VerifyOut:
    """Recompute every hash and link; ``ok`` false names the first broken entry (HTTP 200 either way)."""
    log = audit_of(services)
    try:
        result = await run_in_threadpool(log.verify, from_seq, to_seq)
    except AuditError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return VerifyOut(ok=result.ok, entries=result.entries, first_broken_seq=result.first_broken_seq,
                     reason=result.reason, last_hash=result.last_hash)
