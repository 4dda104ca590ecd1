"""Build and own everything the live service runs: store, keys, cases, ingest writer, engine.

The app factory, the CLI and the tests all get their components from :func:`build_services`,
so there is one place that wires the stages together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from collectors.privacy import Pseudonymiser
from correlator.rules import RuleSet, load_rules
from marketguard.auth import KeyStore, open_keys
from marketguard.config import Settings, pseudonymisation_key
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
    prober: Any = None  # collectors.uptime.Prober
    probe_scheduler: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        """Start the background workers (ingest writer, detection scheduler)."""
        if self.ingest is not None:
            self.ingest.start()
        if self.engine is not None:
            self.engine.start()
        if self.prober is not None and self.prober.monitors:
            from apscheduler.executors.pool import ThreadPoolExecutor
            from apscheduler.schedulers.background import BackgroundScheduler

            pool = ThreadPoolExecutor(max(4, len(self.prober.monitors)))
            self.probe_scheduler = BackgroundScheduler(timezone="UTC", executors={"default": pool})
            self.prober.schedule(self.probe_scheduler)
            self.probe_scheduler.start()

    def close(self) -> None:
        """Stop workers, flushing what was acknowledged, and close the store."""
        if self.engine is not None:
            self.engine.stop()
        if self.probe_scheduler is not None:
            self.probe_scheduler.shutdown(wait=False)
            self.probe_scheduler = None
        if self.ingest is not None:
            self.ingest.stop()
        self.store.close()


def build_services(settings: Settings, *, with_engine: bool = True) -> Services:
    """Open the store and build every component the service needs (not yet started)."""
    from collectors.uptime import Prober, load_monitors
    from correlator.live import LiveEngine
    from marketguard.app.ingest import IngestWriter
    from marketguard.cases import open_cases

    store = open_store(settings)
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
    services.ingest = IngestWriter(store, settings)
    monitors = settings.monitors_path
    services.prober = Prober(
        lambda batch: services.ingest.submit(batch, source="uptime"),
        load_monitors(monitors) if monitors.is_file() else [],
    )
    if with_engine:
        services.engine = LiveEngine(store, rules, services.cases, settings)
    return services
