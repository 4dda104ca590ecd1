"""Fixtures of the console tests: one seeded scenario per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _console_scenario import Scenario, scenario


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The seeded services (see ``_console_scenario``), shared by one module's tests."""
    with scenario(Path(tmp_path_factory.mktemp("console"))) as built:
        yield built
