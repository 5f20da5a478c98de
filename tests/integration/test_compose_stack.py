"""The whole compose stack, brought up with Docker Compose v2 (the official command) against podman.

docker-compose.yml (MySQL, Elasticsearch, cdc) and, in the second test,
docker-compose.kafka.yml on top (a broker, cdc publishing to it, two `cdc sink` writers),
each with its podman override (docker-compose.podman.yml, docker-compose.kafka.podman.yml)
that only swaps the images that cannot be pulled here for ones scripts/compose_stack.py
builds locally and gives cdc's Dockerfile a local base. Everything else (commands,
health checks, `depends_on` conditions, volumes, environment, deploy/docker/*.yml, the
init SQL, demo/rules) is the files as a user gets them.

No host servers are used: the stack has its own MySQL and Elasticsearch, published on
free loopback ports (MYSQL_PORT, ES_PORT) so that the test reads MySQL and the documents
directly. The health checks are run by scripts/compose_stack.py's HealthChecks (no
systemd here to run them on their interval), which also records when each first passed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from elasticsearch import Elasticsearch
from harness import Admin, binlog_position, free_port, wait_for

import compose_stack

ROOT = Path(__file__).resolve().parents[2]
BASE_FILES = ["docker-compose.yml", "docker-compose.podman.yml"]
KAFKA_FILES = ["docker-compose.yml", "docker-compose.kafka.yml", "docker-compose.podman.yml",
               "docker-compose.kafka.podman.yml"]

pytestmark = [
    pytest.mark.serial,  # a whole stack of its own: two cores, so nothing else beside it
    pytest.mark.skipif(compose_stack.available() is not None,
                       reason=f"podman cannot build and run the stack here: {compose_stack.available()}"),
]


class Stack:
    """`docker compose -p PROJECT -f FILE... ARGS` in the repository, with the local images' variables."""

    def __init__(self, files: list[str]):
        self.project = f"cdcstack{uuid.uuid4().hex[:8]}"
        self.files = files
        self.mysql_port, self.es_port = free_port(), free_port()
        self.env = {**compose_stack.images(kafka="docker-compose.kafka.yml" in files),
                    "MYSQL_PORT": str(self.mysql_port), "ES_PORT": str(self.es_port),
                    "CDC_MYSQL_PASSWORD": "cdc", "MYSQL_ROOT_PASSWORD": "root"}
        self.timings: list[str] = []

    def __call__(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        began = time.monotonic()
        files = [arg for name in self.files for arg in ("-f", name)]
        result = compose_stack.compose("-p", self.project, *files, *args, env=self.env, capture_output=True,
                                       text=True, timeout=timeout)
        took = time.monotonic() - began
        self.timings.append(f"docker compose {' '.join(args)}: {took:.1f} s")  # printed at the end
        if check:
            assert result.returncode == 0, f"docker compose {' '.join(args)} failed:\n" \
                                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result.stdout + result.stderr

    def containers(self) -> list[dict]:
        out = _podman("ps", "-a", "--format", "json", "--filter", f"label=com.docker.compose.project={self.project}")
        return json.loads(out or "[]")

    def name(self, service: str, number: int = 1) -> str:
        return f"{self.project}-{service}-{number}"

    def inspect(self, service: str, number: int = 1) -> dict:
        return json.loads(_podman("inspect", self.name(service, number)))[0]

    def state(self, service: str, number: int = 1) -> dict:
        return self.inspect(service, number)["State"]

    def logs(self, service: str, number: int = 1) -> str:
        return _podman("logs", self.name(service, number), stderr=True)

    def volume_path(self, volume: str) -> Path:
        return Path(_podman("volume", "inspect", "--format", "{{.Mountpoint}}", f"{self.project}_{volume}").strip())

    def leftovers(self) -> dict[str, list[str]]:
        """What of the project podman still has: containers, volumes, networks."""
        return {
            "containers": [c["Names"][0] for c in self.containers()],
            "volumes": [v for v in _podman("volume", "ls", "--format", "{{.Name}}").split()
                        if v.startswith(f"{self.project}_")],
            "networks": [n for n in _podman("network", "ls", "--format", "{{.Name}}").split()
                         if n.startswith(f"{self.project}_")],
        }

    def remove_images(self) -> None:
        """The images `up --build` made for this project (its cdc and sink services): not left behind."""
        for image in _podman("images", "--format", "{{.Repository}}").split():
            if image.rsplit("/", 1)[-1].startswith(f"{self.project}-"):
                _podman("rmi", "-f", image, check=False)


def _podman(*args: str, check: bool = True, stderr: bool = False) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result.stdout + (result.stderr if stderr else "")


def _when(timestamp: str) -> float:
    """podman's RFC 3339 time with nanoseconds (and perhaps an offset) as a Unix time."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", timestamp)
    assert match, timestamp
    base = datetime.fromisoformat(match[1] + (match[3] if match[3] != "Z" else "+00:00"))
    return base.timestamp() + float(match[2] or 0)


def _admin(stack: Stack) -> Admin:
    """A root session on the stack's MySQL, through its published port."""
    endpoints = SimpleNamespace(mariadb_host="127.0.0.1", mariadb_port=stack.mysql_port, admin_user="root",
                                admin_password="root")
    return wait_for("the stack's MySQL to accept root", lambda: _try(Admin, endpoints, "shop"), timeout=120)


def _try(make, *args):
    try:
        return make(*args)
    except Exception:
        return None


def _utc(value: datetime) -> str:
    """A TIMESTAMP as cdc indexes it: ISO 8601 in UTC, the fraction left out when it is zero (as
    datetime.isoformat does: 18:25:01Z, not 18:25:01.000000Z)."""
    return value.replace(tzinfo=None).isoformat() + "Z"


def _expected(db: Admin) -> dict[str, dict[str, dict]]:
    """What demo/rules make of the shop tables: the documents each index must hold, by id."""
    products = {}
    for row in db.query("SELECT * FROM products"):
        products[str(row["id"])] = {
            "id": row["id"], "sku": row["sku"], "name": row["name"], "price": format(row["price"], "f"),
            "tags": [tag for tag in row["tags"].split(",") if tag] if isinstance(row["tags"], str)
            else sorted(row["tags"]),
            "attributes": json.loads(row["attributes"]) if row["attributes"] is not None else None,
            "updated_at": _utc(row["updated_at"]),
        }
    # DATETIME has no time zone: no Z.
    orders = {str(row["id"]): {**row, "created_at": row["created_at"].isoformat()}
              for row in db.query("SELECT * FROM orders")}
    lines = {f"{row['order_id']}:{row['line']}": row for row in db.query("SELECT * FROM order_lines")}
    return {"shop-products": products, "shop-orders": orders, "shop-order-lines": lines}


def _documents(es: Elasticsearch, index: str) -> dict[str, dict]:
    if not es.indices.exists(index=index):
        return {}
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def wait_until_replicated(db: Admin, es: Elasticsearch, timeout: float = 120) -> dict:
    """Wait until every shop index holds exactly the documents MySQL's rows make."""
    deadline = time.monotonic() + timeout
    while True:
        want = _expected(db)
        have: dict[str, dict] = {}
        try:
            have = {index: _documents(es, index) for index in want}
        except Exception as exc:  # the index is being created, Elasticsearch restarting
            have = {"error": {"message": str(exc)}}
        if have == want:
            return want
        if time.monotonic() > deadline:
            raise AssertionError(f"Elasticsearch != MySQL after {timeout}s:\nwant {want}\nhave {have}")
        time.sleep(0.5)


def _stopped(logs: str) -> list[dict]:
    """cdc's `stopped` events (one per run) from a container's log."""
    return [json.loads(line) for line in logs.splitlines()
            if line.startswith("{") and '"event":"stopped"' in line.replace(" ", "")]


def _assert_started_after_healthy(stack: Stack, health: compose_stack.HealthChecks, service: str,
                                  dependencies: list[str], number: int = 1) -> None:
    """The service's container started after each dependency's first passing health check (since
    `health.reset()`), and was not restarted since (`restart: on-failure` after a failed connection
    would move StartedAt past the checks)."""
    info = stack.inspect(service, number)
    state, restarts = info["State"], info["RestartCount"]
    assert restarts == 0 and state["Status"] == "running", (
        f"{service} restarted or stopped ({state['Status']}, {restarts} restarts):\n"
        f"{stack.logs(service, number)[-3000:]}")
    started = _when(state["StartedAt"])
    for dependency in dependencies:
        passed = health.first_passed.get(stack.name(dependency))
        assert passed is not None, f"{service} started, yet {dependency} never passed its health check"
        assert started > passed, (f"{service} started {passed - started:.1f} s before {dependency}'s first "
                                  "passing health check began")


def _change_rows(stack, db) -> None:
    """The documented way to change a row (docker-compose.yml's header), then more changes."""
    stack("exec", "-T", "mysql", "mysql", "-uroot", "-proot", "shop", "-e",
          "UPDATE products SET price = 5.25 WHERE sku = 'TEA-01'")
    db.execute("INSERT INTO products (sku, name, price, tags) VALUES ('CUP-01', 'Cup', 6.00, 'sale')",
               "UPDATE orders SET status = 'shipped' WHERE customer = 'ada'",
               "DELETE FROM order_lines WHERE order_id = 2")


def test_compose_stack_replicates_stops_resumes_and_cleans_up():
    """docker-compose.yml end to end: health-ordered start, the demo rows and later changes replicate,
    `stop` saves the position, `up` resumes from it (changes made while stopped arrive, nothing is
    replayed), `down -v` removes everything."""
    stack = Stack(BASE_FILES)
    es = Elasticsearch(f"http://127.0.0.1:{stack.es_port}", request_timeout=30)
    db = None
    try:
        with compose_stack.HealthChecks(stack.project) as health:
            stack("up", "--build", "-d")
            # cdc waited for MySQL (whose init SQL made the shop schema) and Elasticsearch.
            _assert_started_after_healthy(stack, health, "cdc", ["mysql", "elasticsearch"])

            # The demo rows, from binlog.000001 (mysql-init.sql resets the binlog; cdc.yml starts there).
            db = _admin(stack)
            wait_until_replicated(db, es)
            _change_rows(stack, db)
            wait_until_replicated(db, es)
            written = binlog_position(db)

            # `stop` (the whole stack): cdc first, by SIGTERM; it saves its position and exits 0.
            stack("stop")
            state = stack.state("cdc")
            assert (state["Status"], state["ExitCode"]) == ("exited", 0), stack.logs("cdc")[-3000:]
            # The servers shut down cleanly too (stop_grace_period): mysqld exits 0, the JVM 143 on SIGTERM.
            assert stack.state("mysql")["ExitCode"] == 0, stack.logs("mysql")[-3000:]
            assert stack.state("elasticsearch")["ExitCode"] == 143, stack.logs("elasticsearch")[-3000:]
            [first] = _stopped(stack.logs("cdc"))
            assert "SIGTERM received" in stack.logs("cdc")
            saved = json.loads((stack.volume_path("cdc-state") / "checkpoint.json").read_text())
            assert first["position"] == f"{saved['file']}:{saved['pos']}"
            assert (saved["file"], saved["pos"]) >= written

            # Changes while cdc is stopped: MySQL alone is started again.
            db.close()
            stack("start", "mysql")
            db = _admin(stack)
            db.execute("INSERT INTO products (sku, name, price) VALUES ('JAR-01', 'Jar', 8.50), "
                       "('JAR-02', 'Big jar', 11.00)",
                       "UPDATE products SET name = 'Black tea, loose' WHERE sku = 'TEA-02'",
                       "DELETE FROM products WHERE sku = 'MUG-01'")
            changed_while_stopped = 4  # rows: two inserted, one updated, one deleted
            db.close()

            # `up` again: cdc resumes from the checkpoint in its volume. (Compose recreates the running
            # mysql container on podman 4.3, see scripts/compose_stack.py: its data is in its volume.)
            health.reset()
            stack("up", "--build", "-d")
            _assert_started_after_healthy(stack, health, "cdc", ["mysql", "elasticsearch"])
            db = _admin(stack)
            wait_until_replicated(db, es)
            assert f"resuming from checkpoint {saved['file']}:{saved['pos']}" in stack.logs("cdc")
            stack("stop", "cdc")
            runs = _stopped(stack.logs("cdc"))
            assert len(runs) == 2, stack.logs("cdc")[-3000:]
            # Exactly the rows written while it was stopped: nothing before the checkpoint read again.
            assert runs[1]["rows"] == changed_while_stopped, runs[1]
            assert "0 already newer" in runs[1]["msg"], runs[1]

        # `down -v`: no container, volume or network of the project is left.
        stack("down", "-v")
        assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        if db is not None:
            db.close()
        stack("down", "-v", "--timeout", "30", check=False)
        stack.remove_images()
        print("\n".join(stack.timings))


def test_compose_kafka_stack_replicates_through_the_broker():
    """docker-compose.yml with docker-compose.kafka.yml: cdc publishes to the broker, two `cdc sink`
    writers write Elasticsearch; every action published is written once; the broker keeps its data in
    its volume; `stop` stops every cdc process cleanly and `down -v` removes everything."""
    stack = Stack(KAFKA_FILES)
    es = Elasticsearch(f"http://127.0.0.1:{stack.es_port}", request_timeout=30)
    db = None
    try:
        with compose_stack.HealthChecks(stack.project) as health:
            stack("up", "--build", "-d")
            _assert_started_after_healthy(stack, health, "cdc", ["mysql", "elasticsearch", "kafka"])
            for number in (1, 2):
                _assert_started_after_healthy(stack, health, "sink", ["elasticsearch", "kafka"], number)

            db = _admin(stack)
            wait_until_replicated(db, es)
            _change_rows(stack, db)
            wait_until_replicated(db, es)

            # Through the broker: cdc published, the writers wrote (each was given partitions).
            assert "publishing to Kafka at kafka:9092" in stack.logs("cdc")
            for number in (1, 2):
                # The second writer's share comes with the group's rebalance, which can finish after
                # the first writer alone has written these changes.
                wait_for(f"writer {number}'s partitions", lambda: "assigned partitions" in stack.logs("sink", number),
                         timeout=90)
            # The broker's data is in the kafka-data volume (KAFKA_LOG_DIRS), not the container.
            assert any(path.name.startswith("cdc.actions-") for path in stack.volume_path("kafka-data").iterdir())

            stack("stop")
            for service, number in (("cdc", 1), ("sink", 1), ("sink", 2)):
                state = stack.state(service, number)
                assert (state["Status"], state["ExitCode"]) == ("exited", 0), stack.logs(service, number)[-3000:]
            # The broker shut down by SIGTERM (the JVM's 143), not killed (137): see stop_grace_period.
            assert stack.state("kafka")["ExitCode"] == 143, stack.logs("kafka")[-3000:]
            [reader] = _stopped(stack.logs("cdc"))
            writers = [_stopped(stack.logs("sink", number))[0] for number in (1, 2)]
            # Every action the reader published was written once, by one writer or the other.
            assert reader["actions"] > 0
            assert sum(writer["actions"] for writer in writers) == reader["actions"], (reader, writers)

        stack("down", "-v")
        assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        if db is not None:
            db.close()
        stack("down", "-v", "--timeout", "30", check=False)
        stack.remove_images()
        print("\n".join(stack.timings))
