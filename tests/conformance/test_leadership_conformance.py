"""The scheduler lease and leadership behave the same on both stores.

Elasticsearch: each "replica" opens its own store (same index prefix), as separate processes
would. DuckDB: the file admits one process, so the replicas share one store; the protocol
still decides between them the same way.

Lease protocol tests run on a test clock (no sleeping); the failover test runs two real
renewal threads on real clocks with a short TTL.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from marketguard.app.leader import Leadership
from marketguard.metrics import make_metrics
from marketguard.store.duckdb import DuckDBStore
from marketguard.store.lease import LeaseStore, open_leases

LEASE = "scheduler"


class TestClock:
    """Wall and monotonic time that move only when told (shared by every replica of a test)."""

    __test__ = False

    def __init__(self) -> None:
        self.wall = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def replica_stores(backend: str, open_store, n: int, clock=None) -> list[LeaseStore]:
    """``n`` lease stores that see the same leases, one per replica where the backend allows."""
    kw = {"clock": clock.now} if clock is not None else {}
    if backend == "duckdb":
        shared = open_leases(open_store("duckdb"), **kw)
        return [shared] * n
    prefix = f"mgtest-{uuid.uuid4().hex[:10]}"
    return [open_leases(open_store("elasticsearch", prefix=prefix), **kw) for _ in range(n)]


class Recorder:
    """What a replica's jobs would see: elections (with term) and depositions, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | None]] = []

    def elected(self, term: int) -> None:
        self.events.append(("elected", term))

    def deposed(self) -> None:
        self.events.append(("deposed", None))


def leadership(leases: LeaseStore, replica: str, rec: Recorder, clock: TestClock | None = None, **kw) -> Leadership:
    kw.setdefault("lease_s", 10.0)
    kw.setdefault("renew_s", 3.0)
    if clock is not None:
        kw["monotonic"] = clock.monotonic
    return Leadership(leases, replica, on_elected=rec.elected, on_deposed=rec.deposed,
                      metrics=make_metrics(CollectorRegistry()), **kw)


# -- the lease protocol ----------------------------------------------------------------------
def test_acquire_renew_release_and_terms(backend, open_store):
    clock = TestClock()
    a, b = replica_stores(backend, open_store, 2, clock)
    assert a.holder(LEASE) is None
    first = a.acquire(LEASE, "A", 10)
    assert (first.holder, first.term, first.expires_at) == ("A", 1, clock.wall + timedelta(seconds=10))
    refused = b.acquire(LEASE, "B", 10)
    assert (refused.holder, refused.term) == ("A", 1), "a live lease stays with its holder"
    clock.advance(4)
    again = a.acquire(LEASE, "A", 10)
    assert (again.holder, again.term) == ("A", 1), "the holder re-acquiring extends, same term"
    assert again.expires_at == clock.wall + timedelta(seconds=10)
    assert b.renew(LEASE, "B", 1, 10) is None, "only the holder renews"
    assert a.renew(LEASE, "A", 2, 10) is None, "a renewal names the term it holds"
    clock.advance(1)
    renewed = a.renew(LEASE, "A", 1, 10)
    assert renewed is not None and renewed.term == 1 and renewed.expires_at == clock.wall + timedelta(seconds=10)
    assert not b.release(LEASE, "B", 1) and not a.release(LEASE, "A", 7)
    assert a.release(LEASE, "A", 1)
    assert not b.holder(LEASE).live(clock.wall)
    taken = b.acquire(LEASE, "B", 10)
    assert (taken.holder, taken.term) == ("B", 2), "a released lease goes at once, to a new term"
    assert a.renew(LEASE, "A", 1, 10) is None
    assert (a.holder(LEASE).holder, a.holder(LEASE).term) == ("B", 2)


