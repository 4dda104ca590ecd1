"""One router per resource; :data:`ROUTERS` is what the app factory mounts."""

from marketguard.app.api.routes import cases, health, ingest, metrics, rules

ROUTERS = [health.router, metrics.router, ingest.router, rules.router, cases.router]

__all__ = ["ROUTERS"]
