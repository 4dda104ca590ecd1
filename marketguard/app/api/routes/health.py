"""Liveness, and which replica runs the scheduled jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from marketguard.app.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness probe (no authentication)")
def healthz(services: ServicesDep) -> dict[str, Any]:
    """Answer 200 while the process serves requests. ``leadership`` says whether this replica
    holds the scheduler lease (runs rules, SLOs, probes, playbooks) and who was last seen
    holding it; a follower is healthy and serves ingest and the API all the same."""
    body: dict[str, Any] = {"status": "ok"}
    if services.leadership is not None:
        body["leadership"] = services.leadership.status()
    return body
