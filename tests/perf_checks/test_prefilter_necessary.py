"""The prefilter only skips work: every event a rule matches is among the rule's candidates.

Checked two ways: by brute force on small regexes (every string over a small alphabet that
the regex matches holds one of the extracted literals), and on every event of the security
pack's test cases against our rules and SigmaHQ's, through the real store and scan.
No timing is asserted here; ``make bench`` prints the figures.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from correlator.engine import run_rules
from correlator.prefilter import candidates, regex_literals
from correlator.rules import load_rules
from marketguard.store import MatchWindow
from marketguard.store.duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "rules" / "cases" / "security"


@pytest.mark.parametrize(
    ("pattern", "alphabet", "length"),
    [
        (r"(?i)(?:=|\?)(?:\||;|&&)(?:\s|\+)*(?:ab|b)(?:\s|$)", "=?|;&+ aB", 6),
        (r"(?i)a(?:b|;;)?c[;|]{1,2}", "abc;|A", 7),
        (r"(?i)(?:\{\{|\$\{)(?:\s|\+)*\d+(?:\s)*(?:\*|%2a)\d", "{$ +1*%2a", 6),
        (r"(?i)[?&;](?:a[_-]?b|cd)=[^&]", "?&;a_-bcd=x", 6),
        (r"(?i)un(?:\s|/\*.{0,3}?\*/)+se", "un se/*x", 7),
        (r"(?i)(?:xx|%78)(?:\s|%20)*(?:y|\()", "x%78 20y(", 6),
        (r"(?:;|\|)(?:ab|cd){2,}e", ";|abcde", 7),
        (r"(?i)(?:<|%3c)[a-c]{2}(?:>|$)", "<%3cabC>", 6),
    ],
)
def test_regex_literals_are_necessary_brute_force(pattern: str, alphabet: str, length: int) -> None:
    lits = regex_literals(pattern)
    assert lits, f"expected literals for {pattern}"
    rx = re.compile(pattern)
    matched = 0
    for n in range(1, length + 1):
        for chars in itertools.product(alphabet, repeat=n):
            text = "".join(chars)
            if rx.search(text):
                matched += 1
                low = text.lower()
                assert any(lit in low for lit in lits), (pattern, text, sorted(lits))
    assert matched, "the alphabet must produce some matches, or the test proves nothing"


def test_unbounded_or_unparsable_regexes_give_no_literal() -> None:
    assert regex_literals(r"(?i)[a-z]+\d*") is None
    assert regex_literals(r"(") is None
    assert regex_literals(r"ab?") is None  # 'a' alone is too short to scan for


def _case_events() -> pa.Table:
    spec = importlib.util.spec_from_file_location("_security_cases", REPO / "tests" / "rules" / "test_security_rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tables = []
    for path in sorted(CASES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for kind in ("positive", "negative"):
            items = module.expand_events(doc.get(kind) or [], f"{path.name}:{kind}")
            if items:
                tables.append(module.build_events(items, f"{path.name}:{kind}"))
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def case_store():
    store = DuckDBStore(":memory:", unique_ids=False)
    store.append_events(_case_events())
    yield store
    store.close()


def test_every_case_match_is_a_candidate(case_store, repo, corpora) -> None:
    rules = load_rules([repo / "rules", corpora / "sigmahq"]).for_categories({"webserver"})
    needles = {r.id: r.needles for r in rules.detections if r.needles}
    fields = sorted({f for need in needles.values() for f, _ in need})
    cands = candidates(case_store.scan(MatchWindow(), fields, batch_rows=97), needles)
    checked = 0
    for rule in rules.detections:
        if rule.id not in cands:
            continue
        full = case_store.match(rule.query, MatchWindow(), ["event.id"])
        if not full.num_rows:
            continue
        seq_of = dict(case_store.sql('SELECT "event.id", _seq FROM events'))
        found = {seq_of[i] for i in full.column(0).to_pylist()}
        missing = found - set(cands[rule.id].tolist())
        assert not missing, f"{rule.title}: matched events {sorted(missing)} are not candidates"
        checked += 1
    assert checked >= 20  # most of our rules have positive cases


def test_engine_gives_the_same_detections_with_and_without_prefilter(case_store, repo, corpora) -> None:
    rules = load_rules([repo / "rules", corpora / "sigmahq"]).for_categories({"webserver"})
    fast = run_rules(case_store, rules, MatchWindow())
    full = run_rules(case_store, rules, MatchWindow(), prefilter=False)
    key = lambda ds: sorted((d.rule_id, d.event_ids) for d in ds)  # noqa: E731
    assert key(fast.detections) == key(full.detections)
    assert fast.detections, "the cases must trigger detections, or the comparison proves nothing"


def test_candidate_match_fetches_named_columns_and_falls_back_to_all(case_store) -> None:
    seqs = [r[0] for r in case_store.sql("SELECT _seq FROM events ORDER BY _seq LIMIT 5")]
    window = MatchWindow().only(seqs)
    quoted = case_store.match('"labels" IS NULL AND "url.original" IS NOT NULL', window, ["event.id"])
    unquoted = case_store.match("labels IS NULL AND _seq > 0", window, ["event.id"])  # not quoted
    assert quoted.num_rows == unquoted.num_rows == 5


def test_scan_folds_case_like_the_queries_on_ascii_and_unicode_text() -> None:
    from correlator.prefilter import _automaton, _scan

    column = pa.array(["GET /A", None, "\u017fleep(5)", "x UNION select", "\u212a8s", ""], pa.string())
    automaton = _automaton(["sleep(", "union", "k8s", "get /a"])
    hits = {idx: rows.tolist() for idx, rows in _scan(column, automaton)}
    assert hits == {0: [2], 1: [3], 2: [4], 3: [0]}  # long s and Kelvin sign fold as RE2 (?i) does
    sliced = {idx: rows.tolist() for idx, rows in _scan(column.slice(2, 3), automaton)}
    assert sliced == {0: [0], 1: [1], 2: [2]}
