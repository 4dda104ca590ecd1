"""Normal marketplace traffic: buyers, sellers' integrations and well-behaved bots."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Request", "normal_request", "format_combined"]

BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
SELLER_UAS = ("seller-sync/2.4 (+https://sellers.example.com)", "python-requests/2.32.3", "okhttp/4.12.0")
BOT_UAS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
)
SEARCH_TERMS = ("shoes", "usb-c cable", "coffee grinder", "lego", "yoga mat", "headphones", "desk lamp")


@dataclass(frozen=True)
class Request:
    """One access-log line before formatting."""

    ts: datetime
    ip: str
    method: str
    target: str
    status: int
    size: int
    referrer: str = "-"
    ua: str = "-"
    user: str = "-"


def _ip(rng: random.Random, pool: int) -> str:
    n = rng.randrange(pool)
    return f"{81 + n % 120}.{(n // 120) % 250 + 1}.{(n // 30000) % 250 + 1}.{n % 251 + 1}"


def _buyer(rng: random.Random, ts: datetime) -> Request:
    ip, ua = _ip(rng, 50_000), rng.choice(BROWSER_UAS)
    roll = rng.random()
    if roll < 0.30:
        target, method, status = f"/api/v1/products/{rng.randrange(1, 200_000)}", "GET", 200
    elif roll < 0.50:
        term = rng.choice(SEARCH_TERMS).replace(" ", "+")
        target, method, status = f"/api/v1/search?q={term}&page={rng.randrange(1, 6)}", "GET", 200
    elif roll < 0.62:
        target, method, status = "/api/v1/cart", rng.choice(("GET", "POST")), 200
    elif roll < 0.68:
        target, method, status = "/api/v1/checkout", "POST", rng.choice((200, 200, 200, 402))
    elif roll < 0.72:
        target, method, status = "/api/v1/login", "POST", rng.choice((200, 200, 200, 401))
    elif roll < 0.74:
        target, method, status = f"/api/v1/orders/{rng.randrange(10**7, 10**8)}", "GET", 200
    elif roll < 0.745:
        target, method, status = f"/api/v1/newsletter?email=buyer{rng.randrange(10**6)}%40example.com", "POST", 201
    else:
        target, method, status = rng.choice(("/", "/static/app.js", "/static/app.css", "/favicon.ico")), "GET", rng.choice((200, 304))
    ref = "https://shop.example.com/" if rng.random() < 0.6 else "-"
    return Request(ts, ip, method, target, status, rng.randrange(200, 40_000), ref, ua)


def _seller(rng: random.Random, ts: datetime) -> Request:
    sid = rng.randrange(1, 3_000)
    roll = rng.random()
    if roll < 0.5:
        target, method = f"/api/v1/sellers/{sid}/inventory", "PUT"
    elif roll < 0.8:
        target, method = f"/api/v1/sellers/{sid}/orders?status=new", "GET"
    else:
        target, method = f"/api/v1/sellers/{sid}/listings/{rng.randrange(1, 10**6)}", "PATCH"
    status = rng.choice((200, 200, 200, 204, 409))
    return Request(ts, _ip(rng, 3_000), method, target, status, rng.randrange(50, 5_000), "-", rng.choice(SELLER_UAS), f"seller-{sid}")


def _bot(rng: random.Random, ts: datetime) -> Request:
    target = rng.choice(("/robots.txt", "/sitemap.xml", f"/p/{rng.randrange(1, 200_000)}"))
    return Request(ts, f"66.249.{rng.randrange(64, 96)}.{rng.randrange(1, 255)}", "GET", target, 200, rng.randrange(500, 90_000), "-", rng.choice(BOT_UAS))


def normal_request(rng: random.Random, ts: datetime) -> Request:
    """Return one benign request: 80% buyers, 15% sellers' integrations, 5% search bots."""
    roll = rng.random()
    if roll < 0.80:
        return _buyer(rng, ts)
    if roll < 0.95:
        return _seller(rng, ts)
    return _bot(rng, ts)


def format_combined(r: Request) -> str:
    """Render a request as an nginx/Apache *combined* log line."""
    stamp = r.ts.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'{r.ip} - {r.user} [{stamp}] "{r.method} {r.target} HTTP/1.1" {r.status} {r.size} '
        f'"{r.referrer}" "{r.ua}"'
    )
