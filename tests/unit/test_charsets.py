"""Text of charsets other than UTF-8 on both row paths (issue 28, cdc/mysql/charsets.py, native/src/charset.rs).

The Python path decodes a value as the library does (row_event.py __read_string: the
column's `character_set_name` as a codec name, which `_exact_charsets` sets to cdc's
codec), then values.py; the native path reads the same bytes with the same table. Both
must write the same document bytes for every character of every table, and the native
path may only decline where they differ (bytes a charset does not take, surrogates).
What the server itself converts the bytes to is checked in
tests/integration/test_charsets.py.
"""

from __future__ import annotations

import codecs
import functools
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import RowsEvent

from cdc.model import Column, ColumnKind
from cdc.mysql import charsets
from cdc.mysql import replication_hooks as hooks
from cdc.native import native
from cdc.rules import rowpath
from cdc.rules.values import ValueOptions, convert_value

needs_native = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")

# "mariadb/latin1", ... ("mysql/gb18030+runs" is gb18030's four-byte runs, no table of its own)
TABLES = sorted(name for name, (_at, count) in charsets._sections().items() if count and not name.endswith(charsets.RUNS))
ALL = TABLES + sorted(charsets.BY_RULE)


def _codec(name: str) -> str:
    kind, _, charset = name.partition("/") if "/" in name else ("mariadb", "", name)
    codec = charsets.codec_name(kind, charset)
    assert codec is not None and charsets.native_name(codec) == name
    return codec


def python_doc(name: str, data: bytes) -> bytes:
    """The Python path: the library's decode (row_event.py __read_string), then values.py and orjson."""
    value = data.decode(RowsEvent.charset_to_encoding(_codec(name)), "strict")
    return orjson.dumps({"c": convert_value(value, Column("c", ColumnKind.STRING), ValueOptions())})


def native_doc(name: str, data: bytes) -> bytes:
    """The native path: a WRITE rows body of one row, one text column with a 4-byte length."""
    table = native.Table([(f"text:{name}", 4, 0, 0, None)])
    plan = native.Plan([(0, '"c"')], "", None, [], ":", [(0, "x", 0)], [(0, "ix", 0)], None, True, 0, "")
    body = b"\x00" + len(data).to_bytes(4, "little") + data
    _rows, actions, _zero = native.decode(table, [plan], 0, body)
    return actions[0][7]


@needs_native
@pytest.mark.parametrize("name", TABLES)
def test_every_character_of_every_table_gives_the_same_document_on_both_paths(name):
    chars = charsets.characters(name)
    assert chars
    # One value per first byte, with every character that starts with it (and ASCII between).
    by_lead: dict[int, list[bytes]] = {}
    for c in chars:
        by_lead.setdefault(c[0], []).append(c)
    for lead, group in by_lead.items():
        data = b"a".join(group)
        assert native_doc(name, data) == python_doc(name, data), f"{name} {lead:#x}"


@needs_native
@pytest.mark.parametrize("name", ["ucs2", "utf16", "utf16le", "utf32"])
def test_unicode_charsets_give_the_same_document_on_both_paths(name):
    text = "".join(map(chr, [*range(0x20, 0x3000, 7), *range(0xE000, 0x10000, 11)]))
    if name != "ucs2":
        text += "".join(map(chr, range(0x10000, 0x110000, 4099)))
    codec = {"ucs2": "utf-16-be", "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be"}[name]
    data = text.encode(codec)
    assert python_doc(name, data) == native_doc(name, data) == orjson.dumps({"c": text})


