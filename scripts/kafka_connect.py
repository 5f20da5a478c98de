#!/usr/bin/env python3
"""Kafka Connect (standalone) with Debezium's MariaDB connector, for the tests of `cdc sink` with `kafka.input: debezium`.

    python scripts/kafka_connect.py fetch     # resolve the jars once (the tests do it too)

Neither Kafka Connect nor Debezium is packaged for PyPI or Debian, so, as
scripts/kafka_broker.py does for the broker, the worker runs from Maven
Central's jars: `org.apache.kafka:connect-runtime` and `connect-json` (the
broker's Kafka version), `io.debezium:debezium-connector-mariadb` and an SLF4J
binding, resolved with their runtime dependencies by `mvn
dependency:copy-dependencies` into CDC_DEV_HOME/kafka-connect/libs-<versions>
(about 45 MB, fetched on first use; later runs reuse it). Everything goes on
one classpath (no plugin.path): the worker hosts this one connector.

`Connect` runs `org.apache.kafka.connect.cli.ConnectStandalone` as a child of
the caller (a test fixture) with one or more connectors, with its offsets and
the connectors' schema histories in files of the caller's directory, and stops
it at the end.

Debezium version: 3.5.0.Final, the newest debezium-connector-mariadb that
Maven Central served here (3.6.1, 3.4.3 and 3.3.2 were not found); it
runs on the broker's Kafka 4.1.1 jars and the system JDK 17 (the tests show
it). The MySQL connector (3.6.1, tried first) refuses MariaDB 10.11: it sends
SHOW BINARY LOG STATUS, a MySQL 8.4 statement. So the MariaDB connector it is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kafka_broker  # noqa: E402  (the broker's version, home and JDK)

DEBEZIUM_VERSION = os.environ.get("DEBEZIUM_VERSION", "3.5.0.Final")
SLF4J_VERSION = "1.7.36"  # the slf4j-api connect-runtime 4.1.1 depends on
CONNECT_DIR = kafka_broker.HOME / "kafka-connect"
CONNECTOR_CLASS = "io.debezium.connector.mariadb.MariaDbConnector"

POM = """\
<project><modelVersion>4.0.0</modelVersion>
 <groupId>local</groupId><artifactId>cdc-kafka-connect</artifactId><version>1</version>
 <dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>{kafka}</version></dependency>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-json</artifactId><version>{kafka}</version></dependency>
  <dependency><groupId>io.debezium</groupId><artifactId>debezium-connector-mariadb</artifactId><version>{debezium}</version></dependency>
  <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version></dependency>
 </dependencies>
</project>
"""


class ConnectError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[kafka-connect] {msg}", file=sys.stderr, flush=True)


def libs() -> Path:
    """The worker's classpath directory, fetched with mvn the first time."""
    name = f"libs-{kafka_broker.KAFKA_VERSION}-debezium-{DEBEZIUM_VERSION}"
    target = CONNECT_DIR / name
    if (target / f"debezium-connector-mariadb-{DEBEZIUM_VERSION}.jar").is_file():
        return target
    CONNECT_DIR.mkdir(parents=True, exist_ok=True)
    build = CONNECT_DIR / f"pom-{name}"
    build.mkdir(exist_ok=True)
    (build / "pom.xml").write_text(POM.format(kafka=kafka_broker.KAFKA_VERSION, debezium=DEBEZIUM_VERSION,
                                              slf4j=SLF4J_VERSION))
    log(f"fetching connect-runtime {kafka_broker.KAFKA_VERSION} and debezium-connector-mariadb {DEBEZIUM_VERSION} "
        "with their dependencies from Maven Central")
    tmp = CONNECT_DIR / f".{name}"
    import servers  # its lock: the tests' warm-up thread may be running mvn for a server at the same time

    with servers.MAVEN_LOCK:
        run = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(build / "pom.xml"),
             "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"], capture_output=True, text=True)
    if run.returncode != 0 or not (tmp / f"debezium-connector-mariadb-{DEBEZIUM_VERSION}.jar").is_file():
        raise ConnectError(f"could not fetch Kafka Connect and Debezium with mvn:\n{run.stdout[-2000:]}"
                           f"{run.stderr[-2000:]}")
    tmp.rename(target)
    return target


