"""Console sessions behave the same on both stores, and replicas on one store share them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from marketguard.auth import Principal
from marketguard.auth.sessions import StoredSession, open_sessions

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _session(hash_: str, name: str, expires: datetime) -> StoredSession:
    return StoredSession(hash_, Principal(name, "analyst"), f"csrf-{hash_}", T0, expires)


def test_put_get_expire_delete(backend, open_store):
    sessions = open_sessions(open_store(backend))
    live, short = _session("a" * 64, "alice", T0 + timedelta(hours=8)), _session("b" * 64, "alice", T0 + timedelta(minutes=5))
    bob = _session("c" * 64, "bob", T0 + timedelta(hours=8))
    for s in (live, short, bob):
        sessions.put(s)
    got = sessions.get("a" * 64, T0 + timedelta(minutes=1))
    assert got is not None and (got.principal, got.csrf, got.expires) == (live.principal, live.csrf, live.expires)
    assert sessions.get("d" * 64, T0) is None
    assert sessions.get("b" * 64, T0 + timedelta(minutes=5)) is None  # expired at its expiry
    assert sessions.get("b" * 64, T0) is None  # and deleted, not only hidden
    sessions.delete("a" * 64)
    assert sessions.get("a" * 64, T0) is None
    sessions.put(_session("e" * 64, "bob", T0 + timedelta(hours=1)))
    sessions.delete_for("bob")
    assert sessions.get("c" * 64, T0) is None and sessions.get("e" * 64, T0) is None


def test_new_sessions_purge_expired_ones(backend, open_store):
    sessions = open_sessions(open_store(backend))
    sessions.put(_session("a" * 64, "alice", T0 + timedelta(minutes=1)))
    later = StoredSession("b" * 64, Principal("alice", "analyst"), "x", T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    sessions.put(later)
    assert sessions.get("a" * 64, T0) is None  # purged when the later session was stored


def test_two_console_instances_on_one_elasticsearch_share_sessions(open_store, tmp_path):
    """Sign in through one replica, use and end the session through the other."""
    from marketguard.app.api import create_app
    from marketguard.app.console.sessions import COOKIE
    from marketguard.app.services import build_services
    from marketguard.config import load_settings

    (tmp_path / "rules").mkdir()
    prefix = f"mgtest-{uuid.uuid4().hex[:10]}"
    replicas = []
    for name in ("one", "two"):
        settings = load_settings(data_dir=tmp_path / name, rules_dirs=[tmp_path / "rules"], store="elasticsearch",
                                 pseudonymisation_key="k" * 32, slo_interval_s=3600)
        replicas.append(build_services(settings, with_engine=False, store=open_store("elasticsearch", prefix=prefix)))
    try:
        secret = replicas[0].keys.create("shared-analyst", "analyst")
        one = TestClient(create_app(replicas[0], manage_lifecycle=False))
        two = TestClient(create_app(replicas[1], manage_lifecycle=False))
        form = one.get("/console/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        assert one.post("/console/sign-in", data={"api_key": secret, "csrf": csrf}, follow_redirects=False).status_code == 303
        two.cookies.set(COOKIE, one.cookies[COOKIE])
        page = two.get("/console/tickets", follow_redirects=False)
        assert page.status_code == 200
        session_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert two.post("/console/sign-out", data={"csrf": session_csrf}, follow_redirects=False).status_code == 303
        assert one.get("/console/tickets", follow_redirects=False).status_code == 303  # signed out everywhere
        one.close()
        two.close()
    finally:
        for s in replicas:
            s.close()
