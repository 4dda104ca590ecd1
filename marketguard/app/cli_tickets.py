"""``marketguard tickets``: list, show, acknowledge, assign, comment on and resolve tickets.

For on-call in a terminal, on the data directory of a stopped service (DuckDB allows one
writing process). Every change is audited with actor ``cli:<os user>`` (``--as`` overrides).
``show`` is a staff read of personal data and is audited too. ``-o json`` prints data only.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from marketguard.app.cli_common import DataDirOpt, data_store, err, fail, settings_for
from marketguard.cases.audit import AuditLog, open_audit
from marketguard.cases.tickets import Ticket, TicketFilters, TicketStore, open_tickets
from marketguard.types import Priority, TicketStatus

__all__ = ["tickets_app"]

tickets_app = typer.Typer(help="Work tickets: list, show, ack, assign, comment, resolve.", no_args_is_help=True)


class Output(StrEnum):
    table = "table"
    json = "json"


ActorOpt = Annotated[str | None, typer.Option("--as", help="Audit actor (default cli:<os user>).")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table for people; json for scripts.")]
IdArg = Annotated[str, typer.Argument(help="Ticket id (T-…).", show_default=False)]


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


@contextmanager
def _open(data_dir: DataDirOpt) -> Iterator[tuple[TicketStore, AuditLog]]:
    """Ticket store and audit log of the data directory; every refusal is a one-line exit 2."""
    with data_store(settings_for(data_dir)) as store:
        audit = open_audit(store)
        yield open_tickets(store, audit), audit


def _json(t: Ticket) -> dict[str, Any]:
    data = asdict(t)
    data["time_to_acknowledge_s"] = t.time_to_acknowledge.total_seconds() if t.time_to_acknowledge else None
    data["time_to_resolve_s"] = t.time_to_resolve.total_seconds() if t.time_to_resolve else None
    return data


def _print(t: Ticket, output: Output) -> None:
    if output is Output.json:
        print(json.dumps(_json(t), default=str))
        return
    out = Console()
    out.print(f"[bold]{t.id}[/] {t.priority} {t.status} — {t.title}", highlight=False)
    out.print(f"queue {t.queue}  assignee {t.assignee or '-'}  incident {t.incident_id}  kind {t.kind}", highlight=False)
    out.print(f"ack due {t.ack_due:%Y-%m-%d %H:%M}Z  resolve due {t.resolve_due:%Y-%m-%d %H:%M}Z", highlight=False)
    if t.time_to_acknowledge is not None:
        out.print(f"time to acknowledge {t.time_to_acknowledge}", highlight=False)
    if t.time_to_resolve is not None:
        out.print(f"time to resolve {t.time_to_resolve}", highlight=False)
    for name, values in t.entities.items():
        out.print(f"  {name}: {', '.join(values)}", highlight=False)
    for f in t.failed_steps:
        out.print(f"[red]failed step[/] {f.playbook}/{f.step} after {f.attempts} attempts: {f.error}", highlight=False)
    for c in t.comments:
        out.print(f"  {c.time:%Y-%m-%d %H:%M} {c.author}{' (internal)' if c.internal else ''}: {c.text}", highlight=False)


@tickets_app.command("list")
def list_tickets(
    status: Annotated[TicketStatus | None, typer.Option("--status", help="Only this status.")] = None,
    priority: Annotated[Priority | None, typer.Option("--priority", help="At least this urgent (P2 = P1 and P2).")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this owner queue, e.g. operator:sre.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Hide resolved and closed tickets.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    output: OutputOpt = Output.table,
    data_dir: DataDirOpt = None,
) -> None:
    """List tickets, newest first."""
    with _open(data_dir) as (tickets, _):
        page = tickets.list(TicketFilters(status=status, priority=priority, queue=queue, open_only=open_only), None, limit)
    if output is Output.json:
        print(json.dumps([_json(t) for t in page.items], default=str))
        return
    table = Table("id", "prio", "status", "queue", "assignee", "ack due", "resolve due", "title")
    for t in page.items:
        table.add_row(t.id, t.priority, t.status, t.queue, t.assignee or "-", f"{t.ack_due:%m-%d %H:%M}",
                      f"{t.resolve_due:%m-%d %H:%M}", t.title)
    Console().print(table)


@tickets_app.command("show")
def show(ticket_id: IdArg, actor: ActorOpt = None, output: OutputOpt = Output.table, data_dir: DataDirOpt = None) -> None:
    """Show one ticket with its entities, comments and failed steps (an audited read)."""
    with _open(data_dir) as (tickets, audit):
        ticket = tickets.get(ticket_id)
        if ticket is None:
            fail(f"no ticket with id {ticket_id!r}", 1)
            return
        audit.append(_actor(actor), "ticket.read", f"ticket:{ticket_id}", {"fields": sorted(ticket.entities), "via": "cli"})
    _print(ticket, output)


@tickets_app.command("ack")
def ack(ticket_id: IdArg, actor: ActorOpt = None, output: OutputOpt = Output.table, data_dir: DataDirOpt = None) -> None:
    """Acknowledge a ticket (stops the response clock)."""
    with _open(data_dir) as (tickets, _):
        ticket = tickets.set_status(ticket_id, "acknowledged", actor=_actor(actor))
    _print(ticket, output)


@tickets_app.command("assign")
def assign(
    ticket_id: IdArg,
    assignee: Annotated[str, typer.Argument(help="Who works it ('-' to clear).", show_default=False)],
    queue: Annotated[str | None, typer.Option("--queue", help="Also move it to this owner queue.")] = None,
    actor: ActorOpt = None, output: OutputOpt = Output.table, data_dir: DataDirOpt = None,
) -> None:
    """Assign a ticket (optionally to another owner queue)."""
    with _open(data_dir) as (tickets, _):
        ticket = tickets.assign(ticket_id, None if assignee == "-" else assignee, actor=_actor(actor), queue=queue)
    _print(ticket, output)


@tickets_app.command("comment")
def comment(
    ticket_id: IdArg,
    text: Annotated[str, typer.Argument(help="The comment.", show_default=False)],
    internal: Annotated[bool, typer.Option("--internal", help="Hide it from the seller.")] = False,
    actor: ActorOpt = None, output: OutputOpt = Output.table, data_dir: DataDirOpt = None,
) -> None:
    """Comment on a ticket."""
    with _open(data_dir) as (tickets, _):
        ticket = tickets.comment(ticket_id, text, actor=_actor(actor), internal=internal)
    _print(ticket, output)


@tickets_app.command("resolve")
def resolve(
    ticket_id: IdArg,
    reason: Annotated[str | None, typer.Option("--reason", help="What was done.")] = None,
    actor: ActorOpt = None, output: OutputOpt = Output.table, data_dir: DataDirOpt = None,
) -> None:
    """Resolve a ticket (stops the resolution clock)."""
    with _open(data_dir) as (tickets, _):
        ticket = tickets.set_status(ticket_id, "resolved", actor=_actor(actor), reason=reason)
    _print(ticket, output)
    err.print(f"resolved {ticket_id}", highlight=False)
