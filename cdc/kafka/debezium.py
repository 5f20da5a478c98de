"""Debezium MySQL/MariaDB change events -> RowChange: `cdc sink` with `kafka.input: debezium` (pure).

A team that already runs a Debezium connector can let cdc write its topics to
Elasticsearch: each change event becomes the `RowChange` cdc's own binlog
source would have produced for that row, and goes through the same rules
(cdc/rules/actions.py) into the same actions with the same document versions.

The envelope (Debezium's documentation, "Change event values" of the MySQL and
MariaDB connectors; io.debezium.data.Envelope)::

    {"before": {...} | null, "after": {...} | null, "op": "c" | "u" | "d" | "r" | "t",
     "source": {"file": "binlog.000003", "pos": 1081, "row": 0, "snapshot": "false" | "true" | "last" | ...,
                "db": "inventory", "table": "products", "server_id": 1, "gtid": ..., ...},
     "ts_ms": ...}

as Kafka Connect's JsonConverter writes it: with `schemas.enable=true` wrapped as
``{"schema": {...}, "payload": <that>}``, without it the payload alone. A
tombstone (a null value, written after each delete for log compaction) carries
nothing to apply: `decode` returns None for it.

Values. Debezium encodes column values its own way; the schema's logical type
names (io.debezium.time.MicroTimestamp, org.apache.kafka.connect.data.Decimal,
...) say how, and `_schema_decoder` turns each back into the Python value the
binlog library gives for that column (Decimal, naive datetime for DATETIME,
aware for TIMESTAMP, timedelta for TIME, bytes, ...). Without schemas the
column kinds cdc read from information_schema (`Shape`) say it, assuming the
connector settings docs/kafka.md "Kafka mode" lists (decimal.handling.mode=string,
time.precision.mode=adaptive_time_microseconds, binary.handling.mode=bytes).
The rules' value conversion (cdc/rules/values.py) then makes the same document
values as `cdc run`. Anything else is refused (`DebeziumError`), never guessed.

Positions and versions. A document's external version comes from a binlog
position (cdc/rules/actions.py `document_version`): cdc's stream uses where
the row's event *ended*, its snapshot the binlog position of its consistent
read. Debezium's `source.pos` is where the event *started* for streamed rows
(BinlogStreamingChangeEventSource: `setEventPosition(header.getPosition(), ...)`,
the event's own offset) and, for snapshot rows, the binlog position read when
the snapshot began (the same kind of position cdc's snapshot uses). So a
snapshot row keeps `pos`, and a streamed row gets `pos + 2`: inside its event
(a rows event is at least 19 bytes, its header), so after the end of every
earlier event (what `cdc run` would have written for those) and before the end
of its own, with room for the version - 1 that a routing change's delete uses.
Writes of one row therefore order the same way whichever of `cdc run` and a
Debezium-fed `cdc sink` made them. `source.row` (the row inside the event) is
not part of a version, as in cdc's own stream.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import struct
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping

import orjson

from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange

UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_DAY = datetime.date(1970, 1, 1)
# Debezium's `source.snapshot` for rows read by its initial snapshot (an Enum in the Source schema).
_SNAPSHOT = frozenset({"true", "first", "first_in_data_collection", "last_in_data_collection", "last"})
_OPS = {"c": Op.INSERT, "r": Op.INSERT, "u": Op.UPDATE, "d": Op.DELETE}
# A streamed row's version position: inside its event, see the module docstring.
STREAM_OFFSET = 2


class DebeziumError(ValueError):
    """A message that is not a Debezium row change cdc can apply; the text says why."""


class Truncated(DebeziumError):
    """A TRUNCATE (op "t"): cdc does not turn it into deletes (docs/kafka.md "Kafka mode")."""

    def __init__(self, schema: str, table: str, position: BinlogPosition):
        self.schema, self.table, self.position = schema, table, position
        super().__init__(f"TRUNCATE of {schema}.{table} at {position}")


@dataclass(frozen=True)
class Shape:
    """What cdc knows of a table's columns from information_schema (the app layer builds it).

    `fractions`: the fractional-second digits of DATETIME and TIME columns,
    which say how a value is encoded when the message carries no schema.
    """

    columns: Mapping[str, Column] = field(default_factory=dict)
    fractions: Mapping[str, int] = field(default_factory=dict)


NO_SHAPE = Shape()


def decode(value: bytes | None, shape_of: Callable[[str, str], Shape | None], timestamp: int = 0) -> RowChange | None:
    """One message value -> the row change it describes; None for a tombstone (see `ChangeDecoder`)."""
    return ChangeDecoder(shape_of).decode(value, timestamp)


Decoder = Callable[[Any], Any]


class ChangeDecoder:
    """Decodes messages, with each table's column decoders made once per schema, not once per message.

    `shape_of(db, table)` gives the table's columns as cdc's rules know them
    (None: a table no rule maps, decoded by the message alone).
    """

    PLANS = 1024  # tables x schema versions kept; past it, start over rather than grow

    def __init__(self, shape_of: Callable[[str, str], Shape | None]):
        self.shape_of = shape_of
        # (db, table, the envelope schema as JSON or None) -> column name -> decoder
        self._plans: dict[tuple[str, str, bytes | None], dict[str, Decoder]] = {}

    def decode(self, value: bytes | None, timestamp: int = 0) -> RowChange | None:
        if value is None:
            return None
        schema: Mapping[str, Any] | None = None
        schema_json: bytes | None = None  # the schema's JSON text, as the plans know it
        try:
            at = value.find(_PAYLOAD)
            if value.startswith(_SCHEMA) and at > 0 and value.endswith(b"}") and value.count(_PAYLOAD) == 1:
                # JsonConverter's layout (schemas.enable=true): the schema, then the payload, with no
                # spaces. The one `,"payload":` in the value is where the payload starts (the schema is
                # nine tenths of a message: parsed only for a plan not made yet, `_plan`).
                schema_json = value[len(_SCHEMA):at]
                data = orjson.loads(value[at + len(_PAYLOAD):-1])
                if data is None:
                    return None  # a tombstone written with schemas
            else:
                data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DebeziumError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DebeziumError("not a JSON object" if schema_json is None else "the payload is not a JSON object")
        if schema_json is None and "payload" in data and "schema" in data:  # the same, laid out otherwise
            schema, data = data["schema"], data["payload"]
            schema_json = orjson.dumps(schema)
            if data is None:
                return None  # a tombstone written with schemas
            if not isinstance(data, dict):
                raise DebeziumError("the payload is not a JSON object")
        source = data.get("source")
        op = data.get("op")
        if not isinstance(source, dict) or not isinstance(op, str):
            raise DebeziumError("not a Debezium change event (no 'source' object or 'op')")
        if "cdc" in source:
            raise DebeziumError("a cdc action in Debezium's envelope (kafka.format: debezium); read it with "
                                "kafka.input: cdc")
        db, table = source.get("db"), source.get("table")
        if not isinstance(db, str) or not isinstance(table, str) or not db or not table:
            raise DebeziumError(f"op {op!r} without source.db and source.table (a schema change or transaction "
                                "event? point kafka.topics at the table topics only)")
        position = _position(source, op)
        if op == "t":
            raise Truncated(db, table, position)
        kind = _OPS.get(op)
        if kind is None:
            raise DebeziumError(f"op {op!r} of {db}.{table} is not a row change cdc can apply (c, u, d, r or t)")
        if source.get("snapshot") == "incremental":
            raise DebeziumError(f"{db}.{table}: a row of an incremental snapshot (source.snapshot=incremental) "
                                "carries the streaming position it was read at, not one cdc can version it by; "
                                "cdc sink takes the initial snapshot and streamed changes only")
        shape = self.shape_of(db, table) or NO_SHAPE
        decoders = self._plan(db, table, schema_json, shape)
        before = _row(data.get("before"), decoders, shape, f"{db}.{table} before")
        after = _row(data.get("after"), decoders, shape, f"{db}.{table} after")
        if kind is Op.DELETE and before is None:
            raise DebeziumError(f"delete of {db}.{table} at {position} without 'before'")
        if kind is not Op.DELETE and after is None:
            raise DebeziumError(f"op {op!r} of {db}.{table} at {position} without 'after'")
        if kind is Op.UPDATE and before is None:
            raise DebeziumError(f"update of {db}.{table} at {position} without 'before' (cdc needs the old row to "
                                "move a document whose id or routing changed)")
        names = list(after if after is not None else before or {})
        columns = tuple(shape.columns.get(name) or Column(name, ColumnKind.OTHER) for name in names)
        ts_ms = source.get("ts_ms")
        when = int(ts_ms) // 1000 if isinstance(ts_ms, int) else timestamp
        row = source.get("row")
        return RowChange(kind, db, table, columns, before, after, position, when,
                         row_index=row if isinstance(row, int) else 0)

    def _plan(self, db: str, table: str, schema_json: bytes | None, shape: Shape) -> dict[str, Decoder]:
        """Column name -> decoder for this table and envelope schema (made on first use)."""
        key = (db, table, schema_json)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= self.PLANS:
                self._plans.clear()
            fields = {}
            if schema_json is not None:
                try:
                    schema = orjson.loads(schema_json)
                except orjson.JSONDecodeError as exc:
                    raise DebeziumError(f"the schema is not JSON: {exc}") from None
                if not isinstance(schema, dict):
                    raise DebeziumError("the schema is not a JSON object")
                fields = _fields(schema).get("after", {})
            names = dict.fromkeys([*fields, *shape.columns])
            plan = self._plans[key] = {name: _decoder(fields.get(name), shape.columns.get(name),
                                                      shape.fractions.get(name, 0)) for name in names}
        return plan


_SCHEMA, _PAYLOAD = b'{"schema":', b',"payload":'


def _position(source: Mapping[str, Any], op: str) -> BinlogPosition:
    file, pos = source.get("file"), source.get("pos")
    if not isinstance(file, str) or not file or not isinstance(pos, int) or pos < 0:
        raise DebeziumError(f"source has no binlog file and pos (file={file!r}, pos={pos!r}); cdc versions "
                            "documents by them")
    snapshot = str(source.get("snapshot") or "false").lower()
    position = BinlogPosition(file, pos if op == "r" and snapshot in _SNAPSHOT else pos + STREAM_OFFSET)
    try:
        position.file_seq
    except ValueError as exc:
        raise DebeziumError(str(exc)) from None
    return position


def _fields(schema: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """The envelope schema -> {"before": {column: field schema}, "after": {...}}."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for part in schema.get("fields") or ():
        if isinstance(part, dict) and part.get("field") in ("before", "after"):
            out[part["field"]] = {f["field"]: f for f in part.get("fields") or () if isinstance(f, dict)}
    return out


