"""TLS end to end: cdc against a throwaway MariaDB that requires X509 client certificates.

The shared servers are not touched: this starts its own mariadbd (TLS only, on
a free loopback port) from a fresh data directory, with a CA and certificates
made here by `cryptography`, and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql
import pytest
from certs import CA
from harness import CdcSetup, both_sources, free_port, wait_until_equal


@pytest.fixture(scope="module")
def certs():
    directory = Path(tempfile.mkdtemp(prefix="cdctls"))
    os.chmod(directory, 0o755)
    ca, other = CA(directory, "test"), CA(directory, "other")
    server = ca.issue("server", server=True)
    client = ca.issue("client", server=False)
    yield {"ca": ca, "other": other, "server": server, "client": client}
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_mariadb(servers, certs):
    """A MariaDB that accepts only TLS, with a cdc user that must present a client certificate."""
    import servers as dev  # scripts/servers.py: the same binlog settings as the shared server

    directory = Path(tempfile.mkdtemp(prefix="cdcdb"))  # short: the socket path is limited to 107 bytes
    port = free_port()
    cnf = directory / "my.cnf"
    server_cert, server_key, _ = certs["server"]
    (directory / "tmp").mkdir()  # MY_CNF gives each instance its own tmpdir
    cnf.write_text(dev.MY_CNF.format(dir=directory, port=port, server_id=1)
                   + f"ssl-ca={certs['ca'].path}\nssl-cert={server_cert}\nssl-key={server_key}\n"
                   + "require-secure-transport=ON\n")
    subprocess.run(["mariadb-install-db", f"--defaults-file={cnf}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(["mariadbd", f"--defaults-file={cnf}", "--user=root"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sock = str(directory / "mariadb.sock")
    deadline = time.monotonic() + 60
    # Polled with the client program: a refused pymysql connect leaks its socket (a ResourceWarning).
    while subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", "SELECT 1"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"TLS MariaDB did not start:\n{(directory / 'error.log').read_text()[-3000:]}")
        time.sleep(0.3)
    root = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
    with root.cursor() as cur:
        cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
        have_ssl = cur.fetchone()
        assert have_ssl is not None and have_ssl[1] == "YES"
        cur.execute(f"CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY '{servers.cdc_password}' "
                    "REQUIRE SUBJECT '/CN=client' AND ISSUER '/CN=test'")
        cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, REPLICATION MASTER ADMIN "
                    "ON *.* TO 'cdc'@'127.0.0.1'")
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20))")
    yield port, root
    root.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


class _Query:
    """The bit of harness.Admin that wait_until_equal uses, over the root socket connection."""

    def __init__(self, conn, database: str):
        self.conn, self.database = conn, database

    def query(self, sql: str, args=None) -> list[dict]:
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"USE `{self.database}`")
            cur.execute(sql, args)
            return list(cur.fetchall())


def _setup(tmp_path, servers, port, index, **mysql_tls) -> CdcSetup:
    overrides = {f"mysql__{k}": str(v) for k, v in mysql_tls.items()}
    return CdcSetup(tmp_path, servers, [{"schema": "shop", "table": "items", "index": index}],
                    mysql__port=port, retry__max_attempts=2, **overrides)


def test_tls_with_a_client_certificate_streams(tls_mariadb, certs, servers, es, index_prefix, tmp_path):
    port, root = tls_mariadb
    cert, key, _ = certs["client"]
    with root.cursor() as cur:
        cur.execute("INSERT INTO shop.items VALUES (1, 'before start')")
    setup = _setup(tmp_path, servers, port, f"{index_prefix}-items", ssl_ca=certs["ca"].path, ssl_cert=cert,
                   ssl_key=key)
    proc = setup.run()
    try:
        with root.cursor() as cur:
            cur.execute("INSERT INTO shop.items VALUES (2, 'over TLS'), (3, 'x')")
            cur.execute("DELETE FROM shop.items WHERE id = 3")
        wait_until_equal(_Query(root, "shop"), es, "items", f"{index_prefix}-items", ["id"])
        with root.cursor() as cur:  # both of cdc's connections (query and binlog) are encrypted
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'cdc'")
            assert cur.fetchone()[0] >= 1
            cur.execute("SHOW STATUS LIKE 'Ssl_accepts'")
            assert int(cur.fetchone()[1]) >= 2
    finally:
        code = proc.stop()
    assert code == 0, proc.text()[-3000:]


def test_tls_refuses_a_server_certificate_from_another_ca(tls_mariadb, certs, servers, index_prefix, tmp_path):
    port, _ = tls_mariadb
    cert, key, _ = certs["client"]
    setup = _setup(tmp_path, servers, port, f"{index_prefix}-items", ssl_ca=certs["other"].path, ssl_cert=cert,
                   ssl_key=key)
    code, log = setup.command("run", timeout=120)
    assert code != 0
    assert "certificate verify failed" in log, log[-3000:]


def test_tls_without_the_client_certificate_is_refused(tls_mariadb, certs, servers, index_prefix, tmp_path):
    port, _ = tls_mariadb
    setup = _setup(tmp_path, servers, port, f"{index_prefix}-items", ssl_ca=certs["ca"].path)
    code, log = setup.command("run", timeout=120)
    assert code == 2, log[-3000:]  # access denied: a set-up error
    assert "Access denied" in log


def test_insecure_verify_off_connects_and_is_warned(tls_mariadb, certs, servers, es, index_prefix, tmp_path):
    port, _ = tls_mariadb
    cert, key, _ = certs["client"]
    setup = _setup(tmp_path, servers, port, f"{index_prefix}-items", ssl_ca=certs["other"].path, ssl_cert=cert,
                   ssl_key=key, ssl_verify="false")
    proc = setup.run()
    assert proc.stop() == 0, proc.text()[-3000:]
    assert "mysql.ssl_verify: false" in proc.text()


@both_sources
def test_connections_without_tls_settings_share_one_context_where_the_server_offers_tls(source, source_servers):
    """No mysql.ssl_* settings is PyMySQL's PREFERRED mode: TLS when the server offers it, as before, with
    one context for every connection of the process (cdc/mysql/pymysql_hooks.py, issue 28), the binlog
    stream's too. MySQL 9.7 offers TLS with its own certificate; the test MariaDB offers none."""
    import ssl

    from cdc.config import MysqlConfig, RetryConfig
    from cdc.model import StartPoint
    from cdc.mysql.server import Database
    from cdc.mysql.source import BinlogSource

    config = MysqlConfig(host=source_servers.mariadb_host, port=source_servers.mariadb_port,
                         user=source_servers.cdc_user, password=source_servers.cdc_password, server_id=1)
    first, second = Database(config), Database(config)
    try:
        position, _ = first.current_position()
        reader = BinlogSource(config.model_copy(update={"server_id": 9000 + os.getpid() % 1000}),
                              source == "mariadb", set(), RetryConfig(max_attempts=1))
        stream = reader._open(StartPoint(position))
        try:
            stream.fetchone()  # connects the stream (and the library's own query connection)
            socks = [getattr(first.conn, "_sock"), getattr(second.conn, "_sock"), stream._stream_connection._sock]
            versions = [db.rows("SHOW SESSION STATUS LIKE 'Ssl_version'")[0]["Value"] for db in (first, second)]
        finally:
            stream.close()
    finally:
        first.close()
        second.close()
    if source == "mysql":
        assert all(isinstance(s, ssl.SSLSocket) for s in socks) and all(v.startswith("TLS") for v in versions)
        assert socks[0].context is socks[1].context is socks[2].context
    else:
        assert not any(isinstance(s, ssl.SSLSocket) for s in socks) and versions == ["", ""]
