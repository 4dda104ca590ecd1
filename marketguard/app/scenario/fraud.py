"""A sale-day marketplace with fraud campaigns, as JSON API events with ground truth.

:func:`generate_fraud` builds six hours of gateway events (ECS flat dicts with
``event.action`` and ``marketplace.*`` fields, the shape a gateway sends to
``/api/v1/logs`` as NDJSON). Normal traffic quadruples during a sale peak (hours 3–5) and
includes the legitimate look-alikes of fraud: click surges on the sale campaign, buyers behind
carrier-grade NAT paying with many cards, mistyped passwords, families sharing a card, password
resets and payout changes on their own. Fraud campaigns of four families are mixed in, each
instance recorded as the set of its event indices. :func:`score` turns detections into
precision and recall per family:

* **recall** = attack instances touched by at least one detection of the family / instances;
* **precision** = detections of the family that involve at least one event of that family's
  attacks / detections of the family.

A correlation reports the events of its *first* satisfying window only, so an alert is judged
by whether it is about the attack, and an attack by whether some alert caught it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "FAMILIES",
    "FraudScenario",
    "FamilyScore",
    "generate_fraud",
    "family_of",
    "score",
    "index_by_trace_id",
]

FAMILIES = ("click", "card_testing", "account_takeover", "promo_abuse")
DEFAULT_START = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
DURATION = timedelta(hours=6)
_FAMILY_TAG = "marketguard.fraud."

_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
_HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
)
#: Residential ISPs: (AS number, country).
_ISPS = ((3320, "DE"), (3215, "FR"), (1136, "NL"), (3352, "ES"), (3269, "IT"), (5617, "PL"))
_FOREIGN = ((8452, "EG"), (28573, "BR"), (9829, "IN"), (4134, "CN"))
_HOSTING = (14061, 16276, 24940, 16509)  # DigitalOcean, OVH, Hetzner, AWS
_LETTERS = "abcdefghjkmnpqrstuvwxyz"


@dataclass
class FraudScenario:
    """Events in time order, and per fraud family its attack instances (event index sets)."""

    events: list[dict[str, Any]]
    instances: dict[str, list[frozenset[int]]]
    start: datetime
    end: datetime

    @property
    def truth(self) -> dict[str, set[int]]:
        """Family -> indices of every event of its attacks."""
        return {f: set().union(*self.instances.get(f, [])) for f in FAMILIES}


@dataclass(frozen=True)
class FamilyScore:
    """Precision and recall of one fraud family."""

    family: str
    alerts: int
    true_alerts: int
    instances: int
    detected: int

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.instances if self.instances else 1.0


@dataclass
class _User:
    id: str
    ip: str
    asn: int
    country: str
    device: str
    cards: list[str]
    ua: str


@dataclass
class _World:
    rng: random.Random
    start: datetime
    users: list[_User] = field(default_factory=list)
    campaigns: dict[str, str] = field(default_factory=dict)  # campaign -> seller
    rows: list[tuple[datetime, dict[str, Any], str | None, int]] = field(default_factory=list)
    next_instance: int = 0

    def token(self, prefix: str, n: int = 12) -> str:
        return prefix + "".join(self.rng.choice(_LETTERS) for _ in range(n))

    def emit(self, at: datetime, event: dict[str, Any], family: str | None = None) -> None:
        event = {k: v for k, v in event.items() if v is not None}
        event["@timestamp"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.rows.append((at, event, family, self.next_instance - 1 if family else -1))


def _ip(rng: random.Random, first: int) -> str:
    return f"{first}.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"


def _base(
    user: _User, action: str, path: str, method: str = "POST", status: int = 200
) -> dict[str, Any]:
    return {
        "event.action": action,
        "user.id": user.id,
        "source.ip": user.ip,
        "source.as.number": user.asn,
        "client.geo.country_iso_code": user.country,
        "user_agent.original": user.ua,
        "user_agent.device.id": user.device,
        "http.request.method": method,
        "url.path": path,
        "http.response.status_code": status,
    }


def _impression(user: _User, campaign: str, seller: str) -> dict[str, Any]:
    ev = _base(user, "ad_impression", f"/api/v1/ads/{campaign}/impression", "GET")
    return ev | {"marketplace.ad.campaign_id": campaign, "marketplace.seller_id": seller}


def _click(user: _User, campaign: str, seller: str) -> dict[str, Any]:
    ev = _base(user, "ad_click", f"/api/v1/ads/{campaign}/click", "GET", 302)
    return ev | {"marketplace.ad.campaign_id": campaign, "marketplace.seller_id": seller}


def _payment(user: _User, card: str, amount: float, ok: bool) -> dict[str, Any]:
    ev = _base(
        user, "payment_authorization", "/api/v1/payments/authorize", status=200 if ok else 402
    )
    return ev | {
        "marketplace.payment.card_fingerprint": card,
        "marketplace.payment.amount": round(amount, 2),
        "marketplace.payment.result": "approved" if ok else "declined",
    }


def _promo(user: _User, card: str, code: str) -> dict[str, Any]:
    ev = _base(user, "promo_redeem", f"/api/v1/promotions/{code}/redeem")
    return ev | {"marketplace.payment.card_fingerprint": card, "marketplace.promotion.code": code}


def _login(user: _User, ok: bool) -> dict[str, Any]:
    return _base(
        user, "login_success" if ok else "login_failed", "/api/v1/login", status=200 if ok else 401
    )


# -- population and normal traffic ------------------------------------------------------------
def _population(w: _World, n_users: int) -> None:
    rng = w.rng
    cgnat = [(_ip(rng, 100 + i), *rng.choice(_ISPS)) for i in range(8)]
    for i in range(n_users):
        asn, country = rng.choice(_ISPS)
        ip = _ip(rng, 81 + i % 40)
        if rng.random() < 0.15:  # mobile users behind carrier-grade NAT
            ip, asn, country = rng.choice(cgnat)
        cards = [w.token("cf_") for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        w.users.append(
            _User(f"u{i}", ip, asn, country, w.token("dv_"), cards, rng.choice(_BROWSERS))
        )
    for s in range(40):
        for c in range(rng.randrange(1, 4)):
            w.campaigns[f"cmp-{s}-{c}"] = f"s{s}"
    w.campaigns["cmp-sale"] = "s0"


def _intensity(hours: float) -> float:
    """Relative traffic: quiet morning, a 4x sale peak from hour 3 to 5, then 2x."""
    if hours < 2.5:
        return 1.0
    if hours < 3:
        return 1.0 + 6 * (hours - 2.5)
    if hours < 5:
        return 4.0
    return 2.0


def _session_times(rng: random.Random, start: datetime, count: int) -> list[datetime]:
    span = DURATION.total_seconds()
    out: list[datetime] = []
    while len(out) < count:
        at = rng.uniform(0, span - 900)
        if rng.random() * 4.0 < _intensity(at / 3600):
            out.append(start + timedelta(seconds=at))
    return sorted(out)


def _normal_session(w: _World, at: datetime, peak: bool) -> None:
    rng, user = w.rng, rng_choice(w.rng, w.users)
    names = list(w.campaigns)
    t = at
    for _ in range(rng.randrange(1, 5)):
        camp = "cmp-sale" if rng.random() < (0.5 if peak else 0.2) else rng.choice(names)
        w.emit(t, _impression(user, camp, w.campaigns[camp]))
        t += timedelta(seconds=rng.uniform(1, 20))
        if rng.random() < 0.3:
            for _ in range(1 if rng.random() < 0.9 else 3):
                w.emit(t, _click(user, camp, w.campaigns[camp]))
                t += timedelta(seconds=rng.uniform(2, 30))
    roll = rng.random()
    if roll < 0.45:
        fails = 0 if rng.random() < 0.8 else rng.choice((1, 1, 2, 3))
        for _ in range(fails):
            w.emit(t, _login(user, False))
            t += timedelta(seconds=rng.uniform(3, 20))
        w.emit(t, _login(user, True))
        t += timedelta(seconds=rng.uniform(10, 120))
        card = rng.choice(user.cards)
        if rng.random() < 0.04:
            w.emit(t, _payment(user, card, rng.lognormvariate(3.5, 0.8), False))
            t += timedelta(seconds=rng.uniform(10, 60))
            card = rng.choice(user.cards)
        w.emit(t, _payment(user, card, rng.lognormvariate(3.5, 0.8), True))
        if peak and rng.random() < 0.3:
            w.emit(t + timedelta(seconds=1), _promo(user, card, "BLACKFRIDAY25"))
    elif roll < 0.465:
        w.emit(t, _base(user, "password_reset", "/api/v1/account/password-reset"))
    elif roll < 0.475 and user.id.endswith("0"):  # sellers updating their bank details
        w.emit(t, _base(user, "payout_details_changed", "/api/v1/seller/payout", "PUT"))


def rng_choice(rng: random.Random, items: list[_User]) -> _User:
    """A user, the first tenth of the population (the regulars) three times as likely."""
    if rng.random() < 0.25:
        return items[rng.randrange(max(1, len(items) // 10))]
    return items[rng.randrange(len(items))]


def _signups(w: _World, count: int) -> None:
    """New accounts during the sale: each redeems the promotion with its own card (families
    share one card between two accounts)."""
    rng = w.rng
    for i in range(count):
        at = w.start + timedelta(hours=rng.uniform(3, 5))
        asn, country = rng.choice(_ISPS)
        shared = w.users[-1].cards[0] if i % 10 == 9 else w.token("cf_")
        user = _User(
            f"n{i}", _ip(rng, 150), asn, country, w.token("dv_"), [shared], rng.choice(_BROWSERS)
        )
        w.users.append(user)
        w.emit(at, _base(user, "account_created", "/api/v1/account", status=201))
        w.emit(at + timedelta(seconds=40), _payment(user, shared, rng.uniform(20, 90), True))
        w.emit(at + timedelta(seconds=41), _promo(user, shared, "BLACKFRIDAY25"))


# -- fraud campaigns --------------------------------------------------------------------------
def _instance(w: _World) -> None:
    w.next_instance += 1


def _attacker(w: _World, asn: int, country: str, ua: str | None = None, first: int = 45) -> _User:
    return _User(
        w.token("x"),
        _ip(w.rng, first),
        asn,
        country,
        w.token("dv_"),
        [],
        ua or w.rng.choice(_BROWSERS),
    )


def _victim(w: _World) -> _User:
    return w.users[w.rng.randrange(len(w.users) // 10)]


def _competitor_campaign(w: _World) -> tuple[str, str]:
    camp = w.rng.choice([c for c in w.campaigns if c != "cmp-sale"])
    return camp, w.campaigns[camp]


def click_flood(w: _World, at: datetime) -> None:
    """One address clicks a rival's campaign 45 times in 8 minutes (each after an impression)."""
    bot = _attacker(w, *w.rng.choice(_ISPS))
    camp, seller = _competitor_campaign(w)
    for k in range(45):
        t = at + timedelta(seconds=10.5 * k)
        w.emit(t, _impression(bot, camp, seller), "click")
        w.emit(t + timedelta(seconds=2), _click(bot, camp, seller), "click")


