"""Run the real HTTP service in-process on 127.0.0.1 (demo, benchmark, tests)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from marketguard.app.api import create_app
from marketguard.app.services import Services

__all__ = ["LocalServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """uvicorn serving ``create_app(services)`` in a thread; a context manager.

    Entering starts the services (writer, engine) and waits until the socket accepts
    requests; leaving stops uvicorn, then the services, and closes the store.
    """

    def __init__(self, services: Services, port: int | None = None) -> None:
        self.services = services
        self.port = port or free_port()
        config = uvicorn.Config(create_app(services), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="marketguard-http", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
