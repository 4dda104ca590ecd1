"""The HTTP API: an app factory over :class:`~marketguard.app.services.Services`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from marketguard import __version__
from marketguard.app.api.routes import ROUTERS
from marketguard.app.services import Services

__all__ = ["create_app"]


def create_app(services: Services, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the FastAPI app. With ``manage_lifecycle``, startup starts the workers and
    shutdown stops them and closes the store."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            services.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                services.close()

    app = FastAPI(
        title="MarketGuard",
        version=__version__,
        description="Ingest API logs, detect attacks, fraud and SLA breaches, and work incidents.",
        lifespan=lifespan,
    )
    app.state.services = services
    for router in ROUTERS:
        app.include_router(router)
    from marketguard.app.console import mount_console  # here: the console imports the API's routes

    mount_console(app, services)  # the web console at /console; `/` redirects there
    return app
