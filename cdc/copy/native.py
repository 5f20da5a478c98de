"""The snapshot's native row path (issue 13): a chunk's row packets straight to actions in Rust.

A snapshot chunk is read as the server's text-protocol row packets
(`Database.consistent_read_raw`); `cdc._native.snapshot_rows` (native/src/text.rs)
turns them into the chunk's actions, documents already JSON, with the same
per-rule `Plan` the binlog native path compiles (cdc/rules/rowpath.py
`compile_plan`). It must give exactly what the Python path gives (PyMySQL's
converters, then `ActionBuilder` as for an insert at the chunk's position), byte
for byte, so everything else stays with the Python path:

* per table (logged once per table definition and result shape): whatever
  `compile_plan` refuses (some `convert:` chains and formats, ...), rules with
  relations, and result columns whose type and charset PyMySQL would hand over
  as something other than what the kind expects (text in a BINARY column, ...);
* per chunk (`Decline`): a zero date (the Python path counts and logs its row),
  an invalid date PyMySQL keeps as text, text that is not UTF-8, a NULL id, an
  invalid index name, a value a `convert:` conversion leaves to Python, ... The
  Python path then converts the same packets.

Bytes that do not parse stop the snapshot with a `RowError` naming the table, the
row's place in the chunk and the key the chunk starts after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from cdc.errors import RowError
from cdc.model import Action, BinlogPosition, Column, ColumnKind, EncodedActions, EncodedParts
from cdc.mysql.server import PacketRows
from cdc.mysql.types import BINARY_CHARSET, INTEGER_CODES, STRING_CODES, FieldType
from cdc.native import AVAILABLE as NATIVE_AVAILABLE
from cdc.native import native as _native
from cdc.rules import ActionBuilder, document_version, rowpath
from cdc.rules.actions import _columns_for
from cdc.rules.model import Rule

log = logging.getLogger("cdc.snapshot")

# A result column's field type (cdc/mysql/types.py `FieldType`) -> how text.rs reads it, by the column's kind.
_FLOATS = frozenset({FieldType.FLOAT, FieldType.DOUBLE})
_DECIMALS = frozenset({FieldType.DECIMAL, FieldType.NEWDECIMAL})
_SIMPLE = {ColumnKind.DATE: (frozenset({FieldType.DATE, FieldType.NEWDATE}), "date"),
           ColumnKind.DATETIME: (frozenset({FieldType.DATETIME}), "datetime"),
           ColumnKind.TIMESTAMP: (frozenset({FieldType.TIMESTAMP}), "timestamp"),
           ColumnKind.TIME: (frozenset({FieldType.TIME}), "time"),
           ColumnKind.YEAR: (frozenset({FieldType.YEAR}), "year"), ColumnKind.INTEGER: (INTEGER_CODES, "int"),
           ColumnKind.DECIMAL: (_DECIMALS, "decimal"), ColumnKind.FLOAT: (_FLOATS, "float"),
           ColumnKind.DOUBLE: (_FLOATS, "double")}


def text_columns(columns: Sequence[Column], fields: Sequence[tuple[str, int, int]], rule: Rule,
                 builder: ActionBuilder) -> list[tuple[str, int]]:
    """How native/src/text.rs reads each result column, or `rowpath.Unsupported` with why."""
    if len(columns) != len(fields):
        raise rowpath.Unsupported("the result's columns differ from the table's")
    mapped = _columns_for(columns, rule)
    out = []
    for column, (name, ftype, charset) in zip(columns, fields):
        kind = mapped[column.name].kind
        binary = charset == BINARY_CHARSET
        if kind is ColumnKind.DECIMAL and ftype in _DECIMALS:
            out.append(("decimal", int(builder.value_options.decimal_as == "number")))
        elif kind in _SIMPLE and ftype in _SIMPLE[kind][0]:
            out.append((_SIMPLE[kind][1], 0))
        elif kind in (ColumnKind.STRING, ColumnKind.ENUM, ColumnKind.SET) and ftype in STRING_CODES and not binary:
            out.append(("set" if kind is ColumnKind.SET else "text", 0))
        elif kind is ColumnKind.BINARY and ftype in STRING_CODES and binary:
            out.append(("binary", mapped[column.name].pad_to or 0))
        elif kind is ColumnKind.JSON and (ftype == FieldType.JSON or ftype in STRING_CODES and not binary):
            out.append(("json_text", 0))
        elif kind is ColumnKind.BIT and ftype == FieldType.BIT and binary:
            out.append(("bit", int(builder.value_options.bit1_as_bool and column.bits == 1)))
        elif kind in (ColumnKind.GEOMETRY, ColumnKind.POINT) and ftype == FieldType.GEOMETRY and binary:
            # PyMySQL keeps a binary-charset GEOMETRY field as bytes: values.py converts those.
            out.append(("geometry", int(kind is ColumnKind.POINT and builder.value_options.points == "geo_point")))
        else:
            raise rowpath.Unsupported(f"column {column.name!r}: a {kind.value} column read as field type {ftype} "
                                      f"(charset {charset})")
    return out


def _readers(columns: Sequence[Column], rule: Rule) -> list[tuple]:
    """Binlog readers that `compile_plan` accepts: it checks them, the snapshot reads text instead.

    Only the reader kinds `compile_plan` looks at matter (JSON in a text column,
    BINARY's pad, BIT's bool); the Table built from them is thrown away.
    """
    mapped = _columns_for(columns, rule)
    out: list[tuple] = []
    for column in columns:
        kind = mapped[column.name].kind
        if kind is ColumnKind.JSON:
            out.append(("text", 4, 0, 0, None))
        elif kind is ColumnKind.BINARY:
            out.append(("binary", 4, 0, 0, None))
        elif kind is ColumnKind.BIT:
            bits = column.bits or 64
            out.append(("bit", bits, (bits + 7) // 8, 0, None))
        else:
            out.append(("int", 8, 0, 0, None))
    return out


@dataclass(slots=True)
class _Compiled:
    columns: tuple[Column, ...]
    fields: tuple[tuple[str, int, int], ...]
    rules: Sequence[Rule]
    table: _native.TextTable | None  # None: the Python path
    plans: list[_native.Plan] | None
    reason: str | None
    maker: _native.Maker | None = None  # makes the rules' NativeAction objects (native/src/actions.rs)


class SnapshotRows:
    """Turns a chunk's `PacketRows` into actions natively, or says the Python path must (None)."""

    def __init__(self, builder: ActionBuilder, mode: rowpath.RowPathMode = "auto",
                 request: tuple[int, int] | None = None):
        self.builder = builder
        self.mode = mode
        # (batch.max_actions, batch.max_bytes): a chunk bigger than one bulk request comes in parts.
        self.request = request or (1 << 62, 1 << 62)
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self.tables: dict[str, str] = {}  # "schema.table" -> "native" or "python: why", as last compiled

    @property
    def enabled(self) -> bool:
        return self.mode != "python" and NATIVE_AVAILABLE

    def actions(self, schema: str, table: str, columns: tuple[Column, ...], position: BinlogPosition,
                rows: PacketRows, after: Any = None) -> Sequence[Action] | None:
        """The chunk's actions (encoded: `EncodedActions`, or `EncodedParts` when bigger than a bulk request),
        or None for the Python path (this table, or this chunk)."""
        compiled = self._compile(schema, table, columns, rows.fields)
        native_table, plans, maker = compiled.table, compiled.plans, compiled.maker
        if native_table is None:
            return None
        assert plans is not None and maker is not None  # set with the table (`_compile`)
        native = _native
        version = document_version(position, self.builder.version_epoch)
        packets = rows.packets
        try:
            # The chunk's bulk bodies, each a request, without a Python object per action (issue 13);
            # the actions are made from the same packets only if something asks for them.
            parts = native.snapshot_body(native_table, plans, packets, maker, version,
                                         *self.request)
        except native.Decline:
            return None  # the Python path gives these rows' exact actions, or their exact error
        except native.DecodeError as exc:
            where = "from the start" if after is None else f"after key {after}"
            raise RowError(f"cannot read the snapshot rows of {schema}.{table} at {position} (chunk {where}, "
                           f"{len(rows.packets)} rows): {exc}") from None

        made: list[list[Action]] = []

        def make_all() -> list[Action]:
            if not made:
                made.append(native.snapshot_rows(native_table, plans, packets,
                                                 (maker, schema, table, position, version)))
            return made[0]

        if len(parts) == 1:
            body, count, weight = parts[0]
            return EncodedActions(body, count, weight, make_all)

        def make_part(start: int, end: int) -> Callable[[], list[Action]]:
            return lambda: make_all()[start:end]

        encoded: list[EncodedActions] = []
        start = 0
        for body, count, weight in parts:
            encoded.append(EncodedActions(body, count, weight, make_part(start, start + count)))
            start += count
        return EncodedParts(encoded)

    def _compile(self, schema: str, table: str, columns: tuple[Column, ...],
                 fields: tuple[tuple[str, int, int], ...]) -> _Compiled:
        key = (schema, table)
        compiled = self._compiled.get(key)
        if compiled is not None and compiled.columns == columns and compiled.fields == fields:
            return compiled
        rules = self.builder.rules.matches(schema, table)
        name = f"{schema}.{table}"
        native_table, plans, reason = None, None, None
        if not self.enabled:
            reason = "row_path: python" if self.mode == "python" else "cdc was installed without its native module"
        elif not rules:
            reason = "no rule"
        elif any(rule.relations for rule in rules):
            reason = "a rule with relations (documents from several tables)"
        else:
            try:
                specs = text_columns(columns, fields, rules[0], self.builder)
                for rule in rules[1:]:
                    if text_columns(columns, fields, rule, self.builder) != specs:
                        raise rowpath.Unsupported("rules that read the table's columns differently")
                plans = [rowpath.compile_plan(rule, schema, table, columns, _readers(columns, rule), self.builder)[1]
                         for rule in rules]
                zone = (rowpath.timestamp_zone(self.builder.value_options.timestamp_tz)
                        if any(reader == "timestamp" for reader, _ in specs) else None)
                native_table = _native.TextTable(specs, zone)
            except rowpath.Unsupported as exc:
                reason, plans = str(exc), None
        compiled = self._compiled[key] = _Compiled(columns, fields, rules, native_table, plans, reason,
                                                   rowpath.action_maker(rules) if native_table is not None else None)
        rowpath.report_row_path(log, "snapshot row path", self.tables, name,
                                reason if native_table is None else None, self.enabled)
        return compiled
