"""The web console over HTTP: sign-in, session cookie, CSRF, what each role may see and do.

Runs against the real app (``create_app``) on real services and a seeded DuckDB store. The
console must allow exactly what the JSON API allows: the role matrix below asks the JSON API
first (Bearer key) and expects the console to give the same answer for the same key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from _console_scenario import ATTACKER, Scenario
from fastapi.testclient import TestClient

from marketguard.app.api import create_app
from marketguard.app.console.sessions import COOKIE, ConsoleSessions
from marketguard.auth import Principal

SIGN_IN = "/console/sign-in"
NOW = datetime.now(UTC)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "page has no CSRF field"
    return found.group(1)


class Console:
    """One browser-like client (its own cookie jar) on the app."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf: str | None = None

    def sign_in(self, key: str) -> object:
        """Sign in through the form; keep the session's CSRF token (from the page it lands on)."""
        token = csrf_of(self.client.get(SIGN_IN).text)
        answer = self.client.post(SIGN_IN, data={"api_key": key, "csrf": token}, follow_redirects=False)
        if answer.status_code == 303:
            self.csrf = csrf_of(self.client.get(answer.headers["location"]).text)
        return answer

    def get(self, path: str) -> object:
        return self.client.get(path, follow_redirects=False)

    def post(self, path: str, data: dict[str, str], csrf: str | None = "session") -> object:
        """POST a form with the session's CSRF token, another token, or none."""
        token = self.csrf if csrf == "session" else csrf
        body = dict(data) | ({"csrf": token} if token is not None else {})
        return self.client.post(path, data=body, follow_redirects=False)


@pytest.fixture(scope="module")
def app(seeded: Scenario) -> Iterator[TestClient]:
    app = create_app(seeded.services, manage_lifecycle=False)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def new_console(app: TestClient, seeded: Scenario) -> Iterator[object]:
    """Factory: a fresh client (own cookies) on the same app, signed in as ``name`` if given."""
    made: list[TestClient] = []

    def make(name: str | None = None) -> Console:
        client = TestClient(app.app)
        made.append(client)
        console = Console(client)
        if name is not None:
            assert console.sign_in(seeded.keys[name]).status_code == 303
        return console

    yield make
    for client in made:
        client.close()


def api(app: TestClient, seeded: Scenario, name: str, method: str, path: str, **kw: object) -> int:
    """Status of the same request on the JSON API with ``name``'s key."""
    headers = {"Authorization": f"Bearer {seeded.keys[name]}"}
    return app.request(method, path, headers=headers, **kw).status_code  # type: ignore[arg-type]


