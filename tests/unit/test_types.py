"""The one type table: the stream (binlog codes) and snapshot/verify (information_schema) agree."""

import pytest

from cdc.model import Column, ColumnKind
from cdc.mysql.types import FieldType as F
from cdc.mysql.types import BINARY_CHARSET, KNOWN_TYPES, column_from_schema, kind_of_data_type, kind_of_field_type

# Every row of README's value table: (DATA_TYPE, charset) as information_schema gives it,
# and (type code, charset) as the binlog's TABLE_MAP gives the same column.
SAME_COLUMN = [
    (("tinyint", None), (F.TINY, None)),
    (("smallint", None), (F.SHORT, None)),
    (("mediumint", None), (F.INT24, None)),
    (("int", None), (F.LONG, None)),
    (("bigint", None), (F.LONGLONG, None)),
    (("decimal", None), (F.NEWDECIMAL, None)),
    (("float", None), (F.FLOAT, None)),
    (("double", None), (F.DOUBLE, None)),
    (("date", None), (F.DATE, None)),
    (("datetime", None), (F.DATETIME2, None)),
    (("timestamp", None), (F.TIMESTAMP2, None)),
    (("time", None), (F.TIME2, None)),
    (("year", None), (F.YEAR, None)),
    (("char", "utf8mb4"), (F.STRING, "utf8mb4")),
    (("varchar", "utf8mb4"), (F.VARCHAR, "utf8mb4")),
    (("text", "latin1"), (F.BLOB, "latin1")),
    (("longtext", "utf8mb4"), (F.BLOB, "utf8mb4")),
    (("binary", None), (F.STRING, "binary")),
    (("varbinary", None), (F.VARCHAR, "binary")),
    (("blob", None), (F.BLOB, "binary")),
    (("enum", "utf8mb4"), (F.ENUM, "utf8mb4")),
    (("set", "utf8mb4"), (F.SET, "utf8mb4")),
    (("bit", None), (F.BIT, None)),
    (("json", None), (F.JSON, None)),
    (("geometry", None), (F.GEOMETRY, None)),
    (("point", None), (F.GEOMETRY, None)),
    (("polygon", None), (F.GEOMETRY, None)),
    (("geometrycollection", None), (F.GEOMETRY, None)),  # MariaDB, MySQL 5.7
    (("geomcollection", None), (F.GEOMETRY, None)),  # MySQL 8
]


@pytest.mark.parametrize("schema, binlog", SAME_COLUMN, ids=[s[0] for s, _ in SAME_COLUMN])
def test_stream_and_snapshot_give_a_column_the_same_kind(schema, binlog):
    assert kind_of_data_type(*schema) is kind_of_field_type(*binlog)
    assert kind_of_data_type(*schema) is not ColumnKind.OTHER
    assert schema[0] in KNOWN_TYPES


def test_every_known_type_has_a_kind():
    assert {t for t in KNOWN_TYPES if kind_of_data_type(t, "utf8mb4") is ColumnKind.OTHER} == set()


def test_mysql8_geomcollection_is_geometry_not_bytes():
    # Before one table existed, the snapshot lacked MySQL 8's name and wrote base64.
    assert column_from_schema("g", "GEOMCOLLECTION", "geomcollection", None) == Column("g", ColumnKind.GEOMETRY)


def test_bit_width_comes_from_column_type():
    assert column_from_schema("b", "bit", "bit(5)", None) == Column("b", ColumnKind.BIT, 5)
    assert column_from_schema("b", "bit", "bit", None) == Column("b", ColumnKind.BIT, 1)
    assert column_from_schema("n", "int", "int(11)", None).bits is None


def test_unknown_types_are_other():
    assert kind_of_data_type("vector") is ColumnKind.OTHER
    assert kind_of_field_type(6, None) is ColumnKind.OTHER  # NULL type


def test_codes_match_the_binlog_library():
    from pymysqlreplication.constants import FIELD_TYPE

    ours = {name: value for name, value in vars(F).items() if name.isupper()}
    assert ours == {name: getattr(FIELD_TYPE, name) for name in ours}
    assert kind_of_field_type(FIELD_TYPE.FLOAT, None) is ColumnKind.FLOAT
    assert kind_of_field_type(FIELD_TYPE.DOUBLE, None) is ColumnKind.DOUBLE


def test_codes_match_pymysql_for_result_columns():
    """The snapshot reads a result's column types as PyMySQL hands them (cdc/copy/native.py)."""
    from pymysql.charset import charset_by_name
    from pymysql.constants import FIELD_TYPE

    theirs = {name: value for name, value in vars(FIELD_TYPE).items() if name.isupper()}
    shared = {name for name in vars(F) if name.isupper()} & set(theirs)
    assert len(shared) >= 28  # all but the binlog's TIMESTAMP2, DATETIME2 and TIME2
    assert {name: getattr(F, name) for name in shared} == {name: theirs[name] for name in shared}
    assert charset_by_name("binary").id == BINARY_CHARSET  # type: ignore[attr-defined]  # types-PyMySQL's Charset lacks the id pymysql sets
