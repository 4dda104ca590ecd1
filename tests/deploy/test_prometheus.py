"""Prometheus and Alertmanager config: promtool/amtool checks, alert policy, and a real
Prometheus server scraping a real MarketGuard."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from marketguard.app.localserver import LocalServer, free_port
from marketguard.app.services import build_services
from marketguard.config import load_settings

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_PREFIX = "https://github.com/marketguard/marketguard/blob/main/docs/runbooks.md#"
METRIC = re.compile(r"\b(marketguard_[a-z0-9_]+)")


def _run(args: list[str], cwd: Path = REPO) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{output}"
    return output


def _alerts() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, rule)
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


ALERTS = _alerts()


def test_promtool_check_config(tool: Callable[[str], str]) -> None:
    out = _run([tool("promtool"), "check", "config", str(PROM / "prometheus.yml")])
    assert f"{len(RULE_FILES)} rule files found" in out


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_promtool_check_rules(path: Path, tool: Callable[[str], str]) -> None:
    _run([tool("promtool"), "check", "rules", str(path)])


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_promtool_test_rules(path: Path, tool: Callable[[str], str]) -> None:
    out = _run([tool("promtool"), "test", "rules", path.name], cwd=path.parent)
    assert "SUCCESS" in out


def test_amtool_check_config(tool: Callable[[str], str]) -> None:
    _run([tool("amtool"), "check-config", str(REPO / "deploy" / "alertmanager" / "alertmanager.yml")])


def test_alertmanager_routes_page_to_pager_and_ticket_to_email_and_chat() -> None:
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    routes: dict[str, str] = {}
    for route in config["route"]["routes"]:  # first match wins, as in Alertmanager
        for matcher in route["matchers"]:
            routes.setdefault(matcher, route["receiver"])
    assert "pagerduty_configs" in receivers[routes['severity="page"']]
    ticket = receivers[routes['severity="ticket"']]
    assert "email_configs" in ticket and "slack_configs" in ticket
    severities = {rule["labels"]["severity"] for _, rule in ALERTS}
    assert severities <= {"page", "ticket"}, "every alert severity needs a route"


@pytest.mark.parametrize("rule", [r for _, r in ALERTS], ids=lambda r: r["alert"])
def test_alert_policy(rule: dict[str, Any]) -> None:
    """Severity label, summary, description and a runbook link that resolves."""
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert rule["labels"].get("team")
    notes = rule["annotations"]
    assert notes["summary"].strip() and len(notes["description"]) > 40
    url = notes["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), url
    headings = {h.strip().lower() for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.M)}
    assert url.removeprefix(RUNBOOK_PREFIX) in headings, f"docs/runbooks.md has no '## {rule['alert']}'"


def test_every_alert_has_a_firing_unit_test() -> None:
    tested: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested.update(t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts"))
    missing = sorted({r["alert"] for _, r in ALERTS} - tested)
    assert not missing, f"alerts without a promtool test that makes them fire: {missing}"


def test_required_alerts_exist() -> None:
    names = {r["alert"] for _, r in ALERTS}
    required = {
        "MarketGuardDown", "MarketGuardIngestLagHigh", "MarketGuardDeadLettersGrowing", "MarketGuardRuleErrors",
        "MarketGuardRulesBehindSchedule", "MarketGuardAuditChainBroken", "MarketGuardOpenP1Incident",
        "MarketGuardSLOFastBurn", "MarketGuardSLOSlowBurn", "MarketGuardSellerSLABreach",
    }
    assert required <= names, sorted(required - names)


def test_alert_metrics_exist_in_live_metrics(known_metrics: set[str]) -> None:
    """Every marketguard_* name in an alert expression is in a real /metrics output (or pending)."""
    unknown = sorted({f"{r['alert']}: {m}" for _, r in ALERTS for m in METRIC.findall(r["expr"]) if m not in known_metrics})
    assert not unknown, "alert rules use metrics the service does not expose:\n" + "\n".join(unknown)


# -- a real Prometheus scraping a real MarketGuard -----------------------------------------------
@pytest.fixture
def marketguard(tmp_path: Path) -> Iterator[str]:
    """A real MarketGuard on 127.0.0.1 with a few ingested lines; yields its base URL."""
    settings = load_settings(data_dir=tmp_path / "mg", rules_dirs=[REPO / "rules"], rule_interval_s=0.5)
    services = build_services(settings)
    key = services.keys.create("prom-test", "ingest")
    with LocalServer(services) as server:
        lines = "\n".join(
            f'203.0.113.{i} - - [20/Nov/2026:08:00:{i:02d} +0000] "GET /api/items/{i} HTTP/1.1" 200 512 "-" "curl/8.0"'
            for i in range(10)
        )
        resp = httpx.post(f"{server.url}/api/v1/logs", params={"format": "combined"}, content=lines,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "text/plain", "X-Batch-Id": "prom-test"})
        assert resp.status_code == 200, resp.text
        yield server.url


@pytest.fixture
def prometheus(tmp_path: Path, marketguard: str, tool: Callable[[str], str]) -> Iterator[str]:
    """Debian's Prometheus on 127.0.0.1 scraping ``marketguard`` every second, with our rules."""
    binary = tool("prometheus")
    target = marketguard.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": "marketguard", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, 30, proc, tmp_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait(check: Callable[[], bool], seconds: float, proc: subprocess.Popen[bytes], tmp: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prometheus exited:\n{(tmp / 'prometheus.log').read_text()[-3000:]}"
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"prometheus not ready in {seconds}s:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")


@pytest.mark.slow
def test_real_prometheus_scrapes_marketguard(prometheus: str) -> None:
    """Prometheus scrapes /metrics and answers an instant query with the ingested count."""
    query = 'sum(marketguard_ingest_events_total{source="http:prom-test"})'
    answer: dict[str, Any] = {}

    def scraped() -> bool:
        answer.update(httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json())
        return bool(answer.get("data", {}).get("result"))

    deadline = time.monotonic() + 30
    while not scraped():
        assert time.monotonic() < deadline, f"no result for {query}: {answer}"
        time.sleep(0.5)
    assert answer["status"] == "success"
    assert float(answer["data"]["result"][0]["value"][1]) == 10.0
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for _, r in ALERTS}
