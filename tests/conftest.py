"""Shared fixtures. Integration tests get real servers, started once per run.

The slow things the collected tests need (MariaDB and Elasticsearch 8, MySQL 9.7, the
other destination engines, the Kafka broker, the container image) start together in
background threads as soon as the tests are collected (`Warmup` below), while the
unit tests run first; the fixtures that use them wait for that start.

Under `make test-parallel` (pytest-xdist) integration tests share MariaDB and
Elasticsearch, so a test that restarts or reconfigures them (marked `serial`) takes
an exclusive lock and runs alone, while the others hold a shared one and run side by
side. A plain `pytest` takes no locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import hypothesis
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
# The JIT's quick tier only for the JVMs the suite starts (Elasticsearch, OpenSearch, the secured
# nodes, the Kafka broker and Connect): on 2 cores the optimising compiler's work slowed the tests
# more than its code sped them up (scripts/servers.py extra_java_opts has the measurements). Set
# CDC_EXTRA_JAVA_OPTS="" for the full JIT. Servers already running keep the options they started with.
os.environ.setdefault("CDC_EXTRA_JAVA_OPTS", "-XX:TieredStopAtLevel=1")


def pytest_configure(config):
    # @pytest.mark.serial on a test (or pytestmark on a module): it stops, restarts, purges or
    # reconfigures (SET GLOBAL) the shared servers, replicates everything the primary writes, or
    # compares a position with the end of the binlog ("nothing else was written since"): nothing
    # else may run meanwhile.
    config.addinivalue_line("markers", "serial: restarts or reconfigures the shared servers; runs alone under xdist")
    _require_native()
    config.pluginmanager.register(_Order(), "cdc-test-order")


# No time limit per hypothesis example: the machine is shared and noisy, and a first example may
# build a cache (a zone's offsets, ~0.3 s); speed is measured in bench/, never in tests.
hypothesis.settings.register_profile("cdc", deadline=None)
hypothesis.settings.load_profile("cdc")


def _require_native() -> None:
    """Stop the run when the native row path was asked for and is not there (issue 28).

    The native module is optional for users (`pip install` without cargo gives the Python
    path), so its tests skip when it is missing. On a machine with cargo the Makefile
    sets CDC_REQUIRE_NATIVE=1: a failed build must then fail CI, not turn a third of the
    differential tests into skips and every integration run into a Python-path run.
    """
    if os.environ.get("CDC_REQUIRE_NATIVE", "") not in ("1", "true", "yes"):
        return
    from cdc import native

    if not native.AVAILABLE:
        raise pytest.UsageError(f"CDC_REQUIRE_NATIVE is set but cdc's native module does not load: "
                                f"{native.LOAD_ERROR}. Build it with `.venv/bin/pip install -e .` (needs cargo), "
                                "or unset CDC_REQUIRE_NATIVE to run the Python path only.")


def _worker() -> str | None:
    return os.environ.get("PYTEST_XDIST_WORKER")


@contextlib.contextmanager
def _locked(name: str, exclusive: bool = True, home: Path | None = None):
    import servers as dev

    home = home or dev.HOME
    home.mkdir(parents=True, exist_ok=True)
    with open(home / name, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield lock
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- warm-up: start what the tests need, at once
class Warmup:
    """Servers and the image the collected tests need, started in the background as soon as they are collected.

    On first use, in the fixtures, their start-ups came on top of the tests (on the 2-core
    machine, measured side by side: MariaDB and Elasticsearch 8 34-61 s, Elasticsearch 7.17
    16-27 s, OpenSearch 2 16-23 s and 3 38-59 s, the broker 7-14 s; the image build 30 s
    with a warm layer cache, minutes with a cold one). Here they start one after another
    in one background thread, in the order the tests need them (`_RANK`), while the unit
    tests and then the tests on MariaDB and Elasticsearch 8 run, which mostly wait on the
    servers. Not all at once: the starts are CPU-bound, so together they took as long as in
    a row (95-167 s against 117-174 s for all five) and MariaDB and Elasticsearch 8, needed
    first, came up 2-3 times later.

    A start is only the idempotent `up` the fixture would call anyway: the fixture calls
    `wait(name)` first, then its own `up` finds the server running (or, if the start failed,
    fails the same way and reports it). What a warm-up started is stopped at the session's
    end, unless CDC_KEEP_SERVERS is set.
    """

    def __init__(self) -> None:
        self._threads: dict[str, threading.Thread] = {}
        self.errors: dict[str, BaseException] = {}
        self.took: dict[str, float] = {}
        self.started: list[str] = []  # servers that were not running and that this session started
        # A test module's own servers (its WARM_UP): name -> (what its start gave, its stop), until taken.
        self.values: dict[str, tuple[object, Callable[[object], None]]] = {}

    def start(self, name: str, run: Callable[[], list[str]], after: str | None = None) -> None:
        """`run` starts `name` (once `after` is up) and returns the servers it started (none if they ran)."""
        def target() -> None:
            if after is not None:
                self.wait(after)
            began = time.monotonic()
            try:
                self.started.extend(run())
            except BaseException as exc:  # the fixture tries again and reports it
                self.errors[name] = exc
            finally:
                self.took[name] = time.monotonic() - began

        thread = threading.Thread(target=target, name=f"warmup-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def wait(self, name: str) -> None:
        thread = self._threads.get(name)
        if thread is not None:
            thread.join()

    def take(self, name: str, start: Callable[[], object]) -> object:
        """What the warm-up's start of a module's server `name` gave, or `start()` now (no warm-up, or it failed)."""
        self.wait(name)
        if name in self.values:
            return self.values.pop(name)[0]
        return start()

    def stop_untaken(self) -> None:
        """Stop the modules' servers that no test took (the session ended before their module)."""
        while self.values:
            _, (value, stop) = self.values.popitem()
            stop(value)

    def done(self, name: str) -> bool:
        """Whether a warm-up of `name` ran and succeeded (after `wait`)."""
        return name in self.took and name not in self.errors

    def wait_all(self) -> None:
        for name in list(self._threads):
            self.wait(name)


