"""The console's pages, one router per page group; :data:`PAGE_ROUTERS` is what the console mounts."""

from marketguard.app.console.pages import auth, incidents, status, tickets

PAGE_ROUTERS = [auth.router, incidents.router, tickets.router, status.router]

__all__ = ["PAGE_ROUTERS"]
