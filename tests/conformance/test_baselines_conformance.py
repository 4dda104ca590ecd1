"""Fraud baselines persist the same on both stores: counts add up, first-seen times keep the
minimum, an alert window belongs to one run, and the same events raise the same detections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from _compare import assert_same, detection_keys

from collectors.accesslog import parse_records
from collectors.privacy import Pseudonymiser
from correlator.baselines import FRAUD_NOVELTY_SIGNALS, Baselines, open_baselines, run_baselines
from marketguard.store import MatchWindow

T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def frame(**columns: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def records(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(int(v) if not isinstance(v, str) else v for v in row) for row in df.itertuples(index=False))


def story(base: Baselines, *, twist: bool = False) -> dict[str, Any]:
    """Every Baselines call with fixed values; what each answered."""
    out: dict[str, Any] = {}
    base.add("clicks", frame(entity=["as1|c1", "as2|c1", "as1|c1"], bucket=[10, 10, 11], count=[3, 5, 2]))
    base.add("clicks", frame(entity=["as1|c1", "as3|c2"], bucket=[10, 12], count=[4 + twist, 1]))
    base.add("other", frame(entity=["as1|c1"], bucket=[10], count=[100]))
    base.add("clicks", frame(entity=[], bucket=[], count=[]))
    out["counts"] = [records(base.counts("clicks", 10, 11)), records(base.counts("clicks", 0, 1 << 62)),
                     records(base.counts("other", 11, 20))]
    out["alerted"] = [base.alerted("clicks", "as1|c1", 10, 5), base.alerted("clicks", "as1|c1", 10, 5),
                      base.alerted("clicks", "as1|c1", 10, 7), base.alerted("clicks", "as1|c1", 11, 7)]
    first = base.counted()
    base.set_counted(40)
    base.set_counted(30)  # never moves back
    out["counted"] = [first, base.counted()]
    ns = 1_700_000_000_000_000_000
    base.learn("ato", frame(entity=["u1", "u1", "u2"], attribute=["country"] * 3, value=["DE", "BR", "FR"],
                            first_seen=[ns + 5, ns + 9, ns]))
    base.learn("ato", frame(entity=["u1", "u1"], attribute=["country"] * 2, value=["DE", "BR"], first_seen=[ns + 7, ns + 1]))
    out["known"] = [records(base.known("ato", ["u1", "u9"])), records(base.known("ato", ["u1", "u2"])),
                    records(base.known("other", ["u1"]))]
    return out


def test_same_calls_same_baselines(open_store):
    answers = {name: story(open_baselines(open_store(name))) for name in ("duckdb", "elasticsearch")}  # type: ignore[arg-type]
    duck = answers["duckdb"]
    assert duck["counts"][0] == [("as1|c1", 10, 7), ("as1|c1", 11, 2), ("as2|c1", 10, 5)]
    assert duck["alerted"] == [True, True, False, True] and duck["counted"] == [0, 40]
    assert ("u1", "country", "BR", 1_700_000_000_000_000_001) in duck["known"][0]
    for key in duck:
        assert_same(duck[key], answers["elasticsearch"][key], key)


def test_one_different_count_makes_the_comparison_fail(open_store):
    duck = story(open_baselines(open_store("duckdb")))  # type: ignore[arg-type]
    es = story(open_baselines(open_store("elasticsearch")), twist=True)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="counts differ"):
        assert_same(duck["counts"], es["counts"], "counts")


def test_concurrent_adds_lose_no_count(backend, open_store):
    """Four writers (on Elasticsearch across two store instances) add to the same windows."""
    first = open_store(backend)
    second = open_store(backend, prefix=first.names.prefix) if backend == "elasticsearch" else first
    writers = [open_baselines(first), open_baselines(second)]
    batch = frame(entity=[f"e{i}" for i in range(20)], bucket=[1] * 20, count=[1] * 20)
    errors: list[BaseException] = []

    def add(base: Baselines) -> None:
        try:
            for _ in range(5):
                base.add("s", batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(writers[n % 2],)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert records(writers[1].counts("s", 0, 10)) == [(f"e{i}", 1, 20) for i in sorted(range(20), key=str)]  # type: ignore[union-attr]


def _login(at: datetime, user: str, ok: bool, country: str, asn: int) -> dict[str, Any]:
    return {"@timestamp": at.isoformat(), "event.action": "login_success" if ok else "login_failed", "user.id": user,
            "client.geo.country_iso_code": country, "source.as.number": asn, "source.ip": "81.9.9.9"}


def test_same_events_same_fraud_detections(open_store):
    """Account takeover (novelty over persisted first-seen values), in two runs on each store."""
    t = T0 + timedelta(hours=2)
    history = [_login(T0, "victim", True, "DE", 3320), _login(T0, "typo", True, "FR", 3215)]
    attack = [_login(t + timedelta(seconds=20 * k), "victim", False, "BR", 28573) for k in range(4)]
    attack += [_login(t + timedelta(seconds=100), "victim", True, "BR", 28573)]
    attack += [_login(t + timedelta(seconds=20 * k), "typo", k == 4, "FR", 3215) for k in range(5)]
    pseudo = Pseudonymiser(b"k" * 32)
    found = {}
    for name in ("duckdb", "elasticsearch"):
        store = open_store(name)
        base = open_baselines(store)
        got = []
        for first_line, recs in ((1, history), (10, attack)):
            before = store.max_seq()
            store.append_events(parse_records(recs, source="t", pseudonymiser=pseudo, first_line=first_line).events)
            got += run_baselines(store, base, MatchWindow(seq_after=before), volume=[], ratios=[],  # type: ignore[arg-type]
                                 novelty=FRAUD_NOVELTY_SIGNALS)
        found[name] = (detection_keys(got), [d.evidence for d in got], base.counted())  # type: ignore[union-attr]
    duck = found["duckdb"]
    assert [e["user.id"] for e in duck[1]] == ["victim"] and duck[1][0]["known"]["client.geo.country_iso_code"] == ["DE"]
    assert duck[2] == 12
    assert_same(duck[0], found["elasticsearch"][0], "detections")
    assert_same(duck[1], found["elasticsearch"][1], "evidence")
    assert duck[2] == found["elasticsearch"][2]
