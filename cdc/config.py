"""The daemon's configuration: one YAML file, validated up front.

Unknown keys are errors, every problem is reported at once with its key path, and
`${VAR}` / `${VAR:-default}` in any string is read from the environment so that
secrets stay out of the file. `load_config(path)` is the only entry point.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .model import BinlogPosition

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MysqlConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3306
    user: str
    password: str = ""
    # Must differ from every other replica's server_id (and the server's own):
    # a second reader with the same id makes the server drop the first one.
    server_id: Annotated[int, Field(ge=1, le=2**32 - 1)]
    flavor: Literal["auto", "mariadb", "mysql"] = "auto"
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    # No packet for this long means the connection is dead; the server sends
    # heartbeats every `heartbeat` seconds, so this only fires on a real outage.
    read_timeout: Annotated[float, Field(gt=0)] = 30.0
    heartbeat: Annotated[float, Field(gt=0)] = 5.0
    ssl_ca: str | None = None


class ElasticsearchConfig(_Strict):
    hosts: list[str] = ["http://127.0.0.1:9200"]
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: Annotated[float, Field(gt=0)] = 30.0
    # High bits of every document version; raise it after RESET MASTER or a
    # failover to a server whose binlog file numbers are lower (README: versions).
    version_epoch: Annotated[int, Field(ge=0, le=127)] = 0

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("at least one host is required")
        for host in hosts:
            if not re.match(r"^https?://", host):
                raise ValueError(f"{host!r} must start with http:// or https://")
        return hosts


class CheckpointConfig(_Strict):
    path: str = "cdc.checkpoint.json"
    # Saving is cheap but not free; at most this often unless stopping.
    min_interval: Annotated[float, Field(ge=0)] = 1.0


class StartConfig(_Strict):
    """Where to begin when there is no checkpoint yet."""

    position: str = "end"  # "end" or FILE:POS
    gtid: str | None = None

    @field_validator("position")
    @classmethod
    def _position(cls, value: str) -> str:
        if value != "end":
            BinlogPosition.parse(value)
        return value


class SnapshotConfig(_Strict):
    """Copying existing rows (see cdc/snapshot.py)."""

    # initial: copy the rules' tables on first start, and tables new to the
    # rules on later starts; never: stream only; when_needed: like initial,
    # and also copy everything again if the checkpoint's binlog was purged.
    mode: Literal["initial", "never", "when_needed"] = "initial"
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # A chunk must be in Elasticsearch this soon after it was read, or it is
    # read again (capped at half the index's gc_deletes; see snapshot.py).
    max_chunk_age: Annotated[float, Field(gt=0)] = 25.0


class BatchConfig(_Strict):
    max_actions: Annotated[int, Field(ge=1)] = 2000
    max_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    # Flush buffered actions at the first commit after this many seconds.
    max_interval: Annotated[float, Field(gt=0)] = 0.5


class RetryConfig(_Strict):
    initial_backoff: Annotated[float, Field(gt=0)] = 0.5
    max_backoff: Annotated[float, Field(gt=0)] = 30.0
    # None = keep trying forever (a CDC daemon should outwait an outage).
    max_attempts: Annotated[int, Field(ge=1)] | None = None


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "json"] = "auto"


class MetricsConfig(_Strict):
    """The HTTP port for /metrics, /healthz and /readyz (README: Operations)."""

    enabled: bool = False
    # Loopback by default: the endpoints have no authentication.
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9108
    # /readyz fails while cdc is further behind the source than this.
    max_lag_seconds: Annotated[float, Field(gt=0)] = 60.0


class Config(_Strict):
    mysql: MysqlConfig
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    start: StartConfig = StartConfig()
    rules: str = "rules"
    snapshot: SnapshotConfig = SnapshotConfig()
    batch: BatchConfig = BatchConfig()
    retry: RetryConfig = RetryConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    # Set by load_config: relative paths in the file are relative to the file.
    base_dir: str = Field(default=".", exclude=True)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _interpolate(value: Any, key: str, missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{key}.{k}" if key else str(k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{key}[{i}]", missing) for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            missing.append(f"{key}: environment variable {name} is not set")
            return ""

        return _ENV.sub(sub, value)
    return value


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config", base_dir: str = ".") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'mysql' section, got {type(data).__name__}")
    missing: list[str] = []
    data = _interpolate(data, "", missing)
    if missing:
        raise ConfigError("\n".join(f"{source}: {m}" for m in missing))
    try:
        return Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if isinstance(data, dict) and "base_dir" in data:
        raise ConfigError(f"{path}: base_dir: unknown key")
    return parse_config(data, str(path), str(path.parent.resolve()))
