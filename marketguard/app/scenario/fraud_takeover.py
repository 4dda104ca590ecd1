"""Account takeover campaigns: guessing then a login from abroad, reset then payout change, a hijacked session."""

from __future__ import annotations

from datetime import datetime, timedelta

from marketguard.app.scenario.fraud_events import (
    api_event,
    impression_event,
    login_event,
    payment_event,
)
from marketguard.app.scenario.fraud_world import (
    FOREIGN,
    User,
    World,
    newcomer,
    random_ip,
    victim_of,
)

__all__ = ["takeover_new_country", "takeover_payout", "takeover_travel"]


def takeover_new_country(w: World, at: datetime) -> None:
    """Password guessing from abroad against a regular buyer, then a login that works."""
    victim = victim_of(w)
    w.emit(
        at - timedelta(minutes=w.rng.uniform(65, 120)), login_event(victim, True)
    )  # the owner, earlier
    asn, country = w.rng.choice(FOREIGN)
    thief = newcomer(w, victim.id, asn, country, 41, [])
    for k in range(5):
        w.emit(at + timedelta(seconds=30 * k), login_event(thief, False), "account_takeover")
    w.emit(at + timedelta(seconds=160), login_event(thief, True), "account_takeover")
    w.emit(
        at + timedelta(seconds=400),
        payment_event(thief, w.token("cf_"), 480.0, True),
        "account_takeover",
    )


def takeover_payout(w: World, at: datetime) -> None:
    """A seller account's password is reset, then its payout bank details are changed."""
    victim = victim_of(w)
    thief = newcomer(w, victim.id, victim.asn, victim.country, 41, [])
    w.emit(at, api_event(thief, "password_reset", "/api/v1/account/password-reset"), "account_takeover")
    w.emit(at + timedelta(minutes=4), login_event(thief, True), "account_takeover")
    w.emit(
        at + timedelta(minutes=9),
        api_event(thief, "payout_details_changed", "/api/v1/seller/payout", "PUT"),
        "account_takeover",
    )


def takeover_travel(w: World, at: datetime) -> None:
    """A hijacked session used from another continent 15 minutes after the owner's own visit."""
    victim = victim_of(w)
    w.emit(at, login_event(victim, True))
    w.emit(at + timedelta(seconds=30), impression_event(victim, "cmp-sale", "s0"))
    asn, country = w.rng.choice(FOREIGN)
    thief = User(victim.id, random_ip(w.rng, 41), asn, country, victim.device, [], victim.ua)
    for k in range(3):
        w.emit(
            at + timedelta(minutes=15, seconds=20 * k),
            api_event(thief, "order_placed", "/api/v1/orders"),
            "account_takeover",
        )

