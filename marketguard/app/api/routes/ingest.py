"""Routes: ``POST /api/v1/logs``, the HTTP ingest endpoint.

A request is read as a stream (gzip decoded on the fly) and refused with 413 as soon as
the decoded body passes ``max_body_bytes``; it is parsed by the same collector as log files,
handed to the :class:`~marketguard.app.ingest.IngestWriter` and answered only once the
writer has committed it. Event ids derive from ``http:<key name>:<batch id>``, the batch id
being ``X-Batch-Id`` or the SHA-256 of the decoded body, so a retried request stores nothing
twice and two different requests never share an id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import zlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collectors.accesslog import ParsedBatch, parse_lines, parse_records
from collectors.privacy import Pseudonymiser
from collectors.uptime import parse_probe_records
from marketguard.app.api.deps import ServicesDep, require_role
from marketguard.app.ingest import Backpressure, IngestResult, WriterStopped
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.schema import DeadLetter, empty_events
from marketguard.types import LogFormat

__all__ = ["router", "IngestResponse", "Rejection", "read_body", "commit_batch", "batch_answer"]

router = APIRouter(tags=["ingest"])

Kind = Literal["ndjson", "json", "text"]
#: Media type -> how the body is read.
MEDIA_TYPES: dict[str, Kind] = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json": "json",
    "text/plain": "text",
}
_GZIP = 16 + zlib.MAX_WBITS  # wbits for a gzip header and trailer
_BATCH_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Rejection(BaseModel):
    """One input item that was not stored, and why (it is also in the dead-letter store)."""

    index: int = Field(description="1-based line (NDJSON, text) or array item (JSON) number.")
    reason: str = Field(description="What was wrong and what was expected.")


class IngestResponse(BaseModel):
    """Outcome of one committed batch."""

    accepted: int = Field(description="Events newly stored by this request.")
    duplicates: int = Field(description="Events already stored (a retried request); not stored twice.")
    rejected: list[Rejection] = Field(description="Items that could not become events.")


class Problem(BaseModel):
    """An error answer."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": IngestResponse, "description": "Every item was rejected (same body as 200), or the request itself is malformed (`detail`: bad gzip, empty body, bad X-Batch-Id)."},
    401: {"model": Problem, "description": "Missing, unknown or revoked API key."},
    403: {"model": Problem, "description": "The key's role is not `ingest` or `admin`."},
    413: {"model": Problem, "description": "The decoded body exceeds `max_body_bytes`."},
    415: {"model": Problem, "description": "Unsupported Content-Type or Content-Encoding."},
    429: {"model": Problem, "description": "The writer is behind; retry after `Retry-After` seconds."},
    503: {"model": Problem, "description": "The store failed or is shutting down; nothing of this request was acknowledged."},
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"@timestamp":"2024-05-01T12:00:00Z","source.ip":"203.0.113.9","url.original":"/api/cart"}\n'},
            "application/json": {"schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}},
            "text/plain": {"schema": {"type": "string"}, "example": '203.0.113.9 - - [01/May/2024:12:00:00 +0000] "GET /api/cart HTTP/1.1" 200 512 "-" "curl/8.0"\n'},
        },
    }
}


@router.post(
    "/api/v1/logs",
    summary="Ingest API access-log events",
    response_model=IngestResponse,
    responses=_ERRORS,
    openapi_extra=_BODY_DOC,
)
async def ingest_logs(
    request: Request,
    services: ServicesDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
    fmt: Annotated[LogFormat | None, Query(alias="format", description="Line format of a `text/plain` body (default `combined`); for JSON bodies `nginx-json` or `jsonl` (both understood).")] = None,
) -> JSONResponse:
    """Store a batch of events and answer once it is committed (acknowledged = durable).

    Bodies: NDJSON (`application/x-ndjson`), a JSON array or single object
    (`application/json`) of events with ECS (flat or nested) or nginx-json field names, or
    raw log lines (`text/plain`, `?format=combined|nginx-json|jsonl`). `Content-Encoding:
    gzip` is accepted. Personal data is pseudonymised before anything is stored. Send
    `X-Batch-Id` to make retries idempotent across body re-encodings; without it the body's
    SHA-256 identifies the batch. Rejected items are listed with their 1-based index and
    reason and kept in the dead-letter store; 400 when every item was rejected.
    """
    received = time.monotonic()
    kind = _kind(request, fmt)
    batch_id = _batch_id(request)
    body = await read_body(request, services.settings.max_body_bytes)
    sender = f"http:{principal.name}"
    batch = await run_in_threadpool(_parse, body, kind, fmt, sender, batch_id, services.pseudonymiser)
    result = await commit_batch(services, batch, sender, received)
    return batch_answer(batch, result)


