"""cdc/mysql/server.py's questions to the server, on canned answers: what MySQL 9.7 and MariaDB 10.11 said."""

from __future__ import annotations

import pytest

from cdc.config import MysqlConfig
from cdc.errors import PreflightError
from cdc.mysql.server import Database, ServerInfo

CHILD_DDL = ("CREATE TABLE `child` (\n  `id` int NOT NULL,\n  `parent_code` varchar(10) DEFAULT NULL,\n"
             "  PRIMARY KEY (`id`),\n  CONSTRAINT `child_ibfk_1` FOREIGN KEY (`parent_code`) REFERENCES `parent` "
             "(`code`) ON DELETE CASCADE ON UPDATE CASCADE\n) ENGINE=InnoDB")


class _Answers(Database):
    """A Database whose queries are answered from `variables` and canned rows, without a server."""

    def __init__(self, mariadb: bool, variables: dict[str, str]):
        self.config = MysqlConfig(user="cdc", server_id=1001)
        self.info = ServerInfo("9.7.4-2" if not mariadb else "10.11.19-MariaDB", mariadb, 1)
        self._variables = variables

    def variables(self, *names: str) -> dict[str, str]:
        return {n: self._variables[n] for n in names if n in self._variables}

    def rows(self, sql: str, args=None) -> list[dict]:
        if "KEY_COLUMN_USAGE" in sql:
            return [{"t": "child"}]
        if sql.startswith("SHOW CREATE TABLE"):
            return [{"Table": "child", "Create Table": CHILD_DDL}]
        if sql == "SHOW GRANTS":
            return [{"Grants for cdc@%": "GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`"}]
        raise AssertionError(sql)


@pytest.mark.parametrize("mariadb, variables, warned", [
    (False, {"innodb_native_foreign_keys": "OFF"}, False),  # MySQL 9.6+: the SQL layer logs the cascades' rows
    (False, {"innodb_native_foreign_keys": "ON"}, True),  # ... unless InnoDB runs them, as before
    (False, {}, True),  # MySQL 8 and 9.0-9.5: no such variable
    (True, {}, True),  # MariaDB
])
def test_cascades_are_a_warning_only_where_the_binlog_lacks_their_rows(mariadb, variables, warned):
    found = _Answers(mariadb, variables).cascading_foreign_keys([("shop", "child")])
    assert bool(found) is warned
    if warned:
        assert found == ["shop.child: foreign key child_ibfk_1 to parent has ON DELETE CASCADE and ON UPDATE "
                         "CASCADE; rows it changes are not in the binlog (MariaDB, MySQL before 9.6 or with "
                         "innodb_native_foreign_keys=ON), so their documents go stale. Delete/update child rows "
                         "explicitly, or re-snapshot the table"]


# SHOW GLOBAL VARIABLES of a MySQL 9.7.4 as installed (binlog_row_metadata MINIMAL, gtid_mode OFF)
# after a user also turned on what cdc cannot read.
MYSQL_AS_SET = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "NOBLOB", "binlog_row_metadata": "MINIMAL",
                "binlog_row_value_options": "PARTIAL_JSON", "binlog_transaction_compression": "ON",
                "gtid_mode": "OFF"}


def test_each_setting_cdc_cannot_read_says_the_statement_and_the_my_cnf_line():
    with pytest.raises(PreflightError) as refused:
        _Answers(False, MYSQL_AS_SET).preflight(reads_binlog=False)
    assert refused.value.exit_code == 2
    problems = str(refused.value).split("\n  - ")[1:]
    assert [p.split(":", 1)[0] for p in problems] == [
        "binlog_row_image=NOBLOB", "binlog_row_metadata=MINIMAL", "binlog_row_value_options=PARTIAL_JSON",
        "binlog_transaction_compression=ON"]
    assert problems[1] == (
        "binlog_row_metadata=MINIMAL: set binlog_row_metadata=FULL (the column names must travel in the binlog; "
        "MySQL's default is MINIMAL). On the server: SET GLOBAL binlog_row_metadata = 'FULL'; and add this line to "
        "my.cnf under [mysqld], so a restart keeps it: binlog_row_metadata = FULL")
    assert problems[2].endswith("SET GLOBAL binlog_row_value_options = ''; and add this line to my.cnf under "
                                "[mysqld], so a restart keeps it: binlog_row_value_options = '' (client sessions "
                                "opened before keep their own value until they reconnect)")
    assert "so a restart keeps it: binlog_row_image = FULL (client sessions" in problems[0]
    assert "so a restart keeps it: binlog_transaction_compression = OFF (client sessions" in problems[3]


def test_mysql_without_gtids_is_a_warning_with_its_my_cnf_lines():
    settings = {**MYSQL_AS_SET, "binlog_row_image": "FULL", "binlog_row_metadata": "FULL",
                "binlog_row_value_options": "", "binlog_transaction_compression": "OFF"}
    assert _Answers(False, settings).preflight(reads_binlog=False) == [
        "gtid_mode is OFF: cdc works by file/position, but cannot follow a failover by GTID (in my.cnf, under "
        "[mysqld]: gtid_mode = ON and enforce_gtid_consistency = ON)"]
