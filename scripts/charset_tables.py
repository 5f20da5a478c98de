#!/usr/bin/env python3
"""Write cdc/mysql/charsets.bin: how the server itself turns each charset's bytes into Unicode.

    python3 scripts/charset_tables.py [--host H --port P --user U --password W] [--out FILE]

(defaults: the MariaDB of `scripts/servers.py up`, with its admin user). Both row paths read
text columns of these charsets with the tables (cdc/mysql/charsets.py, native/src/charset.rs).
For every charset the server has (except binary, the UTF-8 ones and UCS-2/UTF-16/UTF-32,
which are decoded by rule), it asks the server, for each byte sequence, whether the charset
takes it (`CAST(X'..' AS CHAR CHARACTER SET cs)` keeps it unchanged, and converts it to one
character) and what it converts it to (`CONVERT(... USING utf8mb4)`; where that is '?', whether
a column stores it unchanged, in a temporary table): every single byte,
every two-byte sequence, and for charsets with three-byte characters (ujis, eucjpms) every
three-byte sequence whose first byte starts no two-byte one (trail bytes 0x80-0xFF). A
sequence the server takes but cannot convert becomes '?', as the server writes it.

gb18030 (MySQL's only) also has four-byte characters, [81-FE][30-39][81-FE][30-39], about 1.6
million sequences: its one- and two-byte ones are a table as above, and the four-byte ones are
ranges (GB18030-2005, as MySQL's strings/ctype-gb18030.cc maps them). A four-byte sequence's
index is (b1-0x81)*12600 + (b2-0x30)*1260 + (b3-0x81)*10 + (b4-0x30). Indexes 0..39419
(0x81308130..0x8431A439) are the BMP code points the two-byte ones leave out, in order: the
script asks the server for all of those (and the rest of first bytes 0x81-0x84) and writes
them as runs. Indexes from 189000 (0x90308130) to 189000+0xFFFFF (0xE3329A35) are U+10000..
U+10FFFF in order (`GB18030_SUPPLEMENTARY`): not written, a rule, which the script checks
against the server on a spread of sequences and the ends. Every other four-byte sequence is
stored by the server as it is and converted to one '?' (also checked on the spread).

The file: b"CDCCS1\\n", then per charset: its section name ("mariadb/latin1") as a
length byte and ASCII, a 2-byte node count N (little-endian), then N nodes of 256
little-endian u16 entries, node 0 for a character's first byte. An entry is the
character's code point (all are in the BMP and none is a surrogate), 0xFFFF for a byte
the charset does not take there, or 0xD800 + k: the character goes on in node k.
A MySQL charset whose nodes are MariaDB's is written with no nodes: "the same as
mariadb/<charset>". A section named "<kind>/<charset>+runs" (only "mysql/gb18030+runs") is
not a tree: its nodes, read as one list of u16, are pairs (first index, code point) of the
four-byte runs in index order: the indexes from a run's first to the next run's first
convert to code point + (index - first), or all to '?' where the code point is 0xFFFF; the
last run goes on to the supplementary range, and the pairs are padded with 0xFFFF. Sections of another server kind already in the file are kept, so run
it once per kind, MariaDB first:

    python3 scripts/charset_tables.py                  # MariaDB 10.11 (scripts/servers.py up)
    python3 scripts/charset_tables.py --port 13307     # MySQL 9.7 (scripts/servers.py mysql_up)
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cdc.mysql.charsets import MAGIC, parse  # noqa: E402  (the same format both row paths read)

OUT = ROOT / "cdc" / "mysql" / "charsets.bin"
ILL, NEXT = 0xFFFF, 0xD800
SCRATCH = "cdc_charset_tables"  # a schema for `Probe.stored`'s temporary tables, dropped at the end
# Decoded by rule (cdc/mysql/charsets.py), or not text.
BY_RULE = {"binary", "utf8", "utf8mb3", "utf8mb4", "ucs2", "utf16", "utf16le", "utf32"}


def read_file(path: Path = OUT) -> dict[str, list[list[int]]]:
    """The sections of a charsets.bin: name -> nodes."""
    data = path.read_bytes() if path.exists() else MAGIC
    return {name: [list(struct.unpack_from("<256H", data, at + 512 * i)) for i in range(count)]
            for name, (at, count) in parse(data).items()}


def write_file(sections: dict[str, list[list[int]]], path: Path = OUT) -> None:
    out = bytearray(MAGIC)
    for name in sorted(sections):
        nodes = sections[name]
        out += bytes([len(name)]) + name.encode("ascii") + struct.pack("<H", len(nodes))
        for node in nodes:
            out += struct.pack("<256H", *node)
    path.write_bytes(bytes(out))


class Probe:
    def __init__(self, conn):
        self.cur = conn.cursor()
        self.cur.execute("SET SESSION sql_mode=''")
        # For `stored`: temporary tables in a schema of their own (none of it reaches the binlog's rows).
        self.cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCRATCH}")
        self.cur.execute(f"USE {SCRATCH}")

    def close(self) -> None:
        self.cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")

    def __call__(self, charset: str, sequences: list[bytes]) -> dict[bytes, str | None]:
        """sequence -> what the server converts it to, or None where the charset does not take it."""
        out: dict[bytes, str | None] = {}
        for i in range(0, len(sequences), 200):
            chunk = sequences[i:i + 200]
            exprs = []
            for s in chunk:
                cast = f"CAST(X'{s.hex()}' AS CHAR CHARACTER SET {charset})"
                exprs += [f"HEX({cast})", f"HEX(CONVERT({cast} USING utf8mb4))"]
            self.cur.execute("SELECT " + ",".join(exprs))
            row = self.cur.fetchone()
            for j, s in enumerate(chunk):
                kept, converted = row[2 * j], row[2 * j + 1]
                text = bytes.fromhex(converted).decode("utf-8") if converted is not None else ""
                # MySQL keeps bytes its charset does not take in a CAST, but converts them to nothing
                # (ascii's 0x80) or to a '?' each (eucjpms's 0x8EA0).
                out[s] = text if kept == s.hex().upper() and len(text) == 1 else None
        # A '?' is a character of the charset that Unicode lacks (cp1250's 0x81), or on MySQL also
        # a byte it does not take (eucjpms's 0x80): only the first is stored as it is.
        unsure = [s for s, text in out.items() if text == "?" and s != b"?"]
        stored = self.stored(charset, unsure)
        for s in unsure:
            if s not in stored:
                out[s] = None
        return out

    def stored(self, charset: str, sequences: list[bytes]) -> set[bytes]:
        """The sequences a column of `charset` stores unchanged (without the strict sql_mode)."""
        table = f"probe_{charset}"
        self.cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, "
                         f"c LONGTEXT CHARACTER SET {charset})")
        self.cur.execute(f"DELETE FROM {table}")
        for i in range(0, len(sequences), 500):
            self.cur.execute(f"INSERT INTO {table} VALUES " + ",".join(
                f"({i + j}, CAST(X'{s.hex()}' AS CHAR CHARACTER SET {charset}))"
                for j, s in enumerate(sequences[i:i + 500])))
        self.cur.execute(f"SELECT id, HEX(c) FROM {table}")
        return {sequences[i] for i, stored in self.cur.fetchall() if stored == sequences[i].hex().upper()}


def charset_nodes(probe: Probe, charset: str, maxlen: int) -> list[list[int]]:
    """The charset's nodes (see the module docstring), from the server's answers."""
    singles = probe(charset, [bytes([b]) for b in range(256)])
    root = [ILL] * 256
    nodes = [root]
    for b in range(256):
        text = singles[bytes([b])]
        if text is not None:
            root[b] = one_char(charset, bytes([b]), text)
    if maxlen == 1:
        return nodes
    leads = [b for b in range(256) if root[b] == ILL]
    pairs = probe(charset, [bytes([a, b]) for a in leads for b in range(256)])
    deeper = []
    for a in leads:
        node = [ILL] * 256
        for b in range(256):
            text = pairs[bytes([a, b])]
            if text is not None:
                node[b] = one_char(charset, bytes([a, b]), text)
        if any(v != ILL for v in node):
            root[a] = NEXT + len(nodes)
            nodes.append(node)
        elif maxlen >= 3:
            deeper.append(a)
    for a in deeper:  # ujis, eucjpms: 0x8F and two more bytes
        triples = probe(charset, [bytes([a, b, c]) for b in range(0x80, 256) for c in range(0x80, 256)])
        subs = {}
        for b in range(0x80, 256):
            node = [ILL] * 256
            for c in range(0x80, 256):
                text = triples[bytes([a, b, c])]
                if text is not None:
                    node[c] = one_char(charset, bytes([a, b, c]), text)
            if any(v != ILL for v in node):
                subs[b] = node
        if subs:
            middle = [ILL] * 256
            root[a] = NEXT + len(nodes)
            nodes.append(middle)
            for b, node in subs.items():
                middle[b] = NEXT + len(nodes)
                nodes.append(node)
    if len(nodes) >= 0x800:
        raise SystemExit(f"{charset}: {len(nodes)} nodes do not fit the format")
    return nodes


GB18030_FIRST = bytes.fromhex("81308130")
GB18030_BMP_END = 39420  # 0x8431A439 + 1
GB18030_SUPPLEMENTARY = 189000  # 0x90308130, U+10000


def gb18030_code(index: int) -> bytes:
    """The four-byte gb18030 sequence of an index (the module docstring)."""
    out = []
    for radix in (10, 126, 10):
        index, digit = divmod(index, radix)
        out.append(digit)
    return bytes([0x81 + index, 0x30 + out[2], 0x81 + out[1], 0x30 + out[0]])


def gb18030_runs(probe: Probe) -> list[tuple[int, int]]:
    """gb18030's four-byte runs (first index, code point or ILL for '?') from the server; checks the rest."""
    first_bytes_81_84 = list(range(4 * 12600))
    answers = probe("gb18030", [gb18030_code(i) for i in first_bytes_81_84])
    runs: list[tuple[int, int]] = []
    for i in first_bytes_81_84:
        text = answers[gb18030_code(i)]
        if text is None:
            raise SystemExit(f"gb18030: the server does not take {gb18030_code(i).hex()}")
        if text == "?":
            point = ILL
        elif len(text) == 1 and ord(text) < 0xFFFF and not 0xD800 <= ord(text) < 0xE000:
            point = ord(text)
        elif text == "\uffff" and runs and runs[-1][1] + i - runs[-1][0] == 0xFFFF:
            point = 0xFFFF  # the last BMP code point (0x8431A439), inside a run: no run starts with it
        else:
            raise SystemExit(f"gb18030: {gb18030_code(i).hex()} converts to {text!r}, which the format cannot hold")
        if runs and point == (ILL if runs[-1][1] == ILL else runs[-1][1] + i - runs[-1][0]):
            continue
        runs.append((i, point))
    if runs[-1] != (GB18030_BMP_END, ILL):
        raise SystemExit(f"gb18030: the four-byte BMP codes end at {runs[-1]}, not at 0x8431A439")
    # The rest: U+10000.. from 0x90308130 by rule, '?' around it; asked on a spread and the ends.
    last = GB18030_SUPPLEMENTARY + 0xFFFFF
    spread = sorted({*range(GB18030_BMP_END, 126 * 12600, 89), *range(GB18030_SUPPLEMENTARY, GB18030_SUPPLEMENTARY + 2000),
                     *range(last - 2000, last + 3), GB18030_SUPPLEMENTARY - 1, 126 * 12600 - 1})
    answers = probe("gb18030", [gb18030_code(i) for i in spread])
    for i in spread:
        expected = chr(0x10000 + i - GB18030_SUPPLEMENTARY) if GB18030_SUPPLEMENTARY <= i <= last else "?"
        if answers[gb18030_code(i)] != expected:
            raise SystemExit(f"gb18030: {gb18030_code(i).hex()} converts to {answers[gb18030_code(i)]!r}, "
                             f"not {expected!r} as the rule says")
    return runs


