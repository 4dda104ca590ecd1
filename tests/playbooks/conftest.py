"""Registers the response-stage fixtures (defined in ``_response_fixtures``)."""

from _response_fixtures import receiver, response, world

__all__ = ["receiver", "response", "world"]
