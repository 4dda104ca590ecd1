"""Notifiers: a name → class registry and the loader of ``playbooks/notifiers.yaml``.

The file names each configured destination and its ``type`` (a key of :data:`NOTIFIERS`)::

    retry: {attempts: 4, base_delay_s: 1}
    notifiers:
      slack-secops: {type: slack, url: "${SLACK_SECOPS_WEBHOOK_URL}"}
    containment: {url: "${CONTAINMENT_WEBHOOK_URL}"}

Secrets are never written in the file: ``${NAME}`` is replaced by the environment variable
(an unset one is an error naming it), ``${NAME:-default}`` falls back to ``default``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marketguard.errors import ConfigError
from playbooks.notifiers.alertmanager import AlertmanagerNotifier
from playbooks.notifiers.base import Notification, Notifier, NotifierConfig
from playbooks.notifiers.pagerduty import PagerDutyNotifier
from playbooks.notifiers.slack import SlackNotifier
from playbooks.notifiers.smtp import SmtpNotifier
from playbooks.notifiers.webhook import WebhookNotifier
from playbooks.retry import Backoff

__all__ = [
    "NOTIFIERS", "Notification", "Notifier", "ResponseConfig", "ActionWebhook", "build_notifier",
    "load_response_config", "expand_env",
]

#: ``type`` name -> notifier class (each has a ``Config`` model and ``(name, config)`` constructor).
NOTIFIERS: dict[str, Any] = {
    "webhook": WebhookNotifier,
    "slack": SlackNotifier,
    "pagerduty": PagerDutyNotifier,
    "smtp": SmtpNotifier,
    "alertmanager": AlertmanagerNotifier,
}

log = logging.getLogger(__name__)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ActionWebhook(BaseModel):
    """Where approved containment actions are sent (a WAF / IAM automation endpoint)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=120)


class ResponseConfig(BaseModel):
    """The parsed notifier file: retry policy, raw notifier configs, containment webhook."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    retry: Backoff = Backoff()
    notifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    containment: ActionWebhook | None = None


def expand_env(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _VAR.sub(sub, value)


def build_notifier(name: str, raw: Mapping[str, Any], *, source: str = "notifiers") -> Notifier:
    """Validate one notifier's configuration and build it."""
    kind = raw.get("type")
    cls = NOTIFIERS.get(str(kind))
    if cls is None:
        raise ConfigError(f"{source}: notifier {name!r}: unknown type {kind!r}; valid: {', '.join(sorted(NOTIFIERS))}")
    try:
        config: NotifierConfig = cls.Config.model_validate(dict(raw))
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: notifier {name!r}: {errors}") from None
    notifier: Notifier = cls(name, config)
    return notifier


def _drop_unset(raw: dict[str, Any], env: Mapping[str, str], path: Path) -> dict[str, Any]:
    """Leave out notifiers (and the containment webhook) whose ``${VAR}`` is unset, with a warning."""
    out = dict(raw)
    notifiers = {}
    for name, spec in (raw.get("notifiers") or {}).items():
        try:
            notifiers[name] = expand_env(spec, env, f"{path}: notifiers.{name}")
        except ConfigError as exc:
            log.warning("notifier %s disabled: %s", name, exc)
    out["notifiers"] = notifiers
    if raw.get("containment") is not None:
        try:
            out["containment"] = expand_env(raw["containment"], env, f"{path}: containment")
        except ConfigError as exc:
            log.warning("containment webhook disabled (approved actions will fail): %s", exc)
            out["containment"] = None
    return expand_env(out, env, str(path))  # type: ignore[no-any-return]


def load_response_config(
    path: Path, *, env: Mapping[str, str] | None = None, skip_unset: bool = False
) -> tuple[ResponseConfig, dict[str, Notifier]]:
    """Load ``notifiers.yaml``: its settings and every notifier, built. Fails fast, except that
    with ``skip_unset`` a destination whose environment variable is unset is left out (logged)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with retry, notifiers and containment")
    env = os.environ if env is None else env
    raw = _drop_unset(raw, env, path) if skip_unset else expand_env(raw, env, str(path))
    try:
        config = ResponseConfig.model_validate(raw)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {errors}") from None
    built = {name: build_notifier(name, spec, source=str(path)) for name, spec in config.notifiers.items()}
    return config, built
