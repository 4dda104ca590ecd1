"""Fixtures of the report tests: one real incident-response history per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _report_scenario import ReportWorld, build_world, open_sources

from marketguard.app.reports import ReportSources
from marketguard.config import Settings


@pytest.fixture(scope="session")
def report_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportWorld]:
    """The history (see ``_report_scenario``); read it, or write to a copy."""
    yield from build_world(tmp_path_factory.mktemp("report-world"))


@pytest.fixture
def sources(report_world: ReportWorld) -> Iterator[ReportSources]:
    """Report sources over the shared history (read only: tests that write use a copy)."""
    src, store = open_sources(report_world.settings)
    yield src
    store.close()


@pytest.fixture
def world_copy(report_world: ReportWorld, tmp_path: Path) -> Settings:
    """Settings on a private copy of the history's data directory."""
    return report_world.copy_to(tmp_path / "data")