WARMUP = Warmup()


def _up_servers() -> list[str]:
    import servers as dev

    with _locked(".up.lock"):  # xdist workers: one starts them, the others find them running
        was = dev.running()
        dev.up()
    return [name for name, running in was.items() if not running]


def _up_mysql() -> list[str]:
    import servers as dev

    with _locked(".up-mysql.lock"):  # xdist workers: one makes the root and starts it, the others find it
        was = dev.mysql_running()
        dev.mysql_up()
    return [] if was else ["mysql"]


def _up_destination(name: str) -> Callable[[], list[str]]:
    def run() -> list[str]:
        import servers as dev

        up, down = {"es7": (dev.es7_up, dev.es7_down), "opensearch": (dev.opensearch_up, dev.opensearch_down),
                    "opensearch3": (dev.opensearch3_up, dev.opensearch3_down)}[name]
        with _locked(f".up-{name}.lock"):
            was = dev.destinations_running()[name]
            try:
                up()
            except BaseException:
                # A start that gave up waiting (seen on a loaded machine) can leave the node coming up;
                # the fixture would then find it running, take it for someone else's and never stop it
                # (three JVMs left behind after a run). Stop it: the fixture starts it again as its own.
                if not was:
                    with contextlib.suppress(Exception):
                        down()
                raise
        return [] if was else [name]
    return run


def _up_cluster(engine: str) -> Callable[[], list[str]]:
    """The start of the three-node cluster of `engine` (scripts/servers.py cluster_up), warm-up name
    `CLUSTERS[engine]`."""
    def run() -> list[str]:
        import servers as dev

        name = CLUSTERS[engine]
        with _locked(f".up-{name}.lock"):  # xdist workers: one starts it, the others find it running
            was = dev.cluster_running(engine)
            dev.cluster_up(engine)
        return [] if was else [name]
    return run


# The three-node clusters: engine -> the fixture (and warm-up) name of its cluster.
CLUSTERS = {"elasticsearch": "es_cluster", "opensearch": "opensearch_cluster"}


def _up_kafka() -> list[str]:
    import kafka_broker
    import servers as dev

    with dev.MAVEN_LOCK:  # its jars come through mvn too, perhaps while an engine's zip does
        kafka_broker._libs()
    kafka_broker.HOME.mkdir(parents=True, exist_ok=True)
    with _locked(".kafka-up.lock", home=kafka_broker.HOME):  # the lock the Kafka tests' `broker` fixtures take
        was = kafka_broker.running()
        kafka_broker.up()
    return [] if was else ["kafka"]


def _build_image() -> list[str]:
    import container

    with _locked(".image.lock"):  # xdist workers: one build at a time (the second finds the cache)
        container.build()
    return []  # nothing to stop


