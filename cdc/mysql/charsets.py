"""Text columns of every charset as the server itself converts them to Unicode (issue 28).

A SELECT gets text in utf8mb4, converted by the server; the binlog has the stored bytes,
which the library decodes with Python's codec of a similar name (PyMySQL maps latin1 to
Python's cp1252, for example). Those differ from the server's own tables: latin1's five
bytes cp1252 leaves undefined (the server maps 0x81 to U+0081, Python raises), bytes a
charset does not define (the server writes '?', Python raises or maps them), charsets
Python has no codec for (the library hands over the bytes), utf16 and utf32 (big-endian
on the server, little-endian in Python without a byte order mark). So cdc decodes them
itself, on both row paths, as the server does:

* the charsets of `charsets.bin`, tables read from the server by
  scripts/charset_tables.py (every single byte, every two-byte sequence and the three-byte
  ones of ujis/eucjpms; docs/row-path.md "Row path" says which servers);
* gb18030 (MySQL's only): its one- and two-byte characters with a table as above, its
  four-byte ones ([81-FE][30-39][81-FE][30-39]) by the ranges of GB18030-2005 as MySQL maps
  them (strings/ctype-gb18030.cc): the BMP ones as runs read from the server (the section
  "mysql/gb18030+runs"), U+10000..U+10FFFF in order from 0x90308130 (a rule the script checks
  against the server), any other four-byte sequence '?' (the server stores it, and converts
  it to one '?');
* ucs2, utf16, utf16le and utf32 by rule: UCS-2, UTF-16 and UTF-32 big-endian, UTF-16
  little-endian. The server stores UCS-2 and UTF-32 code units in the surrogate range and
  converts them to bytes that are not UTF-8; they are written as U+FFFD.

Bytes a charset does not take (which the server does not store: it refuses them, or
writes '?' in their place) become '?', one per byte, as the server's conversion does.
native/src/charset.rs reads the same file and must give the same text (it declines
where the text has U+FFFD or '?' for bytes the charset does not take).
This module imports no library; cdc/mysql/replication_hooks.py hooks it into pymysqlreplication.
"""

from __future__ import annotations

import codecs
import bisect
import functools
import re
import struct
from pathlib import Path
from typing import Callable

DATA = Path(__file__).with_name("charsets.bin")
MAGIC = b"CDCCS1\n"
_ILL, _NEXT = 0xFFFF, 0xD800
# Decoded by rule, the same on MariaDB and MySQL (their manuals: big-endian UCS-2, UTF-16, UTF-32).
BY_RULE = frozenset({"ucs2", "utf16", "utf16le", "utf32"})
_CODEC_PREFIX = "cdc_mysql_"
# gb18030's four-byte characters (scripts/charset_tables.py): a section of runs, and the index
# of 0x90308130, U+10000, from which the supplementary planes go on in order to 0xE3329A35.
RUNS = "+runs"
GB18030_SUPPLEMENTARY = 189000
_FOUR = re.compile(b"[\x81-\xfe][\x30-\x39][\x81-\xfe][\x30-\x39]")


def parse(data: bytes) -> dict[str, tuple[int, int]]:
    """A charsets.bin's sections: name ("mariadb/latin1") -> (offset of its nodes, node count)."""
    if not data.startswith(MAGIC):
        raise ValueError("not a charset table file")
    out, at = {}, len(MAGIC)
    while at < len(data):
        size = data[at]
        name = data[at + 1:at + 1 + size].decode("ascii")
        at += 1 + size
        (count,) = struct.unpack_from("<H", data, at)
        at += 2
        out[name] = (at, count)
        at += count * 512
    return out


@functools.cache
def _sections() -> dict[str, tuple[int, int]]:
    return parse(_data())


@functools.cache
def _data() -> bytes:
    return DATA.read_bytes()


def section(kind: str, charset: str) -> str | None:
    """The table section that decodes `charset` on a server of `kind` ("mariadb"/"mysql"), if there is one.

    A section of no nodes says the server converts the charset as MariaDB does (MySQL's
    all do, but ascii's bytes past 0x7F, which MySQL does not take)."""
    found = _sections().get(f"{kind}/{charset}")
    if found is None:
        return None
    return f"{kind}/{charset}" if found[1] else f"mariadb/{charset}"


def known(kind: str, charset: str) -> bool:
    """cdc decodes this charset as the server does (a table, or a rule)."""
    return charset in BY_RULE or section(kind, charset) is not None


def codec_name(kind: str, charset: str) -> str | None:
    """A Python codec name that decodes `charset` as a server of `kind` does, or None."""
    if not known(kind, charset):
        return None
    _register()
    return f"{_CODEC_PREFIX}{kind}_{charset}"


