"""Test-only plumbing to run the Elasticsearch backend against osmem-server.

osmem-server (an in-memory OpenSearch-compatible server) rejects the v9 client's
``application/vnd.elasticsearch+json; compatible-with=9`` media type and does not send the
``X-Elastic-Product`` header the client checks. :class:`PlainJsonNode` rewrites both ways.
Production code never uses it: against a real cluster the client talks as shipped.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import Urllib3HttpNode

__all__ = ["PlainJsonNode"]

_REWRITE = {"accept", "content-type"}


class PlainJsonNode(Urllib3HttpNode):
    """urllib3 node that speaks plain ``application/json`` (ndjson for ``_bulk``)."""

    def perform_request(self, method: str, target: str, body: bytes | None = None, headers: Any = None, **kw: Any) -> Any:
        if headers is not None:
            headers = headers.copy()
            for name in list(headers):
                if name.lower() in _REWRITE and "vnd.elasticsearch" in headers[name]:
                    plain = "application/x-ndjson" if "x-ndjson" in headers[name] else "application/json"
                    headers[name] = plain
        self._headers = self._plain(self._headers)
        resp = super().perform_request(method, target, body=body, headers=headers, **kw)
        resp.meta.headers["x-elastic-product"] = "Elasticsearch"
        return resp

    @staticmethod
    def _plain(headers: Any) -> Any:
        for name in list(headers):
            if name.lower() in _REWRITE and "vnd.elasticsearch" in headers[name]:
                headers = headers.copy()
                headers[name] = "application/json"
        return headers