def click_farm(w: _World, at: datetime) -> None:
    """Twenty-five cloud servers click one campaign twice each within 20 minutes."""
    asn = w.rng.choice(_HOSTING)
    camp, seller = _competitor_campaign(w)
    for k in range(25):
        bot = _attacker(w, asn, "US", first=157)
        for j in range(2):
            w.emit(at + timedelta(seconds=45 * k + 20 * j), _click(bot, camp, seller), "click")


def headless_clicks(w: _World, at: datetime) -> None:
    """A headless browser on a home connection clicks one campaign six times."""
    bot = _attacker(w, *w.rng.choice(_ISPS), ua=w.rng.choice(_HEADLESS))
    camp, seller = _competitor_campaign(w)
    for k in range(6):
        t = at + timedelta(seconds=70 * k)
        w.emit(t, _impression(bot, camp, seller), "click")
        w.emit(t + timedelta(seconds=3), _click(bot, camp, seller), "click")


def blind_clicks(w: _World, at: datetime) -> None:
    """Twelve clicks on one campaign in 40 minutes with no impression ever served."""
    bot = _attacker(w, *w.rng.choice(_ISPS))
    camp, seller = _competitor_campaign(w)
    for k in range(12):
        w.emit(at + timedelta(seconds=200 * k), _click(bot, camp, seller), "click")


