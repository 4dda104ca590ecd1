"""Hunting the real corpora: known attacks are found, nothing is lost, no personal data is kept."""

from __future__ import annotations

import re

import duckdb
import pytest

from correlator.engine import run_rules
from marketguard.app.hunt import hunt
from marketguard.config import load_settings
from marketguard.store import MatchWindow


@pytest.fixture(scope="module")
def scanners(corpora, repo, tmp_path_factory):
    logs = corpora / "logs" / "scanners-dvwa-ocatak"
    settings = load_settings(data_dir=tmp_path_factory.mktemp("mg"))
    paths = [logs / "acunetix.txt", logs / "netsparker.txt", logs / "w3af.txt"]
    report, store = hunt(paths, [repo / "rules", corpora / "sigmahq"], settings)
    yield report, store
    store.close()


def titles(report) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in report.detections:
        out[d.rule_title] = out.get(d.rule_title, 0) + 1
    return out


def test_every_scanner_line_is_parsed_or_dead_lettered(scanners):
    report, store = scanners
    assert report.lines == 6_539 + 7_314 + 3_996
    assert report.events + report.dead_letters == report.lines
    assert store.count_events() == report.events


def test_scanner_attacks_are_detected(scanners):
    report, _ = scanners
    found = titles(report)
    assert found.get("Path Traversal Exploitation Attempts", 0) >= 40  # SigmaHQ rule, cs-uri-query = whole target
    assert found.get("SQL Injection Strings In URI", 0) > 0  # a keyword rule SQLite backends cannot run
    assert found.get("Cross Site Scripting Strings", 0) > 0
    assert any("SQL Injection" in t for t in found if not t.startswith("SQL Injection Strings"))  # ours


def test_prefilter_changes_nothing_but_speed(scanners):
    report, store = scanners
    full = run_rules(store, report.rules, MatchWindow(), prefilter=False)
    key = lambda ds: sorted((d.rule_id, d.event_ids) for d in ds)  # noqa: E731
    assert key(full.detections) == key(report.result.detections)


def test_honeypot_awstats_rce_is_detected_and_labels_agree(corpora, repo, tmp_path):
    raw = corpora / "logs" / "honeynet-sotm34" / "raw"
    files = [raw / f"access_log.{i}" for i in range(6, 0, -1)] + [raw / "access_log"]
    report, store = hunt(files, [repo / "rules"], load_settings(data_dir=tmp_path))
    store.close()
    assert report.events + report.dead_letters == report.lines == 3_554
    awstats = [d for d in report.detections if "awstats" in str(d.evidence.get("url.original", "")).lower()
               and "configdir=|" in str(d.evidence.get("url.original", "")).lower().replace("%7c", "|")]
    assert awstats, "the AWStats configdir command injection (CVE-2005-0116) must be detected"


def test_no_raw_email_or_card_number_anywhere_in_the_duckdb_file(tmp_path, repo):
    log = tmp_path / "pii.log"
    log.write_text(
        '10.0.0.1 - - [20/Nov/2026:10:00:00 +0000] "GET /api/v1/newsletter?email=jane.doe%40example.com HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
        '10.0.0.2 - - [20/Nov/2026:10:00:01 +0000] "POST /api/v1/checkout?card=4539%201488%200343%206467&mail=john@example.org HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
        'garbage line with bob@example.net and 4111-1111-1111-1111\n'
    )
    db = tmp_path / "kept.duckdb"
    report, store = hunt([log], [repo / "rules"], load_settings(data_dir=tmp_path / "d"), keep_db=db)
    store.close()
    assert report.dead_letters == 1
    con = duckdb.connect(str(db), read_only=True)
    text = []
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
        for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
            text.append(" ".join(str(v) for v in row))
    con.close()
    blob = "\n".join(text)
    assert "10.0.0.1" in blob  # the scan really read the rows
    for raw in ("jane.doe", "john@example.org", "bob@example.net", "4539 1488 0343 6467", "4539%201488%200343%206467", "4111-1111-1111-1111"):
        assert raw not in blob, raw
    assert not re.search(r"4539\D?1488\D?0343\D?6467", blob)
