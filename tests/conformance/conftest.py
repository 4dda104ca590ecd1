"""Backend conformance fixtures: every test here runs on DuckDB and on Elasticsearch.

Elasticsearch is ``osmem-server`` (in-memory, OpenSearch-compatible; started here on a free
127.0.0.1 port and stopped with the session), or a real cluster when ``MARKETGUARD_ES_URL``
is set (``MARKETGUARD_ES_API_KEY`` or ``MARKETGUARD_ES_USERNAME``/``_PASSWORD``,
``MARKETGUARD_ES_CA_CERT``). Each test gets its own index prefix, deleted afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marketguard.store._es_client import connect
from marketguard.store.duckdb import DuckDBStore
from marketguard.store.elasticsearch import ElasticsearchStore

sys.path.insert(0, str(Path(__file__).parent))
from _osmem import PlainJsonNode  # noqa: E402
from _stores import drop_prefix  # noqa: E402

BACKEND_NAMES = ["duckdb", "elasticsearch"]



@pytest.fixture(scope="session")
def es_client() -> Iterator[object]:
    """A client of the real cluster named by MARKETGUARD_ES_URL, else of a fresh osmem-server."""
    url = os.environ.get("MARKETGUARD_ES_URL")
    if url:
        client = connect(
            url,
            api_key=os.environ.get("MARKETGUARD_ES_API_KEY"),
            username=os.environ.get("MARKETGUARD_ES_USERNAME"),
            password=os.environ.get("MARKETGUARD_ES_PASSWORD"),
            ca_cert=os.environ.get("MARKETGUARD_ES_CA_CERT"),
        )
        yield client
        client.close()
        return
    from osmem_server import OsmemServer

    server = OsmemServer.start(addr="127.0.0.1:0", japanese=False)
    client = connect(server.url, node_class=PlainJsonNode)
    try:
        yield client
    finally:
        client.close()
        server.close()


@pytest.fixture
def open_store(es_client, tmp_path) -> Iterator[Callable[..., object]]:
    """Factory: ``open_store(backend)`` opens an empty store of that backend (closed after)."""
    opened: list[tuple[object, str | None]] = []

    def make(backend: str, **kw: object) -> object:
        if backend == "duckdb":
            store: object = DuckDBStore(tmp_path / f"{uuid.uuid4().hex}.duckdb")
            opened.append((store, None))
            return store
        prefix = kw.pop("prefix", None) or f"mgtest-{uuid.uuid4().hex[:10]}"
        store = ElasticsearchStore(es_client, prefix=str(prefix), owns_client=False, **kw)  # type: ignore[arg-type]
        opened.append((store, str(prefix)))
        return store

    yield make
    for store, prefix in opened:
        store.close()  # type: ignore[attr-defined]
        if prefix is not None:
            drop_prefix(es_client, prefix)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> str:
    """The backend name a parametrised test runs on."""
    return str(request.param)
