"""Behavioural baselines (correlator.baselines) over real DuckDB stores.

Volume: an entity far above its own history alerts with the numbers in its evidence; a sale day
lifting every entity does not; below ``min_count`` nothing alerts; incremental runs (and a store
reopened from its file) give what one run gives. Ratio and novelty signals: each fires on its
pattern and stays quiet on the legitimate look-alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from collectors.accesslog import parse_records
from collectors.privacy import Pseudonymiser
from correlator.baselines import (
    FRAUD_NOVELTY_SIGNALS,
    FRAUD_RATIO_SIGNALS,
    Baselines,
    InMemoryBaselines,
    VolumeSignal,
    run_baselines,
)
from correlator.baselines_duckdb import DuckDBBaselines
from marketguard.detections import Detection
from marketguard.store.base import MatchWindow
from marketguard.store.duckdb import DuckDBStore

T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
CLICKS = VolumeSignal(
    id="test-clicks", title="clicks per AS and campaign", family="click", action="ad_click",
    entity=("source.as.number", "marketplace.ad.campaign_id"), min_count=20, factor=5.0,
)  # fmt: skip


def click(at: datetime, asn: int, campaign: str = "cmp-1", **extra: Any) -> dict[str, Any]:
    """One ad-click gateway record."""
    return {
        "@timestamp": at.isoformat(), "event.action": "ad_click", "source.ip": "81.1.1.1",
        "source.as.number": asn, "marketplace.ad.campaign_id": campaign, **extra,
    }  # fmt: skip


def steady(
    hours: float, per_window: int, asns: range, start: datetime = T0
) -> list[dict[str, Any]]:
    """``per_window`` clicks per 10 minutes for every AS in ``asns``, evenly spread."""
    out = []
    step = timedelta(minutes=10) / per_window
    for k in range(int(hours * 6 * per_window)):
        out += [click(start + step * k, asn) for asn in asns]
    return out


def load(store: DuckDBStore, records: list[dict[str, Any]], first: int = 1) -> None:
    batch = parse_records(
        records, source="t", pseudonymiser=Pseudonymiser(b"k" * 32), first_line=first
    )
    assert not batch.dead_letters
    store.append_events(batch.events)


def run(
    store: DuckDBStore, baselines: Baselines, window: MatchWindow | None = None
) -> list[Detection]:
    return run_baselines(
        store, baselines, window or MatchWindow(), volume=[CLICKS], ratios=[], novelty=[]
    )


@pytest.fixture(params=["memory", "duckdb"])
def baselines(request: pytest.FixtureRequest, store: DuckDBStore) -> Baselines:
    """Both Baselines implementations."""
    return InMemoryBaselines() if request.param == "memory" else DuckDBBaselines(store)


@pytest.fixture
def store() -> DuckDBStore:
    return DuckDBStore(":memory:")


def test_spike_over_own_history_alerts_with_evidence(
    store: DuckDBStore, baselines: Baselines
) -> None:
    """Two quiet hours of 2 clicks per window, then 40 clicks in 4 minutes: one alert."""
    records = steady(2, 2, range(3320, 3323))
    burst = [click(T0 + timedelta(hours=2, seconds=6 * k), 3320) for k in range(40)]
    load(store, records + burst)
    found = run(store, baselines)
    assert len(found) == 1, [d.evidence for d in found]
    ev = found[0].evidence
    assert ev["source.as.number"] == "3320" and ev["marketplace.ad.campaign_id"] == "cmp-1"
    assert ev["count"] >= 40 and ev["baseline_median"] == pytest.approx(2.0)
    assert ev["factor"] == 5.0 and ev["min_count"] == 20.0
    assert ev["count"] > ev["factor"] * ev["expected"]
    assert set(found[0].tags) == {"marketguard.type.fraud", "marketguard.fraud.click"}
    assert len(found[0].event_ids) == ev["count"]


def test_sale_day_lifting_everyone_does_not_alert(store: DuckDBStore, baselines: Baselines) -> None:
    """Every AS goes from 4 to 40 clicks per window (a sale): the season factor absorbs it."""
    records = steady(2, 4, range(3320, 3330)) + steady(
        1, 40, range(3320, 3330), T0 + timedelta(hours=2)
    )
    load(store, records)
    assert run(store, baselines) == []


def test_below_min_count_never_alerts(store: DuckDBStore, baselines: Baselines) -> None:
    """From zero history to 15 clicks is far above baseline but below min_count (20)."""
    load(store, [click(T0 + timedelta(seconds=10 * k), 3320) for k in range(15)])
    assert run(store, baselines) == []


def test_incremental_runs_match_one_run(tmp_path: Path) -> None:
    """Events fed in three ingest windows, the store closed and reopened between them, give the
    same detections as one run over everything, and a window alerts once."""
    records = steady(2, 2, range(3320, 3323))
    records += [click(T0 + timedelta(hours=2, seconds=6 * k), 3320) for k in range(40)]
    records.sort(key=lambda r: r["@timestamp"])
    whole = DuckDBStore(":memory:")
    load(whole, records)
    expected = run(whole, InMemoryBaselines())
    path = tmp_path / "events.duckdb"
    cuts = [0, len(records) // 2, len(records) - 20, len(records)]
    found: list[Detection] = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        store = DuckDBStore(path)
        before = store.max_seq()
        load(store, records[lo:hi], first=lo + 1)
        found += run(store, DuckDBBaselines(store), MatchWindow(seq_after=before))
        store.close()
    assert [(d.rule_id, d.group) for d in found] == [(d.rule_id, d.group) for d in expected]
    assert len(found) == 1


def test_replayed_window_is_not_counted_twice_and_alerts_again(tmp_path: Path) -> None:
    """A crash after the baselines ran but before their detections were recorded replays the
    same ingest window: the same detection comes back, and the counts do not double."""
    store = DuckDBStore(tmp_path / "e.duckdb")
    records = steady(2, 2, range(3320, 3323))
    records += [click(T0 + timedelta(hours=2, seconds=6 * k), 3320) for k in range(40)]
    load(store, records)
    window = MatchWindow(seq_after=0, seq_upto=store.max_seq())
    first = run(store, DuckDBBaselines(store), window)
    counts = DuckDBBaselines(store).counts(CLICKS.id, 0, 1 << 62)["count"].sum()
    again = run(store, DuckDBBaselines(store), window)
    assert [d.event_ids for d in again] == [d.event_ids for d in first] and len(first) == 1
    assert (
        DuckDBBaselines(store).counts(CLICKS.id, 0, 1 << 62)["count"].sum()
        == counts
        == len(records)
    )
    assert run(store, DuckDBBaselines(store), MatchWindow(seq_after=store.max_seq())) == []


def _payment(at: datetime, ip: str, result: str, card: str = "cf_a") -> dict[str, Any]:
    return {
        "@timestamp": at.isoformat(), "event.action": "payment_authorization", "source.ip": ip,
        "marketplace.payment.result": result, "marketplace.payment.card_fingerprint": card,
        "marketplace.payment.amount": 40.0,
    }  # fmt: skip


def test_decline_ratio(store: DuckDBStore) -> None:
    """10 of 12 declined from one address alerts (ratio in evidence); 40 purchases with 4
    declines behind a NAT do not."""
    records = [
        _payment(T0 + timedelta(minutes=2 * k), "45.1.1.1", "declined" if k < 10 else "approved")
        for k in range(12)
    ]
    records += [
        _payment(
            T0 + timedelta(minutes=k),
            "100.64.0.1",
            "declined" if k % 10 == 0 else "approved",
            f"cf_{k}",
        )
        for k in range(40)
    ]
    load(store, records)
    found = run_baselines(
        store, InMemoryBaselines(), MatchWindow(), volume=[], ratios=FRAUD_RATIO_SIGNALS, novelty=[]
    )
    assert [d.evidence["source.ip"] for d in found] == ["45.1.1.1"]
    assert found[0].evidence["ratio"] >= 0.6 and found[0].evidence["count"] >= 10


def _login(at: datetime, user: str, ok: bool, country: str, asn: int) -> dict[str, Any]:
    return {
        "@timestamp": at.isoformat(), "event.action": "login_success" if ok else "login_failed",
        "user.id": user, "client.geo.country_iso_code": country, "source.as.number": asn,
        "source.ip": "81.9.9.9",
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_failed_logins_then_success_from_new_country(kind: str) -> None:
    """Owner at home; later 4 failures and a success from abroad: alert naming the new values.
    A home user failing 4 times then succeeding at home, and a user with no history, do not."""
    store = DuckDBStore(":memory:")
    base: Baselines = InMemoryBaselines() if kind == "memory" else DuckDBBaselines(store)
    t = T0 + timedelta(hours=2)
    records = [_login(T0, "victim", True, "DE", 3320), _login(T0, "typo", True, "FR", 3215)]
    records += [
        _login(t + timedelta(seconds=20 * k), "victim", False, "BR", 28573) for k in range(4)
    ]
    records += [_login(t + timedelta(seconds=100), "victim", True, "BR", 28573)]
    records += [_login(t + timedelta(seconds=20 * k), "typo", False, "FR", 3215) for k in range(4)]
    records += [_login(t + timedelta(seconds=100), "typo", True, "FR", 3215)]
    records += [
        _login(t + timedelta(seconds=20 * k), "newbie", k == 4, "BR", 28573) for k in range(5)
    ]
    load(store, records)
    found = run_baselines(
        store, base, MatchWindow(), volume=[], ratios=[], novelty=FRAUD_NOVELTY_SIGNALS
    )
    assert [d.evidence["user.id"] for d in found] == ["victim"]
    ev = found[0].evidence
    assert ev["new"] == {"client.geo.country_iso_code": "BR", "source.as.number": "28573"}
    assert ev["known"]["client.geo.country_iso_code"] == ["DE"] and ev["failures"] == 4.0
    assert len(found[0].event_ids) == 5


def test_in_memory_baselines_add_and_read() -> None:
    """The test double adds counts and reads a bucket range back."""
    mem = InMemoryBaselines()
    mem.add("s", pd.DataFrame({"entity": ["a", "a"], "bucket": [1, 2], "count": [3, 4]}))
    mem.add("s", pd.DataFrame({"entity": ["a"], "bucket": [2], "count": [1]}))
    got = mem.counts("s", 2, 5)
    assert got.to_dict("records") == [{"entity": "a", "bucket": 2, "count": 5}]
    assert mem.alerted("s", "a", 2, run=1) and mem.alerted("s", "a", 2, run=1)  # a replay
    assert not mem.alerted("s", "a", 2, run=5)  # a later run: already alerted


def _noise(start: datetime, n: int) -> list[dict[str, Any]]:
    """Access-log-like traffic no signal uses: no action, or an action of no signal."""
    return [
        {"@timestamp": (start + timedelta(seconds=k)).isoformat(), "source.ip": "81.2.2.2",
         "url.path": f"/api/v1/products/{k}", **({"event.action": "page_view"} if k % 2 else {})}
        for k in range(n)
    ]  # fmt: skip


def test_signals_read_only_their_events_whatever_the_traffic_around_them(store: DuckDBStore) -> None:
    """Unrelated traffic between the clicks changes nothing, and an action written in another
    case (``AD_CLICK``) still counts: the burst alerts with every one of its clicks."""
    records = steady(2, 2, range(3320, 3323)) + _noise(T0, 3_000)
    burst = [click(T0 + timedelta(hours=2, seconds=6 * k), 3320, **{"event.action": "AD_CLICK"}) for k in range(40)]
    load(store, sorted(records + burst + _noise(T0 + timedelta(hours=2), 500), key=lambda r: r["@timestamp"]))
    found = run(store, InMemoryBaselines())
    assert [d.evidence["source.as.number"] for d in found] == ["3320"]
    assert found[0].evidence["count"] >= 40 and len(found[0].event_ids) == found[0].evidence["count"]


def test_novelty_learns_from_every_event_of_an_account(store: DuckDBStore) -> None:
    """An account's countries and networks are learnt from all its events, not only logins: a
    victim known only from browsing at home alerts on failures then a success from abroad; a
    traveller who browsed from that country before does not."""
    t = T0 + timedelta(hours=2)
    browse = [
        {"@timestamp": T0.isoformat(), "event.action": "page_view", "user.id": user, "source.ip": "81.9.9.9",
         "client.geo.country_iso_code": country, "source.as.number": asn}
        for user, country, asn in (("victim", "DE", 3320), ("traveller", "DE", 3320), ("traveller", "BR", 28573))
    ]  # fmt: skip
    records = [*browse, *_noise(T0, 200)]
    for user in ("victim", "traveller"):
        records += [_login(t + timedelta(seconds=20 * k), user, False, "BR", 28573) for k in range(4)]
        records += [_login(t + timedelta(seconds=100), user, True, "BR", 28573)]
    load(store, records)
    found = run_baselines(store, InMemoryBaselines(), MatchWindow(), volume=[], ratios=[], novelty=FRAUD_NOVELTY_SIGNALS)
    assert [d.evidence["user.id"] for d in found] == ["victim"]
    assert found[0].evidence["known"]["client.geo.country_iso_code"] == ["DE"]


def test_a_window_without_fraud_events_leaves_the_baselines_as_they_were(tmp_path: Path) -> None:
    """Ingest windows of unrelated traffic raise nothing and store nothing; the clicks of the
    next window are judged against the history as if those windows had not been there."""
    store = DuckDBStore(tmp_path / "e.duckdb")
    base = DuckDBBaselines(store)
    load(store, steady(2, 2, range(3320, 3323)))
    run(store, base, MatchWindow(seq_after=0))
    before, counts = store.max_seq(), base.counts(CLICKS.id, 0, 1 << 62)
    load(store, _noise(T0 + timedelta(hours=2), 1_000), first=10_000)
    assert run(store, base, MatchWindow(seq_after=before)) == []
    assert base.counts(CLICKS.id, 0, 1 << 62).equals(counts)
    burst = store.max_seq()
    load(store, [click(T0 + timedelta(hours=2, seconds=6 * k), 3320) for k in range(40)], first=20_000)
    found = run(store, base, MatchWindow(seq_after=burst))
    assert [d.evidence["source.as.number"] for d in found] == ["3320"]
