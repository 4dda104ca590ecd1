"""One router per resource; :data:`ROUTERS` is what the app factory mounts."""

from marketguard.app.api.routes import audit, cases, health, ingest, metrics, otlp, rules, support, tickets

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
]

__all__ = ["ROUTERS"]