def _module_start(name: str, start: Callable[[], object], stop: Callable[[object], None]) -> Callable[[], list[str]]:
    def run() -> list[str]:
        WARMUP.values[name] = (start(), stop)
        return []  # its module's fixture stops it (or stop_untaken)
    return run


def _needs(items) -> dict[str, Callable[[], list[str]]]:
    """What the items will ask for, from their fixtures: warm-up name -> its start."""
    import container

    need: dict[str, Callable[[], list[str]]] = {}
    can_build = None
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "servers" in names:
            need["servers"] = _up_servers
        callspec = getattr(item, "callspec", None)
        if "mysql_servers" in names or callspec is not None and callspec.params.get("source") == "mysql":
            need["mysql"] = _up_mysql
        engines = set()
        if "destination_pool" in names:
            engines |= {"es7", "opensearch", "opensearch3"}
        if "destination" in names and callspec is not None and callspec.params.get("destination") != "es8":
            engines.add(callspec.params["destination"])
        for engine in engines:
            need[engine] = _up_destination(engine)
        if "broker" in names:
            need["kafka"] = _up_kafka
        # A cluster asked for by name, or by the engine `search_cluster` (below) is parametrised with.
        for engine, name in CLUSTERS.items():
            if name in names or "search_cluster" in names and callspec is not None \
                    and callspec.params.get("search_cluster") == engine:
                need[name] = _up_cluster(engine)
        # A module that starts servers of its own (a secured node) names them in WARM_UP:
        # {fixture name: (start, stop)}; its fixture takes the started one with `warmup.take`. Modules
        # that share a session-scoped node name the same entry (tests/integration/es_secure_node.py).
        for name, (start, stop) in getattr(getattr(item, "module", None), "WARM_UP", {}).items():
            if name in names:
                need[name] = _module_start(name, start, stop)
        if "image" in names:
            can_build = container.available() is None if can_build is None else can_build
            if can_build:
                need["image"] = _build_image
    return need


# The order tests run in, and the warm-up starts things: what needs nothing slow first (the
# unit tests, then the tests on MariaDB and Elasticsearch 8), then what needs the image or
# the broker, then the other engines, so each is likely up by the time its tests come. Whole modules move together
# (their module-scoped fixtures start once), and the order within a rank is the usual one.
# MySQL's first start makes its root (debootstrap, about a minute); its modules come right after
# the others on MariaDB, and the warm-up starts it right after MariaDB and Elasticsearch 8.
_RANK = {"mysql": 1.5, "image": 2, "kafka": 2, "es_cluster": 2, "opensearch_cluster": 2, "es7": 3, "opensearch": 3,
         "opensearch3": 3}


def _rank(item) -> float:
    if "tests/integration/" not in str(item.fspath).replace(os.sep, "/"):
        return 0
    return max([1, *(_RANK.get(name, 1) for name in _needs([item]))])


@pytest.hookimpl(tryfirst=True)  # before -m selects by these markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


class _Order:
    """A plugin of its own: a conftest holds one implementation of a hook, and this one must come last."""

    @pytest.hookimpl(trylast=True)  # after -m/-k deselection: only what runs
    def pytest_collection_modifyitems(self, items):
        ranks: dict[str, float] = {}
        for item in items:
            module = str(item.fspath)
            ranks[module] = max(ranks.get(module, 0), _rank(item))
        items.sort(key=lambda item: ranks[str(item.fspath)])  # stable: the usual order within a rank


def pytest_collection_finish(session):
    if session.config.option.collectonly or os.environ.get("CDC_NO_WARMUP"):
        return
    need = _needs(session.items)
    previous = None
    for name in sorted(need, key=lambda name: (name != "servers", _RANK.get(name, 1))):  # then image, kafka, engines
        WARMUP.start(name, need[name], after=previous)
        previous = name


@pytest.fixture(autouse=True)
def _shared_servers(request):
    """Under xdist: `serial` integration tests alone, the others side by side."""
    if _worker() is None or request.node.get_closest_marker("integration") is None:
        yield
        return
    with _locked(".tests.lock", exclusive=request.node.get_closest_marker("serial") is not None):
        yield


_STARTED = ".started-by-tests.json"  # what a worker started, for the xdist controller to stop at the end


def _session_servers(name: str, lock: str, running: Callable[[], dict[str, bool]], up: Callable[[], object],
                     what: str) -> object:
    """What `up()` gives, once the warm-up's start of `name` is done (it finds them running, or starts them now)."""
    import servers as dev

    WARMUP.wait(name)
    with _locked(lock):
        was_running = running()
        try:
            value = up()
        except dev.ServerError as exc:
            pytest.fail(f"could not start {what}: {exc}", pytrace=False)
    WARMUP.started.extend(server for server, ran in was_running.items() if not ran)
    return value


