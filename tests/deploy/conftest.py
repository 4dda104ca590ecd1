"""Shared fixtures for the deployment artefacts: one real MarketGuard run, the tools, the files."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARDS = REPO / "dashboards"
MAKE_STEP = (
    "`make install-tools` (Makefile: apt-get install -y prometheus prometheus-alertmanager, "
    "as root, guarded by `command -v promtool`)"
)


def require_tool(name: str) -> str:
    """The path of ``name``; a missing tool FAILS the test (never skips) and names the fix."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run {MAKE_STEP}", pytrace=False)
    return path


def load_render() -> ModuleType:
    """``dashboards/render.py`` as a module (dashboards/ is data, not a package)."""
    spec = importlib.util.spec_from_file_location("marketguard_dashboards_render", DASHBOARDS / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def render() -> ModuleType:
    """The dashboard renderer module."""
    return load_render()


@pytest.fixture(scope="session")
def demo_run(render: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A short demo scenario sent over HTTP to a real LocalServer (engine, rules, DuckDB), with
    fraud campaigns, seller tickets and worked incident tickets; without the slow SLO traffic."""
    return render.drive(normal=1_500, workdir=tmp_path_factory.mktemp("demo-run"), slo_traffic=False)


@pytest.fixture(scope="session")
def live_metric_names(demo_run: Any, render: ModuleType) -> set[str]:
    """Every metric family and sample name in the real service's /metrics after the run."""
    names: set[str] = render.metric_names(demo_run.metrics_text)
    return names


@pytest.fixture(scope="session")
def pending_metrics() -> dict[str, dict[str, Any]]:
    """Metrics used by dashboards/alerts that the service does not expose yet, with their issue."""
    data = yaml.safe_load((DEPLOY / "prometheus" / "pending-metrics.yml").read_text())
    pending: dict[str, dict[str, Any]] = data["pending"]
    return pending


@pytest.fixture(scope="session")
def known_metrics(live_metric_names: set[str], pending_metrics: dict[str, dict[str, Any]]) -> set[str]:
    """Names a dashboard or rule may use: exposed now, or pending (with a histogram's samples)."""
    out = set(live_metric_names)
    for name, spec in pending_metrics.items():
        out.add(name)
        if spec["type"] == "histogram":
            out.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
    return out


@pytest.fixture(scope="session")
def tool() -> Any:
    """:func:`require_tool`, as a fixture."""
    return require_tool
