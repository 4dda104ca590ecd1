"""Console sessions live in the store (they survive a restart) and failed sign-ins are throttled.

Real services on a real DuckDB file; the console is driven through its HTTP interface.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.console.sessions import COOKIE
from marketguard.app.services import build_services
from marketguard.config import load_settings

SIGN_IN = "/console/sign-in"


def _sign_in(client: TestClient, key: str) -> object:
    form = client.get(SIGN_IN).text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    return client.post(SIGN_IN, data={"api_key": key, "csrf": token}, follow_redirects=False)


def test_a_session_survives_a_service_restart_and_ends_with_its_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    services = build_services(settings, with_engine=False)
    secret = services.keys.create("restart-analyst", "analyst")
    with TestClient(create_app(services, manage_lifecycle=False)) as client:
        assert _sign_in(client, secret).status_code == 303
        token = client.cookies[COOKIE]
    services.close()

    reopened = build_services(settings, with_engine=False)
    try:
        app = create_app(reopened, manage_lifecycle=False)
        with TestClient(app, cookies={COOKIE: token}) as client:
            assert client.get("/console/incidents", follow_redirects=False).status_code == 200
        with TestClient(app, cookies={COOKIE: "not-a-session"}) as stranger:
            assert stranger.get("/console/incidents", follow_redirects=False).status_code == 303
        reopened.keys.revoke("restart-analyst")
        with TestClient(app, cookies={COOKIE: token}) as client:
            assert client.get("/console/incidents", follow_redirects=False).status_code == 303
    finally:
        reopened.close()


def test_repeated_failed_sign_ins_from_one_address_get_429_and_others_are_unaffected(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", console_signin_max_failures=3, console_signin_window_s=600)
    services = build_services(settings, with_engine=False)
    try:
        secret = services.keys.create("throttle-analyst", "analyst")
        app = create_app(services, manage_lifecycle=False)
        attacker = TestClient(app, client=("198.51.100.9", 40000))
        other = TestClient(app, client=("192.0.2.20", 40001))
        assert [_sign_in(attacker, f"mg_guess_{i}").status_code for i in range(3)] == [401, 401, 401]
        refused = _sign_in(attacker, secret)  # even the right key: the address is throttled
        assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
        assert int(refused.headers["retry-after"]) in range(1, 601)
        assert COOKIE not in attacker.cookies
        assert _sign_in(other, secret).status_code == 303
        assert other.get("/console/incidents", follow_redirects=False).status_code == 200
        entries = services.audit.entries(object="client:198.51.100.9")
        assert [e.action for e in entries] == ["console.sign_in_throttled"]
        attacker.close()
        other.close()
    finally:
        services.close()
