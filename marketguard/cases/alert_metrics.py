"""Counters for what a committed :meth:`~marketguard.cases.CaseStore.record` call created.

Every case-store backend calls :func:`count_recorded` once, after its transaction committed,
with the detections it was given and the :class:`~marketguard.cases.grouping.Changes` it
wrote, so both backends count the same and nothing counts twice:

* ``marketguard_fraud_alerts_total{family, severity}``: one per **new** alert of type
  ``fraud`` (repeats folded into an open alert by suppression are not new alerts). ``family``
  is the rule's ``marketguard.fraud.<family>`` tag (``card_testing``, ``click``,
  ``account_takeover``, ``promo_abuse``; ``other`` without one); ``severity`` the rule level,
  as in ``marketguard_alerts_total``.
* ``marketguard_seller_sla_breaches_total{seller, category}``: one per seller-SLA breach
  detection whose dedupe key this call recorded for the first time. The SLA engine re-emits
  every breach of its rolling window on each cycle and after a restart; only the first
  recording of its persisted dedupe key counts, so re-evaluation, retries and restarts never
  add to the counter. ``category`` is the ticket's category (``unknown`` without one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from marketguard.cases.grouping import Changes, dedupe_key
from marketguard.detections import Detection
from marketguard.metrics import Metrics

__all__ = ["count_recorded", "fraud_family", "SELLER_SLA_KIND", "FRAUD_FAMILY_TAG"]

#: ``Detection.kind`` of a seller support-SLA breach (``correlator.seller_sla``).
SELLER_SLA_KIND = "seller_sla"
#: Tag prefix naming a fraud rule's family (``rules/fraud/``, ``correlator.baselines``).
FRAUD_FAMILY_TAG = "marketguard.fraud."


def fraud_family(tags: Iterable[str]) -> str:
    """The family a fraud rule's ``marketguard.fraud.<family>`` tag names, else ``other``."""
    for tag in tags:
        if tag.lower().startswith(FRAUD_FAMILY_TAG) and len(tag) > len(FRAUD_FAMILY_TAG):
            return tag[len(FRAUD_FAMILY_TAG):].lower()
    return "other"


def count_recorded(metrics: Metrics, detections: Sequence[Detection], changes: Changes) -> None:
    """Count the fraud alerts and seller-SLA breaches one committed record call created."""
    for alert_id in changes.new_alerts:
        alert = changes.alerts[alert_id]
        if alert.type == "fraud":
            metrics.fraud_alerts.labels(fraud_family(alert.tags), alert.rule_level).inc()
    fresh = {key for key, _ in changes.keys}
    for d in detections:
        if d.kind != SELLER_SLA_KIND or not fresh:
            continue
        key = dedupe_key(d)
        if key in fresh:
            fresh.discard(key)  # the same breach twice in one batch is one breach
            seller = str(d.evidence.get("marketplace.seller_id") or "unknown")
            category = str(d.evidence.get("ticket.category") or "unknown")
            metrics.seller_sla_breaches.labels(seller, category).inc()
