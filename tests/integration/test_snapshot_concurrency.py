"""Snapshot concurrency on a real MariaDB: a chunk read again covers exactly its key range."""

from __future__ import annotations

from cdc.config import MysqlConfig
from cdc.copy.snapshot import TableReader, last_key
from cdc.mysql.server import Database
from cdc.rules import Rule


def test_a_chunk_read_again_covers_exactly_its_key_range(servers, db, database):
    # While later chunks are in flight, a chunk past its write window is read again
    # (tombstone guard). Read by "after, LIMIT n" it would end earlier once rows were
    # inserted inside it, and the rows between its new and old end would fall between
    # chunks; read_range re-reads (after, upto] whatever was inserted since.
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)",
               "INSERT INTO t SELECT seq, seq FROM seq_1_to_99_step_2")  # odd ids 1..99
    conn = Database(MysqlConfig(host=servers.mariadb_host, port=servers.mariadb_port, user=servers.admin_user,
                                password=servers.admin_password, server_id=1))
    try:
        reader = TableReader(conn, chunk_size=10)
        plan = reader.plan(Rule(database, "t", "t", ("id",), source="test"))
        _, first = reader.read_chunk(plan, None)
        _, second = reader.read_chunk(plan, last_key(plan, first))
        assert [r[0] for r in second] == list(range(21, 40, 2))
        db.execute("INSERT INTO t VALUES (24, 0), (26, 0), (38, 0), (40, 0)")  # inside the second chunk, and after it
        _, again = reader.read_range(plan, last_key(plan, first), last_key(plan, second))
        assert [r[0] for r in again] == sorted(list(range(21, 40, 2)) + [24, 26, 38])
        _, from_start = reader.read_range(plan, None, last_key(plan, first))
        assert [r[0] for r in from_start] == list(range(1, 20, 2))
    finally:
        conn.close()
