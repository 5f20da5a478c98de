"""Turn column values from the binlog or a snapshot into JSON-ready document values.

Input is what ``mysql-replication`` (pymysqlreplication 1.0.17) decodes from a rows
event, or what PyMySQL returns for a SELECT. Output is built only from ``None``,
``bool``, ``int``, ``float``, ``str``, ``list`` and ``dict``, so ``orjson.dumps``
always accepts it. Pure: no I/O, no server libraries imported. A value that cannot
be converted raises ``ConversionError``, which names the column.

| Kind      | Arrives as                               | Becomes                                             |
|-----------|------------------------------------------|-----------------------------------------------------|
| any       | ``None``                                 | ``null``                                            |
| INTEGER   | ``int`` / ``bool``                       | unchanged (BIGINT UNSIGNED max stays an integer)    |
| DECIMAL   | ``Decimal``                              | string without exponent, scale kept (``"1.50"``); number if ``decimal_as="number"`` |
| FLOAT     | ``float`` (binlog: the float32 widened, 0.10000000149011612) | shortest decimal that is the same float32 (``0.1``); NaN/Infinity -> ``null`` |
| DOUBLE    | ``float``                                | unchanged; NaN/Infinity -> ``null``                 |
| DATE      | ``date``; ``"0000-00-00"`` (PyMySQL, and the source for the library's zero-date None) | ``"YYYY-MM-DD"``; zero dates -> ``null`` (counted)  |
| DATETIME  | naive ``datetime``                       | ``"YYYY-MM-DDTHH:MM:SS[.ffffff]"`` (fraction only if non-zero) |
| TIMESTAMP | naive ``datetime`` in UTC / aware        | same, in ``timestamp_tz`` with offset (``Z`` for UTC); zero -> ``null`` |
| TIME      | ``timedelta`` (+-838:59:59.999999)       | ``"[-]HH:MM:SS[.ffffff]"``, hours may exceed 24     |
| YEAR      | ``int``                                  | ``int`` (the library's 1900 for YEAR 0000 -> ``0``) |
| STRING    | ``str``; ``bytes`` if undecodable        | ``str``; bytes decoded as UTF-8, else Latin-1       |
| BINARY    | ``bytes`` (``str`` without charset info; ``""`` when empty) | standard base64 with padding (BINARY(n) padded to n bytes first); ``str`` unchanged |
| ENUM      | ``str`` label (or ``int`` index)         | unchanged                                           |
| SET       | ``set`` (library) or ``"a,b"`` (PyMySQL) | sorted list of labels; ``""`` -> ``[]``             |
| BIT       | ``"0101"`` (library), big-endian ``bytes`` (PyMySQL), ``int`` | ``int``; BIT(1) -> ``bool`` if ``bit1_as_bool`` |
| JSON      | parsed value with ``bytes`` (MySQL); text (MariaDB, PyMySQL) | JSON value; text parsed if ``parse_json``, invalid text -> error |
| GEOMETRY  | ``bytes``: 4-byte LE SRID + WKB          | GeoJSON geometry dict (SRID dropped)                |
| POINT     | as GEOMETRY (a POINT column, known from information_schema) | GeoJSON, or ``{"lat", "lon"}`` if ``points="geo_point"`` |
| OTHER     | anything                                 | by Python type, using the rules above; unknown types -> ``str()`` |

Inside JSON, numbers stay numbers: a ``Decimal`` becomes a float when that is exact
(checked through ``repr``), otherwise a string; dates and times become ISO strings.
Integers outside orjson's 64-bit range become strings, in JSON text too (where a
number beyond double range, such as ``1e400``, also stays its text).
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Mapping, Sequence

import orjson

from cdc.errors import ConversionError  # importable from here too
from cdc.model import Column, ColumnKind

UTC = datetime.timezone.utc
_BYTES = (bytes, bytearray, memoryview)
_EPOCH = datetime.datetime(1970, 1, 1)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson.dumps can write
_DATE_PREFIX = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_WKB_TYPES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


@dataclass(frozen=True)
class ValueOptions:
    decimal_as: Literal["string", "number"] = "string"  # string is lossless; number gives float
    timestamp_tz: datetime.tzinfo = UTC  # zone TIMESTAMP values are rendered in, with offset
    bit1_as_bool: bool = True  # BIT(1) -> bool, wider BIT -> int
    parse_json: bool = True  # JSON text (MariaDB, PyMySQL) -> objects
    # POINT as GeoJSON (a geo_point or geo_shape field takes it) or as {"lat", "lon"}.
    points: Literal["geojson", "geo_point"] = "geojson"

    @classmethod
    def from_config(cls, config: Any) -> "ValueOptions":
        """From the config's `values:` section (anything with its attribute names)."""
        from zoneinfo import ZoneInfo

        return cls(decimal_as=config.decimal_as, timestamp_tz=ZoneInfo(config.timestamp_timezone),
                   bit1_as_bool=config.bit1_as_bool, points=config.points)