def runs_nodes(runs: list[tuple[int, int]]) -> list[list[int]]:
    flat = [v for run in runs for v in run]
    if any(v > 0xFFFF for v in flat):
        raise SystemExit("gb18030: a run that does not fit the format")
    flat += [ILL] * (-len(flat) % 256)
    return [flat[i:i + 256] for i in range(0, len(flat), 256)]


def one_char(charset: str, sequence: bytes, text: str) -> int:
    if len(text) != 1 or ord(text) > 0xFFFF or 0xD800 <= ord(text) < 0xE000 or ord(text) == ILL:
        raise SystemExit(f"{charset}: {sequence.hex()} converts to {text!r}, which the format cannot hold")
    return ord(text)


def main() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import servers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=servers.MARIADB_PORT)
    parser.add_argument("--user", default=servers.ADMIN_USER)
    parser.add_argument("--password", default=servers.ADMIN_PASSWORD)
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    conn = pymysql.connect(host=args.host, port=args.port, user=args.user, password=args.password,
                           charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version = cur.fetchone()[0]
        cur.execute("SHOW CHARACTER SET")
        charsets = [(row[0], int(row[3])) for row in cur.fetchall()]
    kind = "mariadb" if "mariadb" in version.lower() else "mysql"
    sections = {name: nodes for name, nodes in read_file(args.out).items() if not name.startswith(kind + "/")}
    probe = Probe(conn)
    for charset, maxlen in sorted(charsets):
        if charset in BY_RULE:
            continue
        if maxlen > 3 and charset != "gb18030":
            print(f"{kind} {version} {charset}: skipped (characters of up to {maxlen} bytes)", file=sys.stderr)
            continue
        if maxlen > 3:  # gb18030 (MySQL): its four-byte characters as runs and a rule
            runs = gb18030_runs(probe)
            sections[f"{kind}/{charset}+runs"] = runs_nodes(runs)
            print(f"{kind} {version} {charset}: {len(runs)} four-byte runs", file=sys.stderr)
        nodes = charset_nodes(probe, charset, 2 if maxlen > 3 else maxlen)
        if kind == "mysql" and sections.get(f"mariadb/{charset}") == nodes:
            sections[f"mysql/{charset}"] = []  # converts exactly as MariaDB does: no copy
            print(f"{kind} {version} {charset}: the same as mariadb/{charset}", file=sys.stderr)
            continue
        sections[f"{kind}/{charset}"] = nodes
        print(f"{kind} {version} {charset}: {len(nodes)} node(s)", file=sys.stderr)
    probe.close()
    write_file(sections, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