def competitor_clicks(w: _World, at: datetime) -> None:
    """A seller's own account clicks a rival seller's campaign eight times in 50 minutes."""
    seller_user = _attacker(w, *w.rng.choice(_ISPS))
    me = f"s{w.rng.randrange(100, 200)}"
    camp, seller = _competitor_campaign(w)
    for k in range(8):
        t = at + timedelta(seconds=370 * k)
        w.emit(
            t, _impression(seller_user, camp, seller) | {"marketplace.actor.seller_id": me}, "click"
        )
        w.emit(
            t + timedelta(seconds=4),
            _click(seller_user, camp, seller) | {"marketplace.actor.seller_id": me},
            "click",
        )


def device_clicks(w: _World, at: datetime) -> None:
    """One phone behind rotating mobile addresses clicks a campaign 40 times in 10 minutes."""
    asn, country = w.rng.choice(_ISPS)
    device = w.token("dv_")
    camp, seller = _competitor_campaign(w)
    for k in range(40):
        bot = _User(w.token("x"), _ip(w.rng, 110), asn, country, device, [], _BROWSERS[2])
        t = at + timedelta(seconds=14 * k)
        w.emit(t, _impression(bot, camp, seller), "click")
        w.emit(t + timedelta(seconds=2), _click(bot, camp, seller), "click")


