"""One MySQL error classifier (cdc/mysql/error_codes.py) for the binlog source and the server queries."""

from __future__ import annotations

import pymysql
import pytest

from cdc.errors import SourceConnectionError
from cdc.mysql.error_codes import access_denied, connection_lost, error_code
from cdc.mysql.server import Database

_err = pymysql.err


@pytest.mark.parametrize("exc, lost", [
    (_err.OperationalError(2003, "Can't connect to MySQL server"), True),
    (_err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
    (_err.OperationalError(2055, "Lost connection to MySQL server at 'reading initial communication packet'"), True),
    (_err.OperationalError(2014, "Command Out of Sync"), True),  # any client error
    (_err.OperationalError(1053, "Server shutdown in progress"), True),
    (_err.OperationalError(1927, "Connection was killed"), True),  # MariaDB
    (_err.InterfaceError(2013, "raised as another class"), True),  # the code decides
    (_err.OperationalError(1045, "Access denied for user"), False),
    (_err.OperationalError(1227, "Access denied; you need the REPLICATION CLIENT privilege"), False),
    (_err.OperationalError(1236, "Could not find first log file name in binary log index file"), False),
    (_err.ProgrammingError(1064, "You have an error in your SQL syntax"), False),
    (_err.InterfaceError(0, ""), False),
    (_err.OperationalError("no code"), False),
])
def test_connection_lost(exc, lost):
    assert connection_lost(exc) is lost


def test_codes_and_access():
    assert error_code(_err.OperationalError(1045, "denied")) == 1045
    assert error_code(_err.OperationalError("text only")) is None
    assert access_denied(_err.OperationalError(1045, "Access denied for user 'cdc'@'%'"))
    assert not access_denied(_err.OperationalError(2003, "Can't connect"))


class _Failing:
    """A connection whose every query fails with `exc`."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def cursor(self, *_args):
        raise self.exc


@pytest.mark.parametrize("code", [2013, 1053, 1927])
def test_a_query_on_a_lost_connection_is_a_source_connection_error(code: int) -> None:
    """Database.rows says what the binlog source says: a server shutting down or a killed connection
    is a lost connection (retried), as a client error is; before, it raised PyMySQL's own error."""
    db = Database.__new__(Database)
    db.conn = _Failing(_err.OperationalError(code, "gone"))  # type: ignore[assignment]  # no server here
    with pytest.raises(SourceConnectionError, match="MySQL connection lost: gone"):
        db.rows("SELECT 1")


def test_a_query_error_stays_the_servers_error() -> None:
    db = Database.__new__(Database)
    db.conn = _Failing(_err.OperationalError(1227, "Access denied"))  # type: ignore[assignment]  # no server here
    with pytest.raises(_err.OperationalError):
        db.rows("SHOW BINARY LOG STATUS")
