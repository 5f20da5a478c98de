"""The MySQL/MariaDB error codes cdc tells apart, and what each means to it.

One table for the binlog source (source.py) and the server queries (server.py): which
errors are a lost connection (tried again), a missing privilege or login (fix the set-up),
a binlog the server will not send, and the few statements' own errors cdc answers. The
codes are the server's (mysql-server include/mysqld_error.h, MariaDB
include/mysqld_error.h) and the client's (CR_*, errmsg.h), as PyMySQL's
`constants.ER` and `constants.CR` name them.
"""

from __future__ import annotations

import pymysql

# Server errors.
ER_SERVER_SHUTDOWN = 1053  # the server is shutting down: the connection goes next
ER_ACCESS_DENIED = 1045  # the login was refused (user, password, host)
ER_BAD_FIELD = 1054  # "Unknown column": here, a column an ALTER removed or renamed
ER_COMMAND_FAILED = 1220  # ER_ERROR_WHEN_EXECUTING_COMMAND: SHOW BINLOG EVENTS where no event starts
ER_SPECIFIC_ACCESS_DENIED = 1227  # a privilege is missing (REPLICATION CLIENT for the binlog position)
# ER_MASTER_FATAL_ERROR_READING_BINLOG: the server will not send the binlog from the requested position
# or GTID state (purged, never existed, not the start of an event; source.py `binlog_fatal` tells which).
ER_BINLOG_FATAL = 1236
ER_CONNECTION_KILLED = 1927  # MariaDB: KILL CONNECTION, or the server killed it

# Client errors (PyMySQL raises them as OperationalError).
CR_CONN_HOST_ERROR = 2003  # cannot connect
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013  # the connection was lost in the middle of a query or packet
CR_SERVER_LOST_EXTENDED = 2055  # lost connection, with the system error

# A lost connection whichever class PyMySQL gives it: the client's own and the server's two
# ways of saying it is closing this connection.
_CONNECTION_LOST = frozenset({CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED,
                              ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED})


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error (its first argument), None without one."""
    args = exc.args
    return args[0] if args and isinstance(args[0], int) else None


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the connection is gone and doing it again on a new one may work.

    Every client error (2000 and up, which PyMySQL raises as OperationalError) counts, and
    the server's shutdown and killed-connection errors. Server errors from 3000 up (MySQL's
    newer ones) are OperationalErrors too and count as well: as they always have in cdc.
    """
    code = error_code(exc)
    if code in _CONNECTION_LOST:
        return True
    return isinstance(exc, pymysql.err.OperationalError) and code is not None and code >= 2000


def access_denied(exc: BaseException) -> bool:
    """The login was refused: a set-up problem, not an outage."""
    return error_code(exc) == ER_ACCESS_DENIED
