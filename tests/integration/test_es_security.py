"""Elasticsearch with security on, end to end: https with a generated CA, users with passwords, roles.

The shared Elasticsearch runs with security off; these tests use a second node
(scripts/servers.py es_secure_up) with TLS on HTTP and file-realm users, one per
role, which tests/integration/es_secure_node.py defines and the session-scoped
`secure_es` fixture starts (test_secrets.py uses it too). MariaDB is the shared server.

API keys are not tested here: they live in the `.security` index, whose
mappings need the analysis-common module that the integ-test-zip lacks
(creating one answers "Unknown filter type [pattern_capture]"). The client
arguments for `api_key` are unit-tested (tests/unit/test_security.py), and
test_secrets.py sends one the server refuses.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml
from es_secure_node import PASSWORDS, SECURE_ES
from harness import CdcSetup, binlog_position, wait_until_equal

# The node, its users and roles: tests/integration/es_secure_node.py (shared with test_secrets.py).
WARM_UP = {"secure_es": SECURE_ES}  # tests/conftest.py


@pytest.fixture
def index(secure_index):
    return secure_index  # tests/integration/conftest.py


def _setup(tmp_path: Path, servers, secure_es, database: str, index: str, user: str | None = "writer",
           password: str | None = None, **es) -> CdcSetup:
    """A cdc config against the secured node; the password in a file (README: secrets)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        secret = tmp_path / f"{user}.password"
        secret.write_text((password or PASSWORDS[user]) + "\n")
        os.chmod(secret, 0o600)
        es = {"username": user, "password_file": str(secret), **es}
    es.setdefault("ca_certs", str(secure_es["ca"]))
    if es["ca_certs"] is None:
        del es["ca_certs"]
    # Keys with "__" name their section (CdcSetup); the rest are elasticsearch settings.
    overrides = {k if "__" in k else f"elasticsearch__{k}": v for k, v in es.items()}
    return CdcSetup(tmp_path, servers, [{"schema": database, "table": "items", "index": index}],
                    elasticsearch__hosts=[secure_es["url"]], retry__max_attempts=3, **overrides)


def _items(db, rows: int = 0) -> None:
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))")
    if rows:
        db.execute(f"INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{rows}")


def _no_secrets(text: str) -> None:
    for password in PASSWORDS.values():
        assert password not in text


def test_the_documented_role_snapshots_and_streams_over_https(secure_es, servers, db, database, index, tmp_path):
    _items(db, rows=50)
    setup = _setup(tmp_path, servers, secure_es, database, index)
    proc = setup.run()
    try:
        db.execute("INSERT INTO items VALUES (51, 'over https'), (52, 'gone soon')",
                   "UPDATE items SET name = 'changed' WHERE id = 1",
                   "DELETE FROM items WHERE id IN (2, 52)")
        wait_until_equal(db, secure_es["admin"], "items", index, ["id"])
    finally:
        code = proc.stop()
    log = proc.text()
    assert code == 0, log[-3000:]
    _no_secrets(log)
    # The role is enough for Elasticsearch 9 as well: 8.x warns when `index` alone
    # is used for the mapping updates of a first write, which 9 refuses.
    assert "will not permit mapping updates" not in log, log[-3000:]


def test_verify_needs_read_and_passes_with_it(secure_es, servers, db, database, index, tmp_path):
    _items(db, rows=20)
    code, log = _setup(tmp_path / "writer", servers, secure_es, database, index).command("snapshot")
    assert code == 0, log[-3000:]
    code, log = _setup(tmp_path / "writer", servers, secure_es, database, index).command("verify")
    assert code == 2, log[-3000:]
    assert "denied access (403)" in log and "read" in log, log[-3000:]
    code, log = _setup(tmp_path / "reader", servers, secure_es, database, index, user="reader").command("verify")
    assert code == 0, log[-3000:]
    _no_secrets(log)


def test_creating_indices_and_templates_needs_the_documented_extras(secure_es, servers, db, database, index,
                                                                   tmp_path):
    _items(db, rows=4)
    admin = secure_es["admin"]
    monthly = f"{index}-m"
    rules = [{"schema": database, "table": "items", "index": index, "create_index": True, "also": True},
             {"schema": database, "table": "items", "index": monthly + "-{id:02d}", "create_index": True,
              "also": True}]

    def attempt(user: str, where: Path) -> tuple[int, str]:
        setup = _setup(where, servers, secure_es, database, index, user=user)
        (setup.dir / "rules" / "rules.yml").write_text(yaml.safe_dump({"rules": rules}))
        return setup.command("indices", "create")

    try:
        code, log = attempt("writer", tmp_path / "writer")
        assert code != 0 and "403" in log and "create_index" in log, log[-3000:]
        code, log = attempt("creator", tmp_path / "creator")
        assert code == 0, log[-3000:]
        mapping = next(iter(admin.indices.get_mapping(index=index).values()))  # keyed by the index behind the alias
        assert mapping["mappings"]["properties"]["id"]["type"] == "long"
        [template] = admin.indices.get_index_template(name=f"cdc-{monthly}")["index_templates"]
        assert template["index_template"]["index_patterns"] == [f"{monthly}-*"]
    finally:
        admin.options(ignore_status=404).indices.delete_index_template(name=f"cdc-{monthly}")


