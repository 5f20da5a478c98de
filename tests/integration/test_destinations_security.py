"""Elasticsearch 7.17 with security on, end to end (issue 18, README "Destinations").

The 7.17.29 integ-test-zip ships x-pack security (its modules: transport-netty4,
x-pack-core, x-pack-security), so a second node is started as for
test_es_security.py (scripts/servers.py es_secure_up, now with the 7.17
version): TLS on HTTP from a generated CA, file-realm users with the roles of
README "Minimal Elasticsearch role". OpenSearch's integ-test-zip has no security
plugin (its only module is transport-netty4), so OpenSearch users, roles and
TLS are not tested here; README says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from certs import CA
from harness import CdcSetup, db_docs, free_port
from test_destinations import Reader
from test_verify import verify

PREFIX = f"sec7{uuid.uuid4().hex[:8]}"
PASSWORDS = {name: f"{name}-pw-{uuid.uuid4().hex[:10]}" for name in ("writer", "reader")}
WRITE = ["auto_configure", "index", "delete", "view_index_metadata"]
ROLES = {"cdc_writer": {"cluster": ["monitor"], "indices": [{"names": [f"{PREFIX}*"], "privileges": WRITE}]},
         "cdc_verify": {"cluster": ["monitor"], "indices": [{"names": [f"{PREFIX}*"], "privileges": WRITE + ["read"]}]}}
USERS = {"writer": ["cdc_writer"], "reader": ["cdc_verify"]}


@pytest.fixture(scope="module")
def secure_es7(servers):
    import servers as dev

    certs_dir = Path(tempfile.mkdtemp(prefix="cdces7certs"))
    os.chmod(certs_dir, 0o755)
    ca = CA(certs_dir, "es7-test")
    cert, key, _ = ca.issue("es-http", server=True)
    run_dir = Path(tempfile.mkdtemp(prefix="es7-secure-", dir=dev.HOME))
    try:
        node = dev.es_secure_up(run_dir, free_port(), free_port(), cert, key, ca.path,
                                users={name: (PASSWORDS[name], roles) for name, roles in USERS.items()},
                                roles=ROLES, selector=dev.ES7_VERSION)
    except dev.ServerError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        pytest.fail(f"could not start the secured Elasticsearch {dev.ES7_VERSION}: {exc}", pytrace=False)
    yield {"url": node.url, "ca": ca.path, "admin": (node.admin_user, node.admin_password)}
    dev.es_secure_down(node)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(certs_dir, ignore_errors=True)


def _setup(tmp_path: Path, servers, node: dict, database: str, index: str, user: str, password: str) -> CdcSetup:
    secret = tmp_path / f"{user}.password"
    secret.write_text(password + "\n")
    os.chmod(secret, 0o600)
    return CdcSetup(tmp_path, servers, [{"schema": database, "table": "items", "index": index}],
                    elasticsearch__hosts=[node["url"]], elasticsearch__engine="elasticsearch",
                    elasticsearch__username=user, elasticsearch__password_file=str(secret),
                    elasticsearch__ca_certs=str(node["ca"]), retry__max_attempts=3)


def _admin_reader(node: dict) -> Reader:
    reader = Reader.__new__(Reader)
    from opensearchpy import OpenSearch

    reader.client = OpenSearch([node["url"]], http_auth=node["admin"], ca_certs=str(node["ca"]), timeout=30,
                               max_retries=0)
    return reader


def test_the_documented_role_snapshots_streams_and_verifies_over_https(secure_es7, servers, db, database,
                                                                        unique_name, tmp_path):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))",
               "INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_50")
    index = f"{PREFIX}-{unique_name}"
    setup = _setup(tmp_path, servers, secure_es7, database, index, "writer", PASSWORDS["writer"])
    reader = _admin_reader(secure_es7)
    cdc = setup.run()
    try:
        cdc.wait_for_log("snapshot done", timeout=120)
        db.execute("UPDATE items SET name = 'changed' WHERE id <= 5", "DELETE FROM items WHERE id > 45")
        reader.wait_equal(db, "items", index, ["id"])
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
        reader.client.indices.delete(index=index, params={"ignore": 404})
        reader.close()
    assert "destination: Elasticsearch 7.17." in cdc.text()
    assert len(db_docs(db, "items", ["id"])) == 45
    assert PASSWORDS["writer"] not in cdc.text()


def test_verify_needs_read_and_a_wrong_password_stops_with_exit_2(secure_es7, servers, db, database, unique_name,
                                                                  tmp_path):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))",
               "INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_20")
    index = f"{PREFIX}-{unique_name}"
    for sub in ("w", "r", "x"):
        (tmp_path / sub).mkdir()
    writer = _setup(tmp_path / "w", servers, secure_es7, database, index, "writer", PASSWORDS["writer"])
    code, log = writer.command("snapshot", timeout=120)
    assert code == 0, log[-3000:]
    code, report, log = verify(writer)
    assert code == 2 and "denied access (403)" in log and "indices:data/read/" in log, log[-3000:]
    reader_setup = _setup(tmp_path / "r", servers, secure_es7, database, index, "reader", PASSWORDS["reader"])
    code, report, log = verify(reader_setup)
    assert code == 0 and report["summary"]["ok"], (report, log[-3000:])

    wrong = _setup(tmp_path / "x", servers, secure_es7, database, index, "writer", "not-the-password")
    code, log = wrong.command("run", timeout=60)
    assert code == 2 and "refused the credentials (401)" in log, log[-3000:]
    assert "not-the-password" not in log
    reader = _admin_reader(secure_es7)
    reader.client.indices.delete(index=index, params={"ignore": 404})
    reader.close()
