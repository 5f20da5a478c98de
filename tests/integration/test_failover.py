"""Failover: cdc follows a promoted replica by GTID, and its writes still win over the old primary's."""

from __future__ import annotations

import shutil
import time

import pymysql
import pytest
import yaml
from harness import CdcSetup, es_docs, mysql_only, wait_until_equal
from proxy import FaultProxy

pytestmark = pytest.mark.serial  # the whole module (tests/conftest.py says what serial means)


class Server:
    def __init__(self, servers, port: int):
        self.conn = pymysql.connect(host="127.0.0.1", port=port, user=servers.admin_user,
                                    password=servers.admin_password, autocommit=True)

    def execute(self, *statements, args=None):
        with self.conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql, args)
            return cur.fetchall()

    def query(self, sql, args=None):
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def close(self):
        self.conn.close()


def test_failover_to_a_promoted_replica_resumes_by_gtid(servers, db, database, es, index_prefix, tmp_path):
    import servers as dev

    replica_dir = dev.HOME / "mariadb-replica"
    replica_port = servers.mariadb_port + 7
    shutil.rmtree(replica_dir, ignore_errors=True)  # a fresh server: no GTID history of its own
    dev.mariadb_up(replica_dir, replica_port, server_id=2)
    replica = Server(servers, replica_port)
    try:
        # Replicate from the primary's current GTID state (older binlogs may have been purged by other tests).
        gtid = db.execute("SELECT @@gtid_binlog_pos")[0][0]
        replica.execute("SET sql_log_bin = 0", f"CREATE DATABASE `{database}`", "SET sql_log_bin = 1")
        replica.execute("SET GLOBAL gtid_slave_pos = %s", args=(gtid,))
        replica.execute(f"CHANGE MASTER TO master_host='127.0.0.1', master_port={servers.mariadb_port}, "
                        f"master_user='{servers.admin_user}', master_password='{servers.admin_password}', "
                        "master_use_gtid=slave_pos", "START SLAVE")
        db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(20))")
        db.execute("INSERT INTO t SELECT seq, seq, 'primary' FROM seq_1_to_50")

        setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
        cdc = setup.run()
        db.execute("UPDATE t SET v = v + 100 WHERE id <= 25", "DELETE FROM t WHERE id > 45")
        wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
        assert cdc.stop() == 0
        old = setup.saved()
        assert old["server"] == "mariadb:1" and old["epoch"] == 0

        # Wait for the replica to have everything, then promote it.
        target = db.execute("SELECT @@gtid_binlog_pos")[0][0]
        deadline = time.monotonic() + 30
        while replica.execute("SELECT @@gtid_slave_pos")[0][0] != target:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.2)
        replica.execute("STOP SLAVE", "RESET SLAVE ALL")

        # Point cdc at the new primary. Its binlog file numbers are far lower than
        # the old primary's, so without a new epoch these writes would look stale.
        config = yaml.safe_load(setup.config_path.read_text())
        config["mysql"]["port"] = replica_port
        setup.config_path.write_text(yaml.safe_dump(config))
        cdc = setup.run()
        try:
            replica.execute(f"USE `{database}`", "UPDATE t SET v = -v, s = 'replica' WHERE id <= 10",
                            "DELETE FROM t WHERE id BETWEEN 40 AND 45", "INSERT INTO t VALUES (100, 100, 'new')")
            wait_until_equal(replica, es, "t", f"{index_prefix}-t", ["id"])
            assert es_docs(es, f"{index_prefix}-t")["1"] == {"id": 1, "v": -101, "s": "replica"}
        finally:
            assert cdc.stop() == 0
        assert cdc.events("start", how="failover")
        assert "failover: checkpoint is from mariadb:1, this server is mariadb:2" in cdc.text()  # says why
        saved = setup.saved()
        assert saved["server"] == "mariadb:2" and saved["epoch"] == 1 and saved["by_gtid"] is False

        # A plain restart on the new primary resumes by file/pos and reprocesses nothing.
        again = setup.run()
        again.wait_for_event("start", how="resume")
        # One new row, waited for: once it is in, everything before it has been read.
        replica.execute(f"USE `{database}`", "INSERT INTO t VALUES (101, 101, 'after')")
        wait_until_equal(replica, es, "t", f"{index_prefix}-t", ["id"])
        assert again.stop() == 0
        assert again.events("start", how="resume") and not again.events("start", how="failover")
        assert (again.stopped()["rows"], again.stopped()["transactions"]) == (1, 1)
    finally:
        replica.close()
        dev.mariadb_down(directory=replica_dir)


