"""Routes: ``POST /api/v1/support-events``, support-ticket lifecycle events for seller SLAs.

A body is one JSON event or an array of them. Each is validated on its own: the valid ones
are stored as ``support.ticket`` events, the others are answered with their 1-based index and
a precise reason and kept in the dead-letter store (400 when none was valid). Event ids hash
ticket, lifecycle step and time, so a retried request stores nothing twice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from collectors._ecs import event_id
from collectors._jsonlog import canonical_json
from collectors._otlp_table import dataset_table
from collectors.accesslog import ParsedBatch
from collectors.privacy import Pseudonymiser
from marketguard.app.api.deps import ServicesDep, require_role
from marketguard.app.api.routes.ingest import IngestResponse, batch_answer, commit_batch, read_body
from marketguard.auth import Principal
from marketguard.schema import DeadLetter, empty_events

__all__ = ["router", "SupportEvent", "DATASET", "parse_support_events"]

router = APIRouter(tags=["ingest"])

DATASET = "support.ticket"
TicketEvent = Literal["created", "first_response", "resolved"]
TicketPriority = Literal["low", "normal", "high", "urgent"]


class SupportEvent(BaseModel):
    """One step in a support ticket's life, as a helpdesk reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str = Field(min_length=1, max_length=128, description="The helpdesk's ticket id.")
    event: TicketEvent = Field(description="Lifecycle step.")
    seller_id: str = Field(min_length=1, max_length=128, description="The seller who owns the ticket.")
    category: str = Field(min_length=1, max_length=64, description="Ticket category (lower-cased), e.g. delivery, returns, product.")
    priority: TicketPriority = Field(description="Helpdesk priority.")
    timestamp: datetime = Field(description="When the step happened (ISO 8601; no zone means UTC).")

    @field_validator("category")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"$ref": "#/components/schemas/SupportEvent"},
                                     {"type": "array", "items": {"$ref": "#/components/schemas/SupportEvent"}}]},  # fmt: skip
                "example": [{"ticket_id": "T-1001", "event": "created", "seller_id": "s-42", "category": "delivery",
                             "priority": "high", "timestamp": "2024-05-01T12:00:00Z"}],  # fmt: skip
            }
        },
    }
}


@router.post(
    "/api/v1/support-events",
    summary="Ingest support-ticket lifecycle events",
    response_model=IngestResponse,
    openapi_extra=_DOC,
    responses={400: {"model": IngestResponse, "description": "No event was valid (same body as 200), or the body is not JSON."},
               415: {"description": "Content-Type is not application/json."}},  # fmt: skip
)
async def ingest_support_events(
    request: Request,
    services: ServicesDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> JSONResponse:
    """Store ticket events (created, first_response, resolved) once committed."""
    received = time.monotonic()
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=f"unsupported Content-Type {media or '(none)'!r}; expected application/json")
    body = await read_body(request, services.settings.max_body_bytes)
    sender = f"support:{principal.name}"
    batch = await run_in_threadpool(_parse, body, sender, services.pseudonymiser)
    result = await commit_batch(services, batch, sender, received)
    return batch_answer(batch, result)


def _parse(body: bytes, source: str, pseudonymiser: Pseudonymiser) -> ParsedBatch:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"invalid JSON: {getattr(exc, 'msg', exc)}") from None
    items = value if isinstance(value, list) else [value]
    return parse_support_events(items, source=source, pseudonymiser=pseudonymiser)


def parse_support_events(items: list[Any], *, source: str, pseudonymiser: Pseudonymiser) -> ParsedBatch:
    """Validate decoded items into ``support.ticket`` events; dead-letter the invalid ones."""
    rows, dead = [], []
    for number, item in enumerate(items, start=1):
        try:
            ticket = SupportEvent.model_validate(item)
        except ValidationError as exc:
            dead.append(DeadLetter(source, number, _explain(exc), pseudonymiser.text(canonical_json(item))))
            continue
        rows.append(_row(ticket, pseudonymiser))
    table = dataset_table(rows, dataset=DATASET, source=source) if rows else empty_events()
    return ParsedBatch(table, dead, len(items))


def _row(t: SupportEvent, p: Pseudonymiser) -> dict[str, Any]:
    ticket_id = p.text(t.ticket_id)
    return {
        "@timestamp": t.timestamp,
        "event.id": event_id("support", 0, f"{ticket_id}\x1f{t.event}\x1f{t.timestamp.isoformat()}"),
        "ticket.id": ticket_id, "ticket.event": t.event, "ticket.category": p.text(t.category),
        "ticket.priority": t.priority, "marketplace.seller_id": p.text(t.seller_id),
    }  # fmt: skip


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "invalid support event: " + "; ".join(parts)
