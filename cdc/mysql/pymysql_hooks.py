"""cdc's hooks into PyMySQL's internals: a result whose rows stay their packets (issue 13), and one TLS
context for the connections that give PyMySQL no TLS settings (issue 28, `install_pymysql_hooks`).

The snapshot's native row path (cdc/copy/native.py) wants a chunk's rows as the
server's text-protocol row packets, not as Python values. PyMySQL has no way to ask
for that, so `PacketResult` replaces two private methods of its `MySQLResult`, reads
the connection's private socket file, timeouts and packet sequence number, and
`read_packet_rows` runs the private steps of `Connection.query` with it. None of these
is in PyMySQL's type stubs (types-PyMySQL): the connection is typed Any where they
are used, and PyMySQL's own methods the hooks call are declared below, so that the
rest is checked. PyMySQL 1.1 to 1.x (setup.cfg); tests/unit/test_packet_rows.py reads
the same bytes through PyMySQL's own reader and this one and compares.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, Callable

import pymysql
import pymysql.connections
import pymysql.protocol

from cdc.mysql.error_codes import CR_SERVER_LOST
from cdc.native import AVAILABLE as NATIVE_AVAILABLE
from cdc.native import native


class PacketResult(pymysql.connections.MySQLResult):
    """A result whose rows are their packets' bytes (a row's length-encoded column values)."""

    # PyMySQL's own (MySQLResult), not in its stubs: raises unless the packet ends the rows.
    _check_packet_is_eof: Callable[[pymysql.protocol.MysqlPacket], bool]

    def _read_row_from_packet(self, packet: pymysql.protocol.MysqlPacket) -> bytes:
        return packet.get_all_data()

    def _read_rowdata_packet(self) -> None:
        """`MySQLResult._read_rowdata_packet` and `Connection._read_packet` (PyMySQL 1.x), for row bytes only.

        PyMySQL makes a `MysqlPacket` per row and asks it whether it is an error or
        the end: about half of a snapshot chunk's reading time (issue 13). Here a
        row is its header and payload read from the buffered socket file; the
        sequence check, rows over 16 MB in several packets, error packets and the
        end of the rows are handled as PyMySQL handles them (an error or the end
        is a `MysqlPacket` again, given to PyMySQL's own checks).
        """
        conn: Any = self.connection  # its private socket file, timeouts and sequence number
        if conn._current_timeout != conn._read_timeout:
            conn._sock.settimeout(conn._read_timeout)
            conn._current_timeout = conn._read_timeout
        read = conn._rfile.read
        # The row packets already in the socket file's buffer, framed in Rust (cdc._native.frame_rows,
        # without a Python call per row), when the native module is there; the packet it stops at
        # (not all read yet, the end, an error, out of sequence, a row in several packets) is read
        # below as before, then the buffer again. `peek` only looks: nothing past the rows is taken.
        frame = _frame_rows
        peek = getattr(conn._rfile, "peek", None)
        rows: list[bytes] = []
        append = rows.append
        seq = conn._next_seq_id

        def packet() -> bytes:
            nonlocal seq
            header = read(4)
            if len(header) < 4:
                raise _Lost()
            length = header[0] | header[1] << 8 | header[2] << 16
            if header[3] != seq:
                conn._next_seq_id = seq
                _wrong_sequence(conn, header[3])
            seq = (seq + 1) & 0xFF
            data = read(length)
            if len(data) < length:
                raise _Lost()
            return data

        try:
            while True:
                if frame is not None and peek is not None:
                    ahead = peek(1)
                    if ahead:
                        taken, seq = frame(ahead, seq, rows)
                        if taken:
                            read(taken)
                data = packet()
                if len(data) == _MAX_PACKET_LEN:  # a row of 16 MB or more: continued in the next packets
                    parts = [data]
                    while len(parts[-1]) == _MAX_PACKET_LEN:
                        parts.append(packet())
                    data = b"".join(parts)
                first = data[0] if data else -1
                if first == 0xFF or first == 0xFE and len(data) < 9:
                    conn._next_seq_id = seq
                    last = pymysql.protocol.MysqlPacket(data, conn.encoding)
                    if last.is_error_packet():
                        last.raise_for_error()
                    self._check_packet_is_eof(last)
                    self.connection = None  # as PyMySQL: no reference cycle
                    break
                append(data)
        except _Lost:
            conn._next_seq_id = seq
            conn._force_close()
            raise pymysql.err.OperationalError(CR_SERVER_LOST,
                                               "Lost connection to MySQL server during query") from None
        except OSError as exc:
            conn._next_seq_id = seq
            conn._force_close()
            raise pymysql.err.OperationalError(CR_SERVER_LOST,
                                               f"Lost connection to MySQL server during query ({exc})") from None
        except pymysql.err.MySQLError:
            raise
        except BaseException:
            conn._force_close()
            raise
        self.affected_rows = len(rows)
        self.rows = tuple(rows)


_MAX_PACKET_LEN = 0xFFFFFF  # pymysql.connections.MAX_PACKET_LEN
# The row framing of snapshot chunks (issue 13); the package works without its native module.
_frame_rows = native.frame_rows if NATIVE_AVAILABLE else None


class _Lost(Exception):
    """The server closed the connection in the middle of a packet."""


def _wrong_sequence(conn: Any, got: int) -> None:
    """PyMySQL's `_read_packet` on a packet out of sequence."""
    expected = conn._next_seq_id
    conn._force_close()
    if got == 0:  # MariaDB sends an error packet numbered 0 when it shuts down
        raise pymysql.err.OperationalError(CR_SERVER_LOST,
                                           "Lost connection to MySQL server during query")
    raise pymysql.err.InternalError(f"Packet sequence number wrong - got {got} expected {expected}")


def read_packet_rows(conn: Any, query: str) -> PacketResult:
    """`Connection.query` and `_read_query_result` (PyMySQL 1.1 to 1.x) with the result class that keeps
    each row's packet instead of converting it; `conn` is a PyMySQL Connection (its private steps)."""
    conn._execute_command(pymysql.constants.COMMAND.COM_QUERY, query)
    conn._result = None
    result = PacketResult(conn)
    result.read()
    conn._result = result
    if result.server_status is not None:
        conn.server_status = result.server_status
    return result


# PyMySQL's own conversion of a row packet into the row a cursor gives (MySQLResult's, not in its stubs).
_convert_row: Callable[[Any, pymysql.protocol.MysqlPacket], tuple] = getattr(pymysql.connections.MySQLResult,
                                                                             "_read_row_from_packet")


def convert_row(result: PacketResult, packet: bytes, encoding: str) -> tuple:
    """A row packet of `result` as PyMySQL's cursor would give it, with the result's field converters."""
    return _convert_row(result, pymysql.protocol.MysqlPacket(packet, encoding))


class _PreferredTls:
    """The TLS context of PyMySQL's PREFERRED mode (a connection without TLS settings: TLS when the server
    offers it, no certificate check), one for the whole process and made when a server first offers TLS.

    PyMySQL 1.2 makes this context in every `Connection.__init__` (`_create_ssl_ctx({})`:
    `ssl.create_default_context()`, which loads the system's CA certificates): 20-35 ms each on an
    idle machine, up to 100 on a busy one, three or four times per command, also for a MariaDB that
    offers no TLS and never uses it. The context is the same each time (nothing of the connection
    goes into it), and an `SSLContext` is meant to be shared by many connections (Python's ssl docs).
    PyMySQL only calls `wrap_socket` on it; anything else is asked of the real context.
    """

    def __init__(self, make: Callable[[], ssl.SSLContext]):
        self._make = make
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = self._make()
            return self._context

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.context().wrap_socket(sock, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context(), name)


# PyMySQL's own method (also if this module is imported again after the hook was installed).
_installed = getattr(pymysql.connections.Connection, "_create_ssl_ctx")
_original_create_ssl_ctx: Callable[[Any, Any], Any] = getattr(_installed, "__wrapped__", _installed)
_preferred_tls: _PreferredTls | None = None


def _create_ssl_ctx(conn: Any, sslp: Any) -> Any:
    # `{}` is PREFERRED mode (PyMySQL 1.2 Connection.__init__, no ssl settings given); cdc's own
    # settings (mysql.ssl_ca, ssl_cert) come as an SSLContext and take PyMySQL's path as before.
    if isinstance(sslp, dict) and not sslp and _preferred_tls is not None:
        return _preferred_tls
    return _original_create_ssl_ctx(conn, sslp)


_create_ssl_ctx.__wrapped__ = _original_create_ssl_ctx  # type: ignore[attr-defined]


def install_pymysql_hooks() -> None:
    """Share PREFERRED mode's TLS context (`_PreferredTls`); idempotent."""
    global _preferred_tls
    if _preferred_tls is None:
        # PyMySQL's own code makes it (the method uses nothing of the connection), so the context
        # and its settings are exactly those PyMySQL gives each connection.
        _preferred_tls = _PreferredTls(lambda: _original_create_ssl_ctx(None, {}))
        setattr(pymysql.connections.Connection, "_create_ssl_ctx", _create_ssl_ctx)
