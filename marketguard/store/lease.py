"""Leases: which service replica runs the scheduled jobs, fenced by a term.

A lease is one named record — holder, **term**, ``expires_at`` — beside the event store.
Every replica may ask for it; at most one holds it at a time:

* :meth:`LeaseStore.acquire` grants a free, released or expired lease (the term goes up by
  one) or extends the caller's own live lease (same term); a lease another replica holds is
  left alone and its current state returned;
* :meth:`LeaseStore.renew` extends the lease only while the caller still holds it *with the
  same term* and it has not expired; otherwise the caller has lost it (``None``);
* :meth:`LeaseStore.release` gives it up at once (the term stays; the next holder gets
  term + 1);
* :meth:`LeaseStore.holder` reads the current state.

The term only ever grows, so a deposed holder that comes back with its old term is refused
(fencing): it must acquire again, which it cannot while the new holder renews.

Every write is a compare-and-swap on the record's version (:class:`CasLeaseStore` holds the
logic; a backend only reads a record with its version and writes one if the version is
unchanged), so two replicas racing for a free lease produce one winner.

**Clocks.** ``expires_at`` is written by the holder (its clock + TTL) and compared with the
*reader's* clock. This assumes replica clocks agree to well within ``ttl − renew interval``
(NTP keeps them within milliseconds; the defaults leave seconds). A holder itself never trusts
the stored expiry: it counts its own deadline on a monotonic clock from *before* its last
successful write (:class:`marketguard.app.leader.Leadership`), which is never later than the
expiry other replicas see, up to that skew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from marketguard.errors import ConfigError, StoreError
from marketguard.store.base import Store

__all__ = ["LeaseState", "LeaseStore", "CasLeaseStore", "LEASE_STORES", "open_leases", "Clock"]

#: A wall clock returning an aware UTC datetime (tests pass their own).
Clock = Callable[[], datetime]
#: Compare-and-swap attempts before an acquire under contention gives up.
_ATTEMPTS = 20


def utc_now() -> datetime:
    """The current time in UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class LeaseState:
    """One lease as stored: ``holder`` is None once released; ``term`` grows with every grant."""

    name: str
    holder: str | None
    term: int
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        """Whether someone holds the lease at ``now`` (by the reader's clock)."""
        return self.holder is not None and now < self.expires_at

    def held_by(self, replica: str, now: datetime) -> bool:
        """Whether ``replica`` holds the lease at ``now``."""
        return self.holder == replica and self.live(now)


class LeaseStore(Protocol):
    """Named leases with a TTL, fenced by a monotonically increasing term."""

    def acquire(self, name: str, holder: str, ttl_s: float) -> LeaseState:
        """Take the lease if it is free or expired, or extend ``holder``'s own; return the state
        afterwards (``holder`` won iff ``state.holder == holder``)."""
        ...

    def renew(self, name: str, holder: str, term: int, ttl_s: float) -> LeaseState | None:
        """Extend the lease ``holder`` holds with ``term``; None if it no longer does."""
        ...

    def release(self, name: str, holder: str, term: int) -> bool:
        """Give the lease up now if ``holder`` still holds it with ``term``."""
        ...

    def holder(self, name: str) -> LeaseState | None:
        """The lease as stored (None if never taken)."""
        ...


class CasLeaseStore:
    """The lease logic over a versioned record; a backend defines :meth:`_load` and :meth:`_save`.

    ``_load(name)`` returns the stored state and an opaque version (or None); ``_save(state,
    version)`` writes the state only if the record is still at ``version`` (``None``: only if
    there is no record yet) and says whether it did. Nothing else is backend-specific.
    """

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock

    def _load(self, name: str) -> tuple[LeaseState, Any] | None:
        raise NotImplementedError

    def _save(self, state: LeaseState, version: Any) -> bool:
        raise NotImplementedError

    def acquire(self, name: str, holder: str, ttl_s: float) -> LeaseState:
        """See :meth:`LeaseStore.acquire`."""
        for _ in range(_ATTEMPTS):
            found = self._load(name)
            now = self.clock()
            expires = now + timedelta(seconds=ttl_s)
            if found is None:
                new = LeaseState(name, holder, 1, expires)
                if self._save(new, None):
                    return new
                continue
            current, version = found
            if current.live(now) and current.holder != holder:
                return current
            term = current.term if current.held_by(holder, now) else current.term + 1
            new = LeaseState(name, holder, term, expires)
            if self._save(new, version):
                return new
        raise StoreError(f"lease {name!r}: still changed concurrently after {_ATTEMPTS} attempts")

    def renew(self, name: str, holder: str, term: int, ttl_s: float) -> LeaseState | None:
        """See :meth:`LeaseStore.renew`."""
        found = self._load(name)
        if found is None:
            return None
        current, version = found
        now = self.clock()
        if current.term != term or not current.held_by(holder, now):
            return None
        new = replace(current, expires_at=now + timedelta(seconds=ttl_s))
        return new if self._save(new, version) else None

    def release(self, name: str, holder: str, term: int) -> bool:
        """See :meth:`LeaseStore.release`."""
        found = self._load(name)
        if found is None:
            return False
        current, version = found
        if current.holder != holder or current.term != term:
            return False
        return self._save(replace(current, holder=None, expires_at=self.clock()), version)

    def holder(self, name: str) -> LeaseState | None:
        """See :meth:`LeaseStore.holder`."""
        found = self._load(name)
        return found[0] if found is not None else None


def _duckdb_leases(store: Store, clock: Clock) -> LeaseStore:
    from marketguard.store.lease_duckdb import DuckDBLeaseStore

    return DuckDBLeaseStore(store, clock)  # type: ignore[arg-type]


def _elasticsearch_leases(store: Store, clock: Clock) -> LeaseStore:
    from marketguard.store.lease_elasticsearch import ElasticsearchLeaseStore

    return ElasticsearchLeaseStore(store, clock)  # type: ignore[arg-type]


#: Store dialect -> lease-store factory.
LEASE_STORES: dict[str, Callable[[Store, Clock], LeaseStore]] = {
    "duckdb": _duckdb_leases, "elasticsearch": _elasticsearch_leases,
}


def open_leases(store: Store, *, clock: Clock = utc_now) -> LeaseStore:
    """The lease store that lives beside ``store`` (chosen by its dialect)."""
    try:
        factory = LEASE_STORES[store.dialect]
    except KeyError:
        raise ConfigError(
            f"no lease store for the {store.dialect!r} store; valid: {', '.join(sorted(LEASE_STORES))}"
        ) from None
    return factory(store, clock)
