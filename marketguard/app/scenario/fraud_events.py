"""The gateway events of the fraud scenario (ECS flat dicts), one builder per kind of request."""

from __future__ import annotations

from typing import Any

from marketguard.app.scenario.fraud_world import User

__all__ = [
    "api_event", "impression_event", "click_event", "payment_event", "promo_event", "login_event",
]


def api_event(
    user: User, action: str, path: str, method: str = "POST", status: int = 200
) -> dict[str, Any]:
    """A request of ``user`` to the API: who, from where, what."""
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


def impression_event(user: User, campaign: str, seller: str) -> dict[str, Any]:
    """An ad of ``seller``'s ``campaign`` shown to ``user``."""
    ev = api_event(user, "ad_impression", f"/api/v1/ads/{campaign}/impression", "GET")
    return ev | {"marketplace.ad.campaign_id": campaign, "marketplace.seller_id": seller}


def click_event(user: User, campaign: str, seller: str) -> dict[str, Any]:
    """A click of ``user`` on an ad of ``seller``'s ``campaign``."""
    ev = api_event(user, "ad_click", f"/api/v1/ads/{campaign}/click", "GET", 302)
    return ev | {"marketplace.ad.campaign_id": campaign, "marketplace.seller_id": seller}


def payment_event(user: User, card: str, amount: float, ok: bool) -> dict[str, Any]:
    """A card authorisation, approved or declined."""
    ev = api_event(
        user, "payment_authorization", "/api/v1/payments/authorize", status=200 if ok else 402
    )
    return ev | {
        "marketplace.payment.card_fingerprint": card,
        "marketplace.payment.amount": round(amount, 2),
        "marketplace.payment.result": "approved" if ok else "declined",
    }


def promo_event(user: User, card: str, code: str) -> dict[str, Any]:
    """A promotion code redeemed with a card."""
    ev = api_event(user, "promo_redeem", f"/api/v1/promotions/{code}/redeem")
    return ev | {"marketplace.payment.card_fingerprint": card, "marketplace.promotion.code": code}


def login_event(user: User, ok: bool) -> dict[str, Any]:
    """A login, successful or failed."""
    return api_event(
        user, "login_success" if ok else "login_failed", "/api/v1/login", status=200 if ok else 401
    )

