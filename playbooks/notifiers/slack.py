"""Slack-compatible incoming webhook: ``text`` (fallback and notification line) plus Block Kit.

Blocks: a ``header`` (plain_text, at most 150 characters), a ``section`` with the rendered
text (mrkdwn), a ``section`` with severity/type/event ``fields`` and a ``context`` line naming
the incident id (and link). Mattermost and Rocket.Chat accept the same body.
"""

from __future__ import annotations

from typing import Any

from playbooks.notifiers.base import HttpNotifier, Notification

__all__ = ["SlackNotifier"]

_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:"}


class SlackNotifier(HttpNotifier):
    """POSTs ``{"text", "blocks"}`` to a Slack incoming-webhook URL."""

    def payload(self, n: Notification) -> dict[str, Any]:
        """The incoming-webhook body."""
        prefix = {"acknowledge": "[ACK] ", "resolve": "[RESOLVED] "}.get(n.event, "")
        headline = f"{prefix}{n.severity.upper()}: {n.title}"
        context = f"MarketGuard incident `{n.incident_id}`" + (f" · <{n.link}|open>" if n.link else "")
        return {
            "text": f"{_EMOJI.get(n.severity, ':white_circle:')} {headline}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": headline[:150], "emoji": True}},
                {"type": "section", "text": {"type": "mrkdwn", "text": n.text[:3000] or n.title}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": f"*Severity*\n{n.severity}"},
                    {"type": "mrkdwn", "text": f"*Type*\n{n.incident_type}"},
                    {"type": "mrkdwn", "text": f"*Status*\n{n.event}"},
                ]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }
