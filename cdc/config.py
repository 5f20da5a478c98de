"""The daemon's configuration: one YAML file, validated up front.

Unknown keys are errors, every problem is reported at once with its key path, and
`${VAR}` / `${VAR:-default}` in any string is read from the environment so that
secrets stay out of the file. `load_config(path)` is the only entry point.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdc.errors import ConfigError
from cdc.model import BinlogPosition

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    # The docstring under each field is its description, which scripts/config_reference.py reads
    # from this file's source and writes into docs/configuration.md's reference table. Not pydantic's
    # use_attribute_docstrings: it parses this module's source at every import, a tenth of every
    # command's start-up (issue 28), for descriptions nothing at run time reads.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MysqlConfig(_Strict):
    host: str = "127.0.0.1"
    """The MySQL or MariaDB server to read the binlog from (the primary, or a replica with its own binlog)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 3306
    """Its TCP port."""
    user: str
    """The user cdc logs in as; it needs REPLICATION SLAVE, REPLICATION CLIENT, SELECT and RELOAD."""
    password: str = ""
    """The user's password; `${VAR}` keeps it out of the file (or use password_file, not both)."""
    server_id: Annotated[int, Field(ge=1, le=2**32 - 1)]
    """cdc's replica id. Must differ from every other replica's server_id (and the server's own):
    a second reader with the same id makes the server drop the first one."""
    flavor: Literal["auto", "mariadb", "mysql"] = "auto"
    """Which server it is; auto reads VERSION()."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    """Seconds to wait for a connection."""
    read_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds without any packet after which the connection counts as dead and cdc reconnects from its last
    commit. The server sends heartbeats every `heartbeat` seconds, so this only fires on a real outage."""
    heartbeat: Annotated[float, Field(gt=0)] = 5.0
    """Seconds between the server's heartbeats on the binlog connection."""
    password_file: str | None = None
    """The password in a file (its first line), so it need be neither in the YAML nor in the environment."""
    ssl_ca: str | None = None
    """CA file to check the server's certificate with; setting ssl_ca or ssl_cert turns TLS on."""
    ssl_cert: str | None = None
    """Client certificate (PEM), with ssl_key, for a REQUIRE X509 user."""
    ssl_key: str | None = None
    """The client certificate's key (PEM)."""
    ssl_verify: bool = True
    """Check the server's certificate (against ssl_ca, else the system CAs) and host name.
    Turning it off must be said explicitly, and is logged as a warning."""

    @model_validator(mode="after")
    def _tls_and_secrets(self) -> "MysqlConfig":
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise ValueError("ssl_cert and ssl_key go together")
        if self.password and self.password_file:
            raise ValueError("give password or password_file, not both")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """PyMySQL's `ssl=` for the query and the binlog connections; None: no TLS.

        A context, not PyMySQL's dict form: the dict is deprecated, checks no
        certificate when no CA is given, and ignores verify_mode=ssl.CERT_NONE.
        """
        if not (self.ssl_ca or self.ssl_cert):
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca)  # the system CAs without ssl_ca
        if self.ssl_cert:
            context.load_cert_chain(self.ssl_cert, self.ssl_key)
        if not self.ssl_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class ElasticsearchConfig(_Strict):
    hosts: list[str] = ["http://127.0.0.1:9200"]
    """URLs (http:// or https://) of the cluster's nodes; requests go round them, and a dead one is set aside."""
    engine: Literal["auto", "elasticsearch", "opensearch"] = "auto"
    """Which engine elasticsearch.hosts is: auto asks the server; a server that is not the one named here
    stops cdc at start-up (cdc/es/engine.py, docs/destinations.md)."""
    username: str | None = None
    """User for basic authentication."""
    password: str | None = None
    """Its password (or password_file, not both)."""
    api_key: str | None = None
    """An Elasticsearch API key instead of a user (OpenSearch has none)."""
    password_file: str | None = None
    """The password in a file (its first line)."""
    api_key_file: str | None = None
    """The API key in a file (its first line)."""
    ca_certs: str | None = None
    """CA file to check the certificates of https:// hosts with."""
    ssl_assert_fingerprint: str | None = None
    """Pin the server's certificate by its SHA-256 fingerprint (hex, colons allowed)."""
    verify_certs: bool = True
    """false only together with insecure: true."""
    insecure: bool = False
    """Turns certificate checks off. Must be said explicitly, and is logged as a warning."""
    request_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds per request (a bulk request included)."""
    version_epoch: Annotated[int, Field(ge=0, le=127)] = 0
    """High bits of every document version; raise it after RESET MASTER or a failover to a server whose
    binlog file numbers are lower (docs/internals.md#versions-and-failover)."""

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("at least one host is required")
        for host in hosts:
            if not re.match(r"^https?://", host):
                raise ValueError(f"{host!r} must start with http:// or https://")
        return hosts

    @property
    def addresses(self) -> str:
        """The hosts as logs and messages show them: without credentials a URL may carry (https://user:pw@host)."""
        return ", ".join(re.sub(r"^(https?://)[^/]*@", r"\1", host) for host in self.hosts)

    @field_validator("ssl_assert_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9A-Fa-f]{64}", value.replace(":", "")):
            raise ValueError("expected a SHA-256 fingerprint: 64 hex digits, colons allowed")
        return value

    @model_validator(mode="after")
    def _tls_and_secrets(self) -> "ElasticsearchConfig":
        if not self.verify_certs and not self.insecure:
            raise ValueError("verify_certs: false turns certificate checks off; say so with insecure: true")
        if self.password and self.password_file:
            raise ValueError("give password or password_file, not both")
        if self.api_key and self.api_key_file:
            raise ValueError("give api_key or api_key_file, not both")
        if self.engine == "opensearch" and (self.api_key or self.api_key_file):
            raise ValueError("engine opensearch: OpenSearch has no API keys; use username and password")
        return self


class CheckpointConfig(_Strict):
    path: str = "cdc.checkpoint.json"
    """The checkpoint file (JSON, replaced atomically; a .lock file beside it), relative to state_dir."""
    min_interval: Annotated[float, Field(ge=0)] = 1.0
    """Seconds between checkpoint saves: saving is cheap but not free; always saved on stop."""


class StartConfig(_Strict):
    """Where to begin when there is no checkpoint yet."""

    position: str = "end"
    """Where to start when there is no checkpoint: end (the end of the binlog, after a snapshot) or FILE:POS."""
    gtid: str | None = None
    """The GTID state at that position (looked up on MariaDB if omitted)."""

    @field_validator("position")
    @classmethod
    def _position(cls, value: str) -> str:
        if value != "end":
            BinlogPosition.parse(value)
        return value


class SnapshotConfig(_Strict):
    """Copying existing rows (see cdc/copy/snapshot.py)."""

    mode: Literal["initial", "never", "when_needed"] = "initial"
    """initial: copy the rules' tables on first start, and tables new to the rules on later starts;
    never: stream only; when_needed: like initial, and also copy everything again if the checkpoint's
    binlog was purged."""
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    """Rows per chunk (one consistent read, and as many bulk requests as batch.max_actions and
    batch.max_bytes make of it), at most; fewer when rows are wide (chunk_bytes)."""
    chunk_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    """A chunk stops near this many bytes of row data (the rows as the server sends them, averaged over
    the last chunk)."""
    max_chunk_age: Annotated[float, Field(gt=0)] = 25.0
    """Seconds: a chunk must be in Elasticsearch this soon after it was read, or it is read again (capped
    at half the index's gc_deletes; see cdc/copy/snapshot.py)."""
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    """Bulk requests in flight per table while the next chunks are read. Memory: at most
    tables x (2 x concurrency + 1) chunks, each about chunk_bytes or chunk_size rows."""
    tables: Annotated[int, Field(ge=1, le=16)] = 2
    """Tables copied at once, each on its own connection."""
    max_rows_per_second: Annotated[float, Field(gt=0)] | None = None
    """A ceiling on the copy's rate, all tables together (null: as fast as Elasticsearch takes it).
    For a `cdc rebuild` or `cdc snapshot` beside a live stream: the copy then leaves room for the
    stream's writes (docs/verify-and-rebuild.md "Rebuilding an index"). A verify (`cdc verify`, and a
    rebuild's) keeps to it too, counting rows read and documents scanned."""
    bulk_settings: bool = False
    """true: `cdc run`'s copy into an index that holds no document yet turns its refreshes off while it
    fills, and puts them back before streaming starts (replicas stay). Off by default: it gained nothing
    measurable on a single node (BENCHMARKS.md), and its admin calls delay the copy's start
    (docs/running.md "Snapshots"). false: the index keeps its settings during the copy."""


class IndicesConfig(_Strict):
    """Index lifecycle (docs/verify-and-rebuild.md "Rebuilding an index", cdc/es/aliases.py)."""

    aliases: bool = True
    """A fixed index name of a rule is an alias onto a versioned index cdc creates
    (shop-orders -> shop-orders_v1), so that `cdc rebuild` can replace the index
    without downtime. false: cdc writes to the name as a plain index, as before.
    An index that already exists under the name keeps working either way."""
    keep_previous: Annotated[float, Field(ge=0)] = 86400.0
    """Seconds an index that `cdc rebuild` replaced is kept before `cdc rebuild --cleanup`
    deletes it (it is no longer written to: a copy to compare with, or to read back from)."""
    on_change: Literal["report", "rebuild"] = "report"
    """What `cdc run` does when it starts and finds that an index a rule writes differs from
    the rules (a mapping, an analyzer, a setting: what `cdc indices plan` reports as differs),
    or a rebuild unfinished. report: log it with the `cdc rebuild` to run. rebuild: run that
    rebuild itself, in the background while it streams, with the same steps and crash safety
    (needs `aliases`)."""

    @model_validator(mode="after")
    def _rebuild_needs_aliases(self) -> "IndicesConfig":
        if self.on_change == "rebuild" and not self.aliases:
            raise ValueError("on_change: rebuild swaps a new index in behind the rule's name, which needs aliases: true")
        return self


class DeadLetterConfig(_Strict):
    """What to do with documents Elasticsearch rejects for good (see cdc/stream/deadletter.py)."""

    on_rejected: Literal["stop", "dead_letter"] = "stop"
    """stop: stop the daemon, naming the document (the checkpoint stays before it);
    dead_letter: keep it in `path` and go on (`cdc dlq` lists and re-sends them)."""
    path: str = "dead-letters.jsonl"
    """The dead-letter store (JSON lines), relative to state_dir."""


class BatchConfig(_Strict):
    max_actions: Annotated[int, Field(ge=1)] = 2000
    """Documents per bulk request, at most."""
    max_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    """Bytes per bulk request, at most."""
    max_interval: Annotated[float, Field(gt=0)] = 0.5
    """A batch goes out as soon as the source has nothing more to read and no bulk
    request is in flight; while input keeps coming it waits at most this many
    seconds (docs/internals.md#batching-and-latency)."""
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    """Bulk requests in flight at once. Writes of one document never overtake
    each other, and the checkpoint moves only over batches acknowledged in order."""


class RetryConfig(_Strict):
    initial_backoff: Annotated[float, Field(gt=0)] = 0.5
    """Seconds before the first retry; doubles per attempt, with jitter."""
    max_backoff: Annotated[float, Field(gt=0)] = 30.0
    """Seconds between retries, at most."""
    max_attempts: Annotated[int, Field(ge=1)] | None = None
    """Attempts before giving up; null = keep trying forever (a CDC daemon should outwait an outage)."""


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The lowest level logged (--log-level overrides it)."""
    format: Literal["auto", "text", "json"] = "auto"
    """auto: text on a terminal, else JSON lines (--log-format overrides it)."""


class ValuesConfig(_Strict):
    """How column values become document values (docs/values.md "Values"; cdc/rules/values.py)."""

    decimal_as: Literal["string", "number"] = "string"
    """string keeps every digit of DECIMAL(65,30); number is a double (loses digits past ~15)."""
    timestamp_timezone: str = "UTC"
    """TIMESTAMP values are instants; they are written with this zone's offset (IANA name)."""
    bit1_as_bool: bool = True
    """BIT(1) as true/false; false: as 0/1."""
    points: Literal["geojson", "geo_point"] = "geojson"
    """POINT as GeoJSON, or as {"lat": .., "lon": ..} for a geo_point field."""

    @field_validator("timestamp_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Europe/Paris)") from None
        return value


class MetricsConfig(_Strict):
    """The HTTP port for /metrics, /healthz and /readyz (README: Operations)."""

    enabled: bool = False
    """Serve /metrics, /healthz and /readyz."""
    host: str = "127.0.0.1"
    """The address to listen on. Loopback by default: the endpoints have no authentication
    (0.0.0.0 to be scraped from other hosts)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 9108
    """The port for all three endpoints."""
    max_lag_seconds: Annotated[float, Field(gt=0)] = 60.0
    """/readyz fails while cdc is further behind the source than this."""


class KafkaConfig(_Strict):
    """Kafka mode (README: Kafka mode): `cdc run` publishes actions, `cdc sink` writes them to Elasticsearch."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """The brokers: a comma-separated host:port list."""
    topic: str = "cdc.actions"
    """The topic `cdc run` publishes to and `cdc sink` reads (kafka.input: cdc)."""
    format: Literal["cdc", "debezium"] = "cdc"
    """cdc: the versioned action message `cdc sink` reads; debezium: a Debezium-style change
    envelope (payload only) for other consumers, which `cdc sink` also reads."""
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 12
    """Made by `cdc run` when the topic is missing; a document's actions share a partition (key: index/id)."""
    replication_factor: Annotated[int, Field(ge=1)] | None = None
    """The new topic's replication factor; null: the broker's default."""
    group_id: str = "cdc-sink"
    """The consumer group of the `cdc sink` workers."""
    producer: dict[str, str | int | float | bool] = {}
    """Extra librdkafka settings (security.protocol, sasl.*, ssl.*, ...). cdc's own guarantees
    (enable.idempotence, acks=all) cannot be overridden."""
    consumer: dict[str, str | int | float | bool] = {}
    """Extra librdkafka consumer settings, e.g. session.timeout.ms (cdc's default 10000); manual offset
    commits, the classic group protocol and an eager assignment cannot be overridden."""
    delivery_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds a publish may wait for the broker before it counts as failed and is sent again."""
    input: Literal["cdc", "debezium"] = "cdc"
    """What `cdc sink` reads: cdc's actions (`topic`), or the change events of a Debezium MySQL/MariaDB
    connector (`topics`), which it turns into actions through the rules (docs/kafka.md)."""
    topics: list[str] = []
    """input: debezium: the connector's table topics (<topic.prefix>.<db>.<table>); an entry that starts
    with ^ is a regular expression (librdkafka's subscription convention), e.g. ^shop\\.inventory\\..*"""
    stall_after: Annotated[float, Field(gt=0)] = 60.0
    """`cdc sink`: seconds an assigned partition may have messages waiting and not be read (while the
    writer does not hold its partitions paused on purpose) before it counts as stalled: logged, resumed,
    and shown in metrics and `cdc status`."""

    @model_validator(mode="after")
    def _input_topics(self) -> "KafkaConfig":
        if self.input == "debezium" and not self.topics:
            raise ValueError("kafka.input: debezium needs kafka.topics: the connector's table topics "
                             "(<topic.prefix>.<db>.<table>, or a regular expression starting with ^)")
        if self.input == "cdc" and self.topics:
            raise ValueError("kafka.topics is for kafka.input: debezium; cdc's own actions are read from kafka.topic")
        for topic in self.topics:
            if not topic:
                raise ValueError("kafka.topics: an empty topic name")
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise ValueError(f"kafka.topics: {topic!r} is not a regular expression: {exc}") from None
        return self


class Config(_Strict):
    mysql: MysqlConfig
    """The source server."""
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()
    """The destination: Elasticsearch or OpenSearch."""
    checkpoint: CheckpointConfig = CheckpointConfig()
    """The saved binlog position."""
    start: StartConfig = StartConfig()
    """Where to begin when there is no checkpoint yet."""
    rules: str = "rules"
    """A directory of *.yml rule files (or one file), relative to the config file (docs/rules.md)."""
    snapshot: SnapshotConfig = SnapshotConfig()
    """Copying existing rows."""
    indices: IndicesConfig = IndicesConfig()
    """Index aliases and `cdc rebuild`."""
    dead_letter: DeadLetterConfig = DeadLetterConfig()
    """Documents Elasticsearch rejects for good."""
    batch: BatchConfig = BatchConfig()
    """Bulk requests."""
    retry: RetryConfig = RetryConfig()
    """Retries of failed requests and items."""
    logging: LoggingConfig = LoggingConfig()
    """Log level and format."""
    metrics: MetricsConfig = MetricsConfig()
    """The HTTP port for /metrics, /healthz and /readyz."""
    values: ValuesConfig = ValuesConfig()
    """How column values become document values (docs/values.md)."""
    row_path: Literal["auto", "native", "python"] = "auto"
    """Rows events to actions: `native` (the compiled row path, cdc._native), `python`
    (the library and cdc/rules), or `auto`: native where the plan allows (docs/row-path.md)."""
    destination: Literal["elasticsearch", "kafka"] = "elasticsearch"
    """Where `cdc run` writes its actions: Elasticsearch, or a Kafka topic that `cdc sink` workers
    write to Elasticsearch (docs/kafka.md)."""

    kafka: KafkaConfig = KafkaConfig()
    """Kafka mode's broker, topic and consumer group."""
    state_dir: str | None = None
    """Where cdc writes: relative checkpoint.path and dead_letter.path (and the lock and
    snapshot-progress files beside them) resolve against it. Default: $STATE_DIRECTORY, which
    systemd's StateDirectory= sets and the container image sets to its /var/lib/cdc volume; else the
    config file's directory (under systemd and in the image /etc/cdc is read-only)."""

    # Set by load_config: relative paths in the file are relative to the file.
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _rebuild_not_in_kafka_mode(self) -> "Config":
        if self.destination == "kafka" and self.indices.on_change == "rebuild":
            raise ValueError("indices.on_change: rebuild needs cdc run to write to Elasticsearch itself (destination: "
                             "elasticsearch): in Kafka mode the writers are `cdc sink` processes")
        return self

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


def _suggestion(loc: tuple, key: str) -> str:
    """ " (did you mean 'server_id'?)" for a misspelled key, from the keys allowed where it stands."""
    model: Any = Config
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    names = [n for n in model.model_fields if n != "base_dir"]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def key_lines(text: str) -> dict[tuple, int]:
    """The line (1-based) of every key of a YAML mapping document, by its path: ("mysql", "server_id") -> 5."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[(*path, key.value)] = key.start_mark.line + 1
                    walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _where(source: str, lines: dict[tuple, int], loc: tuple) -> str:
    """`file:line` of the deepest part of `loc` the file has (a missing key: its section's line)."""
    for end in range(len(loc), 0, -1):
        if tuple(loc[:end]) in lines:
            return f"{source}:{lines[tuple(loc[:end])]}"
    return source


def format_validation_error(source: str, exc: ValidationError, lines: dict[tuple, int] | None = None) -> str:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggestion(loc[:-1], str(loc[-1]))
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{_where(source, lines or {}, loc)}: {key}: {msg}")
    return "\n".join(out)


def yaml_error(source: str, exc: yaml.YAMLError) -> str:
    """`file:line:col: invalid YAML: problem (context)`: one format for the config and the rule files."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")


def parse_config(data: Any, source: str = "config", base_dir: str = ".",
                 lines: dict[tuple, int] | None = None) -> Config:
    """Validate a loaded config; `lines` (from `key_lines`) puts line numbers in the messages."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'mysql' section, got {type(data).__name__}")
    missing: list[str] = []
    data = _interpolate(data, "", missing)
    if missing:
        raise ConfigError("\n".join(
            f"{_where(source, lines, tuple(m.split(':', 1)[0].split('.')))}: {m}" for m in missing))
    try:
        config = Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, lines)) from None
    return _with_state_dir(_with_files(config, source, lines))


