"""What every ``marketguard`` sub-command shares: the error console, ``--data-dir``, settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from marketguard.config import Settings, load_settings
from marketguard.errors import MarketGuardError
from marketguard.store import Store, open_store

__all__ = ["err", "DataDirOpt", "fail", "settings_for", "data_store"]

err = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="MARKETGUARD_DATA_DIR", help="Data directory (store, keys, state). Default ./.marketguard"),
]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason on stderr and exit with ``code``."""
    err.print(f"[bold red]marketguard: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_for(data_dir: Path | None) -> Settings:
    """Load settings, turning configuration errors into a clean exit."""
    try:
        return load_settings(data_dir=data_dir)
    except MarketGuardError as exc:
        fail(str(exc))
        raise  # unreachable


@contextmanager
def data_store(settings: Settings) -> Iterator[Store]:
    """The data directory's store for a CLI command; every refusal becomes a one-line exit 2."""
    try:
        store = open_store(settings)
    except MarketGuardError as exc:
        fail(f"{exc} (is `marketguard serve` running on this data directory?)")
        raise  # unreachable
    try:
        yield store
    except MarketGuardError as exc:
        fail(str(exc))
    finally:
        store.close()
