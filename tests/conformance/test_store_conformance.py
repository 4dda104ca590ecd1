"""One suite, both stores: the same events and rules give the same answers on DuckDB and ES."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from _compare import assert_same, detection_keys
from _stores import drop_prefix

from collectors.accesslog import read_access_log
from collectors.privacy import Pseudonymiser
from correlator.engine import run_rules
from correlator.rules import RuleSet, load_rules
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA, DeadLetter
from marketguard.store import MatchWindow, Store
from marketguard.store.duckdb import DuckDBStore
from marketguard.store.elasticsearch import ElasticsearchStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def events(n: int, *, start: int = 0, dataset: str = "api.access", **fields: object) -> pa.Table:
    """``n`` synthetic events with distinct ids and microsecond-distinct times."""
    rows = []
    for i in range(start, start + n):
        row = {name: None for name in EVENT_FIELDS}
        row |= {
            "@timestamp": T0 + timedelta(seconds=i // 3, microseconds=i % 3),
            "event.id": f"ev-{i:05d}", "event.dataset": dataset,
            "event.ingested": T0 + timedelta(hours=1),
            "event.original": f"GET /Shop/Item/{i}?Q=Union+Select HTTP/1.1",
            "url.original": f"/Shop/Item/{i}?Q=Union+Select", "url.path": f"/Shop/Item/{i}",
            "http.response.status_code": 200 + (i % 4) * 100, "http.response.body.bytes": i * 10,
            "source.ip": f"10.0.0.{i % 7}", "marketplace.payment.amount": i / 4,
            "labels": '{"log.parse_warning": "Odd Line"}' if i % 5 == 0 else None,
        }
        row.update(fields)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def test_counts_windows_and_order(backend, open_store):
    store: Store = open_store(backend)
    assert store.max_seq() == 0 and store.count_events() == 0
    assert store.append_events(events(40)) == 40
    assert store.append_events(events(10, start=40, dataset="apm.span")) == 10
    assert (store.count_events(), store.count_events("apm.span"), store.max_seq()) == (50, 10, 50)
    got = store.query_events(MatchWindow())
    assert got.schema.names == EVENT_SCHEMA.names  # (DuckDB names UTC 'Etc/UTC')
    assert got.to_pylist() == events(40).to_pylist() + events(10, start=40, dataset="apm.span").to_pylist()
    window = MatchWindow(seq_after=5, seq_upto=20, time_after=T0 + timedelta(seconds=2, microseconds=1))
    ids = store.query_events(window, ["event.id"]).column(0).to_pylist()
    assert ids == [f"ev-{i:05d}" for i in range(8, 20)]
    assert store.query_events(MatchWindow(dataset="apm.span"), ["event.id"], limit=3).num_rows == 3
    only = store.query_events(MatchWindow(seq_upto=30).only([3, 9, 31, 12]), ["event.id"])
    assert only.column(0).to_pylist() == ["ev-00002", "ev-00008", "ev-00011"]


def test_conformance_same_rows_on_both(open_store):
    """The same appends answer identically, cell for cell, on both stores."""
    stores = {name: open_store(name) for name in ("duckdb", "elasticsearch")}
    for store in stores.values():
        store.append_events(events(30))
        store.append_events(events(30, start=15))
    windows = [MatchWindow(), MatchWindow(seq_after=10), MatchWindow(time_upto=T0 + timedelta(seconds=4)),
               MatchWindow(dataset="api.access", seq_upto=7)]
    for window in windows:
        a, b = (s.query_events(window).to_pylist() for s in stores.values())
        assert_same(a, b, "events")
    scans = {name: sorted(pa.Table.from_batches(list(s.scan(MatchWindow(seq_after=3), ["url.original", "labels"])))
                          .to_pylist(), key=lambda r: r["_seq"]) for name, s in stores.items()}
    assert_same(scans["duckdb"], scans["elasticsearch"], "scans")


def test_replays_are_idempotent(backend, open_store):
    store = open_store(backend)
    assert store.append_events(events(20)) == 20
    assert store.append_events(events(20)) == 0
    twice = pa.concat_tables([events(5, start=18), events(5, start=18)])
    assert store.append_events(twice) == 3  # 20, 21, 22 are new; 18, 19 and the repeats are not
    assert (store.count_events(), store.max_seq()) == (23, 23)


def test_dead_letters_and_checkpoints(backend, open_store):
    store = open_store(backend)
    store.append_dead_letters([DeadLetter("a.log", 3, "bad request line", "GET"),
                               DeadLetter("a.log", 1, "truncated", "x")])
    got = store.dead_letters(limit=10)
    assert [(d["source"], d["line"], d["reason"], d["raw"]) for d in got] == [
        ("a.log", 1, "truncated", "x"), ("a.log", 3, "bad request line", "GET")]
    assert isinstance(got[0]["received"], datetime)
    assert store.get_checkpoint("engine") is None
    store.set_checkpoint("engine", {"seq": 5, "at": "2026-03-01"})
    store.set_checkpoint("engine", {"seq": 9})
    assert store.get_checkpoint("engine") == {"seq": 9}


def test_elasticsearch_sequence_numbers_survive_a_restart(open_store, tmp_path):
    """ES keeps its ingest counter in a state document (DuckDB's restart: tests/marketguard)."""
    backend = "elasticsearch"
    store = open_store(backend, prefix="mgtest-restart-" + tmp_path.name[-8:].lower().replace("_", "-"))
    store.append_events(events(5))
    again = open_store(backend, prefix=store.names.prefix)
    assert again.max_seq() == 5
    assert again.append_events(events(3, start=5)) == 3
    assert again.query_events(MatchWindow(seq_after=5), ["event.id"]).column(0).to_pylist() == [
        "ev-00005", "ev-00006", "ev-00007"]


# -- rules ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rule_dirs(corpora, repo) -> list:
    return [repo / "rules" / "security", corpora / "sigmahq" / "rules" / "web",
            corpora / "sigmahq" / "rules-threat-hunting" / "web"]


#: Events kept per rule in the sample, and events no rule matches (osmem indexes ~250 docs/s).
PER_RULE, UNMATCHED = 12, 300


@pytest.fixture(scope="module")
def scanner_events(corpora, rule_dirs) -> tuple[list[pa.Table], list[DeadLetter]]:
    """A sample of the three scanner corpora: up to PER_RULE events each rule matches on the
    reference store (DuckDB) plus UNMATCHED events none does, so every firing rule and plenty
    of near misses are compared, in the corpora's order."""
    logs = corpora / "logs" / "scanners-dvwa-ocatak"
    pseudo = Pseudonymiser(b"conformance-key")
    batches = [b for name in ("acunetix.txt", "netsparker.txt", "w3af.txt")
               for b in read_access_log(logs / name, "auto", pseudo, batch_lines=5000)]
    reference = DuckDBStore(":memory:")
    for b in batches:
        reference.append_events(b.events)
    rules = load_rules(rule_dirs, "duckdb").for_categories({"webserver"})
    result = run_rules(reference, rules, MatchWindow(), correlate=False)
    reference.close()
    keep: set[str] = set()
    for table in result.matched.values():
        keep.update(table.column("event.id").to_pylist()[:PER_RULE])
    everything = pa.concat_tables([b.events for b in batches])
    ids = everything.column("event.id").to_pylist()
    keep.update([i for i in ids if i not in keep][::max(1, len(ids) // UNMATCHED)][:UNMATCHED])
    sample = everything.filter(pa.compute.is_in(everything.column("event.id"), value_set=pa.array(sorted(keep))))
    return sample.to_batches(max_chunksize=400), [d for b in batches for d in b.dead_letters]


def _loaded(open_store, name, tables, drop: str | None = None) -> Store:
    store = open_store(name)
    for batch in tables:
        table = pa.Table.from_batches([batch])
        if drop is not None:
            table = table.filter(pa.compute.not_equal(table.column("event.id"), drop))
        store.append_events(table)
    return store


def _detect(store: Store, rules: RuleSet, prefilter: bool = True) -> list:
    result = run_rules(store, rules, MatchWindow(), prefilter=prefilter)
    assert not result.errors, result.errors
    return detection_keys(result.detections)


@pytest.fixture(scope="module")
def both(es_client, scanner_events, rule_dirs, tmp_path_factory):
    """The sample loaded into both stores, with the rules compiled for each."""
    made: list = []
    pairs = {}
    for name in ("duckdb", "elasticsearch"):
        opener = _ModuleStores(es_client, tmp_path_factory.mktemp("stores"), made)
        store = _loaded(opener, name, scanner_events[0])
        store.append_dead_letters(scanner_events[1])
        rules = load_rules(rule_dirs, store.dialect).for_categories({"webserver"})
        assert not rules.failures, rules.failures
        pairs[name] = (store, rules)
    yield pairs
    _ModuleStores.close(made, es_client)


class _ModuleStores:
    """``open_store`` for a module-scoped fixture."""

    def __init__(self, client, tmp, made: list) -> None:
        self.client, self.tmp, self.made = client, tmp, made

    def __call__(self, name: str) -> Store:
        if name == "duckdb":
            store: Store = DuckDBStore(self.tmp / "ref.duckdb")
        else:
            store = ElasticsearchStore(self.client, prefix=f"mgtest-sample-{uuid.uuid4().hex[:8]}", owns_client=False)
        self.made.append(store)
        return store

    @staticmethod
    def close(made: list, client) -> None:
        for store in made:
            store.close()
            if isinstance(store, ElasticsearchStore):
                drop_prefix(client, store.names.prefix)


@pytest.mark.parametrize("prefilter", [True, False], ids=["prefilter", "full"])
def test_same_rules_same_detections(both, scanner_events, prefilter):
    found = {}
    for name, (store, rules) in both.items():
        assert store.count_events() == sum(t.num_rows for t in scanner_events[0]) > 500
        found[name] = _detect(store, rules, prefilter)
    assert len(found["duckdb"]) > 200
    assert len({k[0] for k in found["duckdb"]}) > 15  # of ours and SigmaHQ's, keyword rules included
    assert_same(found["duckdb"], found["elasticsearch"], "detections")


def test_a_lost_event_makes_the_comparison_fail(both, open_store, scanner_events):
    duck_store, duck_rules = both["duckdb"]
    duck = _detect(duck_store, duck_rules)
    victim = duck[0][2][0]  # an event some rule matched
    fired = {k[0] for k in duck if victim in k[2]}
    _, es_rules = both["elasticsearch"]
    subset = RuleSet([r for r in es_rules.detections if r.id in fired])
    duck = [k for k in duck if k[0] in fired]
    es = _detect(_loaded(open_store, "elasticsearch", scanner_events[0], drop=victim), subset)
    with pytest.raises(AssertionError, match="detections differ"):
        assert_same(duck, es, "detections")


class _RecordingSink:
    """Our own test double of the engine's sink: remembers every detection it is given."""

    def __init__(self) -> None:
        self.detections: list = []

    def record(self, detections) -> None:
        self.detections.extend(detections)


def test_live_engine_follows_ingest_order_on_both(open_store, scanner_events, rule_dirs, tmp_path):
    """The live engine's checkpointed sequence windows give the same detections, cycle by cycle,
    and a restarted engine (new instance, same store) repeats none."""
    from correlator.live import LiveEngine
    from marketguard.config import load_settings

    settings = load_settings(data_dir=tmp_path, lookback_s=0)
    batches = scanner_events[0][:3]
    cycles: dict[str, list] = {}
    for name in ("duckdb", "elasticsearch"):
        store = open_store(name)
        rules = load_rules(rule_dirs, store.dialect).for_categories({"webserver"})
        sink = _RecordingSink()
        seen = []
        for n, batch in enumerate(batches):
            store.append_events(pa.Table.from_batches([batch]))
            engine = LiveEngine(store, rules, sink, settings)  # a fresh engine each cycle: a restart
            engine.run_once()
            seen.append(detection_keys(sink.detections))
            assert store.get_checkpoint("engine")["seq"] == store.max_seq(), n
        cycles[name] = seen
    assert cycles["duckdb"][-1], "the sample's first batches hold attacks"
    assert len(set(cycles["duckdb"][-1])) == len(cycles["duckdb"][-1])  # nothing repeated
    for n in range(len(batches)):
        assert_same(cycles["duckdb"][n], cycles["elasticsearch"][n], f"detections after cycle {n}")
