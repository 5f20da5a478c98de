"""What cdc says when the server will not send the binlog from a start position (error 1236),
and while it waits for a stale replica entry with its server_id (issue 16)."""

import logging

import pytest

from cdc.config import MysqlConfig
from cdc.errors import PreflightError, PurgedPositionError, StartPositionError
from cdc.model import BinlogPosition, StartPoint
from cdc.mysql.server import Database
from cdc.mysql.source import binlog_fatal

AT = StartPoint(BinlogPosition("binlog.000007", 6243))


@pytest.mark.parametrize("message", [
    # MariaDB 10.11, a replay from a real boundary + 100 bytes (issue 16):
    "binlog truncated in the middle of event; consider out of disk space on master; the first event "
    "'binlog.000007' at 6243, the last event read from 'binlog.000007' at 4, the last byte read from "
    "'binlog.000007' at 6262.",
    "Client requested master to start replication from impossible position; the first event 'binlog.000007' "
    "at 99999999, the last event read from 'binlog.000007' at 4",
    "bogus data in log event; the first event 'binlog.000007' at 6243",
    "log event entry exceeded max_allowed_packet; Increase max_allowed_packet on master",
])
def test_a_position_that_is_not_an_event_start_is_bad_input_not_a_purge(message):
    error = binlog_fatal(message, AT)
    assert type(error) is StartPositionError and error.exit_code == 2
    text = str(error)
    assert "binlog.000007:6243 is not the start of an event (the file is there; nothing was purged)" in text
    assert "SHOW BINLOG EVENTS IN 'binlog.000007'" in text and "cdc replay --dry-run" in text
    assert "rebuilt" not in text and "snapshot" not in text


@pytest.mark.parametrize("message, start", [
    ("Could not find first log file name in binary log index file", AT),
    ("Connecting slave requested to start from GTID 0-1-5, which is not in the master's binlog",
     StartPoint(None, "0-1-5", by_gtid=True)),
    ("Cannot replicate because the source purged required binary logs.", AT),
])
def test_a_purged_position_names_the_command_that_fixes_it(message, start):
    error = binlog_fatal(message, start)
    assert type(error) is PurgedPositionError and error.exit_code == 3
    assert "purged" in str(error) and "cdc run --resnapshot" in str(error)


def test_by_gtid_a_bad_event_is_not_blamed_on_the_position():
    error = binlog_fatal("bogus data in log event", StartPoint(None, "0-1-5", by_gtid=True))
    assert type(error) is PurgedPositionError and "GTID state 0-1-5" in str(error)


class ListedReplicas(Database):
    """A Database without a connection whose SHOW SLAVE HOSTS answers from a list of answers."""

    def __init__(self, answers, heartbeat=1.0):
        self.config = MysqlConfig(user="cdc", server_id=77, heartbeat=heartbeat)
        self.info = type("Info", (), {"mariadb": True})()
        self.answers = list(answers)

    def rows(self, sql, args=None):
        assert sql == "SHOW SLAVE HOSTS"
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_waiting_for_a_stale_entry_is_logged_once_with_what_it_waits_for(caplog, monkeypatch):
    monkeypatch.setattr("cdc.mysql.server.time.sleep", lambda s: None)
    entry = {"Server_id": 77, "Host": "cdc pid 4242 on box"}
    db = ListedReplicas([[entry], [entry], [entry], []])
    with caplog.at_level(logging.INFO, logger="cdc.database"):
        assert db._server_id_in_use() == (None, None)
    [record] = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert record.getMessage() == (
        "server_id 77 is listed in SHOW SLAVE HOSTS (cdc pid 4242 on box); waiting up to 5s for the entry to go "
        "away: a reader that just stopped stays listed until the server next fails to send it a heartbeat (a "
        "replay can take another id with --server-id)")


def test_no_clash_no_wait_and_no_log(caplog):
    db = ListedReplicas([[{"Server_id": 78, "Host": "other"}]])
    with caplog.at_level(logging.INFO, logger="cdc.database"):
        assert db._server_id_in_use() == (None, None)
    assert not caplog.records


def test_a_sha2_password_without_tls_or_cryptography_says_what_to_install(monkeypatch):
    """MySQL 8 and 9 create users with caching_sha2_password. Without TLS, PyMySQL sends the
    password under the server's RSA key, which needs `cryptography`; PyMySQL 1.2.4 says only
    this RuntimeError (seen against MySQL 9.7.4 with the import blocked)."""
    import pymysql

    def connect(**kwargs):
        raise RuntimeError("'cryptography' package is required for sha256_password or caching_sha2_password "
                           "auth methods")

    monkeypatch.setattr(pymysql, "connect", connect)
    with pytest.raises(PreflightError) as raised:
        Database(MysqlConfig(host="db", port=3306, user="cdc", password="pw", server_id=9))
    text = str(raised.value)
    assert "cannot log in to MySQL at db:3306 as 'cdc'" in text and "caching_sha2_password" in text
    assert "pip install 'PyMySQL[rsa]'" in text and "mysql.ssl_ca" in text
