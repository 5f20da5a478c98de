#!/usr/bin/env python3
"""A single-node Apache Kafka broker (KRaft) for the Kafka-mode tests and benchmarks.

    python scripts/kafka_broker.py up|down|status

Apache Kafka publishes no server package on PyPI or Debian, so the broker runs
from Maven Central's jars (`org.apache.kafka:kafka_2.13`, resolved with its
runtime dependencies by `mvn dependency:copy-dependencies`) on the system JDK 17,
as the recipe in the shared guide's platform.md §3 describes: format the
storage with `kafka.tools.StorageTool`, then run `kafka.Kafka`. Files live in
CDC_DEV_HOME/kafka; the broker listens on 127.0.0.1:KAFKA_PORT (default 19092)
and its controller on KAFKA_PORT + 1. `up` on a running broker only checks it.

Kept beside scripts/servers.py (which starts MariaDB and Elasticsearch, shared
by every test) because only the Kafka tests need a broker: tests/integration/
test_kafka*.py start it once per session.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

# Pinned from Maven Central's org.apache.kafka:kafka_2.13 (4.1.1, read 2026-11-28).
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.1.1")
HOME = Path(os.environ.get("CDC_DEV_HOME", "/var/tmp/cdc-dev"))
KAFKA_DIR = HOME / "kafka"
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "19092"))
JAVA = os.environ.get("KAFKA_JAVA", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java")

POM = """\
<project><modelVersion>4.0.0</modelVersion>
 <groupId>local</groupId><artifactId>cdc-kafka-runtime</artifactId><version>1</version>
 <dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>
 </dependencies>
</project>
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A test's consumers join one after another: do not wait 3 s for more members.
group.initial.rebalance.delay.ms=0
# A SIGKILLed test consumer's partitions move when its session times out: the tests ask for
# 3 s (Kafka's default minimum, 6 s, made each SIGKILL of a writer stall its group 6 s).
group.min.session.timeout.ms=2000
# Topics are made by cdc (kafka.partitions); an unknown one is a mistake, not a request.
auto.create.topics.enable=false
"""


def extra_java_opts() -> list[str]:
    """The test suite's extra JVM options (CDC_EXTRA_JAVA_OPTS, as servers.extra_java_opts): empty by default."""
    return os.environ.get("CDC_EXTRA_JAVA_OPTS", "").split()


class BrokerError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def bootstrap() -> str:
    return f"127.0.0.1:{KAFKA_PORT}"


def _libs() -> Path:
    """The broker's classpath: kafka_2.13 and its runtime dependencies, fetched once."""
    libs = KAFKA_DIR / f"libs-{KAFKA_VERSION}"
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return libs
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    build = KAFKA_DIR / f"pom-{KAFKA_VERSION}"
    build.mkdir(exist_ok=True)
    (build / "pom.xml").write_text(POM.format(version=KAFKA_VERSION))
    log(f"fetching kafka_2.13 {KAFKA_VERSION} and its dependencies from Maven Central")
    tmp = KAFKA_DIR / f".libs-{KAFKA_VERSION}"
    run = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(build / "pom.xml"),
         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"], capture_output=True, text=True)
    if run.returncode != 0 or not (tmp / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise BrokerError(f"could not fetch Kafka {KAFKA_VERSION} with mvn:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    tmp.rename(libs)
    return libs


def _pid() -> int | None:
    try:
        pid = int((KAFKA_DIR / "kafka.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _listening(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", KAFKA_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def _metadata_brokers(timeout: float = 2.0) -> int:
    """How many brokers a Metadata request (v4, no topics) names: 0 until the broker serves clients.

    Kafka's wire protocol by hand, so that `up` runs on any python3 (this script is run as
    `python3 scripts/kafka_broker.py up`; confluent_kafka is a test extra, not there).
    Raises OSError when the broker does not answer."""
    client = b"cdc-kafka-broker"
    # Request header v1 (api key 3 = Metadata, version 4, correlation id, client id), then the
    # body: topics = an empty array (none: only the brokers), allow_auto_topic_creation = false.
    request = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", 0, 0)
    with socket.create_connection(("127.0.0.1", KAFKA_PORT), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _receive(sock, 4))[0]
        # The response: correlation id, throttle time (ms), then the brokers array's length.
        correlation, _, brokers = struct.unpack(">iii", _receive(sock, size)[:12])
    if correlation != 1:
        raise OSError(f"kafka answered correlation id {correlation}, not 1")
    return brokers


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("kafka closed the connection")
        data += chunk
    return data


def _ready(timeout: float) -> bool:
    """The broker answers metadata requests (a listening port alone comes before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _metadata_brokers() > 0:
                return True
        except (OSError, struct.error):
            pass
        time.sleep(0.2)
    return False


def running() -> bool:
    return _pid() is not None and _listening()


def up(timeout: float = 120) -> str:
    """Start the broker (formatting its storage the first time); return its bootstrap address."""
    if running() and _ready(30):
        log(f"kafka {KAFKA_VERSION}: already running at {bootstrap()}")
        return bootstrap()
    libs = _libs()
    data = KAFKA_DIR / "data"
    props = KAFKA_DIR / "server.properties"
    props.write_text(SERVER_PROPERTIES.format(port=KAFKA_PORT, controller=KAFKA_PORT + 1, data=data))
    classpath = f"{libs}/*"
    if not (data / "meta.properties").is_file():
        cluster = str(uuid.uuid4())
        run = subprocess.run([JAVA, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
                             capture_output=True, text=True)
        if run.returncode == 0 and run.stdout.strip():
            cluster = run.stdout.strip()
        run = subprocess.run([JAVA, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster,
                              "-c", str(props)], capture_output=True, text=True)
        if run.returncode != 0:
            raise BrokerError(f"kafka storage format failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    out = KAFKA_DIR / "kafka.log"
    log(f"kafka {KAFKA_VERSION}: starting on {bootstrap()}")
    cmd = [JAVA, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", *extra_java_opts(), f"-Dkafka.logs.dir={KAFKA_DIR / 'logs'}",
           "-cp", classpath, "kafka.Kafka", str(props)]
    # Detached from this process (as servers.py starts MariaDB): it outlives the tests that start it.
    # A background job of a non-interactive sh is no group leader, so setsid execs in place: $! is Java's pid.
    started = subprocess.run(["sh", "-c", 'setsid "$@" >>"$0" 2>&1 </dev/null & echo $!', str(out), *cmd],
                             capture_output=True, text=True, check=True)
    pid = int(started.stdout.strip())
    (KAFKA_DIR / "kafka.pid").write_text(str(pid))
    deadline = time.monotonic() + timeout
    while not _listening():
        if _pid() is None or time.monotonic() > deadline:
            raise BrokerError(f"kafka did not start; tail of {out}:\n{_tail(out)}")
        time.sleep(0.2)
    if not _ready(max(5.0, deadline - time.monotonic())):
        raise BrokerError(f"kafka does not answer metadata requests; tail of {out}:\n{_tail(out)}")
    log(f"kafka {KAFKA_VERSION}: ready")
    return bootstrap()


def down(timeout: float = 60) -> None:
    """Stop the broker cleanly (SIGTERM: it flushes and closes its logs); data stays for the next `up`."""
    pid = _pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        os.kill(pid, signal.SIGKILL)
    (KAFKA_DIR / "kafka.pid").unlink(missing_ok=True)
    log("kafka: stopped")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    try:
        if command == "up":
            print(f"Kafka {KAFKA_VERSION}  {up()}")
        elif command == "down":
            down()
        elif command == "status":
            print(f"kafka: {'running' if running() else 'stopped'}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