def native_name(codec: str) -> str | None:
    """What native/src/charset.rs calls `codec_name`'s decoding: a section name ("mariadb/latin1")
    or a rule's name ("utf16"); None for a codec that is not cdc's."""
    if not codec.startswith(_CODEC_PREFIX):
        return None
    kind, _, charset = codec[len(_CODEC_PREFIX):].partition("_")
    return charset if charset in BY_RULE else section(kind, charset)


@functools.cache
def _register() -> None:
    codecs.register(_search)


def _search(name: str) -> codecs.CodecInfo | None:
    if not name.startswith(_CODEC_PREFIX):
        return None
    kind, _, charset = name[len(_CODEC_PREFIX):].partition("_")
    if not known(kind, charset):
        return None
    decode = decoder(kind, charset)

    def codec_decode(data, errors: str = "strict") -> tuple[str, int]:
        return decode(bytes(data)), len(data)

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        raise UnicodeError(f"cdc only decodes {charset}")

    return codecs.CodecInfo(encode, codec_decode, name=name)


@functools.cache
def decoder(kind: str, charset: str) -> Callable[[bytes], str]:
    """bytes -> str as the server converts `charset` (see the module docstring)."""
    if charset in BY_RULE:
        return _RULES[charset]
    name = section(kind, charset)
    if name is None:
        raise LookupError(f"no table for charset {charset} on {kind}")
    if name + RUNS in _sections():
        return _gb18030_decoder(nodes(name), runs(name + RUNS))
    return _table_decoder(nodes(name))


def runs(name: str) -> list[tuple[int, int]]:
    """A "+runs" section's (first four-byte index, code point or 0xFFFF for '?'), in index order."""
    flat = [v for node in nodes(name) for v in node]
    pairs = list(zip(flat[::2], flat[1::2]))
    return [pair for pair in pairs if pair[0] != _ILL]


def nodes(name: str) -> list[tuple[int, ...]]:
    """A section's nodes (scripts/charset_tables.py describes them)."""
    at, count = _sections()[name]
    values = struct.unpack_from(f"<{count * 256}H", _data(), at)
    return [values[i * 256:(i + 1) * 256] for i in range(count)]


def characters(name: str) -> list[bytes]:
    """Every byte sequence a section's table makes a character of, in byte order (for tests)."""
    return list(_characters(nodes(name)))


def _characters(table: list[tuple[int, ...]]) -> dict[bytes, str]:
    out: dict[bytes, str] = {}

    def walk(node: tuple[int, ...], prefix: bytes) -> None:
        for b, v in enumerate(node):
            if _NEXT <= v < 0xE000:
                walk(table[v - _NEXT], prefix + bytes([b]))
            elif v != _ILL:
                out[prefix + bytes([b])] = chr(v)

    walk(table[0], b"")
    return out


def _table_decoder(table: list[tuple[int, ...]]) -> Callable[[bytes], str]:
    root = table[0]
    if all(v != _ILL and not _NEXT <= v < 0xE000 for v in root):
        # A single-byte charset: Python's charmap codec does it in C.
        single = "".join(map(chr, root))
        return lambda data: codecs.charmap_decode(data, "strict", single)[0]
    # A multibyte one: split the bytes into ASCII runs (ASCII is itself in every such
    # charset the server has, which `_tokens` checks) and characters, each looked up whole.
    chars = _characters(table)
    return _by_tokens(table, _tokens(table, chars), chars.get)


def _by_tokens(table: list[tuple[int, ...]], tokens: Callable[[bytes], list[bytes]],
               lookup: Callable[[bytes], str | None], four: Callable[[bytes], str] | None = None) -> Callable[[bytes], str]:
    """A decoder of the bytes `tokens` splits: ASCII runs as they are, characters looked up whole
    (`four`: gb18030's four-byte ones, which the table does not hold), and bytes the charset does
    not take the slow way (`_walk_decode`)."""

    def decode(data: bytes) -> str:
        if data.isascii():
            return data.decode("ascii")
        parts = []
        for token in tokens(data):
            if token[0] < 0x80:
                parts.append(token.decode("ascii"))
                continue
            if four is not None and len(token) == 4:
                parts.append(four(token))
                continue
            char = lookup(token)
            if char is None:
                return _walk_decode(table, data, four)  # bytes the charset does not take
            parts.append(char)
        return "".join(parts)

    return decode


