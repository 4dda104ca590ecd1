"""Leadership: one replica runs the scheduled jobs, the others stand by.

Every replica serves HTTP (ingest, API). The scheduled work — the live detection engine, SLO
and seller-SLA evaluation, uptime probes, audit verification and the playbook worker — runs
only on the holder of one lease (:mod:`marketguard.store.lease`). :class:`Leadership` keeps
that lease: a thread renews it every ``renew_s`` while leading, or tries to take it while
following.

Design: the jobs are **started when the replica is elected and stopped when it is deposed**
(``on_elected`` / ``on_deposed``), rather than left running and checking ``is_leader`` —
a follower then holds no scheduler, thread or probe at all, and the jobs' code knows nothing
about leadership. The replica counts its lease on its own monotonic clock from *before* each
successful write, so it steps down no later than the moment other replicas may take over (up
to clock skew): when a renewal is refused (another replica holds a higher term) or fails
until that deadline passes. Lease requests have a short timeout, so stepping down happens
within about one renew interval after the deadline; a detection cycle already running
finishes. Records written by the jobs are idempotent (natural-key ids, compare-and-swap,
checkpoints), so that short overlap repeats no alert.

A deposed replica that comes back holds a stale term: its renewal is refused, it stays a
follower and starts nothing until the lease is free again, when it acquires a new term.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from marketguard.errors import ConfigError, MarketGuardError
from marketguard.metrics import METRICS, Metrics
from marketguard.store.lease import LeaseState, LeaseStore

__all__ = ["Leadership", "SCHEDULER_LEASE", "replica_name"]

log = logging.getLogger(__name__)

#: The name of the lease the scheduled jobs run under.
SCHEDULER_LEASE = "scheduler"


def replica_name() -> str:
    """This process's replica id: host name (the pod name on Kubernetes), pid and a short nonce."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Leadership:
    """Keeps (or waits for) the ``name`` lease and starts or stops the jobs on every change."""

    def __init__(
        self, leases: LeaseStore, replica: str, *, lease_s: float, renew_s: float,
        on_elected: Callable[[int], None] | None = None, on_deposed: Callable[[], None] | None = None,
        name: str = SCHEDULER_LEASE, metrics: Metrics = METRICS, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_s < lease_s:
            raise ConfigError(f"leader_renew_s ({renew_s}) must be positive and below leader_lease_s ({lease_s})")
        self.leases, self.replica, self.name = leases, replica, name
        self.lease_s, self.renew_s = lease_s, renew_s
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._metrics, self._monotonic = metrics, monotonic
        self._term: int | None = None  # the term we lead in; None while following
        self._deadline = 0.0  # monotonic time our lease ends unless renewed
        self._last: LeaseState | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._metrics.leader.labels(replica).set(0)

    # -- what other parts read --------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """True while this replica holds the lease by its own clock."""
        return self._term is not None and self._monotonic() < self._deadline

    @property
    def term(self) -> int | None:
        """The term this replica leads in, or None."""
        return self._term if self.is_leader else None

    def status(self) -> dict[str, Any]:
        """Leadership as shown by ``/healthz``: this replica, whether it leads, the last holder seen."""
        seen = self._last
        return {
            "replica": self.replica, "leader": self.is_leader, "term": self.term,
            "holder": seen.holder if seen is not None else None,
            "holder_term": seen.term if seen is not None else None,
        }

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Try once now (a single replica starts its jobs before this returns), then keep renewing."""
        self._stopping.clear()
        self.step()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"marketguard-lease-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing and stop the jobs. With ``release`` (a clean shutdown) the lease is given
        up so another replica takes over at once; without it (as if the process died) the
        others wait for it to expire."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            term = self._term
            self._step_down("shutting down", planned=True)
            if release and term is not None:
                try:
                    self.leases.release(self.name, self.replica, term)
                except MarketGuardError:
                    log.warning("could not release lease %r; it expires in %.0f s", self.name, self.lease_s)

    def step(self) -> bool:
        """One renewal (leader) or acquisition attempt (follower); returns :attr:`is_leader`."""
        with self._lock:
            began = self._monotonic()
            try:
                if self._term is not None:
                    state = self.leases.renew(self.name, self.replica, self._term, self.lease_s)
                    if state is None:
                        self._last = self.leases.holder(self.name)
                        self._step_down("lease lost to a newer term or expired")
                        return False
                else:
                    state = self.leases.acquire(self.name, self.replica, self.lease_s)
            except MarketGuardError as exc:
                log.warning("lease %r request failed: %s", self.name, exc)
                if self._term is not None and not self.is_leader:
                    self._step_down("lease could not be renewed before it ended")
                return self.is_leader
            self._last = state
            if state.holder == self.replica:
                self._deadline = began + self.lease_s
                if self._term is None:
                    self._elect(state.term)
            return self.is_leader

    # -- internals --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.wait(self._pause()):
            self.step()

    def _pause(self) -> float:
        """Renew interval, cut short so a leader re-checks right at its deadline."""
        if self._term is None:
            return self.renew_s
        return max(0.0, min(self.renew_s, self._deadline - self._monotonic()))

    def _elect(self, term: int) -> None:
        self._term = term
        log.info("replica %s leads %r (term %d)", self.replica, self.name, term)
        self._metrics.leader.labels(self.replica).set(1)
        if self._on_elected is not None:
            try:
                self._on_elected(term)
            except Exception:  # noqa: BLE001 - a job that fails to start must not kill the lease thread
                log.exception("starting the scheduled jobs failed")

    def _step_down(self, why: str, *, planned: bool = False) -> None:
        if self._term is None:
            return
        log.log(logging.INFO if planned else logging.WARNING,
                "replica %s no longer leads %r (term %d): %s", self.replica, self.name, self._term, why)
        self._term = None
        self._metrics.leader.labels(self.replica).set(0)
        self._call(self._on_deposed)

    @staticmethod
    def _call(fn: Callable[[], None] | None) -> None:
        if fn is None:
            return
        try:
            fn()
        except Exception:  # noqa: BLE001 - stopping jobs must not kill the lease thread
            log.exception("stopping the scheduled jobs failed")
