"""Storage backends behind one protocol; :func:`open_store` is the only place that chooses."""

from __future__ import annotations

from pydantic import SecretStr

from marketguard.config import Settings
from marketguard.errors import ConfigError
from marketguard.store.base import MatchWindow, Store

__all__ = ["Store", "MatchWindow", "open_store", "STORES"]


def _duckdb(settings: Settings, scratch: str | None) -> Store:
    from marketguard.store.duckdb import DuckDBStore

    if scratch is not None:
        return DuckDBStore(scratch, unique_ids=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return DuckDBStore(settings.duckdb_path)


def _elasticsearch(settings: Settings, scratch: str | None) -> Store:
    if scratch is not None:  # offline hunting stays embedded, whatever the service uses
        return _duckdb(settings, scratch)
    from marketguard.store.elasticsearch import open_elasticsearch

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    return open_elasticsearch(  # type: ignore[return-value]
        settings.es_url, prefix=settings.es_index_prefix, api_key=secret(settings.es_api_key),
        username=settings.es_username, password=secret(settings.es_password),
        ca_cert=str(settings.es_ca_cert) if settings.es_ca_cert else None,
        retention_days=settings.es_retention_days, request_timeout=settings.es_request_timeout_s,
    )


#: Backend name -> factory. Unknown names are refused with the list of valid ones.
STORES = {"duckdb": _duckdb, "elasticsearch": _elasticsearch}


def open_store(settings: Settings, *, scratch: str | None = None) -> Store:
    """Open the store the settings name.

    ``scratch`` opens a throw-away store for offline hunting instead (``":memory:"`` or a
    file path to keep): inputs are files whose event ids are unique by construction.
    """
    try:
        factory = STORES[settings.store]
    except KeyError:
        raise ConfigError(
            f"unknown store {settings.store!r}; valid: {', '.join(sorted(STORES))}"
        ) from None
    return factory(settings, scratch)