def _with_state_dir(config: Config) -> Config:
    """Resolve the writable paths against the state directory (see Config.state_dir)."""
    state = config.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None
    if state is None:
        return config  # the config file's directory, as every other relative path
    state_dir = config.resolve(state)

    def place(path: str) -> str:
        return path if Path(path).is_absolute() else str(state_dir / path)

    return config.model_copy(update={
        "state_dir": str(state_dir),
        "checkpoint": config.checkpoint.model_copy(update={"path": place(config.checkpoint.path)}),
        "dead_letter": config.dead_letter.model_copy(update={"path": place(config.dead_letter.path)})})


def _with_files(config: Config, source: str, lines: dict[tuple, int]) -> Config:
    """Resolve TLS file paths against the config's directory and read the *_file secrets."""
    problems: list[str] = []

    def where(key: str) -> str:
        return _where(source, lines, tuple(key.split(".")))

    def path(value: str | None) -> str | None:
        return str(config.resolve(value)) if value else None

    def secret(key: str, value: str | None) -> str | None:
        if not value:
            return None
        try:
            text = config.resolve(value).read_text().splitlines()
        except OSError as exc:
            problems.append(f"{where(key)}: {key}: cannot read {config.resolve(value)}: {exc.strerror}")
            return None
        if not text or not text[0].strip():
            problems.append(f"{where(key)}: {key}: {config.resolve(value)} is empty")
            return None
        return text[0].strip()

    m, e = config.mysql, config.elasticsearch
    mysql: dict[str, Any] = {"ssl_ca": path(m.ssl_ca), "ssl_cert": path(m.ssl_cert), "ssl_key": path(m.ssl_key)}
    try:  # a missing or broken certificate is a set-up error, found before connecting
        m.model_copy(update=mysql).ssl_context()
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"{where('mysql.ssl_ca')}: mysql: cannot load the TLS files (ssl_ca, ssl_cert, ssl_key): {exc}")
    if m.password_file:
        mysql["password"] = secret("mysql.password_file", m.password_file)
    es: dict[str, Any] = {"ca_certs": path(e.ca_certs)}
    if e.password_file:
        es["password"] = secret("elasticsearch.password_file", e.password_file)
    if e.api_key_file:
        es["api_key"] = secret("elasticsearch.api_key_file", e.api_key_file)
    if problems:
        raise ConfigError("\n".join(problems))
    return config.model_copy(update={"mysql": m.model_copy(update=mysql),
                                     "elasticsearch": e.model_copy(update=es)})


