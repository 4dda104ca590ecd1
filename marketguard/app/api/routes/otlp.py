"""Routes: ``POST /v1/traces``, the OTLP/HTTP trace receiver.

Follows the OTLP/HTTP specification: ``application/x-protobuf`` and ``application/json``
bodies (gzip allowed), answered in the request's encoding with an
``ExportTraceServiceResponse`` — ``partial_success`` set only when spans were rejected — once
the accepted spans are committed. Every failure (400 bad data, 401/403, 413, 415, 429 and 503
with ``Retry-After``) carries a ``google.rpc.Status`` body; 400 adds a ``BadRequest`` detail.
Authentication is the ingest API's Bearer key (OTel exporters send it with ``headers=``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from collectors.accesslog import ParsedBatch
from collectors.otlp import OtlpDecodeError, decode_request, spans_to_batch
from marketguard.app.api.deps import ServicesDep, require_role
from marketguard.app.api.routes.ingest import commit_batch, read_body
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.metrics import METRICS
from marketguard.schema import DeadLetter, empty_events

__all__ = ["router", "PROTOBUF", "JSON"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Encoding = Literal["protobuf", "json"]
_ENCODINGS: dict[str, Encoding] = {PROTOBUF: "protobuf", JSON: "json"}
_MAX_MESSAGE = 2000  # characters of partial_success.error_message
_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
    413: code_pb2.RESOURCE_EXHAUSTED, 415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED, 503: code_pb2.UNAVAILABLE,
}  # fmt: skip


class OtlpRoute(APIRoute):
    """An APIRoute whose errors (auth and body checks included) are OTLP ``Status`` bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def otlp_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                return status_response(request, exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError as exc:
                return status_response(request, 400, f"invalid request: {exc.errors()}")

        return otlp_handler


router = APIRouter(tags=["otlp"], route_class=OtlpRoute)

_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object"}, "example": {"resourceSpans": []}},
        },
    },
    "responses": {
        "200": {"description": "`ExportTraceServiceResponse` in the request's encoding; `partialSuccess.rejectedSpans` counts rejected spans."},
        "400": {"description": "Undecodable body: `google.rpc.Status` with a `BadRequest` detail."},
        "401": {"description": "Missing, unknown or revoked API key (`google.rpc.Status`)."},
        "403": {"description": "The key's role is not `ingest` or `admin`."},
        "413": {"description": "The decoded body exceeds `max_body_bytes`."},
        "415": {"description": "Content-Type other than application/x-protobuf or application/json, or an unsupported Content-Encoding."},
        "429": {"description": "The writer is behind; retry after `Retry-After` seconds."},
        "503": {"description": "The store failed or is shutting down; retry."},
    },
}


@router.post("/v1/traces", summary="OTLP/HTTP trace export", openapi_extra=_DOC, response_class=Response)
async def export_traces(
    request: Request,
    services: ServicesDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> Response:
    """Store the spans of an OTLP ``ExportTraceServiceRequest`` as ``apm.span`` events.

    Answers after the commit; invalid spans are rejected one by one (partial success, also
    dead-lettered with the reason) and the rest are stored. A retried export stores nothing
    twice (event ids derive from trace and span ids).
    """
    received = time.monotonic()
    encoding = _encoding(request)
    if encoding == "protobuf" and request.headers.get("content-length") == "0":
        return _message_response(ExportTraceServiceResponse(), encoding)  # an empty message
    body = await read_body(request, services.settings.max_body_bytes)
    sender = f"otlp:{principal.name}"
    try:
        batch = await run_in_threadpool(_parse, body, encoding, sender, services)
    except OtlpDecodeError as exc:
        return status_response(request, 400, exc.reason, field=exc.field)
    METRICS.spans_received.labels(sender=sender).inc(batch.lines_read)
    if batch.events.num_rows or batch.dead_letters:
        await commit_batch(services, batch, sender, received)
    for dead in batch.dead_letters:
        METRICS.spans_rejected.labels(reason=_reason_label(dead.reason)).inc()
    return _message_response(_export_response(batch), encoding)


def _encoding(request: Request) -> Encoding:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    encoding = _ENCODINGS.get(media)
    if encoding is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"unsupported Content-Type {media or '(none)'!r}; expected {PROTOBUF} or {JSON}",
        )
    return encoding


def _parse(body: bytes, encoding: Encoding, sender: str, services: Services) -> ParsedBatch:
    """Decode off the event loop; an empty request is a success with nothing to store."""
    decoded = decode_request(body, encoding)
    if not decoded.message.resource_spans:
        return ParsedBatch(empty_events(), [], 0)
    return spans_to_batch(decoded, source=sender, pseudonymiser=services.pseudonymiser)


def _export_response(batch: ParsedBatch) -> ExportTraceServiceResponse:
    if not batch.dead_letters:
        return ExportTraceServiceResponse()
    message = _summary(batch.dead_letters)
    return ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=len(batch.dead_letters), error_message=message)
    )


def _summary(dead: list[DeadLetter]) -> str:
    first = "; ".join(d.reason for d in dead[:5])
    more = f"; and {len(dead) - 5} more" if len(dead) > 5 else ""
    text = f"{len(dead)} span(s) rejected: {first}{more}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _reason_label(reason: str) -> str:
    """Low-cardinality label: the reason after the span position, up to its first detail."""
    text = reason.split(": ", 1)[-1]
    for cut in (" must ", " is ", " got ", ":"):
        text = text.split(cut, 1)[0]
    return "_".join(text.lower().split())[:40] or "other"


def _message_response(
    message: Message, encoding: Encoding, code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if encoding == "protobuf":
        return Response(message.SerializeToString(), status_code=code, media_type=PROTOBUF, headers=headers)
    text = json_format.MessageToJson(message, indent=None)
    return Response(text, status_code=code, media_type=JSON, headers=headers)


def status_response(
    request: Request, code: int, message: str, headers: dict[str, str] | None = None, *,
    field: str = "body",
) -> Response:  # fmt: skip
    """A ``google.rpc.Status`` error in the request's encoding (JSON unless it sent protobuf)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    encoding: Encoding = "protobuf" if media == PROTOBUF else "json"
    rpc = status_pb2.Status(code=_RPC_CODES.get(code, code_pb2.UNKNOWN), message=message)
    if code == 400:
        detail = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]
        )
        rpc.details.add().Pack(detail)
    return _message_response(rpc, encoding, code, headers)
