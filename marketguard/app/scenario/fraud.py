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

Modules: the world and its events (:mod:`.fraud_world`, :mod:`.fraud_events`), normal
traffic (:mod:`.fraud_traffic`), one module per fraud family (:mod:`.fraud_click`,
:mod:`.fraud_cards`, :mod:`.fraud_takeover`, :mod:`.fraud_promo`) and the ground truth with
its scoring (:mod:`.fraud_truth`); this one mixes them into a scenario.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from marketguard.app.scenario.fraud_cards import (
    cards_per_account,
    cards_per_ip,
    declines,
    small_authorisations,
)
from marketguard.app.scenario.fraud_click import (
    blind_clicks,
    click_farm,
    click_flood,
    competitor_clicks,
    device_clicks,
    headless_clicks,
)
from marketguard.app.scenario.fraud_promo import promo_farm
from marketguard.app.scenario.fraud_takeover import (
    takeover_new_country,
    takeover_payout,
    takeover_travel,
)
from marketguard.app.scenario.fraud_traffic import (
    normal_session,
    population,
    rng_choice,
    session_times,
    signups,
)
from marketguard.app.scenario.fraud_truth import (
    FAMILIES,
    FamilyScore,
    FraudScenario,
    family_of,
    index_by_trace_id,
    score,
)
from marketguard.app.scenario.fraud_world import DEFAULT_START, DURATION, World

__all__ = [
    "FAMILIES",
    "FraudScenario",
    "FamilyScore",
    "generate_fraud",
    "family_of",
    "score",
    "index_by_trace_id",
    # moved to the modules above, still importable from here
    "DEFAULT_START",
    "DURATION",
    "CAMPAIGNS",
    "rng_choice",
]


def _instance(w: World) -> None:
    w.next_instance += 1


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
    w = World(random.Random(seed), start)
    population(w, max(200, normal // 10))
    sessions = session_times(w.rng, start, max(1, normal // 5))
    for at in sessions:
        hours = (at - start).total_seconds() / 3600
        normal_session(w, at, 3 <= hours < 5)
    signups(w, max(10, normal // 200))
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