_SECRET_KEYS = (("mysql", "password"), ("elasticsearch", "password"), ("elasticsearch", "api_key"))


def security_warnings(config: Config, path: str | Path | None = None) -> list[str]:
    """Settings that weaken security: worth a warning at start-up, not a refusal."""
    warnings = []
    if config.elasticsearch.insecure:
        warnings.append("elasticsearch.insecure: true: TLS certificates of Elasticsearch are NOT checked; "
                        "anyone on the path can read and change what cdc sends")
    if (config.mysql.ssl_ca or config.mysql.ssl_cert) and not config.mysql.ssl_verify:
        warnings.append("mysql.ssl_verify: false: the MySQL server's TLS certificate is NOT checked")
    if any(h.startswith("http://") for h in config.elasticsearch.hosts) and (
            config.elasticsearch.password or config.elasticsearch.api_key
            or any(_url_credentials(h) for h in config.elasticsearch.hosts if h.startswith("http://"))):
        warnings.append("elasticsearch: credentials are sent over plain http://; use https://")
    if path is not None:
        warnings.extend(_exposed_secrets(Path(path)))
    return warnings


def _url_credentials(url: str) -> str:
    """The `user:password` of `scheme://user:password@host...`, else ""."""
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    return authority.rsplit("@", 1)[0] if "@" in authority else ""


