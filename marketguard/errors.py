"""The one exception root of MarketGuard and its families.

Errors about an input line, a rule or a playbook carry where it came from (file:line or the
item's index) so that the message alone tells a user what to fix.
"""

from __future__ import annotations

__all__ = ["MarketGuardError", "ConfigError", "InputError", "RuleError", "StoreError"]


class MarketGuardError(Exception):
    """Root of every error MarketGuard raises on purpose."""


class ConfigError(MarketGuardError):
    """Configuration is missing or invalid."""


class StoreError(MarketGuardError):
    """The storage backend failed or refused an operation."""


class InputError(MarketGuardError):
    """Input (a log file, a request body) cannot be read or understood."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
        self.reason = message


class RuleError(MarketGuardError):
    """A detection rule cannot be loaded or compiled."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason
