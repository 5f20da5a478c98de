"""cdc/mysql/server.py's questions to the server, on canned answers: what MySQL 9.7 and MariaDB 10.11 said."""

from __future__ import annotations

import pytest

from cdc.config import MysqlConfig
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