def _exposed_secrets(path: Path) -> list[str]:
    try:
        if not path.stat().st_mode & 0o004:
            return []
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    found = []
    for section, key in _SECRET_KEYS:
        value = (data.get(section) or {}).get(key) if isinstance(data, dict) else None
        # A ${VAR} reference is not a secret; a literal is.
        if isinstance(value, (str, int)) and _ENV.sub("", str(value)).strip():
            found.append(f"{section}.{key}")
    if isinstance(data, dict):
        hosts = (data.get("elasticsearch") or {}).get("hosts") or []
        if isinstance(hosts, list) and any(isinstance(h, str) and _ENV.sub("", _url_credentials(h)).strip(": ")
                                           for h in hosts):
            found.append("elasticsearch.hosts (user:password@ in a URL)")
        kafka = data.get("kafka") or {}
        for client in ("producer", "consumer"):  # librdkafka settings: sasl.password, ssl.key.password
            settings = kafka.get(client) if isinstance(kafka, dict) else None
            if isinstance(settings, dict):
                found.extend(f"kafka.{client}.{key}" for key, value in settings.items() if "password" in str(key)
                             and isinstance(value, (str, int)) and _ENV.sub("", str(value)).strip())
    if not found:
        return []
    # "; chmod", not ": chmod": log redaction (cdc/log.py) takes the word after "password:" for a secret.
    return [f"{path} is readable by every user and holds {', '.join(found)}; chmod o-r {path}, or move the "
            "secret to ${VAR} or a password_file"]


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(str(path), exc)) from None
    lines = key_lines(text)
    if isinstance(data, dict) and "base_dir" in data:
        raise ConfigError(f"{_where(str(path), lines, ('base_dir',))}: base_dir: unknown key")
    return parse_config(data, str(path), str(path.parent.resolve()), lines)