def _tokens(table: list[tuple[int, ...]], chars: dict[bytes, str]) -> Callable[[bytes], list[bytes]]:
    """A regex's findall that splits bytes into ASCII runs and whole characters of `table`."""
    if any(table[0][b] != b for b in range(0x80)):
        raise ValueError("a multibyte charset whose ASCII is not ASCII")
    lengths: dict[int, set[int]] = {}
    for sequence in chars:
        lengths.setdefault(sequence[0], set()).add(len(sequence))
    if any(len(n) > 1 for n in lengths.values()):
        raise ValueError("a charset whose characters of one first byte differ in length")
    alternatives = []
    for length in sorted({n for (n,) in lengths.values()}, reverse=True):
        leads = bytes(b for b, (n,) in lengths.items() if n == length and b >= 0x80)
        if leads:
            alternatives.append(b"[" + re.escape(leads) + b"]" + b"." * (length - 1))
    # Anything else is one byte: ASCII is its own, any other the slow way's.
    pattern = re.compile(b"|".join([b"[\\x00-\\x7f]+", *alternatives, b"."]), re.S)
    return pattern.findall


def _walk_decode(table: list[tuple[int, ...]], data: bytes, four: Callable[[bytes], str] | None = None) -> str:
    """The slow way, also for bytes the charset does not take: '?' for each such byte
    (the server's conversion, my_convert: an ill-formed byte is '?', then the next byte).
    `four`: gb18030's four-byte characters, which the table does not hold."""
    out = []
    i, n = 0, len(data)
    while i < n:
        if four is not None and _FOUR.match(data, i):
            out.append(four(data[i:i + 4]))
            i += 4
            continue
        node, j = table[0], i
        while True:
            v = node[data[j]]
            j += 1
            if _NEXT <= v < 0xE000 and j < n:
                node = table[v - _NEXT]
                continue
            break
        if v == _ILL or _NEXT <= v < 0xE000:
            out.append("?")
            i += 1
        else:
            out.append(chr(v))
            i = j
    return "".join(out)


def gb18030_index(sequence: bytes) -> int:
    """A four-byte gb18030 sequence's place in order from 0x81308130 (GB18030's linear index)."""
    b1, b2, b3, b4 = sequence
    return (b1 - 0x81) * 12600 + (b2 - 0x30) * 1260 + (b3 - 0x81) * 10 + (b4 - 0x30)


def _gb18030_decoder(table: list[tuple[int, ...]], run_list: list[tuple[int, int]]) -> Callable[[bytes], str]:
    chars = _characters(table)  # the one- and two-byte characters
    firsts = [first for first, _point in run_list]

    def four(sequence: bytes) -> str:
        index = gb18030_index(sequence)
        if GB18030_SUPPLEMENTARY <= index <= GB18030_SUPPLEMENTARY + 0xFFFFF:
            return chr(0x10000 + index - GB18030_SUPPLEMENTARY)
        k = bisect.bisect_right(firsts, index) - 1
        first, point = run_list[k]
        # The last run ('?', from 0x8431A530) goes on past the supplementary range.
        return "?" if k < 0 or point == _ILL else chr(point + index - first)

    tokens = re.compile(b"[\x00-\x7f]+|" + _FOUR.pattern + b"|[\x81-\xfe].|.", re.S).findall
    return _by_tokens(table, tokens, chars.get, four)


# ---------------------------------------------------------------------- the Unicode charsets, by rule
def _ill(exc: UnicodeError) -> tuple[str, int]:
    """Code units the server does not store as they are: '?' (or U+FFFD for a UTF-32 surrogate, which it does)."""
    assert isinstance(exc, UnicodeDecodeError)
    unit = exc.object[exc.start:exc.end]
    if exc.encoding == "utf-32-be" and len(unit) == 4 and 0xD800 <= int.from_bytes(unit, "big") < 0xE000:
        return "\ufffd", exc.end
    return "?" * (exc.end - exc.start), exc.end


codecs.register_error("cdc_mysql_ill", _ill)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _ucs2(data: bytes) -> str:
    # Each two bytes a code unit of its own: never a surrogate pair, as UTF-16 would make.
    whole = len(data) & ~1
    text = data[:whole].decode("utf-16-be", "surrogatepass")
    if len(text) * 2 != whole or _SURROGATE.search(text):
        units = struct.unpack(f">{whole // 2}H", data[:whole])
        text = "".join("\ufffd" if 0xD800 <= u < 0xE000 else chr(u) for u in units)
    return text + "?" * (len(data) - whole)


_RULES: dict[str, Callable[[bytes], str]] = {
    "ucs2": _ucs2,
    "utf16": lambda data: data.decode("utf-16-be", "cdc_mysql_ill"),
    "utf16le": lambda data: data.decode("utf-16-le", "cdc_mysql_ill"),
    "utf32": lambda data: data.decode("utf-32-be", "cdc_mysql_ill"),
}
