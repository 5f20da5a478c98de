"""Elasticsearch with security on, end to end: https with a generated CA, users with passwords, roles.

The shared Elasticsearch runs with security off; this module starts a second
node (scripts/servers.py es_secure_up) with TLS on HTTP and file-realm users,
one per role below, and stops it afterwards. MariaDB is the shared server.

API keys are not tested here: they live in the `.security` index, whose
mappings need the analysis-common module that the integ-test-zip lacks
(creating one answers "Unknown filter type [pattern_capture]"). The client
arguments for `api_key` are unit-tested (tests/unit/test_security.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from certs import CA
from cryptography.hazmat.primitives import serialization
from elasticsearch import Elasticsearch
from harness import CdcSetup, binlog_position, free_port, wait_until_equal

# Every index of this module starts with it, so the roles can name "<prefix>*".
PREFIX = f"sec{uuid.uuid4().hex[:8]}"
PASSWORDS = {name: f"{name}-pw-{uuid.uuid4().hex[:10]}"
             for name in ("writer", "reader", "creator", "elsewhere", "nomonitor")}

# docs/security.md "Minimal Elasticsearch role", with this module's index names.
WRITER = {"cluster": ["monitor"],
          "indices": [{"names": [f"{PREFIX}*"],
                       "privileges": ["auto_configure", "index", "delete", "view_index_metadata"]}]}
ROLES = {
    "cdc_writer": WRITER,
    # README: `cdc verify` reads documents too.
    "cdc_verify": {"cluster": ["monitor"],
                   "indices": [{"names": [f"{PREFIX}*"],
                                "privileges": ["auto_configure", "index", "delete", "view_index_metadata",
                                               "read"]}]},
    # README: rules' `create_index` makes indices (create_index) and templates (manage_index_templates).
    "cdc_creator": {"cluster": ["monitor", "manage_index_templates"],
                    "indices": [{"names": [f"{PREFIX}*"],
                                 "privileges": ["auto_configure", "index", "delete", "view_index_metadata",
                                                "create_index"]}]},
    # Privileges on other indices only: every write to ours is refused (403 per bulk item).
    "cdc_elsewhere": {"cluster": ["monitor"],
                      "indices": [{"names": ["other-*"], "privileges": ["auto_configure", "index", "delete"]}]},
    # No cluster privilege: the start-up health check is refused (403 for the request).
    "cdc_nomonitor": {"indices": WRITER["indices"]},
}
USERS = {"writer": ["cdc_writer"], "reader": ["cdc_verify"], "creator": ["cdc_creator"],
         "elsewhere": ["cdc_elsewhere"], "nomonitor": ["cdc_nomonitor"]}


def _start_secure_es() -> dict:
    """The secured node (servers.ServerError if it cannot start); started early by the warm-up (WARM_UP)."""
    import servers as dev  # scripts/servers.py

    certs_dir = Path(tempfile.mkdtemp(prefix="cdcescerts"))
    os.chmod(certs_dir, 0o755)
    ca, other = CA(certs_dir, "es-test"), CA(certs_dir, "es-other")
    cert, key, server_cert = ca.issue("es-http", server=True)
    run_dir = Path(tempfile.mkdtemp(prefix="es-secure-", dir=dev.HOME))  # esrun must reach it
    try:
        node = dev.es_secure_up(run_dir, free_port(), free_port(), cert, key, ca.path,
                                users={name: (PASSWORDS[name], roles) for name, roles in USERS.items()},
                                roles=ROLES)
    except dev.ServerError:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(certs_dir, ignore_errors=True)
        raise
    fingerprint = hashlib.sha256(server_cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return {"node": node, "url": node.url, "ca": ca.path, "other_ca": other.path, "fingerprint": fingerprint,
            "certs_dir": certs_dir}


def _stop_secure_es(started: dict) -> None:
    import servers as dev

    dev.es_secure_down(started["node"])
    shutil.rmtree(started["node"].run_dir, ignore_errors=True)
    shutil.rmtree(started["certs_dir"], ignore_errors=True)


WARM_UP = {"secure_es": (_start_secure_es, _stop_secure_es)}  # tests/conftest.py


@pytest.fixture(scope="module")
def secure_es(servers, warmup):
    import servers as dev

    try:
        started = warmup.take("secure_es", _start_secure_es)
    except dev.ServerError as exc:
        pytest.fail(f"could not start the secured Elasticsearch: {exc}", pytrace=False)
    node = started["node"]
    admin = Elasticsearch(node.url, ca_certs=str(started["ca"]), basic_auth=(node.admin_user, node.admin_password),
                          request_timeout=30)
    yield {**started, "admin": admin}
    admin.close()
    _stop_secure_es(started)


@pytest.fixture
def index(secure_es, unique_name):
    name = f"{PREFIX}-{unique_name}"
    yield name
    # The name may be an alias (docs/verify-and-rebuild.md "Rebuilding an index"): delete the indices behind it.
    names = list(secure_es["admin"].indices.get(index=f"{name}*", expand_wildcards="all"))
    if names:
        secure_es["admin"].indices.delete(index=",".join(names))


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
    assert start is not None and denied.position() < after_insert
    # The operator fixes the role (here: the right user) and restarts; the rows come
    # from the binlog after the saved position (no snapshot to paper over a loss).
    fixed = _setup(tmp_path / "denied", servers, secure_es, database, index, snapshot__mode="never")
    proc = fixed.run()
    try:
        wait_until_equal(db, secure_es["admin"], "items", index, ["id"])
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]