def _kind(request: Request, fmt: LogFormat | None) -> Kind:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    kind = MEDIA_TYPES.get(media)
    if kind is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"unsupported Content-Type {media or '(none)'!r}; expected one of {', '.join(MEDIA_TYPES)}",
        )
    if kind != "text" and fmt == "combined":
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="format=combined needs a text/plain body; JSON bodies are events (format nginx-json or jsonl)",
        )
    return kind


async def read_body(request: Request, limit: int) -> bytes:
    """The decoded body, refused with 413 past ``limit`` bytes (gzip bombs included)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"unsupported Content-Encoding {encoding!r}; expected gzip or identity",
        )
    chunks = request.stream()
    if encoding != "identity":
        chunks = _gunzip(chunks, limit)
    out = bytearray()
    async for chunk in chunks:
        out += chunk
        if len(out) > limit:
            raise _too_large(limit)
    if not out:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="empty request body: no events")
    return bytes(out)


async def _gunzip(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Decode (possibly multi-member) gzip, never inflating more than ``limit + 1`` bytes."""
    decoder, produced, fed = zlib.decompressobj(_GZIP), 0, False
    try:
        async for chunk in chunks:
            pending = chunk
            while pending:
                data = decoder.decompress(pending, limit + 1 - produced)
                produced, fed = produced + len(data), True
                if produced > limit:
                    raise _too_large(limit)
                if data:
                    yield data
                if decoder.eof:  # another gzip member may follow
                    pending, decoder, fed = decoder.unused_data, zlib.decompressobj(_GZIP), False
                else:  # all input consumed: the output bound was not reached
                    pending = decoder.unconsumed_tail
        if fed and not decoder.eof:
            raise zlib.error("truncated gzip stream")
    except zlib.error as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"invalid gzip body: {exc}") from None


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"request body exceeds {limit} bytes after decoding; split it into smaller batches",
    )


def _batch_id(request: Request) -> str | None:
    given = request.headers.get("x-batch-id")
    if given is not None and not _BATCH_ID.match(given):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="X-Batch-Id must be 1-128 letters, digits, '.', '_', ':' or '-'",
        )
    return given


def _parse(
    body: bytes, kind: Kind, fmt: LogFormat | None, sender: str, batch_id: str | None,
    pseudonymiser: Pseudonymiser,
) -> ParsedBatch:  # fmt: skip
    """Parse off the event loop; the source names the batch (``X-Batch-Id`` or body hash)."""
    source = f"{sender}:{batch_id or hashlib.sha256(body).hexdigest()}"
    return parse_body(body, kind, fmt, source, pseudonymiser)


def parse_body(
    body: bytes, kind: Kind, fmt: LogFormat | None, source: str, pseudonymiser: Pseudonymiser
) -> ParsedBatch:
    """Parse a decoded request body into events and dead letters (index = 1-based item)."""
    text = body.decode("utf-8", "backslashreplace")
    if kind == "json":
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            reason = f"invalid JSON: {getattr(exc, 'msg', exc)}{where}"
            return ParsedBatch(empty_events(), [DeadLetter(source, 1, reason, pseudonymiser.text(text))], 1)
        records = value if isinstance(value, list) else [value]
        if records and all(_dataset(r) == "uptime.probe" for r in records):
            return parse_probe_records(records, source=source, pseudonymiser=pseudonymiser)
        return parse_records(records, source=source, pseudonymiser=pseudonymiser)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the remainder after a final newline is not a line
    line_fmt: LogFormat = "jsonl" if kind == "ndjson" else (fmt or "combined")
    return parse_lines(lines, line_fmt, source=source, pseudonymiser=pseudonymiser)


def _dataset(record: object) -> object:
    """The ``event.dataset`` a JSON record declares (flat or nested), if any."""
    if not isinstance(record, dict):
        return None
    if "event.dataset" in record:
        return record["event.dataset"]
    event = record.get("event")
    return event.get("dataset") if isinstance(event, dict) else None


async def commit_batch(services: Services, batch: ParsedBatch, source: str, received: float) -> IngestResult:
    """Hand the batch to the writer and wait (without blocking the loop) for its commit."""
    try:
        future = services.ingest.submit(batch, source=source, received=received)
    except Backpressure as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc),
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except WriterStopped as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    try:
        result: IngestResult = await asyncio.wrap_future(future)
    except Exception as exc:  # the writer resolved the batch with the store's failure
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"not stored: {exc}") from None
    return result


def batch_answer(batch: ParsedBatch, result: IngestResult) -> JSONResponse:
    body = IngestResponse(
        accepted=result.accepted_new,
        duplicates=result.duplicates,
        rejected=[Rejection(index=d.line or 0, reason=d.reason) for d in batch.dead_letters],
    )
    every_item_rejected = batch.events.num_rows == 0 and bool(batch.dead_letters)
    code = status.HTTP_400_BAD_REQUEST if every_item_rejected else status.HTTP_200_OK
    return JSONResponse(body.model_dump(), status_code=code)