def test_expired_lease_goes_to_the_next_replica_with_a_higher_term(backend, open_store):
    clock = TestClock()
    a, b = replica_stores(backend, open_store, 2, clock)
    a.acquire(LEASE, "A", 10)
    clock.advance(9.9)
    assert b.acquire(LEASE, "B", 10).holder == "A"
    clock.advance(0.2)
    assert a.renew(LEASE, "A", 1, 10) is None, "an expired lease is not renewed, even unclaimed"
    taken = b.acquire(LEASE, "B", 10)
    assert (taken.holder, taken.term) == ("B", 2)
    back = a.acquire(LEASE, "A", 10)
    assert (back.holder, back.term) == ("B", 2), "the old holder is refused while B is live"


def test_concurrent_acquire_has_one_winner(backend, open_store):
    stores = replica_stores(backend, open_store, 6)
    start = threading.Barrier(len(stores))
    results: dict[str, object] = {}

    def race(i: int) -> None:
        start.wait()
        results[f"R{i}"] = stores[i].acquire(LEASE, f"R{i}", 30)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, state in results.items() if state.holder == name]  # type: ignore[attr-defined]
    assert len(winners) == 1, results
    assert {(s.holder, s.term) for s in results.values()} == {(winners[0], 1)}, "every loser saw the winner"  # type: ignore[attr-defined]
    assert stores[0].holder(LEASE).holder == winners[0]


# -- leadership over the lease ---------------------------------------------------------------
def test_two_replicas_one_leader(backend, open_store):
    clock = TestClock()
    a_store, b_store = replica_stores(backend, open_store, 2, clock)
    ra, rb = Recorder(), Recorder()
    a, b = leadership(a_store, "A", ra, clock), leadership(b_store, "B", rb, clock)
    assert a.step() and not b.step()
    for _ in range(5):  # several renew rounds: the leader keeps it, the follower never acts
        clock.advance(3)
        assert a.step() and not b.step()
    assert ra.events == [("elected", 1)] and rb.events == []
    assert a.status() == {"replica": "A", "leader": True, "term": 1, "holder": "A", "holder_term": 1}
    assert b.status() | {"replica": "A"} == a.status() | {"leader": False, "term": None}


def test_deposed_leader_that_comes_back_does_not_act(backend, open_store):
    clock = TestClock()
    a_store, b_store = replica_stores(backend, open_store, 2, clock)
    ra, rb = Recorder(), Recorder()
    a, b = leadership(a_store, "A", ra, clock), leadership(b_store, "B", rb, clock)
    assert a.step()
    clock.advance(10)  # A is paused (GC, network partition): it renews nothing for a whole TTL
    assert not a.is_leader, "by its own clock A knows its lease has ended"
    assert b.step() and b.term == 2
    assert not a.step(), "A comes back with term 1 and is refused"
    assert ra.events == [("elected", 1), ("deposed", None)]
    assert rb.events == [("elected", 2)]
    clock.advance(3)
    assert not a.step() and b.step()
    assert ra.events == [("elected", 1), ("deposed", None)], "A started nothing again"
    assert a.status()["holder"] == "B" and a.status()["holder_term"] == 2


def test_leader_death_fails_over_after_the_ttl(backend, open_store):
    """Real renewal threads, real clocks: kill the leader without releasing; the other takes
    over once the lease has expired, under a higher term."""
    a_store, b_store = replica_stores(backend, open_store, 2)
    recs = {"A": Recorder(), "B": Recorder()}
    ttl = 1.0
    nodes = {name: leadership(s, name, recs[name], lease_s=ttl, renew_s=0.1) for name, s in (("A", a_store), ("B", b_store))}
    for node in nodes.values():
        node.start()
    try:
        assert sum(n.is_leader for n in nodes.values()) == 1
        leader = next(name for name, n in nodes.items() if n.is_leader)
        other = "B" if leader == "A" else "A"
        time.sleep(0.5)  # a few renewals: still the same single leader
        assert nodes[leader].is_leader and not nodes[other].is_leader
        nodes[leader].stop(release=False)  # dies: stops renewing, leaves the lease in place
        died = time.monotonic()
        while not nodes[other].is_leader and time.monotonic() - died < 5:
            time.sleep(0.02)
        took_over = time.monotonic() - died
        assert nodes[other].is_leader and nodes[other].term == 2
        assert took_over >= ttl - 0.5, "nobody takes a lease before it has (nearly) expired"
        assert recs[leader].events == [("elected", 1), ("deposed", None)]
        assert recs[other].events == [("elected", 2)]
    finally:
        for node in nodes.values():
            node.stop()
    assert recs[other].events == [("elected", 2), ("deposed", None)]
    assert not a_store.holder(LEASE).live(datetime.now(UTC)), "a clean stop releases the lease"