DEFAULT_OPTIONS = ValueOptions()


@dataclass
class ConversionStats:
    """Counters the caller can read after converting (e.g. to log or export them)."""

    zero_dates: int = 0  # zero / partly-zero dates turned into null


def convert_value(
    value: Any,
    column: Column,
    options: ValueOptions = DEFAULT_OPTIONS,
    stats: ConversionStats | None = None,
) -> Any:
    """Convert one value of `column`; see the module docstring for the rules."""
    if value is None:
        return None
    try:
        return _convert(value, column, options, stats)
    except ConversionError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, struct.error) as exc:
        raise ConversionError(column.name, f"cannot convert {type(value).__name__}: {exc}") from exc


def convert_row(
    row: Mapping[str, Any],
    columns: Mapping[str, Column] | Sequence[Column],
    options: ValueOptions = DEFAULT_OPTIONS,
    stats: ConversionStats | None = None,
) -> dict[str, Any]:
    """Convert every key of `row`; a key without Column info is converted by Python type."""
    by_name = columns if isinstance(columns, Mapping) else {c.name: c for c in columns}
    out: dict[str, Any] = {}
    for name, value in row.items():
        column = by_name.get(name) or Column(name, ColumnKind.OTHER)
        out[name] = convert_value(value, column, options, stats)
    return out


def _convert(value: Any, column: Column, options: ValueOptions, stats: ConversionStats | None) -> Any:
    kind = column.kind
    if kind in (ColumnKind.STRING, ColumnKind.ENUM):
        if isinstance(value, _BYTES):
            # row_event.py __read_string hands back raw bytes when Python has no codec
            # for the column's charset (LookupError, e.g. swe7).
            return _text(bytes(value))
    elif kind is ColumnKind.BINARY:
        if value == "":
            # row_event.py decodes with the charset "binary", an unknown codec, and
            # keeps the bytes on LookupError; but b"".decode(anything) is "" without
            # a codec lookup, so an empty value arrives as str.
            value = b""
        if isinstance(value, str):
            # Without binlog_row_metadata=FULL the library knows no charset and
            # UTF-8-decodes BINARY/BLOB columns too (row_event.py __read_string).
            return value
        if column.pad_to and isinstance(value, _BYTES) and len(value) < column.pad_to:
            # BINARY(n) rows in the binlog lack their trailing 0x00 pad bytes;
            # SELECT returns all n bytes (observed on MariaDB 10.11).
            value = bytes(value).ljust(column.pad_to, b"\0")
    elif kind is ColumnKind.FLOAT:
        if isinstance(value, float):
            return _float32(value)
    elif kind in (ColumnKind.DATE, ColumnKind.DATETIME, ColumnKind.TIMESTAMP):
        # PyMySQL returns dates it cannot parse ('0000-00-00', '2024-00-10') as str.
        # The library already returns None for zero DATE/DATETIME (row_event.py
        # __read_date / __read_datetime2), so those cannot be counted here.
        if isinstance(value, str) and _is_zero_date(value):
            return _zero_date(stats)
        if kind is ColumnKind.TIMESTAMP and isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                # row_event.py reads TIMESTAMP with utcfromtimestamp(), so a zero
                # TIMESTAMP (stored as 0) arrives as the epoch, which is below
                # TIMESTAMP's range ('1970-01-01 00:00:01' UTC) and so unambiguous.
                if value == _EPOCH:
                    return _zero_date(stats)
                value = value.replace(tzinfo=UTC)
            return _iso(value.astimezone(options.timestamp_tz))
    elif kind is ColumnKind.YEAR:
        # row_event.py reads YEAR as read_uint8() + 1900, so YEAR 0000 (stored as
        # 0) arrives as 1900, a year YEAR cannot hold; PyMySQL gives 0.
        if type(value) is int and value == 1900:
            return 0
    elif kind is ColumnKind.SET:
        if isinstance(value, str):  # PyMySQL: 'a,b' in definition order
            return sorted(value.split(",")) if value else []
        if isinstance(value, (list, tuple)):
            return sorted(value)
    elif kind is ColumnKind.BIT:
        return _bit(value, column, options)
    elif kind is ColumnKind.JSON:
        return _json_column(value, column, options)
    elif kind in (ColumnKind.GEOMETRY, ColumnKind.POINT):
        if isinstance(value, _BYTES):
            geometry = _geometry(bytes(value))
            # Only POINT columns: a GEOMETRY column that happens to hold a point
            # goes to a geo_shape field, which wants GeoJSON.
            if kind is ColumnKind.POINT and options.points == "geo_point" and geometry["type"] == "Point":
                lon, lat = geometry["coordinates"]
                return {"lat": lat, "lon": lon}
            return geometry
    return _by_type(value, options)


