"""The pySigma processing pipeline that maps Sigma's web taxonomy to our ECS fields.

SigmaHQ's web rules use the W3C-style names of Sigma's generic ``webserver`` and ``proxy``
taxonomy. Two choices follow the rules' own practice rather than the letter of the taxonomy:

* ``cs-uri-query`` holds the **whole request target** (path and query): the rules look for
  fragments such as ``../../../etc/`` or ``/wp-admin`` in it, which live in the path.
* ``c-uri`` (proxy) and ``cs-uri`` are the request target as logged, i.e. ``url.original``.

Rules written for MarketGuard use the ECS names directly; those pass through unchanged.
"""

from __future__ import annotations

from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

__all__ = ["WEB_FIELD_MAPPING", "marketguard_pipeline"]

#: Sigma web taxonomy field -> ECS field.
WEB_FIELD_MAPPING: dict[str, str] = {
    "c-ip": "source.ip",
    "clientip": "source.ip",
    "cs-method": "http.request.method",
    "cs-uri-query": "url.original",
    "cs-uri-stem": "url.path",
    "cs-uri": "url.original",
    "c-uri": "url.original",
    "c-uri-query": "url.query",
    "c-uri-stem": "url.path",
    "c-uri-extension": "url.extension",
    "cs-host": "url.domain",
    "r-dns": "url.domain",
    "sc-status": "http.response.status_code",
    "sc-bytes": "http.response.body.bytes",
    "c-useragent": "user_agent.original",
    "cs-user-agent": "user_agent.original",
    "cs-referer": "http.request.referrer",
    "cs-referrer": "http.request.referrer",
    "cs-username": "user.name",
    "cs-version": "http.version",
    "time-taken": "event.duration",
}


def marketguard_pipeline() -> ProcessingPipeline:
    """Return the pipeline mapping Sigma's webserver/proxy taxonomy to ECS fields."""
    return ProcessingPipeline(
        name="MarketGuard web taxonomy to ECS",
        priority=20,
        items=[
            ProcessingItem(
                identifier="marketguard_web_to_ecs",
                transformation=FieldMappingTransformation(WEB_FIELD_MAPPING),
            )
        ],
    )