def _row(image: Any, decoders: Mapping[str, Decoder], shape: Shape, where: str) -> dict[str, Any] | None:
    if image is None:
        return None
    if not isinstance(image, dict):
        raise DebeziumError(f"{where}: the row image is not a JSON object")
    row: dict[str, Any] = {}
    for name, value in image.items():
        if value is None:
            row[name] = None
            continue
        try:
            decoder = decoders.get(name)
            if decoder is None:  # a column neither the schema nor cdc's rules know
                decoder = _decoder(None, shape.columns.get(name), shape.fractions.get(name, 0))
            row[name] = decoder(value)
        except DebeziumError as exc:
            raise DebeziumError(f"{where}: column {name}: {exc}") from None
        except (ValueError, TypeError, OverflowError, binascii.Error, struct.error) as exc:
            raise DebeziumError(f"{where}: column {name}: cannot decode {value!r}: {exc}") from None
    return row


def _decoder(schema: Mapping[str, Any] | None, column: Column | None, fraction: int) -> Decoder:
    """How to turn one column's (non-null) values into what the binlog library gives for that column."""
    kind = column.kind if column is not None else ColumnKind.OTHER
    if schema is not None:
        decode = _schema_decoder(schema)
    else:
        def decode(value: Any) -> Any:
            return _by_kind(value, kind, fraction)
    if kind is ColumnKind.INTEGER:
        # BIGINT UNSIGNED with bigint.unsigned.handling.mode=precise: a Decimal of scale 0; the binlog gives an int.
        return lambda value: _integral(decode(value))
    if kind is ColumnKind.DECIMAL:
        return lambda value: _decimal(decode(value))
    if kind in (ColumnKind.BINARY, ColumnKind.GEOMETRY, ColumnKind.POINT) and schema is not None \
            and schema.get("type") == "string":
        # binary.handling.mode=base64 declares the column a string: the text is base64 of the bytes.
        return lambda value: _base64_text(decode(value))
    return decode


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else value


