"""What every ``marketguard`` sub-command shares: the error console, ``--data-dir``, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from marketguard.config import Settings, load_settings
from marketguard.errors import MarketGuardError

__all__ = ["err", "DataDirOpt", "fail", "settings_for"]

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
