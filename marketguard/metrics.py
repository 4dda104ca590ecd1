"""Every Prometheus metric MarketGuard exposes, declared once.

Names follow ``marketguard_<subsystem>_<what>_<unit>``. Modules import the objects they
update; nothing is patched in from outside. ``REGISTRY`` is the default; tests may pass
their own registry to :func:`make_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "make_metrics", "METRICS", "REGISTRY", "ACK_BUCKETS", "RESOLVE_BUCKETS"]

REGISTRY = CollectorRegistry(auto_describe=True)

#: MTTA buckets (seconds), on the response SLAs of playbooks/routing.yaml: 15m (P1), 1h, 4h, 24h.
ACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
#: MTTR buckets (seconds), on the resolution SLAs: 4h (P1), 24h, 3d, 14d.
RESOLVE_BUCKETS = (900, 3600, 14400, 28800, 86400, 259200, 604800, 1209600, 2592000)


@dataclass(frozen=True)
class Metrics:
    """The metric objects of one registry."""

    events_ingested: Counter
    events_rejected: Counter
    ingest_lag: Histogram
    ingest_queue_depth: Gauge
    ingest_backpressure: Counter
    rule_eval_seconds: Histogram
    rule_errors: Counter
    rules_behind: Gauge
    rule_last_run: Gauge
    detection_latency: Histogram
    alerts: Counter
    incidents: Counter
    incidents_open: Gauge
    dead_letters: Counter
    spans_received: Counter
    spans_rejected: Counter
    probe_success: Gauge
    probe_duration: Gauge
    tls_cert_expiry: Gauge
    probes: Counter
    notifications: Counter
    playbook_steps: Counter
    containment_actions: Counter
    gdpr_reminders: Counter
    slo_burn_rate: Gauge
    slo_budget_remaining: Gauge
    slo_sli: Gauge
    seller_sla_compliance: Gauge
    seller_score: Gauge
    audit_chain_verified: Gauge
    seller_sla_breaches: Counter
    incident_acknowledge: Histogram
    incident_resolve: Histogram
    fraud_alerts: Counter
    leader: Gauge


def make_metrics(registry: CollectorRegistry) -> Metrics:
    """Declare every metric on ``registry``."""
    return Metrics(
        events_ingested=Counter("marketguard_ingest_events_total", "Events durably stored, by source and dataset.", ["source", "dataset"], registry=registry),
        events_rejected=Counter("marketguard_ingest_rejected_total", "Input items rejected (dead-lettered), by source and reason.", ["source", "reason"], registry=registry),
        ingest_lag=Histogram("marketguard_ingest_lag_seconds", "Time from receiving a batch to committing it in the store.", registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        ingest_queue_depth=Gauge("marketguard_ingest_queue_batches", "Batches waiting for the store writer.", registry=registry),
        ingest_backpressure=Counter("marketguard_ingest_backpressure_total", "Requests answered 429 because the writer fell behind.", registry=registry),
        rule_eval_seconds=Histogram("marketguard_rule_evaluation_seconds", "Duration of one rule evaluation.", ["rule_id"], registry=registry, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)),
        rule_errors=Counter("marketguard_rule_errors_total", "Rule evaluations that failed.", ["rule_id"], registry=registry),
        rules_behind=Gauge("marketguard_rules_behind_schedule", "Rules whose last run ended later than their interval allows.", registry=registry),
        rule_last_run=Gauge("marketguard_rule_last_run_timestamp_seconds", "When each rule last completed.", ["rule_id"], registry=registry),
        detection_latency=Histogram("marketguard_detection_latency_seconds", "From an event's ingestion to its alert being stored.", registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)),
        alerts=Counter("marketguard_alerts_total", "Alerts opened, by severity.", ["severity"], registry=registry),
        incidents=Counter("marketguard_incidents_total", "Incidents opened, by severity.", ["severity"], registry=registry),
        incidents_open=Gauge("marketguard_incidents_open", "Incidents not yet closed, by severity.", ["severity"], registry=registry),
        dead_letters=Counter("marketguard_dead_letters_total", "Items written to the dead-letter store, by source.", ["source"], registry=registry),
        spans_received=Counter("marketguard_otlp_spans_received_total", "Spans received on /v1/traces, by sender.", ["sender"], registry=registry),
        spans_rejected=Counter("marketguard_otlp_spans_rejected_total", "Spans rejected (partial success, dead-lettered), by reason.", ["reason"], registry=registry),
        probe_success=Gauge("marketguard_probe_success", "1 if the monitor's last probe succeeded, else 0.", ["monitor"], registry=registry),
        probe_duration=Gauge("marketguard_probe_duration_seconds", "Duration of the monitor's last probe.", ["monitor"], registry=registry),
        tls_cert_expiry=Gauge("marketguard_tls_cert_expiry_seconds", "Seconds until the monitor's TLS certificate expires (negative once expired), at the last probe.", ["monitor"], registry=registry),
        probes=Counter("marketguard_probes_total", "Probes run, by monitor and status (up/down).", ["monitor", "status"], registry=registry),
        notifications=Counter("marketguard_notifier_deliveries_total", "Notification deliveries after retries, by notifier and outcome (delivered, failed).", ["notifier", "outcome"], registry=registry),
        playbook_steps=Counter("marketguard_playbook_steps_total", "Playbook steps run, by step kind and outcome (done, failed).", ["kind", "outcome"], registry=registry),
        containment_actions=Counter("marketguard_containment_actions_total", "Containment actions, by action and status reached (pending, approved, rejected, executed, failed).", ["action", "status"], registry=registry),
        gdpr_reminders=Counter("marketguard_gdpr_reminders_total", "GDPR Article 33 reminders raised.", registry=registry),
        slo_burn_rate=Gauge("marketguard_slo_burn_rate", "Error-budget burn rate of an SLO over a trailing window; 1 = on budget.", ["slo", "service", "window"], registry=registry),
        slo_budget_remaining=Gauge("marketguard_slo_error_budget_remaining_ratio", "Share of the SLO period's error budget still unspent (<0 = overspent).", ["slo", "service"], registry=registry),
        slo_sli=Gauge("marketguard_slo_sli_ratio", "Good events / valid events over the SLO period.", ["slo", "service"], registry=registry),
        seller_sla_compliance=Gauge("marketguard_seller_sla_compliance_ratio", "Share of a seller's support tickets within the SLA over the rolling window (category: all).", ["seller", "category"], registry=registry),
        seller_score=Gauge("marketguard_seller_service_score", "The seller's 0-100 service score.", ["seller"], registry=registry),
        audit_chain_verified=Gauge("marketguard_audit_chain_verified", "1 if the last scheduled audit verification found the hash chain intact, else 0.", registry=registry),
        seller_sla_breaches=Counter("marketguard_seller_sla_breaches_total", "Seller support-SLA breaches, counted once when the breach is first recorded (each opens an sla alert owned by the seller).", ["seller", "category"], registry=registry),
        incident_acknowledge=Histogram("marketguard_incident_acknowledge_seconds", "From an incident's creation to the first acknowledgement of any of its tickets (MTTA), observed once per incident.", ["severity"], registry=registry, buckets=ACK_BUCKETS),
        incident_resolve=Histogram("marketguard_incident_resolve_seconds", "From an incident's creation to the resolution of its last open ticket (MTTR), observed once per incident.", ["severity"], registry=registry, buckets=RESOLVE_BUCKETS),
        fraud_alerts=Counter("marketguard_fraud_alerts_total", "Fraud alerts opened, by family (card_testing, click, account_takeover, promo_abuse; other) and rule level.", ["family", "severity"], registry=registry),
        leader=Gauge("marketguard_leader", "1 while this replica holds the scheduler lease (runs rules, SLOs, probes, audit verification and playbooks), else 0.", ["replica"], registry=registry),
    )


METRICS = make_metrics(REGISTRY)
