"""Sign-in throttling: too many failed sign-ins from one client address are answered 429.

Failures are counted per client address in a sliding window (``console_signin_max_failures``
within ``console_signin_window_s``), in this process's memory: each replica counts on its own
and a restart forgets the counts. A successful sign-in clears its address's failures; other
addresses are never affected.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

__all__ = ["SignInThrottle"]


class SignInThrottle:
    """Failed sign-ins per client address, in memory; thread-safe."""

    def __init__(self, max_failures: int, window_s: float, *, max_clients: int = 100_000) -> None:
        self._max, self._window, self._max_clients = max_failures, window_s, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not throttled."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self._max:
                return None
            return max(1, math.ceil(times[-self._max] + self._window - now))

    def failed(self, client: str, now: float | None = None) -> None:
        """Count one failed sign-in of ``client``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._failures and len(self._failures) >= self._max_clients:
                self._failures.pop(next(iter(self._failures)))  # forget the oldest address
            self._failures.setdefault(client, deque(maxlen=self._max)).append(now)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        while times and times[0] <= now - self._window:
            times.popleft()
        if times is not None and not times:
            del self._failures[client]
            return None
        return times
