"""One router per resource; :data:`ROUTERS` is what the app factory mounts."""

from marketguard.app.api.routes import (
    approvals,
    audit,
    cases,
    gdpr,
    health,
    ingest,
    metrics,
    otlp,
    reports,
    rules,
    sla,
    support,
    tickets,
)

ROUTERS = [
    health.router,
    metrics.router,
    ingest.router,
    otlp.router,
    support.router,
    rules.router,
    cases.router,
    tickets.router,
    audit.router,
    approvals.router,
    gdpr.router,
    sla.router,
    reports.router,
]

__all__ = ["ROUTERS"]