@needs_native
@given(st.sampled_from(ALL), st.binary(max_size=40))
@settings(max_examples=4000, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_give_the_same_document_or_a_decline(name, data):
    expected = python_doc(name, data)
    try:
        got = native_doc(name, data)
    except native.Decline:
        return  # the Python path does this value: allowed, never wrong
    assert got == expected


_characters = functools.cache(charsets.characters)


def gb18030_code(index: int) -> bytes:
    """The four-byte gb18030 sequence of an index (charsets.gb18030_index's inverse)."""
    b4, rest = index % 10, index // 10
    b3, rest = rest % 126, rest // 126
    return bytes([0x81 + rest // 10, 0x30 + rest % 10, 0x81 + b3, 0x30 + b4])


def test_gb18030_index_and_code_are_inverses():
    assert gb18030_code(0) == b"\x81\x30\x81\x30" and gb18030_code(126 * 12600 - 1) == b"\xfe\x39\xfe\x39"
    assert gb18030_code(charsets.GB18030_SUPPLEMENTARY) == b"\x90\x30\x81\x30"
    for i in range(0, 126 * 12600, 997):
        assert charsets.gb18030_index(gb18030_code(i)) == i


@needs_native
def test_every_four_byte_gb18030_bmp_character_and_a_spread_give_the_same_document_on_both_paths():
    # All of the BMP block (0x81308130..0x8431A439) and the '?' after it, then every 7th index to 0xFE39FE39.
    indexes = [*range(4 * 12600), *range(4 * 12600, 126 * 12600, 7)]
    decode = charsets.decoder("mysql", "gb18030")
    for i in range(0, len(indexes), 1000):
        data = b"a".join(map(gb18030_code, indexes[i:i + 1000]))
        assert native_doc("mysql/gb18030", data) == python_doc("mysql/gb18030", data)
    # Every index is one character: the runs and the rule leave no hole.
    assert all(len(decode(gb18030_code(i))) == 1 for i in indexes)
    assert decode(gb18030_code(39419)) == "\uffff" and decode(gb18030_code(39420)) == "?"


_GB18030_FOUR = st.builds(lambda a, b, c, d: bytes([a, b, c, d]), st.integers(0x81, 0xFE), st.integers(0x30, 0x39),
                          st.integers(0x81, 0xFE), st.integers(0x30, 0x39))


@needs_native
@given(st.lists(st.sampled_from(_characters("mysql/gb18030")) | _GB18030_FOUR | st.builds(gb18030_code, st.integers(
    0, 39419)) | st.builds(gb18030_code, st.integers(charsets.GB18030_SUPPLEMENTARY, charsets.GB18030_SUPPLEMENTARY
                                                     + 0xFFFFF)) | st.binary(min_size=1, max_size=3).filter(bytes.isascii),
                max_size=30))
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_random_gb18030_text_with_four_byte_characters_is_never_declined(parts):
    value = b"".join(parts)
    assert native_doc("mysql/gb18030", value) == python_doc("mysql/gb18030", value)


@needs_native
@given(st.lists(_GB18030_FOUR | st.sampled_from([b"\x81", b"\x30", b"\x81\x30", b"\x81\x30\x81", b"\x80", b"\xff",
                                                 b"\xa1\xa1", b"a", b"\x39"]), max_size=12))
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_gb18030_shaped_random_bytes_give_the_same_document_or_a_decline(parts):
    value = b"".join(parts)
    expected = python_doc("mysql/gb18030", value)
    try:
        got = native_doc("mysql/gb18030", value)
    except native.Decline:
        assert "?" in orjson.loads(expected)["c"]  # the Python path writes '?' for bytes gb18030 does not take
        return
    assert got == expected


@needs_native
@given(st.sampled_from(TABLES), st.data())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_random_text_of_a_charset_is_never_declined(name, data):
    chars = _characters(name)
    parts = data.draw(st.lists(st.sampled_from(chars) | st.binary(min_size=1, max_size=3).filter(bytes.isascii),
                               max_size=30))
    value = b"".join(parts)
    assert native_doc(name, value) == python_doc(name, value)


@needs_native
@pytest.mark.parametrize("name, data", [("ucs2", b"\xd8\x3d\xde\x00"), ("utf32", b"\x00\x00\xd8\x00"),
                                        ("mariadb/gbk", b"\x81\xff"), ("mariadb/gbk", b"a\x81"),
                                        ("utf16", b"\xd8\x3d"), ("utf16le", b"A"),
                                        ("mysql/gb18030", b"\x81\x30\x81"), ("mysql/gb18030", b"\x81\x30\x81\x20"),
                                        ("mysql/gb18030", b"\x81\x30"), ("mysql/gb18030", b"\xff")])
def test_what_the_server_does_not_store_as_utf8_is_declined(name, data):
    with pytest.raises(native.Decline):
        native_doc(name, data)


@pytest.mark.parametrize("name, data, text", [
    # latin1 is cp1252 with its five undefined bytes as C1 controls; Python's cp1252 raises on them.
    ("mariadb/latin1", b"\x80\x81\x8d\x8f\x90\x9d\x9f\xff", "€\x81\x8d\x8f\x90\x9dŸÿ"),
    ("mariadb/ascii", b"a\xe9", "a?"),  # the server converts bytes past ASCII to '?'
    ("mariadb/cp1250", b"\x81", "?"),  # a byte cp1250 leaves undefined
    ("mariadb/sjis", b"\x81\x5f", "\\"),  # Python's shift_jis: U+FF3C
    ("mariadb/gbk", b"\xa1\x40", "?"),  # well-formed, but the server has no character for it
    ("utf16", b"\x00A", "A"),  # big-endian; Python's utf16 without a byte order mark is little-endian
    ("utf32", b"\x00\x00\x00A", "A"),
    ("ucs2", b"\xd8\x3d\xde\x00", "\ufffd\ufffd"),  # units, never a pair; the server makes them non-UTF-8
    ("mariadb/gbk", b"\x81\xffA\x81", "??A?"),  # bytes gbk does not take: '?' each (not stored by the server)
    # gb18030, as MySQL 9.7 converts it; Python's gb18030 codec swaps the first two (GB18030-2000's
    # mapping) and raises on the well-formed four-byte sequences the server stores and converts to '?'.
    ("mysql/gb18030", b"\xa8\xbc", "\u1e3f"),
    ("mysql/gb18030", b"\x81\x35\xf4\x37", "\ue7c7"),
    ("mysql/gb18030", b"\x84\x31\xa5\x30\xe3\x32\x9a\x36\xfe\x39\xfe\x39", "???"),
    ("mysql/gb18030", b"\x81\x30\x81\x30\x84\x31\xa4\x39\x90\x30\x81\x30\xe3\x32\x9a\x35", "\x80\uffff\U00010000\U0010ffff"),
    ("mysql/gb18030", b"\x81\x30\x81 A", "?0? A"),  # ill-formed (the server does not store it): '?' a byte
])
def test_the_python_path_decodes_as_the_server(name, data, text):
    assert data.decode(_codec(name)) == text


def _column(type_code: int, charset: str):
    return SimpleNamespace(type=type_code, character_set_name=charset, name="c", max_length=10)


@pytest.mark.parametrize("dbms, library_name, reader", [
    ("mariadb", "cp1252", "text:mariadb/latin1"),  # the library's name for latin1
    ("mysql", "cp1252", "text:mariadb/latin1"),
    ("mariadb", "gbk", "text:mariadb/gbk"),
    ("mysql", "gbk", "text:mariadb/gbk"),  # MySQL 9.7 converts it as MariaDB does: one table
    ("mysql", "ascii", "text:mysql/ascii"),  # ... but not ascii's bytes past 0x7F, which it does not take
    ("mariadb", "koi8_r", "text:mariadb/koi8r"),
    ("mysql", "utf16", "text:utf16"),
    ("mariadb", "utf8", "text"),
    ("mysql", "gb18030", "text:mysql/gb18030"),  # MySQL's only: a table and four-byte runs
    ("mariadb", "gb18030", None),  # MariaDB 10.11 has no gb18030: the library's codec
])
def test_table_maps_get_cdcs_codec_and_the_native_reader(dbms, library_name, reader):
    column = _column(FIELD_TYPE.VARCHAR, library_name)
    hooks.exact_charsets(SimpleNamespace(_processed=True, columns=[column], dbms=dbms))
    spec = hooks.column_reader(column)
    assert (spec[0] if spec else None) == reader
    if reader is not None and reader != "text":
        codecs.lookup(column.character_set_name)
    enum = _column(FIELD_TYPE.ENUM, library_name)
    hooks.exact_charsets(SimpleNamespace(_processed=True, columns=[enum], dbms=dbms))
    assert enum.character_set_name == library_name  # only text columns are decoded with it