def test_clean_stop_hands_over_without_waiting(backend, open_store):
    clock = TestClock()
    a_store, b_store = replica_stores(backend, open_store, 2, clock)
    ra, rb = Recorder(), Recorder()
    a, b = leadership(a_store, "A", ra, clock), leadership(b_store, "B", rb, clock)
    a.start()
    a.stop()
    assert ra.events == [("elected", 1), ("deposed", None)]
    assert b.step() and b.term == 2, "no TTL wait after a release"


def test_gauge_follows_leadership(backend, open_store):
    clock = TestClock()
    (store,) = replica_stores(backend, open_store, 1, clock)
    metrics = make_metrics(CollectorRegistry())
    node = Leadership(store, "A", lease_s=10, renew_s=3, metrics=metrics, monotonic=clock.monotonic)
    gauge = metrics.leader.labels("A")
    assert gauge._value.get() == 0
    assert node.step() and gauge._value.get() == 1
    clock.advance(11)
    store.acquire(LEASE, "B", 10)
    assert not node.step() and gauge._value.get() == 0


# -- DuckDB only ------------------------------------------------------------------------------
def test_duckdb_reopen_ends_a_crashed_holders_lease(tmp_path):
    """The DuckDB file admits one process: a lease found held when it is opened belongs to a
    process that has gone, so a restarted service leads at once instead of waiting a TTL."""
    path = tmp_path / "mg.duckdb"
    store = DuckDBStore(path)
    first = open_leases(store).acquire(LEASE, "crashed", 3600)
    store.close()
    store = DuckDBStore(path)
    try:
        leases = open_leases(store)
        assert leases.holder(LEASE).holder is None
        again = leases.acquire(LEASE, "restarted", 10)
        assert (again.holder, again.term) == ("restarted", first.term + 1)
    finally:
        store.close()


def test_two_services_on_one_elasticsearch_run_the_jobs_once(open_store, tmp_path):
    """Two whole services (as two pods) on one cluster: both serve, one runs the jobs; when it
    dies the other starts them under a higher term."""
    from marketguard.app.services import build_services
    from marketguard.config import load_settings

    (tmp_path / "rules").mkdir()
    prefix = f"mgtest-{uuid.uuid4().hex[:10]}"
    replicas = []
    for name in ("one", "two"):
        settings = load_settings(data_dir=tmp_path / name, rules_dirs=[tmp_path / "rules"], store="elasticsearch",
                                 pseudonymisation_key="k" * 32, leader_lease_s=1.0, leader_renew_s=0.1,
                                 slo_interval_s=3600)
        replicas.append(build_services(settings, store=open_store("elasticsearch", prefix=prefix)))

    def running(s) -> bool:
        return s.engine._scheduler is not None and s.scheduler is not None and s.worker._thread is not None

    try:
        for s in replicas:
            s.start()
        assert [running(s) for s in replicas].count(True) == 1
        leader = next(s for s in replicas if running(s))
        other = next(s for s in replicas if s is not leader)
        assert leader.leadership.status()["leader"] and not other.leadership.status()["leader"]
        leader.leadership.stop(release=False)  # the leader's pod dies
        assert not running(leader)
        deadline = time.monotonic() + 5
        while not running(other) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running(other) and other.leadership.term == 2
    finally:
        for s in replicas:
            s.close()
