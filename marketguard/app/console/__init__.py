"""The web console: server-rendered pages over the same services and role rules as the JSON API.

:func:`mount_console` mounts it at ``/console`` (its own small ASGI app, so its HTML error pages,
sign-in redirects and cookie sessions never touch the JSON API's behaviour) and answers ``/`` with
a redirect there. Sign-in exchanges an API key for a session cookie
(:mod:`~marketguard.app.console.sessions`, kept in the store), throttled per client address
(:mod:`~marketguard.app.console.throttle`); every form is CSRF-checked
(:mod:`~marketguard.app.console.csrf`); what a role may see and do is read from the JSON API's
own route declarations (:mod:`~marketguard.app.console.permissions`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from marketguard.app.console import formatting
from marketguard.app.console.deps import SignInRequired, render, root_of
from marketguard.app.console.pages import PAGE_ROUTERS
from marketguard.app.console.sessions import ConsoleSessions
from marketguard.app.console.throttle import SignInThrottle
from marketguard.app.services import Services
from marketguard.auth.sessions import open_sessions

__all__ = ["create_console", "mount_console", "PREFIX"]

HERE = Path(__file__).parent
#: Where :func:`mount_console` mounts the console.
PREFIX = "/console"

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_console(services: Services) -> FastAPI:
    """The console app over ``services`` (sessions in the store; sign-in throttling in memory)."""
    app = FastAPI(title="MarketGuard console", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.services = services
    settings = services.settings
    app.state.sessions = ConsoleSessions(open_sessions(services.store), timedelta(seconds=settings.console_session_ttl_s))
    app.state.throttle = SignInThrottle(settings.console_signin_max_failures, settings.console_signin_window_s)
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    formatting.install(app.state.templates.env)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in PAGE_ROUTERS:
        app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"{root_of(request)}/sign-in?next={quote(exc.next_path, safe='/')}", status.HTTP_303_SEE_OTHER)

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> Response:
        return render(request, "error.html", exc.status_code, status_code_=exc.status_code, detail=exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(str(e.get("msg")) for e in exc.errors())
        return render(request, "error.html", 422, status_code_=422, detail=detail)

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app


def mount_console(app: FastAPI, services: Services) -> None:
    """Mount the console at :data:`PREFIX` and send ``/`` there."""
    app.mount(PREFIX, create_console(services), name="console")

    async def _root(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status.HTTP_303_SEE_OTHER)

    app.add_route("/", _root, methods=["GET"], include_in_schema=False)
