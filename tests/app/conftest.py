"""Shared fixtures for the API tests: real services on a DuckDB file in ``tmp_path``."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.services import Services, build_services
from marketguard.config import Settings, load_settings
from marketguard.errors import StoreError
from marketguard.schema import DeadLetter


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data directory, with no rules (ingest tests need none)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    return load_settings(data_dir=tmp_path / "data", rules_dirs=[rules], max_body_bytes=64 * 1024)


def _build(settings: Settings) -> Services:
    return build_services(settings, with_engine=False)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Real services (DuckDB store, hashed keys, ingest writer), not started."""
    built = _build(settings)
    yield built
    built.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """A TestClient whose lifespan starts the writer; the store stays open for assertions."""
    with TestClient(create_app(services, manage_lifecycle=False)) as test_client:
        services.start()
        yield test_client
        services.ingest.stop()


@pytest.fixture
def ingest_key(services: Services) -> str:
    """The secret of an active ``ingest`` key named ``gateway-eu``."""
    return services.keys.create("gateway-eu", "ingest")


@pytest.fixture
def ingest_headers(ingest_key: str) -> dict[str, str]:
    """The Authorization header of the ``gateway-eu`` ingest key."""
    return {"Authorization": f"Bearer {ingest_key}"}


class BlockingStore:
    """In-memory test double of the Store writes: each append waits until released."""

    dialect = "memory"

    def __init__(self, fail: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        self.events: list[pa.Table] = []
        self.dead: list[DeadLetter] = []

    def append_events(self, events: pa.Table) -> int:
        self.entered.set()
        assert self.release.wait(10), "test never released the store"
        if self.fail:
            raise StoreError("disk full")
        self.events.append(events)
        return events.num_rows

    def append_dead_letters(self, items: Sequence[DeadLetter]) -> None:
        self.dead.extend(items)


@pytest.fixture
def blocking_store() -> Iterator[BlockingStore]:
    """A :class:`BlockingStore`, released at teardown so no writer thread stays stuck."""
    store = BlockingStore()
    yield store
    store.release.set()
