"""Connecting to Elasticsearch: the client with TLS, auth, retries, and a clear start-up check."""

from __future__ import annotations

from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import ApiError, AuthenticationException, Elasticsearch

from marketguard.errors import StoreError

__all__ = ["connect", "check_access", "REQUIRED_INDEX_PRIVILEGES", "REQUIRED_CLUSTER_PRIVILEGES"]

#: What MarketGuard does on its own indices (``<prefix>-*``).
REQUIRED_INDEX_PRIVILEGES = ("create_doc", "read", "write", "view_index_metadata", "create_index")
#: What ``marketguard es setup`` needs on the cluster (templates and the lifecycle policy).
REQUIRED_CLUSTER_PRIVILEGES = ("monitor", "manage_index_templates", "manage_ilm")


def connect(
    url: str,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_cert: str | None = None,
    request_timeout: float = 30.0,
    max_retries: int = 5,
    node_class: Any = None,
) -> Elasticsearch:
    """A client that retries connection errors, timeouts and 429/502/503/504 with backoff.

    ``node_class`` swaps the HTTP node (tests use it to talk to OpenSearch-compatible fakes).
    """
    kwargs: dict[str, Any] = {
        "request_timeout": request_timeout,
        "max_retries": max_retries,
        "retry_on_timeout": True,
        "retry_on_status": (429, 502, 503, 504),
    }
    if api_key:
        kwargs["api_key"] = api_key
    elif username:
        kwargs["basic_auth"] = (username, password or "")
    if ca_cert:
        kwargs["ca_certs"] = ca_cert
    if node_class is not None:
        kwargs["node_class"] = node_class
    return Elasticsearch(url, **kwargs)


def check_access(client: Elasticsearch, prefix: str, *, setup: bool = False) -> None:
    """Fail at start-up, with what is wrong, when the cluster is unreachable or access is short.

    Privileges are checked with ``_security/user/_has_privileges`` where the cluster has the
    security API; the error lists every missing privilege.
    """
    try:
        client.info()
    except AuthenticationException as exc:
        raise StoreError(f"Elasticsearch rejected the credentials (401): {exc.message}") from exc
    except TransportConnectionError as exc:
        raise StoreError(f"cannot reach Elasticsearch: {exc}") from exc
    except (ApiError, TransportError) as exc:
        raise StoreError(f"Elasticsearch did not answer GET / properly: {exc}") from exc
    missing = _missing_privileges(client, prefix, setup)
    if missing:
        raise StoreError("the Elasticsearch credentials lack privileges: " + ", ".join(missing))


def _missing_privileges(client: Elasticsearch, prefix: str, setup: bool) -> list[str]:
    cluster = list(REQUIRED_CLUSTER_PRIVILEGES if setup else ("monitor",))
    try:
        answer = client.security.has_privileges(
            cluster=cluster,
            index=[{"names": [f"{prefix}-*"], "privileges": list(REQUIRED_INDEX_PRIVILEGES)}],
        )
    except (ApiError, TransportError):
        return []  # no security API (security disabled, OpenSearch): nothing to check
    missing = [f"cluster:{p}" for p, ok in answer.get("cluster", {}).items() if not ok]
    for pattern, privs in answer.get("index", {}).items():
        missing += [f"index {pattern}:{p}" for p, ok in privs.items() if not ok]
    return missing
