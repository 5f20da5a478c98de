"""`PacketResult._read_rowdata_packet` (cdc/mysql/pymysql_hooks.py): a result's row packets read as PyMySQL reads them (issue 13).

Both readers get the same bytes on a stand-in connection (a real PyMySQL
`Connection` without a socket: its `_rfile` is a byte stream), and must give the
same rows, the same end-of-rows state and the same errors.
"""

from __future__ import annotations

import io
from typing import Any

import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.mysql import pymysql_hooks
from cdc.mysql.pymysql_hooks import PacketResult


class _Socket:
    def settimeout(self, timeout):
        pass


def _connection(stream: bytes, seq: int = 2, buffer: int = io.DEFAULT_BUFFER_SIZE) -> Any:
    """A PyMySQL Connection with the private state the readers use (not in PyMySQL's stubs: typed Any)."""
    conn: Any = pymysql.connections.Connection.__new__(pymysql.connections.Connection)
    conn._rfile = io.BufferedReader(io.BytesIO(stream), buffer)
    conn._sock = _Socket()
    conn._read_timeout = None
    conn._current_timeout = None
    conn._next_seq_id = seq
    conn.encoding = "utf8"
    conn._result = None
    conn.closed = []

    def force_close():
        conn.closed.append(True)

    conn._force_close = force_close
    return conn


def _packets(payloads: list[bytes], seq: int = 2) -> bytes:
    out = b""
    for payload in payloads:
        while True:  # a payload of 16 MB or more goes in several packets
            part, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
            out += len(part).to_bytes(3, "little") + bytes([seq]) + part
            seq = (seq + 1) & 0xFF
            if len(part) < 0xFFFFFF:
                break
    return out


EOF_PACKET = b"\xfe\x03\x00\x02\x00"  # 3 warnings, SERVER_STATUS_AUTOCOMMIT
ERROR_PACKET = b"\xff\x48\x04#HY000Query execution was interrupted"


def _read(reader, stream: bytes, seq: int = 2, buffer: int = io.DEFAULT_BUFFER_SIZE):
    conn = _connection(stream, seq, buffer)
    result = PacketResult.__new__(PacketResult)
    result.connection = conn
    result.unbuffered_active = False
    try:
        reader(result)
    except pymysql.err.MySQLError as exc:
        return ("error", type(exc), exc.args, conn._next_seq_id, bool(conn.closed))
    return (result.rows, result.affected_rows, result.warning_count, result.has_next, result.connection,
            conn._next_seq_id, conn._rfile.read())


# PyMySQL's own reader of a result's rows (private, not in its stubs).
_PYMYSQL_READER = getattr(pymysql.connections.MySQLResult, "_read_rowdata_packet")


def _both(stream: bytes, seq: int = 2, buffer: int = io.DEFAULT_BUFFER_SIZE):
    ours = _read(PacketResult._read_rowdata_packet, stream, seq, buffer)
    theirs = _read(_PYMYSQL_READER, stream, seq)
    assert ours == theirs
    return ours


_ROW = st.binary(min_size=1, max_size=300).filter(lambda b: b[0] != 0xFF and not (b[0] == 0xFE and len(b) < 9))


@pytest.fixture(params=["native framing", "python"])
def framing(request, monkeypatch):
    """With the row packets framed in Rust (cdc._native.frame_rows), and without the native module."""
    if request.param == "python":
        monkeypatch.setattr(pymysql_hooks, "_frame_rows", None)
    elif pymysql_hooks._frame_rows is None:
        pytest.skip("cdc was built without its native module")
    return request.param


@given(st.lists(_ROW, max_size=20), st.integers(0, 255), st.binary(max_size=20), st.sampled_from([1, 5, 64, 300, 8192]))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_rows_then_the_end_as_pymysql_reads_them(framing, rows, seq, after, buffer):
    # Small buffers cut packets anywhere: the framing takes the whole ones and leaves the rest.
    rows_read, count, warnings, has_next, connection, next_seq, rest = _both(
        _packets([*rows, EOF_PACKET], seq) + after, seq, buffer)
    assert list(rows_read) == rows and count == len(rows) and warnings == 3 and connection is None
    assert next_seq == (seq + len(rows) + 1) & 0xFF and rest == after  # nothing read past the end


def test_a_row_of_16_mb_and_more_in_several_packets(framing):
    big = b"\xfe" + b"x" * (0xFFFFFF + 9)  # the bytes do not matter here, only their length
    exact = b"\x01y" + b"z" * (0xFFFFFF - 2)  # exactly 16 MB - 1: an empty packet follows
    rows, *_ = _both(_packets([b"\x011", big, exact, b"\x012", EOF_PACKET]))
    assert rows == (b"\x011", big, exact, b"\x012")


def test_an_error_in_the_middle_of_the_rows(framing):
    result = _both(_packets([b"\x011", ERROR_PACKET]))
    assert result[:3] == ("error", pymysql.err.OperationalError, (1096, "Query execution was interrupted"))


@pytest.mark.parametrize("stream", [
    _packets([b"\x011"]) + b"\x05\x00",  # cut in a header
    _packets([b"\x011"]) + b"\x05\x00\x00\x03ab",  # cut in a payload
    _packets([b"\x011"]),  # no end at all
])
def test_a_connection_lost_mid_packet(framing, stream):
    result = _both(stream)
    assert result[:2] == ("error", pymysql.err.OperationalError) and result[2][0] == 2013 and result[4]


@pytest.mark.parametrize("got", [0, 7])
def test_a_packet_out_of_sequence(framing, got):
    stream = _packets([b"\x011"]) + b"\x02\x00\x00" + bytes([got]) + b"\x012"
    result = _both(stream)
    assert result[1] == (pymysql.err.OperationalError if got == 0 else pymysql.err.InternalError) and result[4]


def test_the_native_framing_takes_the_rows_in_the_buffer(monkeypatch):
    if pymysql_hooks._frame_rows is None:
        pytest.skip("cdc was built without its native module")
    calls: list[int] = []

    def counted(buf, seq, rows):
        taken, seq = real(buf, seq, rows)
        calls.append(taken)
        return taken, seq

    real = pymysql_hooks._frame_rows
    monkeypatch.setattr(pymysql_hooks, "_frame_rows", counted)
    rows = [b"\x03abc"] * 1000
    assert list(_both(_packets([*rows, EOF_PACKET]))[0]) == rows
    # 1,000 rows of 8 bytes in buffers of 8 KB: a few calls take nearly all; Python reads the packets cut
    # at a buffer's end and the end of the rows, one each.
    assert sum(calls) >= 8 * (1000 - len(calls)) and len(calls) < 10
