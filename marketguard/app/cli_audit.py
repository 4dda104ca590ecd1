"""``marketguard audit``: verify the hash chain, export a signed bundle, check a bundle.

``verify`` exits 0 when the chain is intact and 1 naming the first broken entry. ``export``
writes a JSONL bundle signed with HMAC-SHA256; the key comes from ``--key-file`` (default
``<data_dir>/audit-export.key``, created 0600 on first use) and must reach the auditor
separately, who runs ``check-bundle`` with it.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from marketguard.app.cli_common import DataDirOpt, data_store, err, fail, settings_for
from marketguard.cases.audit import AuditLog, open_audit, verify_bundle
from marketguard.config import Settings
from marketguard.errors import MarketGuardError

__all__ = ["audit_app", "export_key"]

audit_app = typer.Typer(help="The tamper-evident audit trail: verify, export, check a bundle.", no_args_is_help=True)

KeyFileOpt = Annotated[Path | None, typer.Option("--key-file", help="HMAC key file (default <data_dir>/audit-export.key).")]


def export_key(settings: Settings, key_file: Path | None = None, *, create: bool = True) -> bytes:
    """The bundle-signing key: ``key_file``, or ``<data_dir>/audit-export.key`` created 0600 once."""
    path = key_file or settings.data_dir / "audit-export.key"
    if path.exists():
        return path.read_bytes().strip()
    if key_file is not None or not create:
        raise MarketGuardError(f"key file {path} does not exist")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


@contextmanager
def _audit(settings: Settings) -> Iterator[AuditLog]:
    with data_store(settings) as store:
        yield open_audit(store)


def _when(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name} {value!r} is not an ISO-8601 time (e.g. 2025-03-01 or 2025-03-01T12:00:00Z)")
        raise  # unreachable
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@audit_app.command("verify")
def verify(
    from_seq: Annotated[int | None, typer.Option("--from-seq", min=1, help="First entry to check.")] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", min=1, help="Last entry to check.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Prove the chain intact (exit 0) or name the first broken entry (exit 1)."""
    with _audit(settings_for(data_dir)) as log:
        result = log.verify(from_seq, to_seq)
    if result.ok:
        print(f"audit trail intact: {result.entries} entries, last hash {result.last_hash}")
        return
    print(f"audit trail BROKEN at entry {result.first_broken_seq}: {result.reason}")
    raise typer.Exit(1)


@audit_app.command("export")
def export(
    time_from: Annotated[str, typer.Option("--from", help="Start time, ISO-8601 (UTC if no offset).", show_default=False)],
    time_to: Annotated[str, typer.Option("--to", help="End time, inclusive.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write (JSONL).", show_default=False)],
    key_file: KeyFileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write the entries in [from, to] as a signed JSONL bundle; the export itself is audited."""
    settings = settings_for(data_dir)
    start, end = _when(time_from, "--from"), _when(time_to, "--to")
    with _audit(settings) as log:
        bundle = log.export(start, end, export_key(settings, key_file))
        count = bundle.count("\n") - 1
        out.write_text(bundle)
        log.append(f"cli:{getpass.getuser()}", "audit.export", f"file:{out.name}",
                   {"from": start.isoformat(), "to": end.isoformat(), "entries": count})
    err.print(f"wrote {count} entries to {out}", highlight=False)


@audit_app.command("check-bundle")
def check_bundle(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `audit export`.", show_default=False)],
    key_file: KeyFileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check a bundle's signature and the chain inside it (exit 0 valid, 1 not)."""
    try:
        result = verify_bundle(bundle.read_text(), export_key(settings_for(data_dir), key_file, create=False))
    except (OSError, MarketGuardError) as exc:
        fail(str(exc))
        return
    if result.ok:
        print(f"bundle valid: {result.entries} entries")
        return
    print(f"bundle INVALID: {result.reason}")
    raise typer.Exit(1)
