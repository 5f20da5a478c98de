"""How many rows a snapshot chunk reads (`TableReader.limit`): `chunk_size`, fewer where rows are wide.

A chunk stops near `snapshot.chunk_bytes` of rows, so the chunks held at once stay
bounded when rows are wide: first by the storage engine's average row length, then by
the rows of the last chunk as the server sent them. Over a stand-in `Database`.
"""

from __future__ import annotations

from typing import Any, Sequence

from pymysql.connections import Connection

from cdc.copy.snapshot import TableReader
from cdc.model import BinlogPosition
from cdc.mysql.pymysql_hooks import PacketResult
from cdc.mysql.server import Database, PacketRows
from cdc.rules import Rule


class _Db(Database):
    """A Database without its __init__ (which connects): what TableReader asks, answered here."""

    def __init__(self, avg_row_length: int | None):
        self.avg_row_length = avg_row_length
        self.width = 100  # bytes per row packet the next chunk returns
        self.limits: list[int] = []

    def rows(self, sql: str, args=None) -> list[dict]:
        if "information_schema.COLUMNS" in sql:
            return [{"name": "id", "dtype": "int", "ctype": "int(11)", "cs": None},
                    {"name": "body", "dtype": "longtext", "ctype": "longtext", "cs": "utf8mb4"}]
        if "information_schema.STATISTICS" in sql:
            return [{"idx": "PRIMARY", "col": "id", "nullable": ""}]
        if "information_schema.TABLES" in sql:
            return [{"n": 1_000_000, "width": self.avg_row_length}]
        raise AssertionError(sql)

    def consistent_read_raw(self, sql: str, args: Sequence[Any] = ()) -> tuple[BinlogPosition, PacketRows]:
        limit = int(sql.rsplit("LIMIT ", 1)[1])
        self.limits.append(limit)
        fields = (("id", 3, 63), ("body", 252, 45))
        # No query behind these packets (the result of a connection never opened): nothing
        # here converts a row to Python values.
        result = PacketResult(Connection(defer_connect=True))
        return BinlogPosition("binlog.000001", 4), PacketRows([b"x" * self.width] * limit, fields, result, "utf8")


def _reader(db: _Db, chunk_bytes: int | None) -> TableReader:
    return TableReader(db, 5000, raw=True, chunk_bytes=chunk_bytes)


def test_wide_rows_make_smaller_chunks_and_narrow_ones_stop_at_chunk_size():
    db = _Db(avg_row_length=2000)
    reader = _reader(db, chunk_bytes=1_000_000)
    plan = reader.plan(Rule("s", "t", "ix", ("id",)))
    assert plan.estimate == 1_000_000 and plan.paged
    for width in (100, 10_000, 1, 400_000, 3_000_000):
        db.width = width
        reader.read_chunk(plan, None)
    # The engine's estimate first (1,000,000 / 2,000), then each chunk's own rows: 100 bytes a row
    # is over chunk_size's worth, 10,000 makes 100 rows, 1 byte is chunk_size again; a row over
    # chunk_bytes is still read, one at a time.
    assert db.limits == [500, 5000, 100, 5000, 2]
    assert reader.limit(plan) == 1


def test_without_an_estimate_or_a_byte_bound_a_chunk_is_chunk_size_rows():
    db = _Db(avg_row_length=None)
    reader = _reader(db, chunk_bytes=1_000_000)
    plan = reader.plan(Rule("s", "t", "ix", ("id",)))
    assert reader.limit(plan) == 5000
    db = _Db(avg_row_length=100_000)
    reader = _reader(db, chunk_bytes=None)  # cdc verify's batches
    plan = reader.plan(Rule("s", "t", "ix", ("id",)))
    db.width = 1_000_000
    reader.read_chunk(plan, None)
    reader.read_chunk(plan, [5000])
    assert db.limits == [5000, 5000]
