"""Normal traffic of the fraud scenario: the population, a sale-day rhythm, benign sessions
and new sign-ups, with the legitimate look-alikes of fraud among them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from marketguard.app.scenario.fraud_events import (
    api_event,
    click_event,
    impression_event,
    login_event,
    payment_event,
    promo_event,
)
from marketguard.app.scenario.fraud_world import (
    BROWSERS,
    DURATION,
    ISPS,
    User,
    World,
    newcomer,
    random_ip,
)

__all__ = ["population", "session_times", "normal_session", "rng_choice", "signups"]


def population(w: World, n_users: int) -> None:
    """The buyers (some behind carrier-grade NAT) and the sellers' campaigns."""
    rng = w.rng
    cgnat = [(random_ip(rng, 100 + i), *rng.choice(ISPS)) for i in range(8)]
    for i in range(n_users):
        asn, country = rng.choice(ISPS)
        ip = random_ip(rng, 81 + i % 40)
        if rng.random() < 0.15:  # mobile users behind carrier-grade NAT
            ip, asn, country = rng.choice(cgnat)
        cards = [w.token("cf_") for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        w.users.append(
            User(f"u{i}", ip, asn, country, w.token("dv_"), cards, rng.choice(BROWSERS))
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


def session_times(rng: random.Random, start: datetime, count: int) -> list[datetime]:
    """Start times of ``count`` sessions, following the day's :func:`_intensity`."""
    span = DURATION.total_seconds()
    out: list[datetime] = []
    while len(out) < count:
        at = rng.uniform(0, span - 900)
        if rng.random() * 4.0 < _intensity(at / 3600):
            out.append(start + timedelta(seconds=at))
    return sorted(out)


def normal_session(w: World, at: datetime, peak: bool) -> None:
    """One benign visit: ads seen and clicked, maybe a login, a payment, a promotion."""
    rng, user = w.rng, rng_choice(w.rng, w.users)
    names = list(w.campaigns)
    t = at
    for _ in range(rng.randrange(1, 5)):
        camp = "cmp-sale" if rng.random() < (0.5 if peak else 0.2) else rng.choice(names)
        w.emit(t, impression_event(user, camp, w.campaigns[camp]))
        t += timedelta(seconds=rng.uniform(1, 20))
        if rng.random() < 0.3:
            for _ in range(1 if rng.random() < 0.9 else 3):
                w.emit(t, click_event(user, camp, w.campaigns[camp]))
                t += timedelta(seconds=rng.uniform(2, 30))
    roll = rng.random()
    if roll < 0.45:
        fails = 0 if rng.random() < 0.8 else rng.choice((1, 1, 2, 3))
        for _ in range(fails):
            w.emit(t, login_event(user, False))
            t += timedelta(seconds=rng.uniform(3, 20))
        w.emit(t, login_event(user, True))
        t += timedelta(seconds=rng.uniform(10, 120))
        card = rng.choice(user.cards)
        if rng.random() < 0.04:
            w.emit(t, payment_event(user, card, rng.lognormvariate(3.5, 0.8), False))
            t += timedelta(seconds=rng.uniform(10, 60))
            card = rng.choice(user.cards)
        w.emit(t, payment_event(user, card, rng.lognormvariate(3.5, 0.8), True))
        if peak and rng.random() < 0.3:
            w.emit(t + timedelta(seconds=1), promo_event(user, card, "BLACKFRIDAY25"))
    elif roll < 0.465:
        w.emit(t, api_event(user, "password_reset", "/api/v1/account/password-reset"))
    elif roll < 0.475 and user.id.endswith("0"):  # sellers updating their bank details
        w.emit(t, api_event(user, "payout_details_changed", "/api/v1/seller/payout", "PUT"))


def rng_choice(rng: random.Random, items: list[User]) -> User:
    """A user, the first tenth of the population (the regulars) three times as likely."""
    if rng.random() < 0.25:
        return items[rng.randrange(max(1, len(items) // 10))]
    return items[rng.randrange(len(items))]


def signups(w: World, count: int) -> None:
    """New accounts during the sale: each redeems the promotion with its own card (families
    share one card between two accounts)."""
    rng = w.rng
    for i in range(count):
        at = w.start + timedelta(hours=rng.uniform(3, 5))
        asn, country = rng.choice(ISPS)
        shared = w.users[-1].cards[0] if i % 10 == 9 else w.token("cf_")
        user = newcomer(w, f"n{i}", asn, country, 150, [shared])
        w.users.append(user)
        w.emit(at, api_event(user, "account_created", "/api/v1/account", status=201))
        w.emit(at + timedelta(seconds=40), payment_event(user, shared, rng.uniform(20, 90), True))
        w.emit(at + timedelta(seconds=41), promo_event(user, shared, "BLACKFRIDAY25"))