def _by_type(value: Any, options: ValueOptions) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        if options.decimal_as == "number":
            return float(value)
        # format 'f' never uses an exponent and keeps the scale: Decimal('1E+2')
        # -> '100', Decimal('0E-10') -> '0.0000000000'. MySQL never prints -0.
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, datetime.datetime):
        return _iso(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _time(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, _BYTES):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dict, list, tuple)):
        return _json(value)
    return str(value)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # maps every byte, so never fails


def _float32(value: float) -> float | None:
    """The shortest decimal that reads back as the same single-precision float.

    The binlog holds FLOAT as 4 bytes, which the library widens to a double
    (0.1 arrives as 0.10000000149011612); 9 significant digits always suffice.
    """
    if not math.isfinite(value):
        return None
    try:
        packed = struct.pack("<f", value)
    except OverflowError:  # beyond float32 range: it was never a FLOAT value
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack("<f", candidate) == packed:
                return candidate
        except OverflowError:  # rounded up past FLT_MAX (3.4028235e38); more digits will do
            continue
    return value


def _int(value: int) -> int | str:
    return value if _INT_MIN <= value <= _INT_MAX else str(value)


def _iso(value: datetime.datetime) -> str:
    # isoformat() already omits '.ffffff' when microsecond == 0.
    text = value.isoformat()
    return text[:-6] + "Z" if value.utcoffset() == datetime.timedelta(0) else text