def cards_per_account(w: _World, at: datetime) -> None:
    """One account tries eight stolen cards with small amounts in twenty minutes."""
    user = _attacker(w, *w.rng.choice(_ISPS))
    for k in range(8):
        ok = w.rng.random() < 0.3
        w.emit(
            at + timedelta(seconds=150 * k),
            _payment(user, w.token("cf_"), w.rng.uniform(1, 5), ok),
            "card_testing",
        )


def cards_per_ip(w: _World, at: datetime) -> None:
    """Ten throw-away accounts on one address run fourteen cards, most declined."""
    ip = _ip(w.rng, 45)
    asn, country = w.rng.choice(_ISPS)
    for k in range(14):
        user = _User(
            f"x{w.token('')}", ip, asn, country, w.token("dv_"), [], w.rng.choice(_BROWSERS)
        )
        ok = w.rng.random() < 0.15
        w.emit(
            at + timedelta(seconds=90 * k),
            _payment(user, w.token("cf_"), w.rng.uniform(3, 30), ok),
            "card_testing",
        )


def small_authorisations(w: _World, at: datetime) -> None:
    """Twelve authorisations under two euros on three cards: validating stolen numbers."""
    user = _attacker(w, *w.rng.choice(_ISPS))
    cards = [w.token("cf_") for _ in range(3)]
    for k in range(12):
        ok = w.rng.random() < 0.8
        w.emit(
            at + timedelta(seconds=100 * k),
            _payment(user, cards[k % 3], w.rng.uniform(0.5, 1.99), ok),
            "card_testing",
        )


def declines(w: _World, at: datetime) -> None:
    """Fourteen ordinary-sized attempts on two cards, ten of them declined."""
    user = _attacker(w, *w.rng.choice(_ISPS))
    cards = [w.token("cf_") for _ in range(2)]
    for k in range(14):
        w.emit(
            at + timedelta(seconds=120 * k),
            _payment(user, cards[k % 2], w.rng.uniform(25, 90), k % 7 < 2),
            "card_testing",
        )


def takeover_new_country(w: _World, at: datetime) -> None:
    """Password guessing from abroad against a regular buyer, then a login that works."""
    victim = _victim(w)
    w.emit(
        at - timedelta(minutes=w.rng.uniform(65, 120)), _login(victim, True)
    )  # the owner, earlier
    asn, country = w.rng.choice(_FOREIGN)
    thief = _User(
        victim.id, _ip(w.rng, 41), asn, country, w.token("dv_"), [], w.rng.choice(_BROWSERS)
    )
    for k in range(5):
        w.emit(at + timedelta(seconds=30 * k), _login(thief, False), "account_takeover")
    w.emit(at + timedelta(seconds=160), _login(thief, True), "account_takeover")
    w.emit(
        at + timedelta(seconds=400),
        _payment(thief, w.token("cf_"), 480.0, True),
        "account_takeover",
    )


def takeover_payout(w: _World, at: datetime) -> None:
    """A seller account's password is reset, then its payout bank details are changed."""
    victim = _victim(w)
    thief = _User(
        victim.id,
        _ip(w.rng, 41),
        victim.asn,
        victim.country,
        w.token("dv_"),
        [],
        w.rng.choice(_BROWSERS),
    )
    w.emit(at, _base(thief, "password_reset", "/api/v1/account/password-reset"), "account_takeover")
    w.emit(at + timedelta(minutes=4), _login(thief, True), "account_takeover")
    w.emit(
        at + timedelta(minutes=9),
        _base(thief, "payout_details_changed", "/api/v1/seller/payout", "PUT"),
        "account_takeover",
    )


def takeover_travel(w: _World, at: datetime) -> None:
    """A hijacked session used from another continent 15 minutes after the owner's own visit."""
    victim = _victim(w)
    w.emit(at, _login(victim, True))
    w.emit(at + timedelta(seconds=30), _impression(victim, "cmp-sale", "s0"))
    asn, country = w.rng.choice(_FOREIGN)
    thief = _User(victim.id, _ip(w.rng, 41), asn, country, victim.device, [], victim.ua)
    for k in range(3):
        w.emit(
            at + timedelta(minutes=15, seconds=20 * k),
            _base(thief, "order_placed", "/api/v1/orders"),
            "account_takeover",
        )