# -- mounting ----------------------------------------------------------------------------------------
def test_root_opens_the_console_and_the_json_api_is_unchanged(app: TestClient) -> None:
    root = app.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/console/"
    missing = app.get("/api/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    assert app.delete("/api/v1/incidents").status_code == 405
    assert not [p for p in app.get("/openapi.json").json()["paths"] if not p.startswith(("/api/", "/v1/", "/metrics", "/healthz"))]


def test_pages_need_a_session_and_remember_where_you_were_going(new_console: object) -> None:
    console = new_console()
    page = console.get("/console/tickets?status=new")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=/console/tickets%3Fstatus%3Dnew"


# -- signing in ------------------------------------------------------------------------------------------
def test_a_good_key_gets_an_http_only_strict_session_cookie(new_console: object, seeded: Scenario, app: TestClient) -> None:
    console = new_console()
    signed = console.sign_in(seeded.keys["analyst"])
    assert signed.status_code == 303 and signed.headers["location"] == "/console/incidents"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict" and flags["path"] == "Path=/"
    assert "secure" not in flags  # console_cookie_secure defaults to off (plain HTTP on 127.0.0.1)
    token = console.client.cookies[COOKIE]
    assert token != seeded.keys["analyst"]
    stored = _sessions(app).store
    assert stored.get(hashlib.sha256(token.encode()).hexdigest(), NOW) is not None and stored.get(token, NOW) is None
    assert console.get("/console/incidents").status_code == 200
    actions = [e.action for e in seeded.services.audit.entries(object="key:analyst-key")]
    assert "console.sign_in" in actions


def _sessions(app: TestClient) -> ConsoleSessions:
    from starlette.routing import Mount

    mount = next(r for r in app.app.routes if isinstance(r, Mount) and r.path == "/console")
    return mount.app.state.sessions  # type: ignore[no-any-return, union-attr]


def test_the_secure_flag_follows_the_settings(seeded: Scenario) -> None:
    services = seeded.services
    original = services.settings
    services.settings = original.model_copy(update={"console_cookie_secure": True})
    try:
        with TestClient(create_app(services, manage_lifecycle=False), base_url="https://testserver") as client:
            signed = Console(client).sign_in(seeded.keys["analyst"])
            cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
            assert "secure" in cookie.lower()
    finally:
        services.settings = original


def test_sign_in_after_a_redirect_returns_to_the_page_asked_for(new_console: object, seeded: Scenario) -> None:
    console = new_console()
    form = console.get("/console/sign-in?next=/console/tickets%3Fstatus%3Dnew").text
    signed = console.client.post(SIGN_IN, data={"api_key": seeded.keys["oncall"], "csrf": csrf_of(form),
                                                "next": "/console/tickets?status=new"}, follow_redirects=False)
    assert signed.headers["location"] == "/console/tickets?status=new"
    evil = console.client.get(SIGN_IN).text
    signed = console.client.post(SIGN_IN, data={"api_key": seeded.keys["oncall"], "csrf": csrf_of(evil),
                                                "next": "//evil.example/x"}, follow_redirects=False)
    assert signed.headers["location"] == "/console/incidents"


@pytest.mark.parametrize(("key", "status", "message"), [
    ("mg_not_a_key", 401, "unknown or revoked"),
    ("", 401, "unknown or revoked"),
    ("ingest", 403, "no console access"),
])
def test_a_bad_key_gets_no_session(new_console: object, seeded: Scenario, key: str, status: int, message: str) -> None:
    console = new_console()
    answer = console.sign_in(seeded.keys.get(key, key))
    assert answer.status_code == status and message in answer.text
    assert COOKIE not in console.client.cookies
    assert console.get("/console/tickets").status_code == 303


def test_a_revoked_key_cannot_sign_in_and_its_sessions_end(new_console: object, seeded: Scenario) -> None:
    secret = seeded.services.keys.create("temp-analyst", "analyst")
    console = new_console()
    assert console.sign_in(secret).status_code == 303
    assert console.get("/console/tickets").status_code == 200
    seeded.services.keys.revoke("temp-analyst")
    assert console.get("/console/tickets").status_code == 303
    assert new_console().sign_in(secret).status_code == 401


def test_the_sign_in_form_is_csrf_protected(new_console: object, seeded: Scenario) -> None:
    console = new_console()
    console.client.get(SIGN_IN)
    for token in (None, "forged-token"):
        data = {"api_key": seeded.keys["analyst"]} | ({"csrf": token} if token else {})
        answer = console.client.post(SIGN_IN, data=data, follow_redirects=False)
        assert answer.status_code == 403 and COOKIE not in console.client.cookies


def test_sessions_expire(app: TestClient) -> None:
    sessions = ConsoleSessions(_sessions(app).store, timedelta(hours=1))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    token, session = sessions.create(Principal("k", "analyst"), now=start)
    assert sessions.get(token, now=start + timedelta(minutes=59)) == session
    assert sessions.get(token, now=start + timedelta(hours=1)) is None
    assert sessions.get(token, now=start) is None  # the expired session was deleted, not just hidden


# -- CSRF on every form ----------------------------------------------------------------------------------
def test_every_form_rejects_a_missing_or_wrong_csrf_token(new_console: object, seeded: Scenario) -> None:
    console = new_console("oncall")
    ticket = seeded.tickets["secops"]
    before = seeded.services.tickets.get(ticket)
    forms = {
        f"/console/tickets/{ticket}/status": {"status": "acknowledged"},
        f"/console/tickets/{ticket}/comment": {"text": "forged"},
        f"/console/tickets/{ticket}/assign": {"assignee": "mallory"},
        f"/console/approvals/{seeded.action_id}/approve": {"reason": "forged approval"},
        f"/console/approvals/{seeded.action_id}/reject": {"reason": "forged rejection"},
        "/console/sign-out": {},
    }
    for path, data in forms.items():
        for token in (None, "wrong-token"):
            assert console.post(path, data, csrf=token).status_code == 403, (path, token)
    assert seeded.services.tickets.get(ticket) == before
    assert seeded.services.extras["containment"].actions.get(seeded.action_id).status == "pending"
    assert console.get("/console/tickets").status_code == 200  # still signed in


# -- roles: the console answers as the JSON API does ---------------------------------------------------------
ROLES = ("analyst", "oncall", "auditor", "admin", "acme", "globex")


def test_each_role_may_do_in_the_console_what_the_api_allows(app: TestClient, new_console: object, seeded: Scenario) -> None:
    """Reads on real ids, writes on ids that do not exist (so the matrix changes nothing):
    a role the API refuses gets 403 from both; a role it admits gets the same non-403 answer."""
    inc, own = seeded.incidents["stuffing"], seeded.tickets["acme"]
    cases = [  # (console method, console path, form, API method, API path, API body)
        ("GET", "/console/incidents", {}, "GET", "/api/v1/incidents", None),
        ("GET", f"/console/incidents/{inc}", {}, "GET", f"/api/v1/incidents/{inc}", None),
        ("GET", "/console/tickets", {}, "GET", "/api/v1/tickets", None),
        ("GET", f"/console/tickets/{own}", {}, "GET", f"/api/v1/tickets/{own}", None),
        ("GET", "/console/approvals", {}, "GET", "/api/v1/approvals", None),
        ("GET", "/console/audit", {}, "GET", "/api/v1/audit/verify", None),
        ("POST", "/console/tickets/T-none/status", {"status": "acknowledged"}, "PATCH", "/api/v1/tickets/T-none", {"status": "acknowledged"}),
        ("POST", "/console/tickets/T-none/comment", {"text": "hi"}, "POST", "/api/v1/tickets/T-none/comments", {"text": "hi"}),
        ("POST", "/console/tickets/T-none/assign", {"assignee": "x"}, "POST", "/api/v1/tickets/T-none/assign", {"assignee": "x"}),
        ("POST", "/console/approvals/act-none/approve", {"reason": "because"}, "POST", "/api/v1/approvals/act-none/approve", {"reason": "because"}),
        ("POST", "/console/approvals/act-none/reject", {"reason": "because"}, "POST", "/api/v1/approvals/act-none/reject", {"reason": "because"}),
    ]
    wrong = []
    for role in ROLES:
        console = new_console(role)
        for method, path, form, api_method, api_path, body in cases:
            expected = api(app, seeded, role, api_method, api_path, json=body)
            got = (console.get(path) if method == "GET" else console.post(path, form)).status_code
            if got != expected:
                wrong.append(f"{role}: {method} {path} -> {got}, the API answers {expected}")
    assert wrong == [], "\n".join(wrong)


def test_navigation_offers_only_the_pages_a_role_may_open(new_console: object) -> None:
    links = {
        "analyst": {"Incidents", "Tickets", "Approvals", "SLOs &amp; sellers"},
        "auditor": {"Incidents", "Tickets", "Approvals", "SLOs &amp; sellers", "Audit trail"},
        "acme": {"Tickets", "SLOs &amp; sellers"},
    }
    for role, expected in links.items():
        nav = new_console(role).get("/console/tickets").text.split('aria-label="Main"')[1].split("</nav>")[0]
        assert set(re.findall(r'">([^<]+)</a></li>', nav)) == expected, role


# -- the flows -------------------------------------------------------------------------------------------
def test_analyst_acknowledges_comments_on_and_assigns_a_ticket(new_console: object, seeded: Scenario) -> None:
    console = new_console("analyst")
    ticket = seeded.tickets["secops"]
    page = console.get(f"/console/tickets/{ticket}")
    assert page.status_code == 200 and ">Acknowledge<" in page.text and "internal note on secops" in page.text
    done = console.post(f"/console/tickets/{ticket}/status", {"status": "acknowledged"})
    assert done.status_code == 303 and done.headers["location"] == f"/console/tickets/{ticket}?done=status"
    console.post(f"/console/tickets/{ticket}/comment", {"text": "Blocking at the WAF <b>now</b>", "internal": "1"})
    console.post(f"/console/tickets/{ticket}/assign", {"assignee": "alice", "queue": ""})
    stored = seeded.services.tickets.get(ticket)
    assert stored.status == "acknowledged" and stored.assignee == "alice" and stored.acknowledged_at is not None
    assert stored.comments[-1].text == "Blocking at the WAF <b>now</b>" and stored.comments[-1].internal
    assert stored.comments[-1].author == "key:analyst-key"
    page = console.get(f"/console/tickets/{ticket}?done=comment").text
    assert "Blocking at the WAF &lt;b&gt;now&lt;/b&gt;" in page and "Comment added." in page
    again = console.post(f"/console/tickets/{ticket}/status", {"status": "acknowledged"})
    assert again.status_code == 409 and "acknowledged" in again.text
    bad = console.post(f"/console/tickets/{ticket}/status", {"status": "teleported"})
    assert bad.status_code == 422


def test_oncall_approves_a_containment_action_and_the_webhook_runs(new_console: object, seeded: Scenario) -> None:
    assert new_console("analyst").post(f"/console/approvals/{seeded.action_id}/approve", {"reason": "looks bad"}).status_code == 403
    console = new_console("oncall")
    page = console.get(f"/console/tickets/{seeded.tickets['secops']}").text
    assert seeded.action_id in page and ">Approve<" in page
    assert console.post(f"/console/approvals/{seeded.action_id}/approve", {"reason": "x"}).status_code == 422
    done = console.post(f"/console/approvals/{seeded.action_id}/approve",
                        {"reason": "confirmed stuffing", "back": f"/console/tickets/{seeded.tickets['secops']}"})
    assert done.status_code == 303 and done.headers["location"] == f"/console/tickets/{seeded.tickets['secops']}?done=approve"
    action = seeded.services.extras["containment"].actions.get(seeded.action_id)
    assert (action.status, action.decided_by, action.reason) == ("executed", "key:oncall-key", "confirmed stuffing")
    assert seeded.receiver.posts == ["/contain"]
    assert console.post(f"/console/approvals/{seeded.action_id}/reject", {"reason": "too late"}).status_code == 409


def test_a_seller_sees_only_its_own_tickets(new_console: object, seeded: Scenario) -> None:
    console = new_console("acme")
    listing = console.get("/console/tickets").text
    assert seeded.tickets["acme"] in listing
    assert seeded.tickets["globex"] not in listing and seeded.tickets["secops"] not in listing
    own = console.get(f"/console/tickets/{seeded.tickets['acme']}").text
    for secret in (ATTACKER, "198.51.100.20", "internal note", "/console/incidents/"):
        assert secret not in own, secret
    for other in ("globex", "secops"):
        assert console.get(f"/console/tickets/{seeded.tickets[other]}").status_code == 404
        assert console.post(f"/console/tickets/{seeded.tickets[other]}/comment", {"text": "probe"}).status_code == 404
    assert [c.text for c in seeded.services.tickets.get(seeded.tickets["globex"]).comments] == [
        f"internal note on globex: check {ATTACKER}"]
    assert console.get("/console/incidents").status_code == 403
    cards = console.get("/console/scorecards").text
    assert "acme" in cards and "globex" not in cards and "checkout-availability" not in cards


def test_a_seller_works_its_own_ticket_but_cannot_reassign_it(new_console: object, seeded: Scenario) -> None:
    console = new_console("globex")
    ticket = seeded.tickets["globex"]
    page = console.get(f"/console/tickets/{ticket}").text
    assert 'name="internal"' not in page and 'action="/console/tickets/' + ticket + '/assign"' not in page
    assert console.post(f"/console/tickets/{ticket}/comment", {"text": "on it", "internal": "1"}).status_code == 303
    assert console.post(f"/console/tickets/{ticket}/assign", {"assignee": "me"}).status_code == 403
    last = seeded.services.tickets.get(ticket).comments[-1]
    assert (last.text, last.internal, last.author) == ("on it", False, "key:globex-key")


def test_auditor_sees_the_audit_chain_and_cannot_act(new_console: object, seeded: Scenario) -> None:
    console = new_console("auditor")
    page = console.get("/console/audit").text
    result = seeded.services.audit.verify()
    assert "Chain intact" in page and result.ok
    shown = int(re.search(r'id="audit-entries">(\d+)<', page).group(1))
    assert shown >= 1 and result.entries >= shown
    assert result.last_hash is not None
    ticket = console.get(f"/console/tickets/{seeded.tickets['secops']}").text
    assert "can read this ticket but not change it" in ticket and "<textarea" not in ticket
    assert console.post(f"/console/tickets/{seeded.tickets['secops']}/comment", {"text": "x"}).status_code == 403
    assert new_console("analyst").get("/console/audit").status_code == 403


def test_incident_filters(new_console: object, seeded: Scenario) -> None:
    console = new_console("analyst")

    def shown(query: str) -> set[str]:
        html = console.get(f"/console/incidents{query}").text
        return {name for name, iid in seeded.incidents.items() if f"/console/incidents/{iid}" in html}

    assert shown("") == {"stuffing", "fraud", "outage"}
    assert shown("?type=fraud") == {"fraud"}
    assert shown("?severity=critical") == {"outage"}
    assert shown("?severity=high") == {"outage", "stuffing"}
    assert shown("?status=closed") == set()
    assert shown("?type=bogus") == {"stuffing", "fraud", "outage"}  # an unknown value filters nothing


def test_incident_detail_shows_timeline_evidence_tickets_and_report_links(new_console: object, seeded: Scenario) -> None:
    console = new_console("analyst")
    inc = seeded.incidents["stuffing"]
    page = console.get(f"/console/incidents/{inc}").text
    detail = seeded.services.cases.incident(inc)
    for alert in detail.alerts:
        assert alert.rule_title in page
    assert page.count("<li><time") == len(detail.timeline)
    assert "Evidence events (6)" in page and "/api/v1/login" in page
    assert f'href="/console/incidents/{inc}/report?format=html"' in page
    assert f'href="/console/incidents/{inc}/report?format=pdf"' in page
    assert f"/console/tickets/{seeded.tickets['secops']}" in page
    reads = [e for e in seeded.services.audit.entries(object=f"incident:{inc}") if e.action == "incident.evidence.read"]
    assert reads and reads[-1].actor == "key:analyst-key"
    assert console.get("/console/incidents/in-missing").status_code == 404


def test_scorecards_show_slos_and_every_sellers_score(new_console: object, seeded: Scenario) -> None:
    page = new_console("oncall").get("/console/scorecards").text
    cycle = seeded.services.sla.last
    for slo in cycle.slos:
        assert slo.slo_id in page
    availability = next(s for s in cycle.slos if s.slo_id == "checkout-availability")
    assert (availability.objective, availability.attainment) == (99.9, 0.75)  # 30 of 40 seeded requests good
    assert re.search(r"checkout-availability</td>\s*<td[^>]*>99.9 %</td>\s*<td[^>]*>75.000 %</td>", page)
    scores = {s: c.score for r in cycle.sellers for s, c in r.sellers.items()}
    assert scores == {"acme": 100.0, "globex": 40.0}
    for seller, score in scores.items():
        assert re.search(rf"{seller}</td>.*?{score:.1f}</td>", page, re.S), seller


def test_pages_send_security_headers(new_console: object) -> None:
    page = new_console("analyst").get("/console/tickets")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_sign_out_deletes_the_session(new_console: object, app: TestClient) -> None:
    console = new_console("analyst")
    token = console.client.cookies[COOKIE]
    out = console.post("/console/sign-out", {})
    assert out.status_code == 303 and out.headers["location"] == SIGN_IN
    assert _sessions(app).store.get(hashlib.sha256(token.encode()).hexdigest(), NOW) is None
    replay = TestClient(app.app, cookies={COOKIE: token})
    assert replay.get("/console/tickets", follow_redirects=False).status_code == 303
    replay.close()


def test_report_links_open_the_incident_report_with_the_session_as_the_api_would(new_console: object, seeded: Scenario) -> None:
    inc = seeded.incidents["stuffing"]
    analyst = new_console("analyst")
    html = analyst.get(f"/console/incidents/{inc}/report?format=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert inc in html.text and "Credential stuffing on login" in html.text
    pdf = analyst.get(f"/console/incidents/{inc}/report?format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    reads = [e for e in seeded.services.audit.entries(object=f"incident:{inc}") if e.action == "report.read"]
    assert reads and reads[-1].actor == "key:analyst-key"
    assert analyst.get("/console/incidents/in-missing/report").status_code == 404
    assert new_console("acme").get(f"/console/incidents/{inc}/report").status_code == 403
