"""Build and own everything the live service runs: store, keys, cases, ingest writer, engine.

The app factory, the CLI and the tests all get their components from :func:`build_services`,
so there is one place that wires the stages together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.privacy import Pseudonymiser
from correlator.rules import RuleSet, load_rules
from marketguard.auth import KeyStore, open_keys
from marketguard.config import Settings, pseudonymisation_key
from marketguard.errors import MarketGuardError
from marketguard.metrics import METRICS
from marketguard.store import Store, open_store

__all__ = ["Services", "build_services"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The running parts of one MarketGuard process."""

    settings: Settings
    store: Store
    keys: KeyStore
    pseudonymiser: Pseudonymiser
    rules: RuleSet
    cases: Any = None  # marketguard.cases.CaseStore
    ingest: Any = None  # marketguard.app.ingest.IngestWriter
    engine: Any = None  # correlator.live.LiveEngine
    audit: Any = None  # marketguard.cases.audit.AuditTrail
    tickets: Any = None  # marketguard.cases.tickets.TicketStore
    ticket_policy: Any = None  # marketguard.cases.routing.RoutingPolicy
    prober: Any = None  # collectors.uptime.Prober
    sla: Any = None  # correlator.sla_engine.SlaEngine
    response: Any = None  # playbooks.stage.ResponseStage (runner, containment, GDPR clock)
    worker: Any = None  # playbooks.worker.ResponseWorker
    sink: Any = None  # where detections go: the case store, then the playbooks
    scheduler: Any = None  # background jobs besides rules: probes, SLOs
    leadership: Any = None  # marketguard.app.leader.Leadership: only the leader runs the jobs
    new_engine: Any = None  # builds a fresh LiveEngine for a re-elected leader
    _led_before: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        """Start the ingest writer, then the scheduled jobs once this replica leads (at once on
        DuckDB, whose single process always gets the lease)."""
        if self.ingest is not None:
            self.ingest.start()
        if self.leadership is not None:
            self.leadership.start()
        else:
            self.start_jobs()

    def start_jobs(self, term: int | None = None) -> None:
        """Start what only the leader runs: playbook worker, detection engine, probes, SLOs, audit."""
        if term is not None:
            log.info("starting the scheduled jobs (leader term %d)", term)
        if self._led_before and self.new_engine is not None:
            # Another replica may have led meanwhile: correlation buffers from our earlier term
            # would miss its matches, so start from the store as after a restart.
            self.engine = self.new_engine()
        self._led_before = True
        if self.worker is not None:
            self.worker.start()
            try:
                self.worker.submit(self._open_incidents())  # playbooks a stop interrupted resume
            except MarketGuardError:  # the engine must start all the same; the next election retries
                log.exception("could not list open incidents to resume their playbooks")
        if self.engine is not None:
            self.engine.start()
        self._start_background()

    def stop_jobs(self) -> None:
        """Stop what only the leader runs (the replica lost or gave up the lease)."""
        if self.engine is not None:
            self.engine.stop()
        if self.worker is not None:
            self.worker.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    def _start_background(self) -> None:
        """Probes (one job per monitor) and SLO/SLA evaluation, on their own scheduler."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        monitors = len(self.prober.monitors) if self.prober is not None else 0
        pool = ThreadPoolExecutor(max(4, monitors + 1))
        self.scheduler = BackgroundScheduler(timezone="UTC", executors={"default": pool})
        if monitors:
            self.prober.schedule(self.scheduler)
        if self.audit is not None:
            self.scheduler.add_job(self.verify_audit, "interval", seconds=max(60.0, self.settings.slo_interval_s),
                                   id="audit-verify", max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
        if self.sla is not None:
            self.scheduler.add_job(self.run_sla, "interval", seconds=self.settings.slo_interval_s,
                                   id="sla", max_instances=1, coalesce=True)
        self.scheduler.start()

    def _open_incidents(self) -> list[str]:
        """Ids of every open incident (playbook runs are idempotent, so re-running is safe)."""
        from marketguard.cases import CaseFilters

        ids: list[str] = []
        cursor = None
        while True:
            page = self.cases.incidents(CaseFilters(status="open"), cursor, 500)
            ids.extend(i.id for i in page.items)
            cursor = page.next_cursor
            if not cursor:
                return ids

    def verify_audit(self) -> None:
        """Scheduled audit-chain verification, exported as ``marketguard_audit_chain_verified``."""
        try:
            result = self.audit.verify()
            METRICS.audit_chain_verified.set(1 if result.ok else 0)
            if not result.ok:
                log.error("audit chain broken at entry %s: %s", result.first_broken_seq, result.reason)
        except Exception:
            log.exception("audit verification failed")
            METRICS.audit_chain_verified.set(0)

    def run_sla(self) -> None:
        """One SLO/seller-SLA evaluation; its detections become alerts like any rule's."""
        try:
            cycle = self.sla.run_once(datetime.now(UTC))
            if cycle.detections:
                (self.sink or self.cases).record(cycle.detections)
            _export_sla_metrics(cycle)
        except Exception:  # a failing evaluation must not stop the scheduler
            log.exception("SLO/SLA evaluation failed; retried on the next interval")

    def close(self) -> None:
        """Stop workers (giving up the lease), flushing what was acknowledged, and close the store."""
        if self.leadership is not None:
            self.leadership.stop(release=True)
        self.stop_jobs()
        if self.ingest is not None:
            self.ingest.stop()
        self.store.close()


