"""The console's navigation: one entry per page group, shown only to roles the API admits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marketguard.app.api.routes import approvals, audit, cases, sla, tickets
from marketguard.app.console.permissions import allows
from marketguard.auth import Principal

__all__ = ["NavItem", "nav_for", "home_for"]


@dataclass(frozen=True)
class NavItem:
    """A link in the header: label, path below the console root, and the API route it reads."""

    label: str
    path: str
    endpoint: Callable[..., Any]


NAV = (
    NavItem("Incidents", "/incidents", cases.list_incidents),
    NavItem("Tickets", "/tickets", tickets.list_tickets),
    NavItem("Approvals", "/approvals", approvals.list_actions),
    NavItem("SLOs & sellers", "/scorecards", sla.seller_sla),
    NavItem("Audit trail", "/audit", audit.verify),
)


def nav_for(principal: Principal | None) -> list[NavItem]:
    """The entries ``principal`` may open (none when signed out)."""
    return [item for item in NAV if principal is not None and allows(principal, item.endpoint)]


def home_for(principal: Principal) -> str | None:
    """The first page ``principal`` may open (None: its role has no console page, e.g. ``ingest``)."""
    items = nav_for(principal)
    return items[0].path if items else None
