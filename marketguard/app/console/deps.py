"""Dependencies of the console pages: the signed-in session, the CSRF check, templates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request, status
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from marketguard.app.console.csrf import FIELD, check_csrf
from marketguard.app.console.nav import nav_for
from marketguard.app.console.sessions import COOKIE, ConsoleSessions, Session
from marketguard.app.services import Services
from marketguard.auth import Principal
from marketguard.cases.audit import actor_of

__all__ = [
    "SignInRequired", "current_session", "SessionDep", "CsrfSession", "services_of", "sessions_of",
    "render", "root_of", "record",
]


class SignInRequired(Exception):
    """No live session: the page answers with a redirect to the sign-in form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def services_of(request: Request) -> Services:
    """The services the console was built over."""
    return request.app.state.services  # type: ignore[no-any-return]


def sessions_of(request: Request) -> ConsoleSessions:
    """The console's session store."""
    return request.app.state.sessions  # type: ignore[no-any-return]


def root_of(request: Request) -> str:
    """Where the console is mounted (``/console``); every console link starts with it."""
    return str(request.scope.get("root_path", ""))


def _key_active(services: Services, session: Session) -> bool:
    p = session.principal
    return any(k.name == p.name and k.role == p.role and k.revoked is None for k in services.keys.list())


def current_session(request: Request) -> Session:
    """The live session of the request's cookie whose key is still active, else SignInRequired."""
    token = request.cookies.get(COOKIE)
    sessions = sessions_of(request)
    session = sessions.get(token)
    if session is not None and not _key_active(services_of(request), session):
        sessions.end_for(session.principal.name)
        session = None
    if session is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInRequired(request.url.path + query)
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def _checked(session: SessionDep, csrf: Annotated[str | None, Form(alias=FIELD)] = None) -> Session:
    check_csrf(session.csrf, csrf)
    return session


#: A signed-in session whose form carried the right CSRF token (else 403).
CsrfSession = Annotated[Session, Depends(_checked)]


def render(request: Request, template: str, status_code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
    """Render a page template with the request, the session (if any) and the mount root."""
    templates: Jinja2Templates = request.app.state.templates
    session = getattr(request.state, "session", None)
    base = {"request": request, "session": session, "root": root_of(request),
            "principal": session.principal if session else None,
            "nav": nav_for(session.principal if session else None)}
    return templates.TemplateResponse(request, template, base | context, status_code=status_code)


def record(services: Services, principal: Principal, action: str, obj: str, details: dict[str, Any]) -> None:
    """Write a console audit entry (sign-in, sign-out, evidence read) when the trail is configured."""
    if services.audit is not None:
        services.audit.append(actor_of(principal), action, obj, details)
