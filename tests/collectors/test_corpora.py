"""Every line of the four real corpora is parsed or dead-lettered, with the counts of SOURCE.md.

The corpora are read in place from ``../shared/corpora/logs`` (never copied into the repo).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import collectors.accesslog as accesslog
from collectors import ParsedBatch, Pseudonymiser, read_access_log

HONEYNET = [f"honeynet-sotm34/raw/access_log{s}" for s in ("", ".1", ".2", ".3", ".4", ".5", ".6")]

#: file -> (lines, parsed) as stated in each corpus's SOURCE.md
EXPECTED = {
    "apache-elastic-examples/apache_logs": (10_000, 10_000),
    "hackers-basjes/hackers-access.log": (3_456, 3_456),
    "scanners-dvwa-ocatak/acunetix.txt": (6_539, 6_539),
    "scanners-dvwa-ocatak/netsparker.txt": (7_314, 7_314),
    "scanners-dvwa-ocatak/w3af.txt": (3_996, 3_996),
    **{name: (None, None) for name in HONEYNET},  # 3,554 in 7 files, checked together
}


@pytest.fixture(scope="module")
def logs() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "logs"
    assert path.is_dir(), f"the shared corpora are expected at {path}"
    return path


@pytest.fixture(scope="module")
def p() -> Pseudonymiser:
    return Pseudonymiser(b"corpora-test-key")


def read(path: Path, p: Pseudonymiser) -> ParsedBatch:
    batches = list(read_access_log(path, "auto", p, batch_lines=4_000))
    events = pa.concat_tables([b.events for b in batches]).sort_by("log.file.line")
    dead = [d for b in batches for d in b.dead_letters]
    return ParsedBatch(events, dead, sum(b.lines_read for b in batches))


@pytest.fixture(scope="module")
def parsed(logs: Path, p: Pseudonymiser) -> dict[str, ParsedBatch]:
    return {name: read(logs / name, p) for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_line_is_an_event_or_a_dead_letter(parsed: dict[str, ParsedBatch], name: str) -> None:
    batch = parsed[name]
    lines, expected_events = EXPECTED[name]
    assert batch.events.num_rows + len(batch.dead_letters) == batch.lines_read
    if lines is not None:
        assert (batch.lines_read, batch.events.num_rows) == (lines, expected_events), (
            batch.dead_letters[:3]
        )
    numbers = sorted(
        batch.events.column("log.file.line").to_pylist() + [d.line for d in batch.dead_letters]
    )
    assert numbers == list(range(1, batch.lines_read + 1))
    ids = batch.events.column("event.id").to_pylist()
    assert len(set(ids)) == len(ids)


def test_honeynet_has_3554_lines_all_parsed(parsed: dict[str, ParsedBatch]) -> None:
    batches = [parsed[name] for name in HONEYNET]
    assert sum(b.lines_read for b in batches) == 3_554
    assert sum(b.events.num_rows for b in batches) == 3_554
    methods = Counter(
        m for b in batches for m in b.events.column("http.request.method").to_pylist()
    )
    assert (methods["GET"], methods["POST"], methods["CONNECT"], methods["OPTIONS"]) == (
        2858,
        590,
        59,
        46,
    )
    assert methods[None] == 1  # the binary SOCKS4 probe
    agents = sum(b.events.column("user_agent.original").null_count for b in batches)
    assert agents == 1_833


def test_binary_socks_request_is_parsed_with_an_escaped_target(
    parsed: dict[str, ParsedBatch],
) -> None:
    events = parsed["honeynet-sotm34/raw/access_log.6"].events
    (row,) = [r for r in events.to_pylist() if r["log.file.line"] == 321]
    assert row["http.request.method"] is None and row["http.version"] is None
    assert row["url.original"] == "\\x04\\x01"
    assert row["http.response.status_code"] == 501 and row["source.ip"] == "211.144.162.173"


def test_field_counts_match_source_md(parsed: dict[str, ParsedBatch]) -> None:
    apache = parsed["apache-elastic-examples/apache_logs"].events
    assert Counter(apache.column("http.request.method").to_pylist())["GET"] == 9_952
    assert len(set(apache.column("source.ip").to_pylist())) == 1_753
    hackers = parsed["hackers-basjes/hackers-access.log"].events
    assert Counter(hackers.column("http.request.method").to_pylist()) == {
        "GET": 2_376,
        "POST": 1_080,
    }
    status = Counter(hackers.column("http.response.status_code").to_pylist())
    assert (status[200], status[302], status[403], status[404]) == (2_846, 585, 13, 12)
    netsparker = Counter(
        parsed["scanners-dvwa-ocatak/netsparker.txt"]
        .events.column("http.request.method")
        .to_pylist()
    )
    assert (
        netsparker["GET"],
        netsparker["HEAD"],
        netsparker["POST"],
        netsparker["NETSPARKER"],
    ) == (4_004, 2_038, 1_203, 1)
    w3af = parsed["scanners-dvwa-ocatak/w3af.txt"].events
    assert Counter(w3af.column("user_agent.original").to_pylist())["w3af.org"] == 3_926


def test_truncated_user_agent_is_kept_and_flagged(parsed: dict[str, ParsedBatch]) -> None:
    events = parsed["apache-elastic-examples/apache_logs"].events.to_pylist()
    row = events[8_898]
    assert row["log.file.line"] == 8_899
    assert row["user_agent.original"].startswith("Mozilla/5.0 (compatible; Googlebot/2.1;")
    assert "not closed" in row["labels"]


def test_wrapped_crlf_out_of_order_scanner_logs(parsed: dict[str, ParsedBatch]) -> None:
    for name in ("acunetix.txt", "netsparker.txt", "w3af.txt"):
        rows = parsed[f"scanners-dvwa-ocatak/{name}"].events.to_pylist()
        assert all(not r["source.ip"].startswith('"') for r in rows)
        assert all(not (r["user_agent.original"] or "").endswith('"') for r in rows)
        assert all("\r" not in r["event.original"] for r in rows)
    acunetix = parsed["scanners-dvwa-ocatak/acunetix.txt"].events.column("@timestamp").to_pylist()
    assert (acunetix[0].hour, acunetix[0].minute) == (13, 30)  # 16:30:52 +0300, first line
    assert acunetix[0] > acunetix[-1]  # the file is not in time order; each line keeps its time


def test_fast_and_line_paths_agree_on_the_corpora(
    logs: Path, p: Pseudonymiser, parsed: dict[str, ParsedBatch], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accesslog, "parse_fast", lambda lines: (np.zeros(0, np.int64), {}))
    for name in (
        "apache-elastic-examples/apache_logs",
        "scanners-dvwa-ocatak/netsparker.txt",
        HONEYNET[6],
    ):
        slow = read(logs / name, p).events.drop(["event.ingested"])
        fast = parsed[name].events.drop(["event.ingested"])
        assert slow.equals(fast), name