def test_pinned_fingerprint_instead_of_a_ca(secure_es, servers, db, database, index, tmp_path):
    _items(db, rows=3)
    setup = _setup(tmp_path, servers, secure_es, database, index, ca_certs=None,
                   ssl_assert_fingerprint=secure_es["fingerprint"])
    proc = setup.run()
    try:
        db.execute("INSERT INTO items VALUES (4, 'pinned')")
        wait_until_equal(db, secure_es["admin"], "items", index, ["id"])
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]

    wrong = _setup(tmp_path / "wrong", servers, secure_es, database, index, ca_certs=None,
                   ssl_assert_fingerprint="ab" * 32)
    code, log = wrong.command("run")
    assert code == 2, log[-3000:]
    assert "Fingerprints did not match" in log and "ssl_assert_fingerprint" in log, log[-3000:]


def test_a_certificate_from_another_ca_stops_at_once(secure_es, servers, db, database, index, tmp_path):
    _items(db, rows=1)
    setup = _setup(tmp_path, servers, secure_es, database, index, ca_certs=str(secure_es["other_ca"]))
    code, log = setup.command("run", timeout=60)
    # Exit 2 and no retries: another attempt meets the same certificate.
    assert code == 2, log[-3000:]
    assert "certificate verify failed" in log and "elasticsearch.ca_certs" in log, log[-3000:]
    assert "retrying" not in log, log[-3000:]
    assert setup.position() is None  # nothing was acknowledged, so nothing was saved


def test_insecure_connects_and_says_so(secure_es, servers, db, database, index, tmp_path):
    _items(db, rows=2)
    setup = _setup(tmp_path, servers, secure_es, database, index, ca_certs=None, verify_certs=False,
                   insecure=True)
    proc = setup.run()
    try:
        wait_until_equal(db, secure_es["admin"], "items", index, ["id"])
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]
    warnings = [e for e in proc.logs() if e.get("level") == "warning" and "NOT checked" in e.get("msg", "")]
    assert warnings, proc.text()[-3000:]


def test_a_wrong_password_stops_with_exit_2_and_is_never_logged(secure_es, servers, db, database, index,
                                                                   tmp_path):
    _items(db)
    wrong = "not-the-password-" + uuid.uuid4().hex[:8]
    setup = _setup(tmp_path, servers, secure_es, database, index, password=wrong)
    code, log = setup.command("run", timeout=60)
    assert code == 2, log[-3000:]
    assert "refused the credentials (401)" in log and "elasticsearch.username" in log, log[-3000:]
    assert wrong not in log
    _no_secrets(log)


def test_no_cluster_privilege_is_named_at_start(secure_es, servers, db, database, index, tmp_path):
    _items(db)
    code, log = _setup(tmp_path, servers, secure_es, database, index, user="nomonitor").command("run", timeout=60)
    assert code == 2, log[-3000:]
    # The first request asks the server's version (cdc/es/destination.py): that action is named.
    assert "denied access (403)" in log and "action [cluster:monitor/" in log, log[-3000:]


def test_a_refused_write_stops_without_dead_letters_and_loses_nothing(secure_es, servers, db, database, index,
                                                                      tmp_path):
    """403 per bulk item: stop with the position before it; never dead-letter a missing privilege."""
    _items(db)
    denied = _setup(tmp_path / "denied", servers, secure_es, database, index, user="elsewhere",
                    dead_letter__on_rejected="dead_letter", snapshot__mode="never")
    proc = denied.run()
    start = denied.position()
    db.execute("INSERT INTO items VALUES (1, 'must not be lost'), (2, 'nor this')")
    after_insert = binlog_position(db)
    code = proc.wait(60)
    log = proc.text()
    assert code == 2, log[-3000:]
    assert "lack of access" in log and "is unauthorized for user [elsewhere]" in log, log[-3000:]
    assert not (denied.dir / "dead-letters.jsonl").exists() or not (denied.dir / "dead-letters.jsonl").read_text()
    assert start is not None and (position := denied.position()) is not None and position < after_insert
    # The operator fixes the role (here: the right user) and restarts; the rows come
    # from the binlog after the saved position (no snapshot to paper over a loss).
    fixed = _setup(tmp_path / "denied", servers, secure_es, database, index, snapshot__mode="never")
    proc = fixed.run()
    try:
        wait_until_equal(db, secure_es["admin"], "items", index, ["id"])
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]
