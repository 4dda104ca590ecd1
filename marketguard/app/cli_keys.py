"""``marketguard keys``: create, list and revoke API keys.

``keys create`` prints the new secret alone on stdout, so ``KEY=$(marketguard keys create
--role ingest --name gateway-eu)`` captures it; everything else goes to stderr. The secret is
shown once: only its hash is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from marketguard.app.cli_common import DataDirOpt, data_store, err, settings_for
from marketguard.auth import ROLES, KeyStore, open_keys

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Manage API keys (stored hashed; a new key is shown once).", no_args_is_help=True
)


class ListOutput(StrEnum):
    table = "table"
    json = "json"


@contextmanager
def _keys(data_dir: DataDirOpt) -> Iterator[KeyStore]:
    """The key store of the data directory; every refusal becomes a one-line exit 2."""
    with data_store(settings_for(data_dir)) as store:
        yield open_keys(store)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}, or seller:<id>.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Unique key name, e.g. gateway-eu (letters, digits, _ . -).", show_default=False)],
    data_dir: DataDirOpt = None,
) -> None:
    """Create a key and print its secret, alone on stdout (it is shown only this once)."""
    with _keys(data_dir) as keys:
        secret = keys.create(name, role)
    print(secret)
    err.print(f"created key {name!r} with role {role!r}; store it now, it cannot be shown again", highlight=False)


@keys_app.command("list")
def list_keys(
    output: Annotated[ListOutput, typer.Option("--output", "-o", help="table for people; json: [{name, role, created, revoked}].")] = ListOutput.table,
    data_dir: DataDirOpt = None,
) -> None:
    """List every key (never its secret), revoked ones included."""
    with _keys(data_dir) as keys:
        found = keys.list()
    if output is ListOutput.json:
        rows = [
            {"name": k.name, "role": k.role, "created": k.created.isoformat(),
             "revoked": k.revoked.isoformat() if k.revoked else None}
            for k in found
        ]  # fmt: skip
        print(json.dumps(rows))
        return
    table = Table("name", "role", "created", "status")
    for k in found:
        state = f"revoked {k.revoked:%Y-%m-%d %H:%M}" if k.revoked else "active"
        table.add_row(k.name, k.role, f"{k.created:%Y-%m-%d %H:%M}", state)
    Console().print(table)


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Name of the key to revoke.", show_default=False)],
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key: requests carrying it are refused with 401 from now on."""
    with _keys(data_dir) as keys:
        keys.revoke(name)
    err.print(f"revoked key {name!r}", highlight=False)
