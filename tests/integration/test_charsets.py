"""Text of every charset the server has, on both row paths, against the server's own conversion (issue 28).

For each charset of MariaDB (and MySQL) that cdc decodes (cdc/mysql/charsets.py) a table stores, row by
row, every character of the charset's table: all 256 single bytes, every two-byte
character (one row per first byte), every three-byte one (one row per first two bytes),
and for ucs2/utf16/utf16le/utf32 the whole BMP and a spread of the other planes. The same
binlog is read through the Python path and the native one, and each document's text must
be what `SELECT CONVERT(c USING utf8mb4)` gives for that row: the server is the reference.
MySQL's gb18030 also has four-byte characters: all of the BMP ones, a spread of the
supplementary ones and of those the server stores as '?' are checked the same way
(`test_gb18030_four_byte_characters_on_mysql`).
"""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest
from harness import CdcSetup, binlog_position, both_sources, mysql_only, wait_until_equal

from cdc.model import BinlogPosition
from cdc.mysql import charsets
from cdc.rules import rowpath

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")]

from test_native_rowpath import _read, resolved  # noqa: E402


def _rules(servers, path: Path, database: str, tables: list[str]):
    """One rule per table, checked against the server as at start-up (the native plan needs that)."""
    path.write_text("rules:\n" + "".join(f"  - {{schema: {database}, table: {t}, index: {database}-{t}}}\n"
                                          for t in tables))
    return resolved(servers, path)


def _values(name: str) -> list[bytes]:
    """The row values that hold every character of a table section, or a spread of a Unicode charset."""
    if name in charsets.BY_RULE:
        points = [c for c in range(0x10000) if not 0xD800 <= c < 0xE000]
        if name != "ucs2":
            points += list(range(0x10000, 0x110000, 257))
        codec = {"ucs2": "utf-16-be", "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be"}[name]
        return ["".join(map(chr, points[i:i + 512])).encode(codec) for i in range(0, len(points), 512)]
    groups: dict[bytes, list[bytes]] = {}
    for char in charsets.characters(name):
        groups.setdefault(char[:-1], []).append(char)
    return [b"".join(group) for _prefix, group in sorted(groups.items())]


def _charsets(db) -> dict[str, str]:
    """The server's charsets that cdc decodes: charset -> its table section or rule."""
    have = {row[0] for row in db.execute("SHOW CHARACTER SET")}
    out = {}
    for charset in sorted(have):
        codec = charsets.codec_name("mysql" if db.mysql else "mariadb", charset)
        if codec is not None:
            name = charsets.native_name(codec)
            assert name is not None, codec  # codec_name names cdc's own decodings only
            out[charset] = name
    return out


@both_sources
def test_both_row_paths_decode_every_charset_as_the_server_converts_it(source_servers, db, database, tmp_path):
    servers = source_servers
    found = _charsets(db)
    # Every charset MariaDB 10.11 has, but binary and the UTF-8 ones (read as before); the
    # same on MySQL 9.7, which also has gb18030 (its one- and two-byte characters here, the
    # four-byte ones in test_gb18030_four_byte_characters_on_mysql).
    assert ("gb18030" in found) == db.mysql and len(found) == 37 + db.mysql and {"latin1", "gbk", "big5", "sjis", "cp932", "euckr", "gb2312", "ujis", "ascii",
                                 "ucs2", "utf16", "utf16le", "utf32"} <= set(found)
    values: dict[str, list[bytes]] = {}
    for charset, name in found.items():
        db.execute(f"CREATE TABLE t_{charset} (id INT PRIMARY KEY, c LONGTEXT CHARACTER SET {charset} NOT NULL)")
        values[charset] = _values(name)
    rules = _rules(servers, tmp_path / "rules.yml", database, [f"t_{charset}" for charset in found])
    start = BinlogPosition(*binlog_position(db))
    for charset, rows in values.items():
        for i, value in enumerate(rows):
            # CAST keeps bytes the charset takes and the strict sql_mode refuses any other. MySQL
            # also refuses characters it cannot convert (cp1250's 0x81, gbk's 0xA140 ...: '?' on
            # both servers), which it stores without the strict mode.
            insert = f"INSERT INTO t_{charset} VALUES (%s, CAST(%s AS CHAR CHARACTER SET {charset}))"
            try:
                db.execute(insert, args=(i, value))
            except pymysql.err.IntegrityError:
                assert db.mysql, (charset, i)
                db.execute("SET SESSION sql_mode = ''")
                db.execute(insert, args=(i, value))
                db.execute("SET SESSION sql_mode = DEFAULT")
    # ... and stores exactly these bytes
    for charset, rows in values.items():
        stored = dict(db.execute(f"SELECT id, HEX(c) FROM t_{charset}"))
        assert [bytes.fromhex(stored[i]) for i in range(len(rows))] == rows, charset
    end = BinlogPosition(*binlog_position(db))
    tables = tuple(f"t_{charset}" for charset in found)
    _, python, _ = _read(servers, database, rules, start, end, native=False, tables=tables)
    _, native, path = _read(servers, database, rules, start, end, native=True, tables=tables)
    checked = 0
    for charset in found:
        server = {i: bytes.fromhex(h).decode("utf-8")
                  for i, h in db.execute(f"SELECT id, HEX(CONVERT(c USING utf8mb4)) FROM t_{charset}")}
        for actions in (python, native):
            docs = {int(a.doc_id): a.doc["c"] for a in actions if a.table == f"t_{charset}"}
            assert docs.keys() == server.keys(), charset
            for i, text in server.items():
                assert docs[i] == text, f"{charset} row {i}: {values[charset][i][:16].hex()}..."
                checked += len(text)
        assert path.tables[f"{database}.t_{charset}"] == "native"
        assert {type(a) for a in native if a.table == f"t_{charset}"} == {rowpath.NativeAction}, charset
    assert checked > 2 * 250_000


