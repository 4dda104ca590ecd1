"""API keys and roles.

A key is a random secret shown once at creation (``mg_<name-hint>_<43 url-safe chars>``);
only its SHA-256 is stored (the secret has 256 bits of entropy, so a slow hash adds nothing).
Every HTTP endpoint names the roles it accepts; ``admin`` is accepted everywhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from marketguard.errors import ConfigError, MarketGuardError
from marketguard.store import Store

__all__ = [
    "ROLES", "Principal", "ApiKey", "KeyStore", "KeyError_", "open_keys", "hash_key",
    "new_secret", "valid_role",
]

#: Fixed roles; ``seller:<id>`` is the per-seller role.
ROLES = ("admin", "analyst", "oncall", "auditor", "ingest")
_SELLER = re.compile(r"^seller:[A-Za-z0-9_.-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyError_(MarketGuardError):
    """An API-key operation was refused (unknown name, duplicate name, bad role)."""


def valid_role(role: str) -> bool:
    """True for the fixed roles and for ``seller:<id>``."""
    return role in ROLES or bool(_SELLER.match(role))


def hash_key(secret: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A new random key secret."""
    return "mg_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role."""

    name: str
    role: str

    @property
    def seller_id(self) -> str | None:
        """The seller id of a ``seller:<id>`` principal, else None."""
        return self.role.split(":", 1)[1] if self.role.startswith("seller:") else None


@dataclass(frozen=True)
class ApiKey:
    """A stored key, never with its secret."""

    name: str
    role: str
    created: datetime
    revoked: datetime | None = None


class KeyStore(Protocol):
    """Where hashed API keys live."""

    def create(self, name: str, role: str) -> str:
        """Create a key; return its secret (shown once). Raises KeyError_ on a bad name/role."""
        ...

    def list(self) -> list[ApiKey]:
        """All keys, revoked ones included."""
        ...

    def revoke(self, name: str) -> None:
        """Revoke a key by name. Raises KeyError_ if no active key has that name."""
        ...

    def verify(self, secret: str) -> Principal | None:
        """The principal of an active key with this secret, or None."""
        ...


def check_new_key(name: str, role: str) -> None:
    """Refuse a malformed key name or an unknown role with a precise reason."""
    if not _NAME.match(name):
        raise KeyError_(f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if not valid_role(role):
        raise KeyError_(f"unknown role {role!r}; valid: {', '.join(ROLES)}, seller:<id>")


def _duckdb_keys(store: Store) -> KeyStore:
    from marketguard.auth.duckdb import DuckDBKeyStore

    return DuckDBKeyStore(store)  # type: ignore[arg-type]


def _elasticsearch_keys(store: Store) -> KeyStore:
    from marketguard.auth.elasticsearch import ElasticsearchKeyStore

    return ElasticsearchKeyStore(store)  # type: ignore[arg-type]


#: Store dialect -> key-store factory.
KEY_STORES = {"duckdb": _duckdb_keys, "elasticsearch": _elasticsearch_keys}


def open_keys(store: Store) -> KeyStore:
    """The key store that lives beside ``store`` (chosen by its dialect)."""
    try:
        return KEY_STORES[store.dialect](store)
    except KeyError:
        raise ConfigError(f"no key store for the {store.dialect!r} store") from None
