"""API keys behave the same on both stores: create, verify, revoke, duplicate names refused."""

from __future__ import annotations

import pytest

from marketguard.auth import KeyError_, Principal
from marketguard.auth.duckdb import DuckDBKeyStore
from marketguard.auth.elasticsearch import ElasticsearchKeyStore

KEY_STORES = {"duckdb": DuckDBKeyStore, "elasticsearch": ElasticsearchKeyStore}


def test_create_verify_revoke(backend, open_store):
    keys = KEY_STORES[backend](open_store(backend))
    secret = keys.create("gateway-eu", "ingest")
    other = keys.create("seller-7", "seller:s7")
    assert keys.verify(secret) == Principal("gateway-eu", "ingest")
    assert keys.verify(secret + "x") is None
    with pytest.raises(KeyError_, match="already exists"):
        keys.create("gateway-eu", "admin")
    keys.revoke("gateway-eu")
    assert keys.verify(secret) is None
    assert keys.verify(other) == Principal("seller-7", "seller:s7")
    assert [(k.name, k.role, k.revoked is not None) for k in keys.list()] == [
        ("gateway-eu", "ingest", True), ("seller-7", "seller:s7", False)]
    with pytest.raises(KeyError_, match="no active key"):
        keys.revoke("gateway-eu")
    with pytest.raises(KeyError_, match="no active key"):
        keys.revoke("nobody")
    with pytest.raises(KeyError_, match="unknown role"):
        keys.create("x", "superuser")
