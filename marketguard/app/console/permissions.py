"""What a principal may do in the console: exactly what the JSON API lets the same key do.

The console holds no role table of its own. For each action it names the JSON API endpoint that
does the same thing (e.g. :func:`marketguard.app.api.routes.tickets.assign`) and reads the
roles that endpoint declares with :func:`~marketguard.app.api.deps.require_role` — the same
``roles`` attribute the route × role test walks. Admission follows ``require_role``'s rule:
``admin`` always, a listed role, or any ``seller:<id>`` where ``seller`` is listed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

from fastapi import HTTPException, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from marketguard.app.api.routes import ROUTERS
from marketguard.auth import Principal

__all__ = ["roles_of", "allows", "call_as"]


def _declared(dependant: Dependant) -> tuple[str, ...] | None:
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        if (inner := _declared(dep)) is not None:
            return inner
    return None


@cache
def roles_of(endpoint: Callable[..., Any]) -> tuple[str, ...]:
    """The roles the JSON API route served by ``endpoint`` declares (LookupError if none)."""
    for router in ROUTERS:
        for context in iter_route_contexts(router.routes):
            route = context.original_route
            if isinstance(route, APIRoute) and route.endpoint is endpoint:
                roles = _declared(route.dependant)
                if roles is None:
                    raise LookupError(f"API route {route.path} declares no roles")
                return roles
    raise LookupError(f"{endpoint.__qualname__} is not an API route")


def allows(principal: Principal, endpoint: Callable[..., Any]) -> bool:
    """True when the API would admit ``principal`` to ``endpoint``'s route."""
    roles = roles_of(endpoint)
    return principal.role == "admin" or principal.role in roles or ("seller" in roles and principal.seller_id is not None)


async def call_as(principal: Principal, endpoint: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the API route function ``endpoint`` for ``principal``: 403 unless the API admits it.

    The route function does the rest exactly as for an API call (seller scoping, redaction,
    audit entries, 404/409 answers as :class:`~fastapi.HTTPException`).
    """
    if not allows(principal, endpoint):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"your role ({principal.role}) may not do this (needs one of: admin, {', '.join(roles_of(endpoint))})")
    result = endpoint(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result
