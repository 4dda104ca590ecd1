"""Promotion abuse campaigns: new accounts redeeming one promotion with one card."""

from __future__ import annotations

from datetime import datetime, timedelta

from marketguard.app.scenario.fraud_events import api_event, promo_event
from marketguard.app.scenario.fraud_world import ISPS, World, newcomer

__all__ = ["promo_farm"]


def promo_farm(w: World, at: datetime) -> None:
    """Six new accounts redeem the same promotion with one card within two hours."""
    card = w.token("cf_")
    for k in range(6):
        asn, country = w.rng.choice(ISPS)
        user = newcomer(w, f"n{w.token('')}", asn, country, 150, [card])
        t = at + timedelta(minutes=20 * k)
        w.emit(t, api_event(user, "account_created", "/api/v1/account", status=201), "promo_abuse")
        w.emit(t + timedelta(seconds=50), promo_event(user, card, "BLACKFRIDAY25"), "promo_abuse")

