"""Elasticsearch 7.17 and OpenSearch with security on, end to end (issue 18, docs/destinations.md "Destinations").

The 7.17.29 integ-test-zip ships x-pack security (its modules: transport-netty4,
x-pack-core, x-pack-security), so a second node is started as for
test_es_security.py (scripts/servers.py es_secure_up, with the 7.17 version):
TLS on HTTP from a generated CA, file-realm users with the roles of README
"Minimal Elasticsearch role". OpenSearch's integ-test-zips have no security
plugin, but Maven Central has the plugin's zip for 2.11.1, whose integ-test-zip
is there too: scripts/servers.py opensearch_secure_up installs it and starts a
node with TLS and internal users and roles (docs/destinations.md "Destinations").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from certs import CA
from harness import CdcSetup, db_docs, free_port
from test_destinations import Reader
from test_verify import verify, verify_refused

PREFIX = f"sec7{uuid.uuid4().hex[:8]}"
PASSWORDS = {name: f"{name}-pw-{uuid.uuid4().hex[:10]}" for name in ("writer", "reader")}
WRITE = ["auto_configure", "index", "delete", "view_index_metadata"]
ROLES = {"cdc_writer": {"cluster": ["monitor"], "indices": [{"names": [f"{PREFIX}*"], "privileges": WRITE}]},
         "cdc_verify": {"cluster": ["monitor"], "indices": [{"names": [f"{PREFIX}*"], "privileges": WRITE + ["read"]}]}}
USERS = {"writer": ["cdc_writer"], "reader": ["cdc_verify"]}


def _start_secure_es7() -> dict:
    """The secured Elasticsearch 7.17 (servers.ServerError if it cannot start); started early (WARM_UP)."""
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
    except dev.ServerError:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(certs_dir, ignore_errors=True)
        raise
    return {"node": node, "certs_dir": certs_dir, "url": node.url, "ca": ca.path,
            "admin": (node.admin_user, node.admin_password)}


def _stop_secure_node(started: dict) -> None:
    import servers as dev

    dev.es_secure_down(started["node"])
    shutil.rmtree(started["node"].run_dir, ignore_errors=True)
    shutil.rmtree(started["certs_dir"], ignore_errors=True)


def _drop(reader, index: str) -> None:
    """Delete the index, or the indices behind it if the name is an alias (docs/verify-and-rebuild.md "Rebuilding an index")."""
    names = list(reader.client.indices.get(index=f"{index}*", params={"expand_wildcards": "all"}))
    if names:
        reader.client.indices.delete(index=",".join(names))


@pytest.fixture(scope="module")
def secure_es7(servers, warmup):
    import servers as dev

    try:
        started = warmup.take("secure_es7", _start_secure_es7)
    except dev.ServerError as exc:
        pytest.fail(f"could not start the secured Elasticsearch {dev.ES7_VERSION}: {exc}", pytrace=False)
    yield started
    _stop_secure_node(started)


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
        cdc.wait_for_event("snapshot_done", timeout=120)
        db.execute("UPDATE items SET name = 'changed' WHERE id <= 5", "DELETE FROM items WHERE id > 45")
        reader.wait_equal(db, "items", index, ["id"])
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
        _drop(reader, index)
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
    code, log = verify_refused(writer)
    assert code == 2 and "denied access (403)" in log and "indices:data/read/" in log, log[-3000:]
    reader_setup = _setup(tmp_path / "r", servers, secure_es7, database, index, "reader", PASSWORDS["reader"])
    code, report, log = verify(reader_setup)
    assert code == 0 and report["summary"]["ok"], (report, log[-3000:])

    wrong = _setup(tmp_path / "x", servers, secure_es7, database, index, "writer", "not-the-password")
    code, log = wrong.command("run", timeout=60)
    assert code == 2 and "refused the credentials (401)" in log, log[-3000:]
    assert "not-the-password" not in log
    reader = _admin_reader(secure_es7)
    _drop(reader, index)
    reader.close()


# ------------------------------------------------------------------ OpenSearch with its security plugin
# docs/destinations.md "Destinations", OpenSearch security: the roles the README documents.
OS_WRITER: dict[str, Any] = {"cluster_permissions": ["cluster_monitor", "cluster_composite_ops"],
             "index_permissions": [{"index_patterns": [f"{PREFIX}*"],
                                    "allowed_actions": ["write", "create_index", "indices_monitor"]}]}
OS_ROLES = {"cdc_writer": OS_WRITER,
            # verify: `read` on the indices, and clearing its scrolls (a cluster action to the plugin)
            "cdc_verify": {"cluster_permissions": OS_WRITER["cluster_permissions"] + ["indices:data/read/scroll/clear"],
                           "index_permissions": [{"index_patterns": [f"{PREFIX}*"],
                                                  "allowed_actions": ["write", "create_index", "indices_monitor",
                                                                      "read"]}]}}


def _node_certificate(directory: Path) -> tuple[Path, Path, Path, str]:
    """CA, and a node certificate for server and client use with a PKCS#8 key (the security plugin's needs)."""
    import datetime
    import hashlib
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdc-opensearch-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdc-node")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cdc-node.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "cdc-node.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    for name in ("ca.pem", "cdc-node.pem", "cdc-node.key"):
        os.chmod(directory / name, 0o644)
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return directory / "ca.pem", directory / "cdc-node.pem", directory / "cdc-node.key", fingerprint


