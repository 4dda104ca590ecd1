"""MarketGuard's configuration: one typed, frozen settings object.

Values come, highest priority first, from explicit arguments, ``MARKETGUARD_*`` environment
variables, an optional YAML file (``MARKETGUARD_CONFIG`` or ``<data_dir>/marketguard.yaml``)
and the defaults below. Nothing here is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketguard.errors import ConfigError

__all__ = ["Settings", "load_settings", "pseudonymisation_key"]

DEFAULT_DATA_DIR = Path(".marketguard")


class Settings(BaseSettings):
    """Effective configuration of one MarketGuard installation."""

    model_config = SettingsConfigDict(
        env_prefix="MARKETGUARD_", frozen=True, extra="forbid", env_nested_delimiter="__"
    )

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the store, keys and state live.")
    store: Literal["duckdb", "elasticsearch"] = Field("duckdb", description="Storage backend.")
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL (store=elasticsearch).")
    es_api_key: SecretStr | None = Field(None, description="Elasticsearch API key (encoded form).")
    es_username: str | None = Field(None, description="Elasticsearch basic-auth user.")
    es_password: SecretStr | None = Field(None, description="Elasticsearch basic-auth password.")
    es_ca_cert: Path | None = Field(None, description="CA bundle to verify the cluster's TLS certificate.")
    es_index_prefix: str = Field("marketguard", description="Prefix of every MarketGuard index, alias and template.")
    es_retention_days: int = Field(30, ge=1, description="ILM delete phase: days events are kept.")
    es_request_timeout_s: float = Field(30.0, gt=0, description="Timeout of one Elasticsearch request.")
    duckdb_file: str = Field("marketguard.duckdb", description="DuckDB file inside data_dir.")
    pseudonymisation_key: SecretStr | None = Field(
        None,
        description="HMAC key for personal data; generated into data_dir on first run if unset.",
    )
    rules_dirs: list[Path] = Field(
        default_factory=lambda: [Path("rules")], description="Sigma rule directories."
    )
    logsources: list[str] = Field(
        default_factory=lambda: ["webserver", "apm", "uptime"],
        description="Sigma logsource categories of the ingested API logs; rules for other categories "
        "(e.g. SigmaHQ's outbound 'proxy' rules) are loaded but not run.",
    )
    batch_size: int = Field(100_000, ge=1, description="Events per store append.")

    # -- service ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `marketguard serve` binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port `marketguard serve` binds.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest accepted request body (after gzip decoding).")
    ingest_queue_batches: int = Field(64, ge=1, description="Batches waiting for the writer before ingest answers 429.")
    ingest_retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 429.")
    console_session_ttl_s: float = Field(8 * 3600.0, gt=0, description="Web console: a sign-in lasts this long.")
    console_cookie_secure: bool = Field(False, description="Web console: send the session cookie only over HTTPS (set behind TLS).")
    console_signin_max_failures: int = Field(5, ge=1, description="Web console: failed sign-ins from one client address before it gets 429.")
    console_signin_window_s: float = Field(300.0, gt=0, description="Web console: the window (seconds) in which failed sign-ins are counted (per process).")

    routing_file: Path = Field(Path("playbooks/routing.yaml"), description="Ownership routing, priority matrix and SLAs.")
    monitors_file: Path = Field(Path("monitors.yaml"), description="Uptime monitors YAML; relative to data_dir; no file = no monitors.")

    # -- detection engine -------------------------------------------------------------------
    rule_interval_s: float = Field(1.0, gt=0, description="How often every rule runs.")
    ingest_delay_s: float = Field(0.0, ge=0, description="Events newer than now minus this wait for the next run.")
    lookback_s: float = Field(3600.0, ge=0, description="Extra event-time span re-read for correlation windows.")

    slo_interval_s: float = Field(60.0, gt=0, description="How often SLOs and seller SLAs are evaluated.")

    # -- leadership (several replicas on one Elasticsearch store) ----------------------------
    leader_lease_s: float = Field(15.0, gt=0, description="Scheduler lease TTL: a replica that stops renewing is replaced after this long.")
    leader_renew_s: float = Field(5.0, gt=0, description="How often the leader renews (and a follower tries to take) the lease; well below leader_lease_s.")

    # -- alerts and incidents ---------------------------------------------------------------
    incident_window_s: float = Field(3600.0, gt=0, description="Alerts sharing an entity within this span join one incident.")
    suppression_window_s: float = Field(600.0, ge=0, description="The same rule and group key does not open a second alert within this span.")
    escalation_rules: int = Field(3, ge=2, description="Distinct rules agreeing in one incident raise its severity one level.")

    @property
    def duckdb_path(self) -> Path:
        """Absolute path of the DuckDB file."""
        return self.data_dir / self.duckdb_file

    @property
    def monitors_path(self) -> Path:
        """Absolute path of the uptime monitors file."""
        return self.monitors_file if self.monitors_file.is_absolute() else self.data_dir / self.monitors_file

    def masked(self) -> dict[str, Any]:
        """Return the settings as plain data with every secret masked."""
        out = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr):
                out[name] = "********"
        return out


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, environment and the optional YAML file.

    Raises :class:`ConfigError` with the field and reason when a value is invalid.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data_dir = Path(overrides.get("data_dir") or os.environ.get("MARKETGUARD_DATA_DIR") or DEFAULT_DATA_DIR)
    file_values = _read_yaml(Path(os.environ["MARKETGUARD_CONFIG"]) if "MARKETGUARD_CONFIG" in os.environ else data_dir / "marketguard.yaml")
    env_names = {k[len("MARKETGUARD_"):].lower() for k in os.environ if k.startswith("MARKETGUARD_")}
    merged = {k: v for k, v in file_values.items() if k not in env_names}
    merged.update(overrides)
    try:
        return Settings(**merged)
    except Exception as exc:  # pydantic.ValidationError, but keep the message short
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def pseudonymisation_key(settings: Settings) -> bytes:
    """Return the HMAC key for personal data, creating ``<data_dir>/pseudonymisation.key`` (0600) once."""
    if settings.pseudonymisation_key is not None:
        return settings.pseudonymisation_key.get_secret_value().encode()
    path = settings.data_dir / "pseudonymisation.key"
    if path.exists():
        return path.read_bytes().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