def test_surrogates_the_server_converts_to_bytes_that_are_not_utf8(servers, db, database, tmp_path):
    """ucs2 and utf32 store code units in the surrogate range; the server converts them to CESU-style bytes,
    which are not UTF-8 (nor JSON): the Python path writes U+FFFD, the native one declines such an event."""
    db.execute("CREATE TABLE u2 (id INT PRIMARY KEY, c TEXT CHARACTER SET ucs2, d TEXT CHARACTER SET utf32)")
    rules = _rules(servers, tmp_path / "rules.yml", database, ["u2"])
    start = BinlogPosition(*binlog_position(db))
    db.execute("INSERT INTO u2 VALUES (1, CAST(X'0041D83DDE00' AS CHAR CHARACTER SET ucs2), "
               "CAST(X'0000DC00' AS CHAR CHARACTER SET utf32)), (2, 'ok', 'ok')")
    [(c, d)] = db.execute("SELECT HEX(CONVERT(c USING utf8mb4)), HEX(CONVERT(d USING utf8mb4)) FROM u2 WHERE id = 1")
    assert (c, d) == ("41EDA0BDEDB880", "EDB080")
    end = BinlogPosition(*binlog_position(db))
    for native in (False, True):
        _, actions, _ = _read(servers, database, rules, start, end, native=native, tables=("u2",))
        assert {a.doc_id: a.doc for a in actions} == {"1": {"id": 1, "c": "A\ufffd\ufffd", "d": "\ufffd"},
                                                     "2": {"id": 2, "c": "ok", "d": "ok"}}
        assert all(type(a) is not rowpath.NativeAction for a in actions)  # one event: declined whole


@both_sources
def test_latin1_and_gbk_tables_run_native_and_end_equal_in_elasticsearch(source_servers, db, database, es,
                                                                          index_prefix, tmp_path):
    """A new user's tables on a server whose default charset is latin1 (MariaDB's upstream default), and gbk."""
    servers = source_servers
    db.execute(f"ALTER DATABASE `{database}` CHARACTER SET latin1",
               "CREATE TABLE l1 (id INT PRIMARY KEY, sku VARCHAR(20), note TEXT, n INT)",
               "CREATE TABLE g1 (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET gbk, note TEXT CHARACTER SET gbk)")
    setup = CdcSetup(tmp_path, servers, [
        {"schema": database, "table": "l1", "index": f"{index_prefix}-l1"},
        {"schema": database, "table": "g1", "index": f"{index_prefix}-g1"}])
    code, report = setup.command("check")
    assert code == 0, report
    assert f"  {database}.g1: native\n  {database}.l1: native\n" in report
    proc = setup.run()
    try:
        every_latin1 = bytes(range(256)).hex()  # 0x81 0x8D 0x8F 0x90 0x9D too
        gbk = b"".join(charsets.characters("mariadb/gbk")[::97]).hex()
        db.execute("INSERT INTO l1 VALUES (1, 'TEA-01', 'caf\u00e9 \u20ac', 1), (2, 'x', '', 2)",
                   f"INSERT INTO l1 VALUES (3, _latin1 X'8081', _latin1 X'{every_latin1}', 3)",
                   "INSERT INTO g1 VALUES (1, '\u4e2d\u6587', '\u6c49\u5b57 gbk'), (2, 'a', NULL)",
                   f"INSERT INTO g1 VALUES (3, _gbk X'8140A1A1', _gbk X'{gbk}')",
                   "UPDATE l1 SET note = CONCAT(note, ' \u00fc') WHERE id = 1", "DELETE FROM l1 WHERE id = 2",
                   "UPDATE g1 SET name = '\u5b57' WHERE id = 2")
        # The index ends equal to what a SELECT gives (the server's conversion to utf8mb4).
        for table in ("l1", "g1"):
            wait_until_equal(db, es, table, f"{index_prefix}-{table}", ["id"])
            assert f"row path for {database}.{table}: native" in proc.text()
        assert f"{database}.l1: python" not in proc.text() and f"{database}.g1: python" not in proc.text()
    finally:
        assert proc.stop() == 0