def _start_secure_os() -> dict:
    """The OpenSearch with the security plugin (servers.ServerError if it cannot start); started early (WARM_UP)."""
    import servers as dev

    certs_dir = Path(tempfile.mkdtemp(prefix="cdcoscerts"))
    os.chmod(certs_dir, 0o755)
    ca, cert, key, fingerprint = _node_certificate(certs_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="os-secure-", dir=dev.HOME))
    try:
        node = dev.opensearch_secure_up(run_dir, free_port(), free_port(), cert, key, ca,
                                        users={name: (PASSWORDS[name], [f"cdc_{'writer' if name == 'writer' else 'verify'}"])
                                               for name in USERS}, roles=OS_ROLES)
    except dev.ServerError:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(certs_dir, ignore_errors=True)
        raise
    return {"node": node, "certs_dir": certs_dir, "url": node.url, "ca": ca,
            "admin": (node.admin_user, node.admin_password), "fingerprint": fingerprint}


WARM_UP = {"secure_es7": (_start_secure_es7, _stop_secure_node),  # tests/conftest.py
           "secure_os": (_start_secure_os, _stop_secure_node)}


@pytest.fixture(scope="module")
def secure_os(servers, warmup):
    import servers as dev

    try:
        started = warmup.take("secure_os", _start_secure_os)
    except dev.ServerError as exc:
        pytest.fail(f"could not start the secured OpenSearch {dev.OPENSEARCH_SECURE_VERSION}: {exc}", pytrace=False)
    yield started
    _stop_secure_node(started)


def _os_setup(tmp_path: Path, servers, node: dict, database: str, index: str, user: str, password: str,
              **es) -> CdcSetup:
    tmp_path.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / f"{user}.password"
    secret.write_text(password + "\n")
    os.chmod(secret, 0o600)
    overrides = {f"elasticsearch__{k}": v for k, v in {"ca_certs": str(node["ca"]), **es}.items() if v is not None}
    return CdcSetup(tmp_path, servers, [{"schema": database, "table": "items", "index": index}],
                    elasticsearch__hosts=[node["url"]], elasticsearch__engine="opensearch",
                    elasticsearch__username=user, elasticsearch__password_file=str(secret), retry__max_attempts=3,
                    **overrides)


def test_opensearch_roles_stream_verify_and_refuse(secure_os, servers, db, database, unique_name, tmp_path):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))",
               "INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_30")
    index = f"{PREFIX}-{unique_name}"
    writer = _os_setup(tmp_path / "w", servers, secure_os, database, index, "writer", PASSWORDS["writer"])
    reader = _admin_reader(secure_os)
    cdc = writer.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=120)
        db.execute("UPDATE items SET name = 'changed' WHERE id <= 5", "DELETE FROM items WHERE id > 25")
        reader.wait_equal(db, "items", index, ["id"])
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
    assert "destination: OpenSearch 2.11.1" in cdc.text() and PASSWORDS["writer"] not in cdc.text()
    try:
        # verify reads documents: refused without `read`, clean with it
        code, log = verify_refused(writer)
        assert code == 2 and "denied access (403)" in log and "indices:data/read/" in log, log[-3000:]
        code, report, log = verify(_os_setup(tmp_path / "r", servers, secure_os, database, index, "reader",
                                             PASSWORDS["reader"]))
        assert code == 0 and report["summary"]["ok"], (report, log[-3000:])
        # the server's certificate pinned instead of a CA
        pinned = _os_setup(tmp_path / "p", servers, secure_os, database, index, "writer", PASSWORDS["writer"],
                           ca_certs=None, ssl_assert_fingerprint=secure_os["fingerprint"])
        code, log = pinned.command("snapshot", timeout=120)
        assert code == 0, log[-3000:]
        # and another pin is refused at once: the pin is checked, not only the CA left out
        wrong = _os_setup(tmp_path / "q", servers, secure_os, database, index, "writer", PASSWORDS["writer"],
                          ca_certs=None, ssl_assert_fingerprint="ab" * 32)
        code, log = wrong.command("snapshot", timeout=120)
        assert code == 2 and "TLS certificate was refused" in log and "retrying" not in log, log[-3000:]
    finally:
        _drop(reader, index)
        reader.close()


def test_opensearch_wrong_password_and_a_refused_index_stop_with_exit_2(secure_os, servers, db, database,
                                                                        unique_name, tmp_path):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))", "INSERT INTO items VALUES (1, 'a')")
    code, log = _os_setup(tmp_path / "x", servers, secure_os, database, f"{PREFIX}-{unique_name}", "writer",
                          "not-the-password").command("run", timeout=60)
    assert code == 2 and "refused the credentials (401)" in log and "not-the-password" not in log, log[-3000:]
    # An index outside the role: each document is refused (403), cdc stops and saves nothing past it.
    outside = _os_setup(tmp_path / "o", servers, secure_os, database, f"other-{unique_name}", "writer",
                        PASSWORDS["writer"])
    code, log = outside.command("run", timeout=60)
    assert code == 2 and "indices:admin/create" in log, log[-3000:]
