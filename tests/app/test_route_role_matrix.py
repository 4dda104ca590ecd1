"""Every route of the app × every role: the outcome matches the roles the route declares.

The walk reads each route's role dependency (``require_role(...)`` sets ``.roles``), so a new
route is covered the day it is added; a route without one must be listed in :data:`PUBLIC`.
Then it proves that seller A never reads seller B's ticket, by id or in any list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.api.routes import audit as audit_routes
from marketguard.app.api.routes import tickets as ticket_routes
from marketguard.app.services import Services
from marketguard.cases.audit import open_audit
from marketguard.cases.tickets import NewTicket, open_tickets

ROLES: tuple[str | None, ...] = ("admin", "analyst", "oncall", "auditor", "ingest", "seller:A", "seller:B", None)
#: Routes that need no key, by path.
PUBLIC = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "198.51.100.23"


def declared_roles(dependant: Dependant) -> tuple[str, ...] | None:
    """The roles of the (first) role dependency anywhere in the route's dependency tree."""
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        if (inner := declared_roles(dep)) is not None:
            return inner
    return None


def admits(roles: tuple[str, ...], role: str | None) -> bool:
    """What ``require_role(*roles)`` promises for a key of ``role``."""
    if role is None:
        return False
    return role == "admin" or role in roles or ("seller" in roles and role.startswith("seller:"))


def mount(app: FastAPI) -> FastAPI:
    have = {c.path for c in iter_route_contexts(app.routes)}
    for router in (ticket_routes.router, audit_routes.router):
        if not any(r.path in have for r in router.routes):  # type: ignore[attr-defined]
            app.include_router(router)
    return app


class World:
    """The app with one key per role, and one ticket per seller plus an operator ticket."""

    def __init__(self, services: Services, client: TestClient, app: FastAPI) -> None:
        self.services, self.client, self.app = services, client, app
        self.keys = {r: services.keys.create(r.replace(":", "-"), r) for r in ROLES if r}
        tickets = services.tickets  # type: ignore[attr-defined]
        self.ticket = {}
        for queue in ("seller:A", "seller:B", "operator:secops"):
            new = NewTicket(f"I-{queue}", queue, f"for {queue}", "P2", T0, T0 + timedelta(days=1),
                            entities={"source.ip": [SECRET], "marketplace.seller_id": [queue.split(":")[1]]})
            self.ticket[queue] = tickets.open(new, actor="test", now=T0).ticket.id
            tickets.comment(self.ticket[queue], f"internal about {queue} {SECRET}", actor="test", internal=True)

    def call(self, method: str, path: str, role: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
def world(services: Services) -> Iterator[World]:
    services.audit = open_audit(services.store)  # type: ignore[attr-defined]
    services.tickets = open_tickets(services.store, services.audit)  # type: ignore[attr-defined]
    app = mount(create_app(services, manage_lifecycle=False))
    with TestClient(app) as client:
        services.start()
        yield World(services, client, app)
        services.ingest.stop()


def _routes(app: FastAPI) -> list[RouteContext]:
    """Every API route of the app, included routers flattened (paths with their prefixes)."""
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def _concrete(path: str, world: World) -> str:
    """The path with every parameter filled: ticket ids with seller A's ticket."""
    path = path.replace("{ticket_id}", world.ticket["seller:A"])
    return re.sub(r"\{[^}]+\}", "x-1", path)


def test_every_route_declares_its_roles(world: World) -> None:
    undeclared = [r.path for r in _routes(world.app) if r.path not in PUBLIC and declared_roles(r.dependant) is None]
    assert undeclared == [], f"routes without a role dependency (add require_role or list them as public): {undeclared}"
    paths = {r.path for r in _routes(world.app)}
    assert {"/api/v1/tickets", "/api/v1/tickets/{ticket_id}", "/api/v1/audit/verify"} <= paths


def test_route_role_matrix(world: World) -> None:
    wrong: list[str] = []
    checked = 0
    for route in _routes(world.app):
        roles = declared_roles(route.dependant)
        if roles is None:
            continue
        path = _concrete(route.path, world)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            for role in ROLES:
                got = world.call(method, path, role, json={}).status_code
                checked += 1
                if admits(roles, role):
                    if got in (401, 403):
                        wrong.append(f"{method} {route.path} as {role}: {got}, but roles {roles} admit it")
                elif got != (401 if role is None else 403):
                    wrong.append(f"{method} {route.path} as {role}: {got}, expected {401 if role is None else 403}")
    assert checked > 50
    assert wrong == [], "\n".join(wrong)


def test_public_routes_answer_without_a_key(world: World) -> None:
    for route in _routes(world.app):
        if route.path in PUBLIC:
            assert world.call("GET", route.path, None).status_code == 200, route.path


def test_seller_a_never_sees_seller_b(world: World) -> None:
    b_id, ops_id, a_id = world.ticket["seller:B"], world.ticket["operator:secops"], world.ticket["seller:A"]
    leaks: list[str] = []
    for route in _routes(world.app):
        roles = declared_roles(route.dependant)
        if roles is None or not admits(roles, "seller:A"):
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            targets = [b_id, ops_id] if "{ticket_id}" in route.path else [None]
            for target in targets:
                path = re.sub(r"\{[^}]+\}", "x-1", route.path.replace("{ticket_id}", target or ""))
                body = {"text": "probe", "status": "acknowledged", "assignee": "me"}
                response = world.call(method, path, "seller:A", json=body)
                if target is not None and response.status_code != 404:
                    leaks.append(f"{method} {route.path} on {target}: {response.status_code}")
                for secret in (b_id, ops_id, SECRET, "internal about"):
                    if secret != target and secret in response.text:  # a 404 may echo the id it was sent
                        leaks.append(f"{method} {route.path}: response mentions {secret!r}")
    listed = world.call("GET", "/api/v1/tickets", "seller:A", params={"limit": 500}).json()
    assert [t["id"] for t in listed["items"]] == [a_id]
    for params in ({"queue": "seller:B"}, {"incident_id": "I-seller:B"}, {"status": "new"}):
        ids = [t["id"] for t in world.call("GET", "/api/v1/tickets", "seller:A", params=params).json()["items"]]
        if b_id in ids or ops_id in ids:
            leaks.append(f"list {params} shows another party's ticket")
    own = world.call("GET", f"/api/v1/tickets/{a_id}", "seller:A")
    assert own.status_code == 200 and SECRET not in own.text and "internal about" not in own.text
    assert world.call("GET", f"/api/v1/tickets/{b_id}", "seller:B").status_code == 200
    assert leaks == [], "\n".join(leaks)
    unchanged = world.services.tickets.get(b_id)  # type: ignore[attr-defined]
    assert unchanged.status == "new" and [c.text for c in unchanged.comments] == [f"internal about seller:B {SECRET}"]
