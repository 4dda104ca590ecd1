"""Card testing campaigns: many cards per account or address, tiny amounts, runs of declines."""

from __future__ import annotations

from datetime import datetime, timedelta

from marketguard.app.scenario.fraud_events import payment_event
from marketguard.app.scenario.fraud_world import BROWSERS, ISPS, User, World, attacker, random_ip

__all__ = ["cards_per_account", "cards_per_ip", "small_authorisations", "declines"]


def cards_per_account(w: World, at: datetime) -> None:
    """One account tries eight stolen cards with small amounts in twenty minutes."""
    user = attacker(w, *w.rng.choice(ISPS))
    for k in range(8):
        ok = w.rng.random() < 0.3
        _try_card(w, at + timedelta(seconds=150 * k), user, w.token("cf_"), w.rng.uniform(1, 5), ok)


def cards_per_ip(w: World, at: datetime) -> None:
    """Ten throw-away accounts on one address run fourteen cards, most declined."""
    ip = random_ip(w.rng, 45)
    asn, country = w.rng.choice(ISPS)
    for k in range(14):
        user = User(
            f"x{w.token('')}", ip, asn, country, w.token("dv_"), [], w.rng.choice(BROWSERS)
        )
        ok = w.rng.random() < 0.15
        _try_card(w, at + timedelta(seconds=90 * k), user, w.token("cf_"), w.rng.uniform(3, 30), ok)


def small_authorisations(w: World, at: datetime) -> None:
    """Twelve authorisations under two euros on three cards: validating stolen numbers."""
    user = attacker(w, *w.rng.choice(ISPS))
    cards = [w.token("cf_") for _ in range(3)]
    for k in range(12):
        ok = w.rng.random() < 0.8
        _try_card(w, at + timedelta(seconds=100 * k), user, cards[k % 3], w.rng.uniform(0.5, 1.99), ok)


def declines(w: World, at: datetime) -> None:
    """Fourteen ordinary-sized attempts on two cards, ten of them declined."""
    user = attacker(w, *w.rng.choice(ISPS))
    cards = [w.token("cf_") for _ in range(2)]
    for k in range(14):
        _try_card(w, at + timedelta(seconds=120 * k), user, cards[k % 2], w.rng.uniform(25, 90), k % 7 < 2)


def _try_card(w: World, at: datetime, user: User, card: str, amount: float, ok: bool) -> None:
    """One authorisation of a card-testing attack."""
    w.emit(at, payment_event(user, card, amount, ok), "card_testing")
