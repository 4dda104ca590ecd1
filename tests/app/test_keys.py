"""``marketguard keys``: create prints the key alone on stdout; list, revoke; refusals exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from marketguard.app.cli_keys import keys_app
from marketguard.auth import open_keys
from marketguard.store.duckdb import DuckDBStore

runner = CliRunner()


@pytest.fixture
def cli() -> typer.Typer:
    """A root app with the keys sub-app, as ``marketguard`` registers it."""
    root = typer.Typer()
    root.add_typer(keys_app, name="keys")
    return root


def run(cli: typer.Typer, data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["keys", *args, "--data-dir", str(data_dir)], env={"MARKETGUARD_CONFIG": "/nonexistent"})
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_only_the_key_and_it_verifies(cli: typer.Typer, tmp_path: Path) -> None:
    code, out, err = run(cli, tmp_path, "create", "--role", "ingest", "--name", "gateway-eu")
    assert code == 0, err
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("mg_") and " " not in secret
    assert "gateway-eu" in err and secret not in err
    store = DuckDBStore(tmp_path / "marketguard.duckdb")
    try:
        principal = open_keys(store).verify(secret)
    finally:
        store.close()
    assert principal is not None and (principal.name, principal.role) == ("gateway-eu", "ingest")


def test_list_json_and_revoke(cli: typer.Typer, tmp_path: Path) -> None:
    run(cli, tmp_path, "create", "--role", "ingest", "--name", "gw")
    run(cli, tmp_path, "create", "--role", "seller:s-42", "--name", "seller-42")
    code, out, _ = run(cli, tmp_path, "revoke", "gw")
    assert code == 0
    code, out, _ = run(cli, tmp_path, "list", "--output", "json")
    assert code == 0
    keys = {k["name"]: k for k in json.loads(out)}
    assert keys["gw"]["role"] == "ingest" and keys["gw"]["revoked"] is not None
    assert keys["seller-42"]["role"] == "seller:s-42" and keys["seller-42"]["revoked"] is None
    assert "mg_" not in out
    code, out, _ = run(cli, tmp_path, "list")
    assert code == 0 and "seller-42" in out and "revoked" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("create", "--role", "root", "--name", "x"), "unknown role 'root'"),
        (("create", "--role", "ingest", "--name", "bad name"), "key name 'bad name'"),
        (("revoke", "nobody"), "no active key named 'nobody'"),
    ],
)
def test_refusals_exit_2_with_one_line_reason(cli: typer.Typer, tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    code, out, err = run(cli, tmp_path, *args)
    assert code == 2 and out == ""
    assert reason in err and len(err.strip().splitlines()) == 1


def test_duplicate_name_is_refused(cli: typer.Typer, tmp_path: Path) -> None:
    assert run(cli, tmp_path, "create", "--role", "ingest", "--name", "gw")[0] == 0
    code, out, err = run(cli, tmp_path, "create", "--role", "analyst", "--name", "gw")
    assert code == 2 and out == "" and "already exists" in err
