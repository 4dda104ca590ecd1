"""One router per resource; :data:`ROUTERS` is what the app factory mounts."""

from marketguard.app.api.routes import cases, health, ingest, metrics, otlp, rules, support

ROUTERS = [
    health.router,
    metrics.router,
    ingest.router,
    otlp.router,
    support.router,
    rules.router,
    cases.router,
]

__all__ = ["ROUTERS"]
