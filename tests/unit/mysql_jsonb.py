"""A test-only encoder of MySQL's binary JSON (mysql-server sql-common/json_binary.h).

    doc       ::= type value
    type      ::= 0x00 small object | 0x01 large object | 0x02 small array | 0x03 large array
                | 0x04 literal | 0x05 int16 | 0x06 uint16 | 0x07 int32 | 0x08 uint32
                | 0x09 int64 | 0x0a uint64 | 0x0b double | 0x0c string | 0x0f opaque
    object    ::= count size key-entry* value-entry* key* value*
    array     ::= count size value-entry* value*
    count, size, key-offset, value offset ::= uint16 (small) | uint32 (large), little-endian
    key-entry ::= key-offset key-length(uint16)
    value-entry ::= type offset-or-inlined-value   (literal, int16, uint16 inlined; in large
                containers int32 and uint32 too; offsets count from the container's start)
    string    ::= data-length utf8mb4-data
    opaque    ::= field-type(uint8) data-length binary-data
    data-length ::= 7 bits a byte, low first, the high bit set while more bytes follow

Keys are sorted by length, then bytes, as MySQL writes them. `encode` takes Python values:
None, bool, int, float, str, `Raw` (a string's bytes as they are), list, dict, and `Opaque`
(see `decimal`, `packed_datetime` and `packed_time` for the bodies MySQL writes). `rnd`
chooses what MySQL may choose either way in a test: the integer type that holds a value,
and large containers where small ones would do.
"""

from __future__ import annotations

import random
import struct
from typing import Any, NamedTuple


class Opaque(NamedTuple):
    field_type: int  # enum_field_types: 246 NEWDECIMAL, 10 DATE, 11 TIME, 12 DATETIME, 15 VARCHAR, ...
    data: bytes


class Raw(NamedTuple):
    data: bytes  # a string's bytes, not necessarily UTF-8


LITERAL, INT16, UINT16, INT32, UINT32, INT64, UINT64, DOUBLE, STRING, OPAQUE = 4, 5, 6, 7, 8, 9, 10, 11, 12, 15
_INTS = [(INT16, "<h", -(2**15), 2**15 - 1), (UINT16, "<H", 0, 2**16 - 1), (INT32, "<i", -(2**31), 2**31 - 1),
         (UINT32, "<I", 0, 2**32 - 1), (INT64, "<q", -(2**63), 2**63 - 1), (UINT64, "<Q", 0, 2**64 - 1)]
_DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]


def var_len(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode(value: Any, rnd: random.Random | None = None) -> bytes:
    """The bytes of a JSON column's value: its type, then the value."""
    kind, body = _value(value, rnd or random.Random(0))
    return bytes([kind]) + body


def _value(v: Any, rnd: random.Random) -> tuple[int, bytes]:
    if v is None or isinstance(v, bool):
        return LITERAL, bytes([{None: 0, True: 1, False: 2}[v]])
    if isinstance(v, int):
        kind, fmt, _, _ = rnd.choice([t for t in _INTS if t[2] <= v <= t[3]])
        return kind, struct.pack(fmt, v)
    if isinstance(v, float):
        return DOUBLE, struct.pack("<d", v)
    if isinstance(v, (str, Raw)):
        data = v.encode() if isinstance(v, str) else v.data
        return STRING, var_len(len(data)) + data
    if isinstance(v, Opaque):
        return OPAQUE, bytes([v.field_type]) + var_len(len(v.data)) + v.data
    if isinstance(v, list):
        return _container([(None, x) for x in v], rnd, is_object=False)
    if isinstance(v, dict):
        items = sorted(((k.encode(), x) for k, x in v.items()), key=lambda kv: (len(kv[0]), kv[0]))
        return _container(items, rnd, is_object=True)
    raise TypeError(f"cannot encode {type(v).__name__}")


def _container(items: list, rnd: random.Random, is_object: bool) -> tuple[int, bytes]:
    values = [_value(x, rnd) for _, x in items]
    for large in ([True] if rnd.random() < 0.3 else [False, True]):
        body = _layout(items, values, large, is_object)
        if body is not None:
            return (1 if large else 0) + (0 if is_object else 2), body
    raise ValueError("too big for a large container")


def _layout(items: list, values: list, large: bool, is_object: bool) -> bytes | None:
    """The container's bytes, or None when an offset does not fit its size (small: 64 KB)."""
    width, fmt = (4, "<I") if large else (2, "<H")
    limit = 2 ** (8 * width)
    count = len(items)
    header = 2 * width + count * (width + 2 if is_object else 0) + count * (1 + width)
    key_entries, value_entries, tail = b"", b"", b""
    if is_object:
        for key, _ in items:
            if header + len(tail) >= limit:
                return None
            key_entries += struct.pack(fmt, header + len(tail)) + struct.pack("<H", len(key))
            tail += key
    for kind, body in values:
        if kind in (LITERAL, INT16, UINT16) or large and kind in (INT32, UINT32):
            value_entries += bytes([kind]) + body.ljust(width, b"\0")
            continue
        if header + len(tail) >= limit:
            return None
        value_entries += bytes([kind]) + struct.pack(fmt, header + len(tail))
        tail += body
    size = header + len(tail)
    if size >= limit:
        return None
    return struct.pack(fmt, count) + struct.pack(fmt, size) + key_entries + value_entries + tail


def decimal(digits: str, precision: int, scale: int) -> Opaque:
    """DECIMAL(precision, scale) of a text such as "-12.50" (MySQL's decimal2bin, as an opaque value)."""
    negative = digits.startswith("-")
    whole, _, frac = digits.lstrip("-").partition(".")
    whole, frac = whole.lstrip("0").rjust(precision - scale, "0"), frac.ljust(scale, "0")
    assert len(whole) == precision - scale and len(frac) == scale, (digits, precision, scale)
    out = bytearray()
    lead = len(whole) % 9
    groups = ([whole[:lead]] if lead else []) + [whole[i:i + 9] for i in range(lead, len(whole), 9)]
    groups += [frac[i:i + 9] for i in range(0, len(frac), 9)]
    for group in groups:
        out += int(group).to_bytes(_DIG2BYTES[len(group)], "big")
    out[0] ^= 0x80
    if negative:
        out = bytearray(b ^ 0xFF for b in out)
    return Opaque(246, bytes([precision, scale]) + bytes(out))


def packed_datetime(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0,
                    field_type: int = 12) -> Opaque:
    """DATETIME (12; also TIMESTAMP's) or DATE (10): TIME_to_longlong_datetime_packed, 8 bytes."""
    ymd = ((y * 13 + m) << 5) | d
    return Opaque(field_type, struct.pack("<q", (((ymd << 17) | (h << 12) | (mi << 6) | s) << 24) + us))


def packed_time(negative: bool, h: int, mi: int, s: int, us: int = 0) -> Opaque:
    """TIME (11): TIME_to_longlong_time_packed, 8 bytes."""
    packed = ((((h << 12) | (mi << 6) | s)) << 24) + us
    return Opaque(11, struct.pack("<q", -packed if negative else packed))