def _decimal(value: Any) -> Any:
    if isinstance(value, str):
        return _decimal_text(value)  # decimal.handling.mode=string
    if isinstance(value, float):
        # decimal.handling.mode=double: the double's shortest text, not the column's scale ("1.5", not "1.50").
        return Decimal(repr(value))
    return value


def _base64_text(value: Any) -> Any:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


def _decimal_text(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise DebeziumError(f"{text!r} is not a decimal (expected decimal.handling.mode=string)") from None
    return number


def _schema_decoder(schema: Mapping[str, Any]) -> Decoder:
    """A column's values as its field schema (Connect type + Debezium/Connect logical name) says they are encoded.

    A type cdc does not know is refused when a value of it arrives (a column that is always null is no problem).
    """
    name = schema.get("name")
    kind = schema.get("type")
    if name is None:
        if kind == "bytes":
            return _bytes
        if kind in ("int8", "int16", "int32", "int64"):
            return _integer
        if kind in ("float", "float32", "double", "float64"):
            return _float
        if kind in ("string", "boolean"):
            return _same
        return _refuse(f"Connect type {kind!r} is not a column type cdc knows")
    convert = _LOGICAL.get(name)
    if convert is None:
        return _refuse(f"logical type {name} is not one cdc converts (docs/kafka.md lists those it does)")
    parameters = schema.get("parameters") or {}
    return lambda value: convert(value, parameters)


def _same(value: Any) -> Any:
    return value


def _float(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DebeziumError(f"{value!r} is not a number")
    return float(value)


def _refuse(why: str) -> Decoder:
    def refuse(value: Any) -> Any:
        raise DebeziumError(why)
    return refuse


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DebeziumError(f"{value!r} is not an integer")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise DebeziumError(f"{value!r} is not base64 text (JsonConverter writes bytes as base64)")
    return base64.b64decode(value, validate=True)


def _connect_decimal(value: Any, parameters: Mapping[str, Any]) -> Decimal:
    # org.apache.kafka.connect.data.Decimal: the unscaled value as big-endian two's complement bytes
    # (base64 in JSON), the scale a schema parameter; JsonConverter's decimal.format=NUMERIC writes a number.
    scale = int(parameters.get("scale", 0))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    unscaled = int.from_bytes(_bytes(value), "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def _variable_decimal(value: Any, parameters: Mapping[str, Any]) -> Decimal:
    # io.debezium.data.VariableScaleDecimal: {"scale": int, "value": bytes}.
    if not isinstance(value, dict):
        raise DebeziumError(f"{value!r} is not a VariableScaleDecimal struct")
    return _connect_decimal(value.get("value"), {"scale": value.get("scale", 0)})


def _bits(value: Any, parameters: Mapping[str, Any]) -> int:
    # io.debezium.data.Bits: BIT(n > 1) as java.util.BitSet.toByteArray(), which is little-endian.
    return int.from_bytes(_bytes(value), "little")


def _geometry(value: Any, parameters: Mapping[str, Any]) -> bytes:
    # io.debezium.data.geometry.Geometry / Point: {"wkb": bytes, "srid": int | null}. The binlog (and
    # so cdc's converter) has the 4-byte little-endian SRID before the WKB.
    if not isinstance(value, dict) or "wkb" not in value:
        raise DebeziumError(f"{value!r} is not a geometry struct with 'wkb'")
    srid = value.get("srid") or 0
    return struct.pack("<I", srid) + _bytes(value["wkb"])


def _zoned(value: Any, parameters: Mapping[str, Any]) -> datetime.datetime:
    # io.debezium.time.ZonedTimestamp: ISO-8601 with an offset ("2024-01-02T03:04:05.123Z"), TIMESTAMP columns.
    if not isinstance(value, str):
        raise DebeziumError(f"{value!r} is not an ISO timestamp")
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise DebeziumError(f"{value!r} has no UTC offset")
    return moment


def _scaled(unit_micros: float) -> Callable[[Any, Mapping[str, Any]], Any]:
    def since_epoch(value: Any, parameters: Mapping[str, Any]) -> datetime.datetime:
        return _EPOCH + datetime.timedelta(microseconds=_micros(value, unit_micros))
    return since_epoch


def _time_of(unit_micros: float) -> Callable[[Any, Mapping[str, Any]], Any]:
    def duration(value: Any, parameters: Mapping[str, Any]) -> datetime.timedelta:
        return datetime.timedelta(microseconds=_micros(value, unit_micros))
    return duration


def _micros(value: Any, unit_micros: float) -> int:
    number = _integer(value)
    return number // 1000 if unit_micros < 1 else number * int(unit_micros)


def _date(value: Any, parameters: Mapping[str, Any]) -> datetime.date:
    return _EPOCH_DAY + datetime.timedelta(days=_integer(value))


def _text(value: Any, parameters: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise DebeziumError(f"{value!r} is not text")
    return value


def _year(value: Any, parameters: Mapping[str, Any]) -> int:
    return _integer(value)


# Logical type name -> decoder (Debezium's "Data type mappings" of the MySQL/MariaDB connectors; Connect's
# own Date/Time/Timestamp/Decimal with time.precision.mode=connect or decimal.handling.mode=precise).
_LOGICAL: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "io.debezium.time.Date": _date,
    "org.apache.kafka.connect.data.Date": _date,
    "io.debezium.time.Time": _time_of(1000),  # milliseconds
    "io.debezium.time.MicroTime": _time_of(1),
    "io.debezium.time.NanoTime": _time_of(0.001),
    "org.apache.kafka.connect.data.Time": _time_of(1000),
    "io.debezium.time.Timestamp": _scaled(1000),  # milliseconds since the epoch, DATETIME(0-3)
    "io.debezium.time.MicroTimestamp": _scaled(1),  # DATETIME(4-6)
    "io.debezium.time.NanoTimestamp": _scaled(0.001),
    "org.apache.kafka.connect.data.Timestamp": _scaled(1000),
    "io.debezium.time.ZonedTimestamp": _zoned,
    "io.debezium.time.Year": _year,
    "org.apache.kafka.connect.data.Decimal": _connect_decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.data.Bits": _bits,
    "io.debezium.data.Enum": _text,
    "io.debezium.data.EnumSet": _text,
    "io.debezium.data.Json": _text,
    "io.debezium.data.geometry.Geometry": _geometry,
    "io.debezium.data.geometry.Point": _geometry,
}


def _by_kind(value: Any, kind: ColumnKind, fraction: int) -> Any:
    """A value without a schema: the column kind and the expected connector settings say what it is."""
    if kind is ColumnKind.DATE:
        return _date(value, {})
    if kind is ColumnKind.DATETIME:
        # time.precision.mode=adaptive_time_microseconds: DATETIME(0-3) in ms, DATETIME(4-6) in us.
        return _scaled(1000 if fraction <= 3 else 1)(value, {})
    if kind is ColumnKind.TIME:
        return _time_of(1)(value, {})  # always microseconds in adaptive_time_microseconds
    if kind is ColumnKind.TIMESTAMP:
        return _zoned(value, {})
    if kind is ColumnKind.BIT:
        if isinstance(value, bool):
            return value  # BIT(1)
        return _bits(value, {})
    if kind in (ColumnKind.BINARY, ColumnKind.GEOMETRY, ColumnKind.POINT):
        if isinstance(value, dict):
            return _geometry(value, {})
        return _bytes(value)
    if kind is ColumnKind.INTEGER and isinstance(value, str):
        return _connect_decimal(value, {"scale": 0})  # BIGINT UNSIGNED, bigint.unsigned.handling.mode=precise
    return value
