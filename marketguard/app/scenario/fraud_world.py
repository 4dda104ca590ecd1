"""The world of the fraud scenario: its time span, the networks and browsers it draws from,
the accounts (:class:`User`) and the :class:`World` that collects the emitted events."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "DEFAULT_START", "DURATION", "BROWSERS", "HEADLESS", "ISPS", "FOREIGN", "HOSTING", "User",
    "World", "random_ip", "attacker", "victim_of", "competitor_campaign", "newcomer",
]

DEFAULT_START = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
DURATION = timedelta(hours=6)

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
)
#: Residential ISPs: (AS number, country).
ISPS = ((3320, "DE"), (3215, "FR"), (1136, "NL"), (3352, "ES"), (3269, "IT"), (5617, "PL"))
FOREIGN = ((8452, "EG"), (28573, "BR"), (9829, "IN"), (4134, "CN"))
HOSTING = (14061, 16276, 24940, 16509)  # DigitalOcean, OVH, Hetzner, AWS
_LETTERS = "abcdefghjkmnpqrstuvwxyz"


@dataclass
class User:
    """A marketplace account as its requests show it."""

    id: str
    ip: str
    asn: int
    country: str
    device: str
    cards: list[str]
    ua: str


@dataclass
class World:
    """The scenario being built: its random source, accounts, campaigns and emitted events."""

    rng: random.Random
    start: datetime
    users: list[User] = field(default_factory=list)
    campaigns: dict[str, str] = field(default_factory=dict)  # campaign -> seller
    rows: list[tuple[datetime, dict[str, Any], str | None, int]] = field(default_factory=list)
    next_instance: int = 0

    def token(self, prefix: str, n: int = 12) -> str:
        """A random identifier (device, card fingerprint, account)."""
        return prefix + "".join(self.rng.choice(_LETTERS) for _ in range(n))

    def emit(self, at: datetime, event: dict[str, Any], family: str | None = None) -> None:
        """Record an event at ``at``; with ``family``, as part of the current attack instance."""
        event = {k: v for k, v in event.items() if v is not None}
        event["@timestamp"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.rows.append((at, event, family, self.next_instance - 1 if family else -1))


def random_ip(rng: random.Random, first: int) -> str:
    """A random IPv4 address in ``first``.0.0.0/8."""
    return f"{first}.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"


def attacker(w: World, asn: int, country: str, ua: str | None = None, first: int = 45) -> User:
    """A fresh fraudster account on its own address and device."""
    return User(
        w.token("x"),
        random_ip(w.rng, first),
        asn,
        country,
        w.token("dv_"),
        [],
        ua or w.rng.choice(BROWSERS),
    )


def victim_of(w: World) -> User:
    """A regular buyer (the first tenth of the population), whose account gets taken over."""
    return w.users[w.rng.randrange(len(w.users) // 10)]


def competitor_campaign(w: World) -> tuple[str, str]:
    """A campaign other than the sale's, with its seller: what click fraud targets."""
    camp = w.rng.choice([c for c in w.campaigns if c != "cmp-sale"])
    return camp, w.campaigns[camp]



def newcomer(w: World, user_id: str, asn: int, country: str, first: int, cards: list[str]) -> User:
    """An account seen on a new address and device with an ordinary browser."""
    return User(
        user_id, random_ip(w.rng, first), asn, country, w.token("dv_"), cards, w.rng.choice(BROWSERS)
    )
