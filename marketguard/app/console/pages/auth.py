"""Signing in (an API key for a session cookie) and out, and the console's home."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from marketguard.app.console.csrf import FIELD, PRE_COOKIE, check_csrf
from marketguard.app.console.deps import (
    CsrfSession,
    SessionDep,
    record,
    render,
    root_of,
    services_of,
    sessions_of,
)
from marketguard.app.console.nav import home_for
from marketguard.app.console.sessions import COOKIE, new_token
from marketguard.app.console.throttle import SignInThrottle

__all__ = ["router"]

router = APIRouter()


def _safe_next(request: Request, next_path: str | None) -> str | None:
    """``next_path`` if it is a path inside the console (never another site), else None."""
    root = root_of(request)
    if not next_path or not next_path.startswith(root + "/") or "//" in next_path or "\\" in next_path:
        return None
    return next_path


def _cookie_args(request: Request) -> dict[str, object]:
    settings = services_of(request).settings
    return {"httponly": True, "samesite": "strict", "secure": settings.console_cookie_secure, "path": "/"}


def _sign_in_form(request: Request, next_path: str | None, error: str | None = None,
                  status_code: int = status.HTTP_200_OK) -> Response:
    token = new_token()
    response = render(request, "sign_in.html", status_code, csrf=token, next=_safe_next(request, next_path), error=error)
    response.set_cookie(PRE_COOKIE, token, max_age=3600, **_cookie_args(request))  # type: ignore[arg-type]
    return response


@router.get("/", include_in_schema=False)
def home(request: Request, session: SessionDep) -> Response:
    """The first page the signed-in role may open."""
    return RedirectResponse(root_of(request) + (home_for(session.principal) or "/sign-in"), status.HTTP_303_SEE_OTHER)


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query parameter's name
    """The sign-in form (with its double-submit CSRF token)."""
    return _sign_in_form(request, next)


@router.post("/sign-in")
async def sign_in(request: Request, api_key: Annotated[str, Form(max_length=512)] = "",
                  csrf: Annotated[str | None, Form(alias=FIELD)] = None,
                  next: Annotated[str | None, Form(max_length=2048)] = None) -> Response:  # noqa: A002
    """Exchange a valid API key for a session cookie; a bad key re-shows the form (401)."""
    check_csrf(request.cookies.get(PRE_COOKIE), csrf)
    services = services_of(request)
    throttle: SignInThrottle = request.app.state.throttle
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client)
    if wait is not None:
        if services.audit is not None:
            await run_in_threadpool(services.audit.append, f"client:{client}", "console.sign_in_throttled",
                                    f"client:{client}", {"retry_after_s": wait})
        response = _sign_in_form(request, next, f"Too many failed sign-ins; try again in {wait} s.",
                                 status.HTTP_429_TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(wait)
        return response
    principal = await run_in_threadpool(services.keys.verify, api_key.strip()) if api_key.strip() else None
    if principal is None:
        throttle.failed(client)
        return _sign_in_form(request, next, "That API key is unknown or revoked.", status.HTTP_401_UNAUTHORIZED)
    throttle.succeeded(client)
    home_path = home_for(principal)
    if home_path is None:
        return _sign_in_form(request, next, f"Keys with the role {principal.role!r} have no console access.",
                             status.HTTP_403_FORBIDDEN)
    token, session = await run_in_threadpool(sessions_of(request).create, principal)
    await run_in_threadpool(record, services, principal, "console.sign_in", f"key:{principal.name}", {"role": principal.role})
    target = _safe_next(request, next) or root_of(request) + home_path
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    ttl = int((session.expires - session.created) / timedelta(seconds=1))
    response.set_cookie(COOKIE, token, max_age=ttl, **_cookie_args(request))  # type: ignore[arg-type]
    response.delete_cookie(PRE_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: CsrfSession) -> Response:
    """End the session (server side) and clear the cookie."""
    await run_in_threadpool(sessions_of(request).delete, request.cookies.get(COOKIE))
    principal = session.principal
    await run_in_threadpool(record, services_of(request), principal, "console.sign_out", f"key:{principal.name}",
                            {"role": principal.role})
    response = RedirectResponse(root_of(request) + "/sign-in", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