def _time(value: datetime.timedelta) -> str:
    # timedelta(seconds=-1) is days=-1, seconds=86399: work from total microseconds.
    total = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    seconds, micros = divmod(abs(total), 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{'-' if total < 0 else ''}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{text}.{micros:06d}" if micros else text


def _is_zero_date(text: str) -> bool:
    match = _DATE_PREFIX.match(text)
    return match is not None and any(int(part) == 0 for part in match.groups())


def _zero_date(stats: ConversionStats | None) -> None:
    if stats is not None:
        stats.zero_dates += 1
    return None


def _bit(value: Any, column: Column, options: ValueOptions) -> Any:
    width = column.bits
    if isinstance(value, str):
        # row_event.py __read_bit returns exactly `bits` '0'/'1' digits, most
        # significant first.
        width = width or len(value)
        number = int(value, 2)
    elif isinstance(value, _BYTES):
        number = int.from_bytes(bytes(value), "big")  # PyMySQL: b'\x01' for b'1'
    elif isinstance(value, int):
        number = int(value)
    else:
        return _by_type(value, options)
    return bool(number) if width == 1 and options.bit1_as_bool else number


def _json_column(value: Any, column: Column, options: ValueOptions) -> Any:
    if type(value).__name__ == "JsonDiff":
        # packet.py read_binary_json returns a JsonDiff (a path and a change, not
        # the document) for binlog_row_value_options=PARTIAL_JSON updates.
        raise ConversionError(column.name, "partial JSON update (PARTIAL_JSON) carries no full document")
    if isinstance(value, str) and options.parse_json:
        # MariaDB's JSON is LONGTEXT and PyMySQL returns JSON as text. A bytes
        # value, in contrast, is a MySQL binary-JSON string scalar (json_binary.py
        # parse_string returns bytes), so it is not parsed.
        value = _parse_json_text(value, column)
    return _json(value)


# 20+ digits in a row may be an integer beyond 64 bits, which orjson would turn
# into a float without a word (12345678901234567890123 -> 1.2345678901234568e+22).
_LONG_DIGITS = re.compile(r"\d{20}")


def _parse_json_text(text: str, column: Column) -> Any:
    if not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # maybe valid JSON orjson refuses (1e400); the exact parser decides
    try:
        # Exact: big integers stay ints (-> strings past 64 bits in _json), and
        # numbers beyond double range keep their text instead of becoming inf.
        return json.loads(text, parse_float=_json_float, parse_constant=_json_constant)
    except ValueError as exc:
        raise ConversionError(column.name, f"invalid JSON text: {exc}") from None


def _json_float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def _json_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; MariaDB's json_valid rejects them too.
    raise ValueError(f"{name} is not valid JSON")


def _json(value: Any) -> Any:
    """Make a decoded JSON value serialisable; json_binary.py leaves keys and strings as bytes."""
    if isinstance(value, dict):
        return {(_text(bytes(k)) if isinstance(k, _BYTES) else str(k)): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, _BYTES):
        return _text(bytes(value))
    if isinstance(value, Decimal):
        # json_binary.py parse_opaque returns Decimal for DECIMAL members. Keep a
        # number when the float is exactly the same value, else keep every digit.
        if not value.is_finite():
            return None
        number = float(value)
        return number if Decimal(repr(number)) == value else format(value, "f")
    return _by_type(value, DEFAULT_OPTIONS)


def _geometry(data: bytes) -> dict[str, Any]:
    # MySQL's internal geometry format: 4-byte little-endian SRID, then WKB.
    if len(data) < 5:
        raise ValueError(f"geometry value too short ({len(data)} bytes)")
    geometry, end = _wkb(data, 4)
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after WKB geometry")
    return geometry


def _wkb(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
    if buf[pos] not in (0, 1):
        raise ValueError(f"bad WKB byte order {buf[pos]}")
    order = "<" if buf[pos] == 1 else ">"  # 1 = NDR little-endian, 0 = XDR big-endian
    (code,) = struct.unpack_from(order + "I", buf, pos + 1)
    pos += 5
    name = _WKB_TYPES.get(code)
    if name is None:
        raise ValueError(f"unknown WKB geometry type {code}")

    def read(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        out = struct.unpack_from(order + fmt, buf, pos)
        pos += struct.calcsize(order + fmt)
        return out

    def points() -> list[list[float]]:
        return [list(read("dd")) for _ in range(read("I")[0])]

    if code == 1:
        coordinates: Any = list(read("dd"))
    elif code == 2:
        coordinates = points()
    elif code == 3:
        coordinates = [points() for _ in range(read("I")[0])]
    else:  # Multi* and GeometryCollection hold whole WKB geometries, each with its own header
        parts = []
        for _ in range(read("I")[0]):
            part, pos = _wkb(buf, pos)
            parts.append(part)
        if code == 7:
            return {"type": name, "geometries": parts}, pos
        if any("coordinates" not in part for part in parts):
            # MySQL never writes one (it checks WKB it is given); was an uncaught KeyError here.
            raise ValueError(f"a GeometryCollection inside a {name}")
        coordinates = [part["coordinates"] for part in parts]
    return {"type": name, "coordinates": coordinates}, pos


# ---------------------------------------------------------------------- per-column conversions
# Chosen by name in a rule (`convert: {tags: {split: ","}}`) and applied to the
# converted value; "none"/"optional"/"required" says whether they take an argument.
CONVERSIONS = {
    "split": "optional",  # delimiter, default ","
    "json": "none",
    "datetime": "required",  # strftime format
    "lower": "none",
    "upper": "none",
    "bool": "none",
}
_TRUE, _FALSE = frozenset({"1", "true", "yes", "y", "on"}), frozenset({"0", "false", "no", "n", "off", ""})


def apply_conversion(value: Any, name: str, arg: str | None, column: str) -> Any:
    """One rule conversion of an already converted value; None stays None."""
    if value is None:
        return None
    if name == "split":
        if not isinstance(value, str):
            raise ConversionError(column, f"split needs text, got {type(value).__name__}")
        return value.split(arg or ",") if value else []
    if name == "json":
        if isinstance(value, str):
            return _json(_parse_json_text(value, Column(column, ColumnKind.JSON)))
        return value  # already JSON (a JSON column)
    if name in ("lower", "upper"):
        if isinstance(value, str):
            return value.lower() if name == "lower" else value.upper()
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.lower() if name == "lower" else v.upper() for v in value]
        raise ConversionError(column, f"{name} needs text, got {type(value).__name__}")
    if name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0  # MySQL's truth: any non-zero TINYINT(1) is true
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConversionError(column, f"bool cannot read {value!r}")
    if name == "datetime":
        return parse_date(value, column).strftime(arg or "%Y-%m-%dT%H:%M:%S")
    raise ConversionError(column, f"unknown conversion {name!r}")


def parse_date(value: Any, column: str) -> datetime.date:
    """A converted DATE/DATETIME/TIMESTAMP ("2024-01-02", "...T03:04:05", "...Z") back as a date(time)."""
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return (datetime.date.fromisoformat(value) if len(value) == 10
                    else datetime.datetime.fromisoformat(value))
        except ValueError:
            pass
    raise ConversionError(column, f"{value!r} is not a date")
