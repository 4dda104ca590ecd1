"""Routes: ``GET /metrics``, the Prometheus scrape endpoint (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from marketguard.metrics import REGISTRY

__all__ = ["router", "metrics_router"]


def metrics_router(registry: CollectorRegistry = REGISTRY) -> APIRouter:
    """A router serving ``registry`` in the Prometheus text format."""
    router = APIRouter(tags=["observability"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (no authentication)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition format."}},
    )
    def metrics() -> Response:
        """Ingest, rule-evaluation, alert and incident metrics of this process, for scraping."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


router = metrics_router()