def _gb18030_code(index: int) -> bytes:
    """The four-byte gb18030 sequence of an index (charsets.gb18030_index)."""
    b4, rest = index % 10, index // 10
    b3, rest = rest % 126, rest // 126
    return bytes([0x81 + rest // 10, 0x30 + rest % 10, 0x81 + b3, 0x30 + b4])


@mysql_only
def test_gb18030_four_byte_characters_on_mysql(source_servers, db, database, es, index_prefix, tmp_path):
    """Every four-byte gb18030 character of the BMP, a spread of the supplementary ones and of the
    well-formed ones the server converts to '?', on both row paths, against the server's conversion."""
    servers = source_servers
    supplementary, last = charsets.GB18030_SUPPLEMENTARY, charsets.GB18030_SUPPLEMENTARY + 0xFFFFF
    indexes = [*range(39420),  # 0x81308130..0x8431A439: the BMP code points the two-byte codes leave out
               *range(39420, supplementary, 7), *range(last + 1, 126 * 12600, 7),  # stored, converted to '?'
               *range(supplementary, last + 1, 61), last, 126 * 12600 - 1]
    codes = [_gb18030_code(i) for i in indexes]
    rows = [b"".join(codes[i:i + 1000]) for i in range(0, len(codes), 1000)]
    # ... and mixed with ASCII and two-byte characters
    two = charsets.characters("mysql/gb18030")
    rows.append(b"".join(two[i] + b"x" + codes[i * 37 % len(codes)] for i in range(0, len(two), 5)))
    db.execute("CREATE TABLE g4 (id INT PRIMARY KEY, c LONGTEXT CHARACTER SET gb18030 NOT NULL)")
    rules = _rules(servers, tmp_path / "rules.yml", database, ["g4"])
    start = BinlogPosition(*binlog_position(db))
    # Without the strict sql_mode: MySQL refuses the '?' ones in it (as cp1250's 0x81), and stores them without.
    db.execute("SET SESSION sql_mode = ''")
    for i, value in enumerate(rows):
        db.execute("INSERT INTO g4 VALUES (%s, CAST(%s AS CHAR CHARACTER SET gb18030))", args=(i, value))
    # Ill-formed bytes never reach the binlog: the server refuses a literal of them, and stores only
    # what comes before them from a binary string (warning 1366), so the native path declines them.
    for i, (value, kept) in enumerate([(b"a\x81\x30\x81", b"a"), (b"\x81\x30\x81\x30\x81\x30", b"\x81\x30\x81\x30"),
                                       (b"\xa1\xa1\x80", b"\xa1\xa1"), (b"\xff", b""), (b"\x81\x30\x81\x20", b"")],
                                      start=len(rows)):
        db.execute("INSERT INTO g4 VALUES (%s, %s)", args=(i, value))
        rows.append(kept)
        with pytest.raises(pymysql.err.OperationalError, match="1300"):
            db.execute(f"SELECT _gb18030 X'{value.hex()}'")
    db.execute("SET SESSION sql_mode = DEFAULT")
    stored = dict(db.execute("SELECT id, HEX(c) FROM g4"))
    assert [bytes.fromhex(stored[i]) for i in range(len(rows))] == rows
    end = BinlogPosition(*binlog_position(db))
    server = {i: bytes.fromhex(h).decode("utf-8") for i, h in db.execute("SELECT id, HEX(CONVERT(c USING utf8mb4)) FROM g4")}
    assert server[0][:3] == "\x80\x81\x82" and "\U0010ffff" in server[len(rows) - 7] and "?" in server[40]
    _, python, _ = _read(servers, database, rules, start, end, native=False, tables=("g4",))
    _, native, path = _read(servers, database, rules, start, end, native=True, tables=("g4",))
    for actions in (python, native):
        docs = {int(a.doc_id): a.doc["c"] for a in actions}
        assert docs.keys() == server.keys()
        for i, text in server.items():
            assert docs[i] == text, f"row {i}: {rows[i][:16].hex()}..."
    assert path.tables[f"{database}.g4"] == "native"
    assert {type(a) for a in native} == {rowpath.NativeAction}
    # `cdc check` says so too.
    (tmp_path / "check").mkdir()
    setup = CdcSetup(tmp_path / "check", servers, [{"schema": database, "table": "g4", "index": f"{index_prefix}-g4"}])
    code, report = setup.command("check")
    assert code == 0, report
    assert f"  {database}.g4: native\n" in report
