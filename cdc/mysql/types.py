"""The one table of MySQL/MariaDB column types: what each holds, as far as cdc cares.

The binlog names a column's type by a protocol code (TABLE_MAP's column types);
information_schema.COLUMNS names it by DATA_TYPE. The stream sees the first, the
snapshot, `cdc verify`, `cdc check` and the index mappings see the second; both
must land on the same `ColumnKind`, or one row gives two documents (README
"Values"). Everything that asks "what kind of column is this?" asks here.

Pure data, no library: the codes are the server's `enum_field_types`
(mysql-server include/field_types.h; MariaDB include/mysql_com.h), which
pymysqlreplication's `constants.FIELD_TYPE` copies.
"""

from __future__ import annotations

import re

from cdc.model import Column, ColumnKind

# ---------------------------------------------------------------------- information_schema DATA_TYPE
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
DATE_TYPES = frozenset({"date", "datetime", "timestamp"})
# MariaDB and MySQL 5.7 say "geometrycollection"; MySQL 8 says "geomcollection".
GEOMETRY_TYPES = frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                            "multipolygon", "geometrycollection", "geomcollection"})
_SIMPLE_TYPES = {
    "decimal": ColumnKind.DECIMAL, "float": ColumnKind.FLOAT, "double": ColumnKind.DOUBLE,
    # REAL is DOUBLE unless sql_mode has REAL_AS_FLOAT; information_schema then says "float".
    "real": ColumnKind.DOUBLE,
    "date": ColumnKind.DATE, "datetime": ColumnKind.DATETIME, "timestamp": ColumnKind.TIMESTAMP,
    "time": ColumnKind.TIME, "year": ColumnKind.YEAR, "enum": ColumnKind.ENUM, "set": ColumnKind.SET,
    "bit": ColumnKind.BIT, "json": ColumnKind.JSON,
}
# Every DATA_TYPE cdc converts knowingly; others are written as they come (`cdc check` warns).
KNOWN_TYPES = INTEGER_TYPES | TEXT_TYPES | BINARY_TYPES | GEOMETRY_TYPES | frozenset(_SIMPLE_TYPES)

_WIDTH = re.compile(r"\((\d+)\)")


def kind_of_data_type(data_type: str, charset: str | None = None) -> ColumnKind:
    """information_schema.COLUMNS (DATA_TYPE, CHARACTER_SET_NAME) -> the kind the binlog source gives."""
    t = data_type.lower()
    if t in INTEGER_TYPES:
        return ColumnKind.INTEGER
    if t in TEXT_TYPES:
        # A text type with the binary charset holds bytes, as BLOB does (the binlog says so the same way).
        return ColumnKind.BINARY if charset in (None, "binary") else ColumnKind.STRING
    if t in BINARY_TYPES:
        return ColumnKind.BINARY
    if t in GEOMETRY_TYPES:
        return ColumnKind.GEOMETRY
    return _SIMPLE_TYPES.get(t, ColumnKind.OTHER)


def bit_width(column_type: str) -> int:
    """BIT(n) -> n, from information_schema's COLUMN_TYPE (`bit(5)`); plain BIT is BIT(1)."""
    match = _WIDTH.search(column_type)
    return int(match.group(1)) if match else 1


def column_from_schema(name: str, data_type: str, column_type: str, charset: str | None) -> Column:
    """One information_schema.COLUMNS row -> the same `Column` the binlog source would give."""
    kind = kind_of_data_type(data_type, charset)
    return Column(name, kind, bit_width(column_type) if kind is ColumnKind.BIT else None)


# ---------------------------------------------------------------------- binlog field type codes
class FieldType:
    """`enum_field_types` codes as TABLE_MAP events carry them, and a result's column definitions
    (the text protocol, cdc/copy/native.py; never the *2 codes there)."""

    DECIMAL = 0
    TINY = 1
    SHORT = 2
    LONG = 3
    FLOAT = 4
    DOUBLE = 5
    NULL = 6
    TIMESTAMP = 7
    LONGLONG = 8
    INT24 = 9
    DATE = 10
    TIME = 11
    DATETIME = 12
    YEAR = 13
    NEWDATE = 14
    VARCHAR = 15
    BIT = 16
    TIMESTAMP2 = 17
    DATETIME2 = 18
    TIME2 = 19
    JSON = 245
    NEWDECIMAL = 246
    ENUM = 247
    SET = 248
    TINY_BLOB = 249
    MEDIUM_BLOB = 250
    LONG_BLOB = 251
    BLOB = 252
    VAR_STRING = 253
    STRING = 254
    GEOMETRY = 255


# A column definition's character set number that means bytes, not text (`SELECT id FROM
# information_schema.COLLATIONS WHERE collation_name = 'binary'`, on MariaDB and MySQL alike).
BINARY_CHARSET = 63

INTEGER_CODES = frozenset({FieldType.TINY, FieldType.SHORT, FieldType.LONG, FieldType.LONGLONG, FieldType.INT24})
# Text and binary strings share these codes; the column's charset tells them apart.
STRING_CODES = frozenset({FieldType.VARCHAR, FieldType.VAR_STRING, FieldType.STRING, FieldType.TINY_BLOB,
                           FieldType.MEDIUM_BLOB, FieldType.LONG_BLOB, FieldType.BLOB})
_CODE_KINDS = {
    FieldType.NEWDECIMAL: ColumnKind.DECIMAL, FieldType.DECIMAL: ColumnKind.DECIMAL,
    FieldType.FLOAT: ColumnKind.FLOAT, FieldType.DOUBLE: ColumnKind.DOUBLE,
    FieldType.DATE: ColumnKind.DATE, FieldType.NEWDATE: ColumnKind.DATE,
    FieldType.DATETIME: ColumnKind.DATETIME, FieldType.DATETIME2: ColumnKind.DATETIME,
    FieldType.TIMESTAMP: ColumnKind.TIMESTAMP, FieldType.TIMESTAMP2: ColumnKind.TIMESTAMP,
    FieldType.TIME: ColumnKind.TIME, FieldType.TIME2: ColumnKind.TIME,
    FieldType.YEAR: ColumnKind.YEAR, FieldType.ENUM: ColumnKind.ENUM, FieldType.SET: ColumnKind.SET,
    FieldType.BIT: ColumnKind.BIT, FieldType.JSON: ColumnKind.JSON, FieldType.GEOMETRY: ColumnKind.GEOMETRY,
}


def kind_of_field_type(code: int, charset: str | None) -> ColumnKind:
    """A TABLE_MAP column (type code, and with binlog_row_metadata=FULL its charset) -> its kind.

    ENUM and SET arrive as STRING with the real type in the metadata; the
    library resolves that before we see the column, so `code` is already ENUM/SET.
    """
    if code in INTEGER_CODES:
        return ColumnKind.INTEGER
    if code in STRING_CODES:
        return ColumnKind.BINARY if charset == "binary" else ColumnKind.STRING
    return _CODE_KINDS.get(code, ColumnKind.OTHER)