def promo_farm(w: _World, at: datetime) -> None:
    """Six new accounts redeem the same promotion with one card within two hours."""
    card = w.token("cf_")
    for k in range(6):
        asn, country = w.rng.choice(_ISPS)
        user = _User(
            f"n{w.token('')}",
            _ip(w.rng, 150),
            asn,
            country,
            w.token("dv_"),
            [card],
            w.rng.choice(_BROWSERS),
        )
        t = at + timedelta(minutes=20 * k)
        w.emit(t, _base(user, "account_created", "/api/v1/account", status=201), "promo_abuse")
        w.emit(t + timedelta(seconds=50), _promo(user, card, "BLACKFRIDAY25"), "promo_abuse")


#: family -> (campaign, instances)
CAMPAIGNS = (
    (click_flood, 3), (click_farm, 2), (headless_clicks, 2), (blind_clicks, 2),
    (competitor_clicks, 2), (device_clicks, 2),
    (cards_per_account, 2), (cards_per_ip, 2), (small_authorisations, 2), (declines, 2),
    (takeover_new_country, 3), (takeover_payout, 2), (takeover_travel, 2),
    (promo_farm, 3),
)  # fmt: skip


def generate_fraud(
    seed: int = 7, normal: int = 20_000, start: datetime = DEFAULT_START
) -> FraudScenario:
    """About ``normal`` benign events over six hours with a sale peak, plus fraud campaigns
    starting during the peak. Deterministic for a given seed."""
    w = _World(random.Random(seed), start)
    _population(w, max(200, normal // 10))
    sessions = _session_times(w.rng, start, max(1, normal // 5))
    for at in sessions:
        hours = (at - start).total_seconds() / 3600
        _normal_session(w, at, 3 <= hours < 5)
    _signups(w, max(10, normal // 200))
    for campaign, count in CAMPAIGNS:
        for _ in range(count):
            _instance(w)
            campaign(w, start + timedelta(hours=w.rng.uniform(2.5, 4.8)))
    w.rows.sort(key=lambda row: row[0])
    events: list[dict[str, Any]] = []
    groups: dict[tuple[str, int], set[int]] = {}
    for index, (_, event, family, instance) in enumerate(w.rows):
        event["trace.id"] = f"req-{seed}-{index:07d}"
        events.append(event)
        if family:
            groups.setdefault((family, instance), set()).add(index)
    instances: dict[str, list[frozenset[int]]] = {f: [] for f in FAMILIES}
    for (family, _), indices in sorted(groups.items()):
        instances[family].append(frozenset(indices))
    return FraudScenario(events, instances, start, start + DURATION)


# -- scoring ----------------------------------------------------------------------------------
def family_of(tags: Iterable[str]) -> str | None:
    """The fraud family a rule's tags name (``marketguard.fraud.<family>``), if any."""
    for tag in tags:
        if tag.startswith(_FAMILY_TAG) and tag[len(_FAMILY_TAG) :] in FAMILIES:
            return tag[len(_FAMILY_TAG) :]
    return None


def score(
    scenario: FraudScenario,
    alerts: Iterable[tuple[Iterable[str], Iterable[str]]],
    index_of: Mapping[str, int],
) -> dict[str, FamilyScore]:
    """Precision and recall per family from ``(tags, event ids)`` of each alert.

    ``index_of`` maps an event id to its index in :attr:`FraudScenario.events` (see
    :func:`index_by_trace_id`); alerts without a fraud family tag are ignored.
    """
    truth = scenario.truth
    found: dict[str, list[set[int]]] = {f: [] for f in FAMILIES}
    for tags, ids in alerts:
        family = family_of(tags)
        if family:
            found[family].append({index_of[i] for i in ids if i in index_of})
    out = {}
    for family in FAMILIES:
        hit = set().union(*found[family])
        out[family] = FamilyScore(
            family=family,
            alerts=len(found[family]),
            true_alerts=sum(1 for s in found[family] if s & truth[family]),
            instances=len(scenario.instances[family]),
            detected=sum(1 for inst in scenario.instances[family] if inst & hit),
        )
    return out


def index_by_trace_id(event_ids: Iterable[str], trace_ids: Iterable[str | None]) -> dict[str, int]:
    """Event id -> scenario index, from stored events' ``event.id`` and ``trace.id`` columns
    (the scenario numbers its events ``req-<seed>-<index>``)."""
    out = {}
    for eid, trace in zip(event_ids, trace_ids, strict=True):
        if trace and trace.startswith("req-"):
            out[eid] = int(trace.rsplit("-", 1)[1])
    return out
