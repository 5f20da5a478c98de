"""Fixtures for tests against the real servers: an isolated database and index prefix each."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch
from harness import Admin


@pytest.fixture
def database(servers, unique_name):
    admin = Admin(servers)
    admin.execute(f"CREATE DATABASE `{unique_name}`")
    admin.close()
    yield unique_name
    admin = Admin(servers)
    admin.execute(f"DROP DATABASE IF EXISTS `{unique_name}`")
    admin.close()


@pytest.fixture
def db(servers, database):
    admin = Admin(servers, database)
    yield admin
    admin.close()


@pytest.fixture
def es(servers):
    client = Elasticsearch(servers.es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def index_prefix(es, unique_name):
    yield unique_name
    # ES 8 refuses wildcard deletes (action.destructive_requires_name), so name them.
    names = list(es.indices.get(index=f"{unique_name}*", expand_wildcards="all"))
    if names:
        es.indices.delete(index=",".join(names))
