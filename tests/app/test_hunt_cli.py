"""`marketguard hunt` and `marketguard rules check`: the interfaces scripts rely on."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from marketguard.app.cli import app

runner = CliRunner()

ATTACKS = [
    '203.0.113.9 - - [20/Nov/2026:10:00:00 +0000] "GET /api/v1/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1" 500 12 "-" "Mozilla/5.0"',
    '203.0.113.9 - - [20/Nov/2026:10:00:01 +0000] "GET /static/../../../../etc/passwd HTTP/1.1" 400 12 "-" "Mozilla/5.0"',
    '198.51.100.7 - - [20/Nov/2026:10:00:02 +0000] "GET /api/v1/products/1 HTTP/1.1" 200 512 "-" "Mozilla/5.0"',
    '198.51.100.7 - - [20/Nov/2026:10:00:03 +0000] "GET /api/v1/newsletter?email=jane.doe%40example.com&card=4111111111111111 HTTP/1.1" 200 5 "-" "Mozilla/5.0"',
    "this is not an access log line",
]


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "access.log"
    path.write_text("\n".join(ATTACKS) + "\n")
    return path


def hunt(*args: str, data_dir) -> object:
    return runner.invoke(app, ["hunt", *args, "--data-dir", str(data_dir)])


def test_jsonl_output_has_one_object_per_detection_with_the_documented_fields(log, repo, tmp_path):
    result = hunt(str(log), "--rules", str(repo / "rules"), "--output", "jsonl", data_dir=tmp_path / "d")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert records, result.output
    for rec in records:
        for key in ("rule.id", "rule.title", "rule.level", "event.id", "@timestamp", "source.ip", "url.original"):
            assert key in rec, (key, rec)
    hit_ips = {r["source.ip"] for r in records}
    assert "203.0.113.9" in hit_ips
    assert all(r["source.ip"] != "198.51.100.7" for r in records)


def test_personal_data_never_reaches_the_output(log, repo, tmp_path):
    result = hunt(str(log), "--rules", str(repo / "rules"), "--output", "jsonl", data_dir=tmp_path / "d")
    assert "jane.doe" not in result.output
    assert "4111111111111111" not in result.output


def test_gzip_input_and_csv_output(log, repo, tmp_path):
    gz = tmp_path / "access.log.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    result = hunt(str(gz), "--rules", str(repo / "rules"), "--output", "csv", data_dir=tmp_path / "d")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header.startswith("@timestamp,rule.id,rule.title,rule.level")
    assert "203.0.113.9" in result.stdout


def test_unparsable_lines_are_counted_and_shown_not_dropped(log, repo, tmp_path):
    result = hunt(str(log), "--rules", str(repo / "rules"), data_dir=tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "1 dead-lettered" in result.output
    assert ":5:" in result.output  # file:line of the dead letter


def test_missing_file_exits_2_with_a_one_line_reason(repo, tmp_path):
    result = hunt(str(tmp_path / "nope.log"), "--rules", str(repo / "rules"), data_dir=tmp_path / "d")
    assert result.exit_code == 2
    assert "nope.log: no such file" in result.output


def test_missing_rules_option_is_a_usage_error(log, tmp_path):
    result = hunt(str(log), data_dir=tmp_path / "d")
    assert result.exit_code == 2


def test_rules_check_json_lists_failures_with_reasons(tmp_path, repo):
    (tmp_path / "bad.yml").write_text("title: x\nid: 3b1c7a5e-0000-4000-8000-000000000001\nlogsource: {category: webserver}\ndetection: {condition: sel}\n")
    result = runner.invoke(app, ["rules", "check", str(repo / "rules"), str(tmp_path), "--output", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["loaded"] >= 15
    assert [f["file"] for f in doc["failed"]] == [str(tmp_path / "bad.yml")]
    assert doc["failed"][0]["reason"]