def mariadb_connector(name: str, *, prefix: str, host: str, port: int, user: str, password: str, server_id: int,
                      databases: list[str], history: Path) -> dict[str, str]:
    """Debezium MariaDB connector settings with the value encodings docs/kafka.md "Kafka mode" asks for."""
    return {
        "name": name,
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": host,
        "database.port": str(port),
        "database.user": user,
        "database.password": password,
        "database.server.id": str(server_id),
        "topic.prefix": prefix,
        "database.include.list": ",".join(databases),
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": str(history),
        "schema.history.internal.store.only.captured.tables.ddl": "true",
        "schema.history.internal.store.only.captured.databases.ddl": "true",
        "include.schema.changes": "false",
        # docs/kafka.md "Kafka mode": the encodings cdc converts exactly.
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "bigint.unsigned.handling.mode": "precise",
        "binary.handling.mode": "bytes",
        # The broker does not create topics on its own (auto.create.topics.enable=false): Connect does.
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }


WORKER = """\
bootstrap.servers={bootstrap}
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable={schemas}
value.converter.schemas.enable={schemas}
offset.storage.file.filename={offsets}
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{rest_port}
# Plugins are on the classpath; do not scan for service loader manifests elsewhere.
plugin.discovery=only_scan
"""


def without_schemas(connector: dict[str, str]) -> dict[str, str]:
    """The same connector writing the payload alone (a per-connector converter override)."""
    return {**connector, "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false"}


class Connect:
    """One standalone Connect worker running its connectors, as a child process."""

    def __init__(self, directory: Path, bootstrap: str, rest_port: int, *connectors: dict[str, str],
                 schemas: bool = True):
        self.dir = directory
        self.bootstrap = bootstrap
        self.rest_port = rest_port
        self.connectors = connectors
        self.schemas = schemas
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "connect.log"

    def start(self, timeout: float = 120) -> "Connect":
        classpath = f"{libs()}/*"
        self.dir.mkdir(parents=True, exist_ok=True)
        worker = self.dir / "worker.properties"
        worker.write_text(WORKER.format(bootstrap=self.bootstrap, schemas=str(self.schemas).lower(),
                                        offsets=self.dir / "offsets.dat", rest_port=self.rest_port))
        files = []
        for connector in self.connectors:
            path = self.dir / f"connector-{connector['name']}.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in connector.items()))
            files.append(str(path))
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [kafka_broker.JAVA, "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", *kafka_broker.extra_java_opts(),
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=info", "-Dorg.slf4j.simpleLogger.showDateTime=true",
             "-cp", classpath, "org.apache.kafka.connect.cli.ConnectStandalone", str(worker), *files],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.wait_running(timeout)
        return self

    def status(self, name: str) -> dict | None:
        url = f"http://127.0.0.1:{self.rest_port}/connectors/{name}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_running(self, timeout: float) -> None:
        """Until every connector and its task say RUNNING (the task then snapshots, then streams)."""
        deadline = time.monotonic() + timeout
        waiting = [c["name"] for c in self.connectors]
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ConnectError(f"Kafka Connect exited with {self.proc.returncode}; tail of {self.log_path}:\n"
                                   f"{self.tail()}")
            for name in list(waiting):
                status = self.status(name)
                if not status:
                    continue
                tasks = status.get("tasks") or []
                if any(t.get("state") == "FAILED" for t in tasks):
                    raise ConnectError(f"the task of connector {name} failed: {tasks}\n{self.tail()}")
                if status["connector"]["state"] == "RUNNING" and tasks and tasks[0]["state"] == "RUNNING":
                    waiting.remove(name)
            if not waiting:
                return
            time.sleep(0.5)
        raise ConnectError(f"connector(s) {', '.join(waiting)} not running after {timeout:.0f} s; tail of "
                           f"{self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self, timeout: float = 30) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the worker stops the task and flushes its offsets
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command != "fetch":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(libs())
    except ConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
