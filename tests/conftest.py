"""Shared fixtures. Integration tests get real servers, started once per run."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def servers():
    """Start MariaDB and Elasticsearch (or reuse running ones); stop only what we started."""
    import servers as dev

    was_running = dev.running()
    try:
        endpoints = dev.up()
    except dev.ServerError as exc:
        pytest.fail(f"could not start the test servers: {exc}", pytrace=False)
    yield endpoints
    if os.environ.get("CDC_KEEP_SERVERS"):
        return
    if not was_running["elasticsearch"]:
        dev.es_down()
    if not was_running["mariadb"]:
        dev.mariadb_down()


@pytest.fixture
def unique_name(request) -> str:
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:30]
    return f"t_{base}_{uuid.uuid4().hex[:6]}"
