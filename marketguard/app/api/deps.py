"""Dependencies every route declares: the services, and the caller's role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from marketguard.app.services import Services
from marketguard.auth import Principal

__all__ = ["get_services", "ServicesDep", "require_role", "READERS", "ANY_STAFF"]

#: Roles that may read alerts, incidents and rule status.
READERS = ("analyst", "oncall", "auditor")
#: Staff roles (everything but ingest and sellers).
ANY_STAFF = ("analyst", "oncall", "auditor")


def get_services(request: Request) -> Services:
    """The application's services (built by the app factory)."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency that admits active keys whose role is in ``roles`` (``admin`` always).

    ``"seller"`` in ``roles`` admits every ``seller:<id>`` key. 401 for a missing, unknown
    or revoked key; 403 for a valid key with the wrong role.
    """

    def dependency(request: Request, services: ServicesDep) -> Principal:
        principal = services.keys.verify(_bearer(request))
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        allowed = principal.role == "admin" or principal.role in roles or (
            "seller" in roles and principal.seller_id is not None
        )
        if not allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role!r} may not call this endpoint (needs one of: admin, {', '.join(roles)})",
            )
        request.state.principal = principal
        return principal

    dependency.roles = roles  # type: ignore[attr-defined]  # read by the route x role test
    return dependency
