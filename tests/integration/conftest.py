"""Fixtures for tests against the real servers: an isolated database and index prefix each."""

from __future__ import annotations

import os

import pytest
from elasticsearch import Elasticsearch
from harness import Admin


@pytest.fixture
def source(request) -> str:
    """The source server of a test: "mariadb", or what `harness.both_sources` parametrises ("mysql" too)."""
    return getattr(request, "param", "mariadb")


@pytest.fixture
def source_servers(request, source, servers):
    """`servers` with the source server of the test: MariaDB 10.11, or MySQL 9.7 (`mysql_servers`)."""
    return servers if source == "mariadb" else request.getfixturevalue("mysql_servers")


@pytest.fixture
def database(source_servers, unique_name):
    admin = Admin(source_servers)
    admin.execute(f"CREATE DATABASE `{unique_name}`")
    admin.close()
    yield unique_name
    admin = Admin(source_servers)
    admin.execute(f"DROP DATABASE IF EXISTS `{unique_name}`")
    admin.close()


@pytest.fixture
def db(source_servers, database):
    admin = Admin(source_servers, database)
    yield admin
    admin.close()


@pytest.fixture
def es(servers):
    client = Elasticsearch(servers.es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="session")
def secure_es(servers, warmup):
    """The Elasticsearch with security on (tests/integration/es_secure_node.py), shared by the modules that
    name it in WARM_UP: started by the warm-up (or now), stopped at the session's end."""
    import servers as dev
    from es_secure_node import start_secure_es, stop_secure_es

    try:
        started = warmup.take("secure_es", start_secure_es)
    except dev.ServerError as exc:
        pytest.fail(f"could not start the secured Elasticsearch: {exc}", pytrace=False)
    node = started["node"]
    admin = Elasticsearch(node.url, ca_certs=str(started["ca"]), basic_auth=(node.admin_user, node.admin_password),
                          request_timeout=30)
    yield {**started, "admin": admin}
    admin.close()
    stop_secure_es(started)


@pytest.fixture
def secure_index(secure_es, unique_name):
    """An index name on the secured node that its roles cover; its indices are deleted afterwards."""
    from es_secure_node import PREFIX

    name = f"{PREFIX}-{unique_name}"
    yield name
    # The name may be an alias (docs/verify-and-rebuild.md "Rebuilding an index"): delete the indices behind it.
    names = list(secure_es["admin"].indices.get(index=f"{name}*", expand_wildcards="all"))
    if names:
        secure_es["admin"].indices.delete(index=",".join(names))


@pytest.fixture
def index_prefix(es, unique_name):
    yield unique_name
    # ES 8 refuses wildcard deletes (action.destructive_requires_name), so name them.
    names = list(es.indices.get(index=f"{unique_name}*", expand_wildcards="all"))
    if names:
        es.indices.delete(index=",".join(names))


# ---------------------------------------------------------------- other destinations (docs/destinations.md "Destinations")
DESTINATIONS = ("es8", "es7", "opensearch", "opensearch3")


class _DestinationPool:
    """Elasticsearch 7.17 and OpenSearch 2 and 3, started on first use (once per run) and stopped at the end."""

    def __init__(self):
        import servers as dev

        self.dev = dev
        self.started: dict[str, object] = {}
        self.ours: list = []

    def get(self, name: str, servers):
        if name == "es8":
            return self.dev.Destination("es8", "elasticsearch", servers.es_version, servers.es_url)
        if name not in self.started:
            up, down = {"es7": (self.dev.es7_up, self.dev.es7_down),
                        "opensearch": (self.dev.opensearch_up, self.dev.opensearch_down),
                        "opensearch3": (self.dev.opensearch3_up, self.dev.opensearch3_down)}[name]
            was_running = self.dev.destinations_running()[name]
            try:
                self.started[name] = up()
            except self.dev.ServerError as exc:
                if name == "opensearch3" and "needs a JDK" in str(exc):
                    # Debian 12 has no JDK 21+ package; the project machines have a Temurin JDK
                    # (/work/shared/guide/platform.md). Without one, say so instead of failing.
                    pytest.skip(f"OpenSearch 3 not tested: {exc}")
                pytest.fail(f"could not start {name}: {exc}", pytrace=False)
            if not was_running:
                self.ours.append(down)
        return self.started[name]

    def close(self):
        if os.environ.get("CDC_KEEP_SERVERS") or not self.ours:
            return
        import fcntl

        # Under xdist another worker may be testing on them: stop them only between tests
        # (the exclusive side of tests/conftest.py's lock); a later test starts them again.
        with open(self.dev.HOME / ".tests.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for down in self.ours:
                    down()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def destination_pool():
    pool = _DestinationPool()
    yield pool
    pool.close()


@pytest.fixture(params=DESTINATIONS)
def destination(request, servers, destination_pool, warmup):
    """Each engine cdc writes to: the default Elasticsearch 8, Elasticsearch 7.17, OpenSearch 2 and 3."""
    warmup.wait(request.param)  # started in the background at the session's start (tests/conftest.py)
    return destination_pool.get(request.param, servers)


# ---------------------------------------------------------------- the container image (docs/operations.md "Docker")
@pytest.fixture(scope="session")
def image(warmup):
    """cdc's image, built by scripts/container.py on the local base (the warm-up starts the build early)."""
    import container

    why = container.available()
    if why is not None:
        pytest.skip(f"podman cannot build images here: {why}")
    warmup.wait("image")
    if warmup.done("image"):
        return container.IMAGE
    try:
        return container.build()
    except container.ContainerError as exc:
        pytest.fail(f"could not build the image: {exc}", pytrace=False)