@pytest.fixture(scope="session")
def servers():
    """MariaDB and Elasticsearch 8: started by the warm-up (or now), reused when running."""
    import servers as dev

    return _session_servers("servers", ".up.lock", dev.running, dev.up, "the test servers")


@pytest.fixture(scope="session")
def mysql_servers(servers):
    """MySQL 9.7 (scripts/servers.py mysql_up) with the Elasticsearch 8 of `servers`: started by the
    warm-up (or now; the first start on a machine makes its Debian unstable root), reused when running."""
    import servers as dev

    return _session_servers("mysql", ".up-mysql.lock", lambda: {"mysql": dev.mysql_running()}, dev.mysql_up,
                            "MySQL")


@pytest.fixture(scope="session")
def es_cluster(servers):
    """The three-node Elasticsearch 8 cluster (scripts/servers.py es_cluster_up) for the tests that kill a node:
    started by the warm-up when a collected test asks for it (or now), reused when running."""
    import servers as dev

    return _session_servers("es_cluster", ".up-es_cluster.lock", lambda: {"es_cluster": dev.es_cluster_running()},
                            dev.es_cluster_up, "the three-node Elasticsearch cluster")


@pytest.fixture(params=list(CLUSTERS))
def search_cluster(request):
    """The three-node cluster of each engine (its `engine` is cdc's elasticsearch.engine): `es_cluster`, then
    `opensearch_cluster`."""
    return request.getfixturevalue(CLUSTERS[request.param])


@pytest.fixture(scope="session")
def opensearch_cluster(servers):
    """The same of OpenSearch 2 (scripts/servers.py opensearch_cluster_up)."""
    import servers as dev

    return _session_servers("opensearch_cluster", ".up-opensearch_cluster.lock",
                            lambda: {"opensearch_cluster": dev.opensearch_cluster_running()},
                            dev.opensearch_cluster_up, "the three-node OpenSearch cluster")


@pytest.fixture(scope="session")
def warmup() -> Warmup:
    """For fixtures that use what the warm-up starts: `warmup.wait(name)` before their own start."""
    return WARMUP


def _stop(started: list[str]) -> None:
    import kafka_broker
    import servers as dev

    stops = {"elasticsearch": dev.es_down, "es_cluster": dev.es_cluster_down,
             "opensearch_cluster": dev.opensearch_cluster_down, "es7": dev.es7_down, "opensearch": dev.opensearch_down,
             "opensearch3": dev.opensearch3_down, "kafka": kafka_broker.down, "mysql": dev.mysql_down,
             "mariadb": dev.mariadb_down}
    for name in stops:  # MariaDB last, as `servers.py down` does
        if name in started:
            stops[name]()


def pytest_sessionfinish(session, exitstatus):
    """Stop what the tests started (unless CDC_KEEP_SERVERS): a worker leaves that to the xdist controller."""
    import servers as dev

    WARMUP.wait_all()  # no server left half-started behind us
    WARMUP.stop_untaken()
    if _worker() is not None:
        if WARMUP.started:
            with _locked(".up.lock"):
                marker = dev.HOME / _STARTED
                before = json.loads(marker.read_text()) if marker.exists() else []
                marker.write_text(json.dumps(sorted(set(before) | set(WARMUP.started))))
        return
    started = list(WARMUP.started)
    marker = dev.HOME / _STARTED
    if getattr(session.config.option, "numprocesses", None) and marker.exists():
        started += json.loads(marker.read_text())
        marker.unlink()
    if not os.environ.get("CDC_KEEP_SERVERS"):
        _stop(list(dict.fromkeys(started)))


def pytest_terminal_summary(terminalreporter):
    if WARMUP.took:
        terminalreporter.write_line("warm-up (started in the background, seconds): " + ", ".join(
            f"{name} {took:.0f}" + (" (failed)" if name in WARMUP.errors else "")
            for name, took in sorted(WARMUP.took.items())))
    for name, error in WARMUP.errors.items():  # the fixture tried again: this is why the early start failed
        terminalreporter.write_line(f"warm-up of {name} failed: {str(error)[-1500:]}")


@pytest.fixture
def unique_name(request) -> str:
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:30]
    return f"t_{base}_{uuid.uuid4().hex[:6]}"
