"""The service runs its scheduled jobs only while it leads (real services on a DuckDB file)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.leader import Leadership
from marketguard.app.services import build_services
from marketguard.config import load_settings
from marketguard.metrics import REGISTRY
from marketguard.store.lease import open_leases


def _jobs_running(services) -> dict[str, bool]:
    return {
        "engine": services.engine._scheduler is not None,
        "worker": services.worker._thread is not None,
        "background": services.scheduler is not None and services.scheduler.running,
    }


def _gauge(replica: str) -> float | None:
    return REGISTRY.get_sample_value("marketguard_leader", {"replica": replica})


def test_jobs_follow_the_lease_and_health_shows_it(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    services = build_services(load_settings(data_dir=tmp_path / "data", rules_dirs=[rules],
                                            leader_lease_s=30, leader_renew_s=10))
    me = services.leadership.replica
    try:
        services.start()
        assert services.leadership.is_leader, "the one DuckDB process leads at once"
        assert _jobs_running(services) == {"engine": True, "worker": True, "background": True}
        assert _gauge(me) == 1
        with TestClient(create_app(services, manage_lifecycle=False)) as client:
            body = client.get("/healthz").json()
            assert body["status"] == "ok"
            assert body["leadership"] == {"replica": me, "leader": True, "term": 1, "holder": me, "holder_term": 1}

            services.leadership.stop()  # gives the lease up: the jobs stop
            assert _jobs_running(services) == {"engine": False, "worker": False, "background": False}
            assert _gauge(me) == 0
            rival = Leadership(open_leases(services.store), "rival", lease_s=30, renew_s=10)
            assert rival.step() and rival.term == 2
            assert not services.leadership.step(), "a follower does not take a live lease"
            assert _jobs_running(services) == {"engine": False, "worker": False, "background": False}
            body = client.get("/healthz").json()
            assert body["leadership"] | {"replica": None} == {
                "replica": None, "leader": False, "term": None, "holder": "rival", "holder_term": 2}

            rival.stop()
            before = services.engine
            assert services.leadership.step() and services.leadership.term == 3
            assert services.engine is not before, "a re-elected leader starts from the store, not old buffers"
            assert _jobs_running(services) == {"engine": True, "worker": True, "background": True}
    finally:
        services.close()
    assert _jobs_running(services) == {"engine": False, "worker": False, "background": False}
    assert _gauge(me) == 0