def _export_sla_metrics(cycle: Any) -> None:
    """SLO and seller-SLA gauges from one evaluation."""
    for st in cycle.slos:
        for window, burn in st.windows.items():
            METRICS.slo_burn_rate.labels(st.slo_id, st.service, window).set(burn.burn_rate)
        METRICS.slo_budget_remaining.labels(st.slo_id, st.service).set(st.budget_remaining)
        if st.attainment is not None:
            METRICS.slo_sli.labels(st.slo_id, st.service).set(st.attainment)
    for report in cycle.sellers:
        for seller, c in report.sellers.items():
            known = [v for v in c.compliance.values() if v is not None]
            if known:
                METRICS.seller_sla_compliance.labels(seller, "all").set(sum(known) / len(known))
            if c.score is not None:
                METRICS.seller_score.labels(seller).set(c.score)


def _repo_relative(path: Path) -> Path:
    """A relative data file (e.g. the routing policy) is looked up in the working directory,
    then in the installed source tree, so `marketguard serve` works from anywhere."""
    if path.is_absolute() or path.exists():
        return path
    shipped = Path(__file__).resolve().parents[2] / path
    return shipped if shipped.exists() else path


def build_services(settings: Settings, *, with_engine: bool = True, store: Store | None = None) -> Services:
    """Open the store (or build on ``store``, already open) and every component the service
    needs (not yet started)."""
    from collectors.uptime import Prober, load_monitors
    from correlator.baselines import open_baselines
    from correlator.live import LiveEngine
    from correlator.sla_engine import SlaEngine
    from marketguard.app.ingest import IngestWriter
    from marketguard.app.leader import Leadership, replica_name
    from marketguard.cases import open_cases
    from marketguard.cases.audit import open_audit
    from marketguard.cases.routing import load_policy
    from marketguard.cases.tickets import open_tickets
    from marketguard.store.lease import open_leases
    from playbooks.stage import build_response
    from playbooks.worker import RespondingSink, ResponseWorker

    store = store if store is not None else open_store(settings)
    rules = load_rules(settings.rules_dirs, dialect=store.dialect).for_categories(settings.logsources)
    for failure in rules.failures:
        log.warning("rule not loaded: %s: %s", failure.file, failure.reason)
    services = Services(
        settings=settings,
        store=store,
        keys=open_keys(store),
        pseudonymiser=Pseudonymiser(pseudonymisation_key(settings)),
        rules=rules,
    )
    services.cases = open_cases(store, settings)
    services.audit = open_audit(store)
    services.tickets = open_tickets(store, services.audit, cases=services.cases)
    services.ticket_policy = load_policy(_repo_relative(settings.routing_file))
    services.response = build_response(
        store, services.cases, services.tickets, services.ticket_policy, services.audit,
        playbook_dir=_repo_relative(Path("playbooks")), base_url=f"http://{settings.host}:{settings.port}",
        gdpr_notifier="email-dpo",
    )
    services.extras |= {"containment": services.response.containment, "gdpr": services.response.gdpr}
    services.worker = ResponseWorker(services.response.runner, services.response.gdpr)
    services.sink = RespondingSink(services.cases, services.worker)  # record, then run playbooks off-thread
    services.ingest = IngestWriter(store, settings)
    services.sla = SlaEngine.from_dirs(store, settings.rules_dirs)
    monitors = settings.monitors_path
    services.prober = Prober(
        lambda batch: services.ingest.submit(batch, source="uptime"),
        load_monitors(monitors) if monitors.is_file() else [],
    )
    if with_engine:
        baselines = open_baselines(store)
        services.new_engine = lambda: LiveEngine(store, rules, services.sink, settings, baselines=baselines)
        services.engine = services.new_engine()
    services.leadership = Leadership(
        open_leases(store), replica_name(), lease_s=settings.leader_lease_s, renew_s=settings.leader_renew_s,
        on_elected=services.start_jobs, on_deposed=services.stop_jobs,
    )
    return services
