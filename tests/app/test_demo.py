"""The demo end to end through the live service: recall, precision and latency from ground truth."""

from __future__ import annotations

from rich.console import Console

from marketguard.app.demo import run_demo
from marketguard.config import load_settings


def test_demo_detects_every_campaign_without_false_positives(tmp_path):
    console = Console(record=True, width=160)
    scores = run_demo(load_settings(data_dir=tmp_path), normal=5_000, seed=11, console=console)
    assert {s.name for s in scores} >= {"sql-injection", "credential-stuffing", "order-enumeration"}
    missed = {s.name: s.recall for s in scores if s.recall < 1.0}
    assert missed == {}
    text = console.export_text()
    assert "benign (false positives): 0" in text
    assert (tmp_path / "marketguard.duckdb").exists()
    assert "latency" in text
    assert "verification intact" in text  # the audit chain over everything the playbooks did
    assert "← slow seller" in text and "Seller SLA breach" in text  # the slow seller got its own ticket
    assert "SLO burn rate: Checkout" in text  # the outage became an availability incident
