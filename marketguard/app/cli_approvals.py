"""``marketguard approvals``: list, approve and reject containment actions from a terminal.

On the data directory of a stopped service (DuckDB allows one writing process). The action
webhook comes from ``<playbooks>/notifiers.yaml`` (secrets from the environment). Decisions
are audited with actor ``cli:<os user>`` (``--as`` overrides) and always need ``--reason``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from marketguard.app.cli_common import DataDirOpt, data_store, settings_for
from marketguard.cases.audit import open_audit
from playbooks.containment import Containment
from playbooks.notifiers import load_response_config
from playbooks.state import PendingAction, open_response_state

__all__ = ["approvals_app"]

approvals_app = typer.Typer(help="Containment actions awaiting a human decision.", no_args_is_help=True)

ActorOpt = Annotated[str | None, typer.Option("--as", help="Audit actor (default cli:<os user>).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).", show_default=False)]
PlaybooksOpt = Annotated[Path, typer.Option("--playbooks", help="Directory holding notifiers.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
IdArg = Annotated[str, typer.Argument(help="Action id (act-…).", show_default=False)]


@contextmanager
def _containment(data_dir: Path | None, playbooks: Path) -> Iterator[Containment]:
    with data_store(settings_for(data_dir)) as store:
        notifier_file = playbooks / "notifiers.yaml"
        webhook = load_response_config(notifier_file)[0].containment if notifier_file.is_file() else None
        yield Containment(open_response_state(store).actions, open_audit(store), webhook)


def _show(action: PendingAction, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(action), default=str))
        return
    Console().print(f"[bold]{action.id}[/] {action.status}: {action.action} {action.target} "
                    f"(incident {action.incident_id}; {action.result or action.reason or 'awaiting decision'})", highlight=False)


@approvals_app.command("list")
def list_actions(
    status: Annotated[str | None, typer.Option("--status", help="pending, approved, rejected, executed or failed.")] = "pending",
    as_json: JsonOpt = False, data_dir: DataDirOpt = None, playbooks: PlaybooksOpt = Path("playbooks"),
) -> None:
    """List containment actions (pending ones by default)."""
    with _containment(data_dir, playbooks) as c:
        actions = c.actions.list(status or None)
    if as_json:
        print(json.dumps([asdict(a) for a in actions], default=str))
        return
    table = Table("id", "status", "action", "target", "incident", "requested by", "requested at")
    for a in actions:
        table.add_row(a.id, a.status, a.action, a.target, a.incident_id, a.requested_by, f"{a.requested_at:%m-%d %H:%M}")
    Console().print(table)


@approvals_app.command("approve")
def approve(action_id: IdArg, reason: ReasonOpt, actor: ActorOpt = None, as_json: JsonOpt = False,
            data_dir: DataDirOpt = None, playbooks: PlaybooksOpt = Path("playbooks")) -> None:
    """Approve a pending action: the action webhook is called once; exit 1 if it failed."""
    with _containment(data_dir, playbooks) as c:
        done = c.approve(action_id, actor=actor or f"cli:{getpass.getuser()}", reason=reason)
    _show(done, as_json)
    if done.status == "failed":
        raise typer.Exit(1)


@approvals_app.command("reject")
def reject(action_id: IdArg, reason: ReasonOpt, actor: ActorOpt = None, as_json: JsonOpt = False,
           data_dir: DataDirOpt = None, playbooks: PlaybooksOpt = Path("playbooks")) -> None:
    """Reject a pending action; it is never executed."""
    with _containment(data_dir, playbooks) as c:
        done = c.reject(action_id, actor=actor or f"cli:{getpass.getuser()}", reason=reason)
    _show(done, as_json)
