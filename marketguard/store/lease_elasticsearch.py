"""Leases in the ``<prefix>-leases`` index: one document per lease name.

The first grant is created with ``op_type=create`` (of two replicas creating it at once, one
wins); every later change — renew, take-over, release — is a write conditional on the version
read (``if_seq_no``/``if_primary_term``), so a replica that lost a race gets a 409 and re-reads
instead of overwriting. Expiry is the holder-written ``expires_at`` compared with the reader's
clock (see :mod:`marketguard.store.lease` for the clock-skew assumption).

Lease requests use their own, short timeout (``request_timeout_s``): a holder must learn
quickly that it could not renew, well inside its lease, rather than wait for the store-wide
timeout. The index and its mapping are created by the store's setup
(:data:`marketguard.store.es_setup.RECORD_MAPPINGS`).
"""

from __future__ import annotations

from typing import Any

from marketguard.store._es_docs import iso
from marketguard.store._es_records import EsRecords, parse_time
from marketguard.store.elasticsearch import ElasticsearchStore
from marketguard.store.lease import CasLeaseStore, Clock, LeaseState, utc_now

__all__ = ["ElasticsearchLeaseStore"]

class ElasticsearchLeaseStore(CasLeaseStore):
    """:class:`~marketguard.store.lease.LeaseStore` beside an :class:`ElasticsearchStore`."""

    def __init__(self, store: ElasticsearchStore, clock: Clock = utc_now, *, request_timeout_s: float = 5.0) -> None:
        super().__init__(clock)
        index = store.names.index("leases")
        self._records = EsRecords(store.client.options(request_timeout=request_timeout_s), index, "lease")

    def _load(self, name: str) -> tuple[LeaseState, Any] | None:
        found = self._records.get(name)
        if found is None:
            return None
        doc, version = found
        expires = parse_time(doc["expires_at"])
        assert expires is not None  # the mapping's writer always sets it
        return LeaseState(name, doc.get("holder"), int(doc["term"]), expires), version

    def _save(self, state: LeaseState, version: Any) -> bool:
        doc = {"name": state.name, "holder": state.holder, "term": state.term, "expires_at": iso(state.expires_at)}
        return self._records.put(state.name, doc, version, refresh=False)
