"""API keys: hashed at rest, verified, revoked; roles validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketguard.auth import KeyError_, Principal, hash_key, open_keys, valid_role
from marketguard.store.duckdb import DuckDBStore


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "mg.duckdb"


def test_create_verify_revoke(path: Path) -> None:
    store = DuckDBStore(path)
    keys = open_keys(store)
    secret = keys.create("gateway-eu", "ingest")
    assert keys.verify(secret) == Principal("gateway-eu", "ingest")
    assert keys.verify(secret + "x") is None
    keys.revoke("gateway-eu")
    assert keys.verify(secret) is None
    assert [(k.name, k.revoked is not None) for k in keys.list()] == [("gateway-eu", True)]
    with pytest.raises(KeyError_, match="no active key"):
        keys.revoke("gateway-eu")
    store.close()


def test_secret_never_stored_only_its_hash(path: Path) -> None:
    store = DuckDBStore(path)
    secrets = [open_keys(store).create(f"k{i}", role) for i, role in enumerate(["ingest", "admin", "seller:s1"])]
    store.close()
    on_disk = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    for secret in secrets:
        assert secret.encode() not in on_disk
        assert secret[3:].encode() not in on_disk  # not even without the prefix
        assert hash_key(secret).encode() in on_disk
    reopened = DuckDBStore(path)
    assert open_keys(reopened).verify(secrets[2]) == Principal("k2", "seller:s1")
    assert Principal("k2", "seller:s1").seller_id == "s1"
    reopened.close()


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [("gw", "superuser", "unknown role"), ("gw", "seller:", "unknown role"),
     ("", "ingest", "key name"), ("a/b", "ingest", "key name")],
)  # fmt: skip
def test_bad_name_or_role_refused(path: Path, name: str, role: str, message: str) -> None:
    store = DuckDBStore(path)
    with pytest.raises(KeyError_, match=message):
        open_keys(store).create(name, role)
    store.close()


def test_roles() -> None:
    assert all(valid_role(r) for r in ("admin", "analyst", "oncall", "auditor", "ingest", "seller:abc-1"))
    assert not valid_role("seller:a b") and not valid_role("Admin")
