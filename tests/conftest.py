"""Shared fixtures: where the real corpora live (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """The shared real-world corpora beside the repository."""
    assert CORPORA.is_dir(), f"the shared corpora are expected at {CORPORA}"
    return CORPORA


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
