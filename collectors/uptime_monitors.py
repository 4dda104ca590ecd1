"""Uptime monitors: the three kinds (``http``, ``tcp``, ``tls``) as pydantic models, and the YAML
file that declares them (:func:`load_monitors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from marketguard.errors import ConfigError

__all__ = ["HttpMonitor", "TcpMonitor", "TlsMonitor", "Monitor", "load_monitors"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _MonitorBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_ID, description="Stable id; the metric label and monitor.id.")
    name: str | None = Field(None, description="Human name (defaults to the id).")
    interval_s: float = Field(60.0, ge=1, description="Seconds between probes.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Hard limit of one attempt.")
    retries: int = Field(0, ge=0, le=5, description="Extra attempts before reporting down.")
    service: str | None = Field(None, description="service.name the monitor watches.")

    @property
    def label(self) -> str:
        """The monitor's display name."""
        return self.name or self.id


class HttpMonitor(_MonitorBase):
    """An HTTP(S) check."""

    type: Literal["http"]
    url: str = Field(pattern=r"(?i)^https?://\S+$")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    body_keyword: str | None = None
    max_latency_ms: float | None = Field(None, gt=0)
    verify_tls: bool = True


class TcpMonitor(_MonitorBase):
    """A TCP connect check."""

    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class TlsMonitor(_MonitorBase):
    """A TLS certificate check."""

    type: Literal["tls"]
    host: str = Field(min_length=1)
    port: int = Field(443, ge=1, le=65535)
    server_name: str | None = Field(None, description="SNI name (defaults to host).")
    warn_days: float = Field(14, ge=0)
    verify: bool = True


Monitor = Annotated[HttpMonitor | TcpMonitor | TlsMonitor, Field(discriminator="type")]
_MONITOR: TypeAdapter[HttpMonitor | TcpMonitor | TlsMonitor] = TypeAdapter(Monitor)


def load_monitors(path: str | Path) -> list[HttpMonitor | TcpMonitor | TlsMonitor]:
    """Read and validate a monitors file (a list, or a mapping with a ``monitors`` list).

    Fails fast with :class:`ConfigError` naming the file, the monitor's index (and id) and
    what was expected; duplicate ids are refused.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read monitors file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    items = data.get("monitors") if isinstance(data, dict) else data
    if data is None:
        items = []
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of monitors (or a mapping with 'monitors:'), got {type(items).__name__}")
    monitors, seen = [], {}
    for i, item in enumerate(items):
        where = f"{path}: monitor {i}" + (f" ({item.get('id')!r})" if isinstance(item, dict) and item.get("id") else "")
        try:
            monitor = _MONITOR.validate_python(item)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_explain(exc)}") from None
        if monitor.id in seen:
            raise ConfigError(f"{where}: duplicate id {monitor.id!r} (first at monitor {seen[monitor.id]})")
        seen[monitor.id] = i
        monitors.append(monitor)
    return monitors


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"][1:] if x not in ("http", "tcp", "tls")) or "monitor"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
