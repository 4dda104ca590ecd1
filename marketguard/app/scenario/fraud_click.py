"""Click fraud campaigns: floods, farms, headless and blind clicks, rivals and rotating phones."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from marketguard.app.scenario.fraud_events import click_event, impression_event
from marketguard.app.scenario.fraud_world import (
    BROWSERS,
    HEADLESS,
    HOSTING,
    ISPS,
    User,
    World,
    attacker,
    competitor_campaign,
    random_ip,
)

__all__ = ["click_flood", "click_farm", "headless_clicks", "blind_clicks", "competitor_clicks", "device_clicks"]


def click_flood(w: World, at: datetime) -> None:
    """One address clicks a rival's campaign 45 times in 8 minutes (each after an impression)."""
    bot = attacker(w, *w.rng.choice(ISPS))
    camp, seller = competitor_campaign(w)
    for k in range(45):
        t = at + timedelta(seconds=10.5 * k)
        _view_then_click(w, t, bot, camp, seller, 2)


def click_farm(w: World, at: datetime) -> None:
    """Twenty-five cloud servers click one campaign twice each within 20 minutes."""
    asn = w.rng.choice(HOSTING)
    camp, seller = competitor_campaign(w)
    for k in range(25):
        bot = attacker(w, asn, "US", first=157)
        for j in range(2):
            w.emit(at + timedelta(seconds=45 * k + 20 * j), click_event(bot, camp, seller), "click")


def headless_clicks(w: World, at: datetime) -> None:
    """A headless browser on a home connection clicks one campaign six times."""
    bot = attacker(w, *w.rng.choice(ISPS), ua=w.rng.choice(HEADLESS))
    camp, seller = competitor_campaign(w)
    for k in range(6):
        t = at + timedelta(seconds=70 * k)
        _view_then_click(w, t, bot, camp, seller, 3)


def blind_clicks(w: World, at: datetime) -> None:
    """Twelve clicks on one campaign in 40 minutes with no impression ever served."""
    bot = attacker(w, *w.rng.choice(ISPS))
    camp, seller = competitor_campaign(w)
    for k in range(12):
        w.emit(at + timedelta(seconds=200 * k), click_event(bot, camp, seller), "click")


def competitor_clicks(w: World, at: datetime) -> None:
    """A seller's own account clicks a rival seller's campaign eight times in 50 minutes."""
    seller_user = attacker(w, *w.rng.choice(ISPS))
    me = f"s{w.rng.randrange(100, 200)}"
    camp, seller = competitor_campaign(w)
    for k in range(8):
        t = at + timedelta(seconds=370 * k)
        _view_then_click(w, t, seller_user, camp, seller, 4, {"marketplace.actor.seller_id": me})


def device_clicks(w: World, at: datetime) -> None:
    """One phone behind rotating mobile addresses clicks a campaign 40 times in 10 minutes."""
    asn, country = w.rng.choice(ISPS)
    device = w.token("dv_")
    camp, seller = competitor_campaign(w)
    for k in range(40):
        bot = User(w.token("x"), random_ip(w.rng, 110), asn, country, device, [], BROWSERS[2])
        t = at + timedelta(seconds=14 * k)
        _view_then_click(w, t, bot, camp, seller, 2)


def _view_then_click(
    w: World, at: datetime, bot: User, camp: str, seller: str, delay_s: int,
    extra: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """An ad impression at ``at`` and the bot's click on it ``delay_s`` seconds later."""
    w.emit(at, impression_event(bot, camp, seller) | (extra or {}), "click")
    w.emit(at + timedelta(seconds=delay_s), click_event(bot, camp, seller) | (extra or {}), "click")
