"""Shared fixtures. Integration tests get real servers, started once per run.

`make test` runs the suite on two xdist workers (README "Tests"). Integration
tests share MariaDB and Elasticsearch, so a test that restarts or reconfigures
them (`serial`, below) takes an exclusive lock and runs alone, while the others
hold a shared one and run side by side. A plain `pytest` takes no locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

# Tests that stop, restart, purge or reconfigure (SET GLOBAL) the shared servers, that
# replicate everything the primary writes, or that compare a position with the end of the
# binlog ("nothing else was written since"): nothing else may run meanwhile. A test can
# also say so itself with @pytest.mark.serial.
SERIAL = (
    "test_replication.py::test_graceful_stop_saves_position_and_restart_reprocesses_nothing",
    "test_operations.py::test_systemd_notify_ready_watchdog_status_stopping",
    "test_operations.py::test_status_reads_a_running_daemons_metrics_then_measures_from_mysql",
    "test_operations.py::test_metrics_and_health_follow_the_stream_and_its_outages",
    "test_faults.py::test_kill_in_the_middle_of_a_200k_row_transaction",
    "test_faults.py::test_mapping_conflict_in_a_busy_batch",
    "test_faults.py::test_elasticsearch_down_for_60s_during_writes",
    "test_faults.py::test_purged_binlog_is_a_clear_fatal_error",
    "test_faults.py::test_mariadb_killed_under_load_and_restarted",
    "test_faults.py::test_refuses_a_server_not_set_up_for_cdc",
    "test_replication.py::test_rotation_and_mariadb_restart",
    "test_failover.py::",
    "test_container.py::",
    "test_destinations.py::",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: restarts or reconfigures the shared servers; runs alone under xdist")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        if item.nodeid.rsplit("/", 1)[-1].startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


def _worker() -> str | None:
    return os.environ.get("PYTEST_XDIST_WORKER")


@contextlib.contextmanager
def _locked(name: str, exclusive: bool):
    import servers as dev

    dev.HOME.mkdir(parents=True, exist_ok=True)
    with open(dev.HOME / name, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield lock
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _shared_servers(request):
    """Under xdist: `serial` integration tests alone, the others side by side."""
    if _worker() is None or request.node.get_closest_marker("integration") is None:
        yield
        return
    with _locked(".tests.lock", exclusive=request.node.get_closest_marker("serial") is not None):
        yield


_STARTED = ".started-by-tests.json"  # what a worker started, for the xdist controller to stop at the end


@pytest.fixture(scope="session")
def servers():
    """Start MariaDB and Elasticsearch (or reuse running ones); stop only what we started."""
    import servers as dev

    with _locked(".up.lock", exclusive=True):  # xdist workers: one starts them, the others find them running
        was_running = dev.running()
        try:
            endpoints = dev.up()
        except dev.ServerError as exc:
            pytest.fail(f"could not start the test servers: {exc}", pytrace=False)
        started = [name for name, running in was_running.items() if not running]
        if _worker() is not None and started:
            (dev.HOME / _STARTED).write_text(json.dumps(started))
    yield endpoints
    if os.environ.get("CDC_KEEP_SERVERS") or _worker() is not None:
        return  # a worker never stops them: another may still be testing (the controller does, below)
    _stop(dev, started)


def _stop(dev, started: list[str]) -> None:
    if "elasticsearch" in started:
        dev.es_down()
    if "mariadb" in started:
        dev.mariadb_down()


def pytest_sessionfinish(session, exitstatus):
    """The xdist controller stops what a worker started, once every worker is done."""
    if _worker() is not None or not getattr(session.config.option, "numprocesses", None):
        return
    import servers as dev

    marker = dev.HOME / _STARTED
    if not marker.exists():
        return
    started = json.loads(marker.read_text())
    marker.unlink()
    if not os.environ.get("CDC_KEEP_SERVERS"):
        _stop(dev, started)


@pytest.fixture
def unique_name(request) -> str:
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:30]
    return f"t_{base}_{uuid.uuid4().hex[:6]}"