@mysql_only
def test_a_mysql_replica_promoted_while_cdc_streams_is_followed_by_gtid(source_servers, db, database, es,
                                                                        index_prefix, tmp_path):
    """MySQL 9.7 GTIDs (uuid:1-N): a second mysqld of the same root replicates the test server, and is
    promoted while cdc streams through an address that then leads to it (a proxy, as a virtual IP or a
    DNS switch would). cdc must not read the new server by the old one's file and position."""
    import servers as dev

    replica_instance = dev.MYSQL_REPLICA
    dev.mysql_down(instance=replica_instance)
    shutil.rmtree(replica_instance.host, ignore_errors=True)  # a fresh server: no GTID history of its own
    dev.mysql_up(replica_instance, server_id=98)
    replica = Server(source_servers, replica_instance.port)
    proxy = FaultProxy("127.0.0.1", source_servers.mariadb_port)
    try:
        # Replicate from the primary's current GTID state (its history holds every other test's databases).
        gtid = db.gtid_state()
        replica.execute("RESET BINARY LOGS AND GTIDS")
        replica.execute("SET GLOBAL gtid_purged = %s", args=(gtid,))
        replica.execute("SET sql_log_bin = 0", f"CREATE DATABASE `{database}`", "SET sql_log_bin = 1")
        # GET_SOURCE_PUBLIC_KEY: the replication user logs in with caching_sha2_password, without TLS.
        replica.execute(f"CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', "
                        f"SOURCE_PORT={source_servers.mariadb_port}, SOURCE_USER='{source_servers.admin_user}', "
                        f"SOURCE_PASSWORD='{source_servers.admin_password}', SOURCE_AUTO_POSITION=1, "
                        "GET_SOURCE_PUBLIC_KEY=1", "START REPLICA")
        db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(20))")
        db.execute(f"INSERT INTO t SELECT seq, seq, 'primary' FROM {db.seq(50)}")

        setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}],
                         mysql__port=proxy.port)
        cdc = setup.run()
        try:
            db.execute("UPDATE t SET v = v + 100 WHERE id <= 25", "DELETE FROM t WHERE id > 45")
            wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
            old = setup.saved()
            assert old["server"].startswith("mysql:") and old["epoch"] == 0

            # The replica has everything: promote it, and the address now leads to it.
            target = db.gtid_state()
            deadline = time.monotonic() + 30
            while replica.execute("SELECT @@GLOBAL.gtid_executed")[0][0].replace("\n", "") != target:
                assert time.monotonic() < deadline, "the replica did not catch up"
                time.sleep(0.2)
            proxy.cut()
            replica.execute("STOP REPLICA", "RESET REPLICA ALL")
            proxy.upstream = ("127.0.0.1", replica_instance.port)
            proxy.restore()
            replica.execute(f"USE `{database}`", "UPDATE t SET v = -v, s = 'replica' WHERE id <= 10",
                            "DELETE FROM t WHERE id BETWEEN 40 AND 45", "INSERT INTO t VALUES (100, 100, 'new')")
            # The reconnect finds another server: cdc stops (exit 1: systemd's Restart=on-failure starts
            # it again) instead of asking it for the old one's binlog file (which it called "purged").
            assert cdc.wait(60) == 1, cdc.text()[-3000:]
        finally:
            if cdc.popen.poll() is None:
                cdc.stop()
        new_identity = f"mysql:{replica.execute('SELECT @@server_uuid')[0][0]}"
        assert f"is {new_identity} now, not {old['server']}" in cdc.text()
        assert "purged" not in cdc.text() and "--resnapshot" not in cdc.text()
        assert setup.saved()["server"] == old["server"]  # nothing read from the new server yet

        # Started again, it resumes on the new primary by GTID (uuid:1-N sets), with a new epoch.
        cdc = setup.run()
        try:
            wait_until_equal(replica, es, "t", f"{index_prefix}-t", ["id"])
            assert es_docs(es, f"{index_prefix}-t")["1"] == {"id": 1, "v": -101, "s": "replica"}
        finally:
            assert cdc.stop() == 0
        assert cdc.events("start", how="failover")
        assert f"failover: checkpoint is from {old['server']}, this server is {new_identity}" in cdc.text()
        saved = setup.saved()
        assert saved["server"] == new_identity and saved["epoch"] == 1 and saved["by_gtid"] is False
        assert new_identity.split(":", 1)[1] in saved["gtid"]  # the new server's own transactions

        # A plain restart on the new primary resumes by file/pos and reprocesses nothing.
        again = setup.run()
        again.wait_for_event("start", how="resume")
        replica.execute(f"USE `{database}`", "INSERT INTO t VALUES (101, 101, 'after')")
        wait_until_equal(replica, es, "t", f"{index_prefix}-t", ["id"])
        assert again.stop() == 0
        assert (again.stopped()["rows"], again.stopped()["transactions"]) == (1, 1)
    finally:
        proxy.close()
        replica.close()
        dev.mysql_down(instance=replica_instance)
