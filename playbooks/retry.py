"""Bounded retry with exponential backoff, shared by the runner, notifiers and containment.

The sleep function is a parameter so tests run without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Backoff", "Attempts", "retry_call", "Permanent"]

T = TypeVar("T")


class Permanent(Exception):  # noqa: N818 - a marker, not an error family
    """Raised (or used as a cause) for a failure that retrying cannot fix (e.g. HTTP 400)."""


class Backoff(BaseModel):
    """How often and how long to wait: ``base_delay_s * factor**n``, capped at ``max_delay_s``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    attempts: int = Field(4, ge=1, le=20, description="Total attempts, the first included.")
    base_delay_s: float = Field(1.0, ge=0)
    factor: float = Field(2.0, ge=1)
    max_delay_s: float = Field(60.0, ge=0)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure."""
        return float(min(self.max_delay_s, self.base_delay_s * self.factor ** (failed_attempts - 1)))


@dataclass(frozen=True)
class Attempts:
    """The outcome of :func:`retry_call`: the value or the last error, and how many tries."""

    attempts: int
    error: BaseException | None = None


def retry_call(
    fn: Callable[[], T],
    policy: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T | None, Attempts]:
    """Call ``fn`` until it returns, at most ``policy.attempts`` times; never raises ``Exception``.

    A :class:`Permanent` error (or one whose ``__cause__`` is) stops at once.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn(), Attempts(attempt)
        except Exception as exc:  # noqa: BLE001 - the caller records the failure
            permanent = isinstance(exc, Permanent) or isinstance(exc.__cause__, Permanent)
            if permanent or attempt == policy.attempts:
                return None, Attempts(attempt, exc)
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")
