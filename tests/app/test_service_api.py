"""The service's own endpoints: rule status, health, the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from correlator.live import LiveEngine
from marketguard.app.api import create_app
from marketguard.app.services import build_services
from marketguard.config import load_settings


def test_rules_status_lists_every_rule_and_refuses_ingest_keys(tmp_path, repo):
    services = build_services(load_settings(data_dir=tmp_path, rules_dirs=[repo / "rules"]))
    assert isinstance(services.engine, LiveEngine)
    analyst = services.keys.create("a", "analyst")
    ingest = services.keys.create("i", "ingest")
    services.engine.run_once()
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        body = client.get("/api/v1/rules", headers={"Authorization": f"Bearer {analyst}"}).json()
        assert len(body["items"]) == services.rules.loaded
        assert {"id", "title", "last_run", "error", "behind_schedule"} <= set(body["items"][0])
        assert client.get("/api/v1/rules", headers={"Authorization": f"Bearer {ingest}"}).status_code == 403
        assert client.get("/api/v1/rules").status_code == 401
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["leadership"]["leader"] is False  # lifecycle not started
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/api/v1/logs", "/api/v1/alerts", "/api/v1/incidents", "/api/v1/incidents/{incident_id}", "/api/v1/rules", "/metrics"} <= set(paths)
    services.close()


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from marketguard.app.cli import app

    monkeypatch.setenv("MARKETGUARD_PSEUDONYMISATION_KEY", "top-secret-value")
    result = CliRunner().invoke(app, ["config", "show", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "top-secret-value" not in result.stdout
    assert '"pseudonymisation_key": "********"' in result.stdout


def test_slo_and_seller_sla_status_after_an_evaluation(tmp_path, repo):
    from datetime import UTC, datetime

    services = build_services(load_settings(data_dir=tmp_path, rules_dirs=[repo / "rules"]))
    analyst = services.keys.create("a", "analyst")
    own = services.keys.create("s1", "seller:s-1")
    services.sla.run_once(datetime.now(UTC))
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        slos = client.get("/api/v1/slos", headers={"Authorization": f"Bearer {analyst}"}).json()
        assert {s["slo_id"] for s in slos} >= {"checkout-availability", "checkout-latency"}
        assert {w["window"] for w in slos[0]["windows"]} >= {"5m", "1h"}
        # no support tickets yet: no report, and a seller may never ask for another seller
        assert client.get("/api/v1/sellers/s-1/sla", headers={"Authorization": f"Bearer {own}"}).status_code == 404
        assert client.get("/api/v1/sellers/s-2/sla", headers={"Authorization": f"Bearer {own}"}).status_code == 404
        assert client.get("/api/v1/slos", headers={"Authorization": f"Bearer {own}"}).status_code == 403
    services.close()
