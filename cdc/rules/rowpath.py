"""The native row path (issue 19): rows events straight to actions in compiled code.

`cdc._native` (Rust, native/) decodes a rows event's bytes and writes each row's
actions, documents already as JSON, following a `Plan` compiled here from a
rule and the table's definition. It must give exactly what the Python path
(`ActionBuilder`: library decoding, `values.py`, `actions.py`) gives, byte for
byte, so everything it does not reproduce exactly goes to the Python path:

* per table, when the plan is compiled (logged once per table definition):
  `convert: datetime` formats other than plain and `%Y %m %d %H %M %S %%`, a
  `convert:` conversion after `json`, charsets cdc has no table or rule for (none of
  MariaDB 10.11's or MySQL 9.7's: cdc/mysql/charsets.py), types the library
  does not read, template formats other than plain and `%Y %m %d %H %M %S`,
  ids, routing or index names made of JSON, GEOMETRY or POINT columns, field
  names that collide, and a `timestamp_timezone` that is not a zoneinfo zone or
  fixed offset (set in code; the config takes IANA names only);
* per event, when the native code meets a value it leaves to Python (`Decline`):
  a NULL or zero date in an id, an invalid index name, odd JSON text, a
  geometry value values.py refuses (native/src/geometry.rs), a SET in an id,
  routing or index name (a list, which actions.py refuses), a TIMESTAMP outside
  the zone table (`zone_offsets`) in a non-UTC zone, a value a `convert:`
  conversion cannot take or that native/src/convert.rs leaves to Python
  (non-ASCII `bool` text, `lower` of a capital sigma, ...). The Python path
  then decodes the same event through the library and gives the action or the
  error, with its message, as before.

Text of every charset of MariaDB 10.11 and MySQL 9.7 is native (native/src/charset.rs),
MySQL's gb18030 with its four-byte characters too; bytes a charset does not take and
UCS-2/UTF-32 surrogates are a `Decline`.

GEOMETRY and POINT columns (GeoJSON, or a POINT column's `{"lat", "lon"}`) and
ids, routing and index names of FLOAT and DOUBLE columns (Python's repr of the
value, native/src/json.rs `float_repr`) are native, and so are
`values.decimal_as: number` (float(Decimal) of the exact value) and a non-UTC
`timestamp_timezone` (the zone's offsets, found here, looked up per value in
native/src/values.rs `Zone`), and `convert:` conversions (native/src/convert.rs).

Bytes that do not decode (`DecodeError`) stop cdc with the table and position.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import orjson

from cdc.errors import ConfigError, RowError
from cdc.native import AVAILABLE as NATIVE_AVAILABLE
from cdc.native import native as _native
from cdc.model import (UPDATE_RETRY_ON_CONFLICT, Action, ActionType, BinlogPosition, Column, ColumnKind, DocFromJson,
                       Op, RowChange, RowsData)
from cdc.rules.actions import ActionBuilder, _columns_for, document_version
from cdc.rules.model import Conversion, Rule
from cdc.rules.names import INDEX_FORBIDDEN, TemplateField, parse_template

log = logging.getLogger("cdc.rowpath")

RowPathMode = Literal["auto", "native", "python"]
_DATE_FORMAT = re.compile(r"(?:[^%]|%[YmdHMS%])*")
_DATE_KINDS = (ColumnKind.DATE, ColumnKind.DATETIME, ColumnKind.TIMESTAMP)
# Kinds no id, routing or index name is made of natively. A SET is a list, which actions.py
# `_id_part` refuses: its plan compiles and each event declines, so the Python path names it.
_KEY_KINDS_REFUSED = (ColumnKind.JSON, ColumnKind.GEOMETRY, ColumnKind.POINT, ColumnKind.OTHER)
_OP_CODES = {Op.INSERT: 0, Op.UPDATE: 1, Op.DELETE: 2}
_TYPES = (ActionType.INDEX, ActionType.DELETE, ActionType.UPDATE)


class Unsupported(Exception):
    """A rule or table the native plan does not do exactly; the reason is the message."""


class NativeAction(Action):
    """An `Action` made by the native path: `doc_json` comes ready, `doc` is decoded when asked for."""

    doc = DocFromJson()


def _is_utc(tz: datetime.tzinfo) -> bool:
    return tz.utcoffset(datetime.datetime(2000, 1, 1)) == datetime.timedelta(0) and \
        tz.utcoffset(datetime.datetime(2000, 7, 1)) == datetime.timedelta(0) and \
        str(tz) in ("UTC", "Etc/UTC", "UTC+00:00", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Etc/GMT", "GMT")


# The UTC seconds a TIMESTAMP's zone table covers: MySQL's and MariaDB's TIMESTAMP range
# ('1970-01-01 00:00:01' to '2038-01-19 03:14:07' UTC, MySQL manual "The DATE, DATETIME, and
# TIMESTAMP Types"), i.e. the binlog's signed 4-byte seconds. A value outside it (a zero
# TIMESTAMP is second 0) is declined by the native code, and the Python path does the event.
_ZONE_START, _ZONE_END = 0, 1 << 31
_ZONE_STEP = 6 * 3600  # how far apart the offsets are sampled before the changes are bisected
_UTC_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_zone_tables: dict[datetime.tzinfo, tuple[list[tuple[int, int]], int]] = {}


def zone_offsets(tz: datetime.tzinfo) -> tuple[list[tuple[int, int]], int]:
    """`tz`'s UTC offsets over TIMESTAMP's range, as the native code looks them up (values.rs `Zone`).

    ([(first UTC second, offset in seconds)], end): asked of the zone itself, the way
    values.py converts (`astimezone` of the UTC instant), so they are exactly the
    offsets the Python path writes. The offset is sampled every `_ZONE_STEP` seconds and
    every change is bisected to its second (zone transitions fall on whole seconds: TZif
    stores seconds); a zone that changes offset and back within six hours would be missed,
    which no zone in the tz database does between 1970 and 2038. Cached per zone.
    """
    from zoneinfo import ZoneInfo

    cached = _zone_tables.get(tz)
    if cached is not None:
        return cached
    if type(tz) not in (ZoneInfo, datetime.timezone):  # other tzinfo classes may change offset at any time
        raise Unsupported(f"values.timestamp_timezone {tz} is not a zoneinfo zone")

    def offset(second: int) -> int:
        delta = (_UTC_EPOCH + datetime.timedelta(seconds=second)).astimezone(tz).utcoffset()
        assert delta is not None
        if delta.microseconds:
            raise Unsupported(f"values.timestamp_timezone {tz} has an offset with a fraction of a second")
        return delta.days * 86400 + delta.seconds

    transitions = [(_ZONE_START, offset(_ZONE_START))]

    def changes(low: int, low_offset: int, high: int, high_offset: int) -> None:
        # The offset is low_offset at low and high_offset at high: find where it changes in (low, high].
        if high - low == 1:
            transitions.append((high, high_offset))
            return
        middle = (low + high) // 2
        middle_offset = offset(middle)
        if middle_offset != low_offset:
            changes(low, low_offset, middle, middle_offset)
        if high_offset != middle_offset:
            changes(middle, middle_offset, high, high_offset)

    previous, previous_offset = transitions[0]
    for second in [*range(_ZONE_START + _ZONE_STEP, _ZONE_END, _ZONE_STEP), _ZONE_END - 1]:
        current = offset(second)
        if current != previous_offset:
            changes(previous, previous_offset, second, current)
        previous, previous_offset = second, current
    table = _zone_tables[tz] = (transitions, _ZONE_END)
    return table


def timestamp_zone(tz: datetime.tzinfo) -> tuple[list[tuple[int, int]], int] | None:
    """What the native tables take for values.timestamp_timezone: None for UTC, else `zone_offsets`."""
    return None if _is_utc(tz) else zone_offsets(tz)


def _key(name: str) -> str:
    return orjson.dumps(name).decode()


def compile_plan(rule: Rule, schema: str, table: str, columns: tuple[Column, ...],
                 readers: Sequence[tuple | None], builder: ActionBuilder) -> tuple[_native.Table, _native.Plan]:
    """(native Table, Plan) for one rule and table definition, or `Unsupported` with the reason."""
    if not NATIVE_AVAILABLE:
        raise Unsupported("cdc was installed without its native module")
    if not rule.checked:
        raise Unsupported("the table was not checked at start-up")
    unread = [c.name for c, r in zip(columns, readers) if r is None]
    if unread:
        raise Unsupported(f"column(s) {', '.join(map(repr, unread))}: a type or charset the native path leaves "
                          "to the library")
    options = builder.value_options
    mapped = _columns_for(columns, rule)
    kinds = [mapped[c.name].kind for c in columns]
    zone = timestamp_zone(options.timestamp_tz) if ColumnKind.TIMESTAMP in kinds else None
    index_of = {c.name: i for i, c in enumerate(columns)}
    specs = []
    for column, kind, reader in zip(columns, kinds, readers):
        assert reader is not None
        spec = list(reader)
        if kind is ColumnKind.JSON and spec[0] != "json_binary":  # MySQL's binary JSON is read as it is
            if spec[0] != "text":
                raise Unsupported(f"column {column.name!r}: JSON in a {spec[0]} column")
            spec[0] = "json_text"
        elif spec[0] == "binary":
            spec[2] = mapped[column.name].pad_to or 0
        elif spec[0] == "bit":
            spec[3] = int(options.bit1_as_bool and column.bits == 1)
        elif spec[0] == "geometry":  # values.py: only a POINT column's points become {"lat", "lon"}
            spec[2] = int(kind is ColumnKind.POINT and options.points == "geo_point")
        elif spec[0] == "decimal":  # values.py gives any Decimal as float(value) under decimal_as: number
            spec[3] = int(options.decimal_as == "number")
        elif spec[0].startswith("timestamp") and zone is not None and kind is not ColumnKind.TIMESTAMP:
            # values.py converts to the zone by the column's kind; the native table by the reader.
            raise Unsupported(f"column {column.name!r}: a TIMESTAMP read as {kind.value} in a non-UTC zone")
        if kind is ColumnKind.OTHER:
            raise Unsupported(f"column {column.name!r} of kind {kind.value}")
        specs.append(tuple(spec))

    include = set(rule.include) if rule.include is not None else None
    renames = dict(rule.rename)
    conversions = dict(rule.conversions)
    names: list[str] = []
    doc = []
    convs = []
    for i, column in enumerate(columns):
        if include is not None and column.name not in include or column.name in rule.exclude:
            continue
        names.append(renames.get(column.name, column.name))
        doc.append((i, _key(names[-1])))
        convs.append(_conversions(column.name, conversions.get(column.name, ())))
    consts = []
    for name, value in rule.fields:
        names.append(name)
        consts.append(f",{_key(name)}:{orjson.dumps(value).decode()}")
    for field_name, value in ((rule.add_table_name, table), (rule.add_schema_name, schema)):
        if field_name:
            names.append(field_name)
            consts.append(f",{_key(field_name)}:{_key(value)}")
    soft = None
    if rule.on_delete == "soft":
        names.append(rule.soft_delete_field)
        soft = _key(rule.soft_delete_field)
    if len(set(names)) != len(names):
        raise Unsupported("two fields of the document share a name")

    captures = {"schema": rule.schema, "table": rule.table, **dict(rule.captures)}

    def template(text: str, what: str) -> list[tuple[int, str, int]]:
        parts: list[tuple[int, str, int]] = []
        for part in parse_template(text).parts:
            if isinstance(part, str):
                parts.append((0, part, 0))
                continue
            assert isinstance(part, TemplateField)
            if part.meta:
                parts.append((0, captures.get(part.name, ""), 0))
                continue
            if part.name not in index_of:
                raise Unsupported(f"{what} names a column the table lacks")
            kind = kinds[index_of[part.name]]
            if kind in _KEY_KINDS_REFUSED:
                raise Unsupported(f"{what} made of a {kind.value} column")
            if "%" in part.spec:
                if kind not in _DATE_KINDS or not _DATE_FORMAT.fullmatch(part.spec):
                    raise Unsupported(f"{what} date format {part.spec!r}")
                parts.append((2, part.spec, index_of[part.name]))
            elif part.spec:
                raise Unsupported(f"{what} format {part.spec!r}")
            else:
                parts.append((1, "", index_of[part.name]))
        return parts

    id_cols: list[int] = []
    id_tpl = None
    if rule.id_template:
        id_tpl = template(rule.id_template, "the id")
    else:
        for name in rule.id_columns or ():
            if name not in index_of:
                raise Unsupported("the id names a column the table lacks")
            if kinds[index_of[name]] in _KEY_KINDS_REFUSED:
                raise Unsupported(f"the id made of a {kinds[index_of[name]].value} column")
            id_cols.append(index_of[name])
        if not id_cols:
            raise Unsupported("no id columns")
    index = template(rule.index, "the index name")
    if not all(text.isascii() for kind, text, _ in index if kind == 0):
        raise Unsupported("a non-ASCII index name")
    routing = template(rule.routing, "the routing") if rule.routing else None
    on_delete = {"delete": 0, "ignore": 1, "soft": 2}[rule.on_delete]
    plan = _native.Plan(doc, "".join(consts), soft, id_cols, rule.id_separator, id_tpl, index, routing,
                        rule.mode == "index", on_delete, "".join(sorted(INDEX_FORBIDDEN)), convs,
                        # None (strftime pads neither way) refused every datetime conversion above,
                        # so no plan that reads the value gets here; pyo3 takes a bool only.
                        bool(_PAD_YEAR))
    return _native.Table(specs, zone), plan


def _conversions(column: str, conversions: Sequence[Conversion]) -> list[tuple[str, str | None]]:
    """A doc field's `convert:` conversions for the plan (native/src/convert.rs), or `Unsupported`."""
    out: list[tuple[str, str | None]] = []
    for n, conversion in enumerate(conversions):
        name, arg = conversion.name, conversion.arg
        if name == "json" and n < len(conversions) - 1:
            # The parsed value may be anything JSON; the native code keeps it as written JSON.
            raise Unsupported(f"column {column!r}: convert: a conversion after json")
        if name == "datetime":
            # values.py apply_conversion: arg or its default; convert.rs writes only these directives.
            arg = arg or "%Y-%m-%dT%H:%M:%S"
            if not _DATE_FORMAT.fullmatch(arg) or "\0" in arg:
                raise Unsupported(f"column {column!r}: convert: datetime format {arg!r}")
            if _PAD_YEAR is None:
                raise Unsupported(f"column {column!r}: convert: datetime: this Python's strftime writes year 5 as "
                                  f"{datetime.date(5, 1, 1).strftime('%Y')!r}")
        if name in ("lower", "upper"):
            _case_table()
        out.append((name, arg))
    return out


def _pad_year() -> bool | None:
    """Whether this Python's strftime pads %Y below year 1000 to four digits (None: neither way).

    glibc's strftime writes the year as it is (year 5 -> "5"), and CPython 3.11 on Linux hands
    %Y to it; other platforms and later CPythons write "0005". Asked once, not assumed.
    """
    year = datetime.date(5, 1, 1).strftime("%Y")
    return {"5": False, "0005": True}.get(year)


_PAD_YEAR = _pad_year()
_CASES_SET = False


def _case_table() -> None:
    """Give the native code this Python's str.lower()/upper() of every BMP code point they change.

    Python 3.11 follows Unicode 14.0, Rust's std a newer version, so their case mappings differ
    for the code points added or changed since (55 each way between Rust 1.95 and Python 3.11, such
    as U+019B, U+0264, U+1C89, U+A7CB); the native code takes Python's own, built here
    once per process (a few ms). Text with U+03A3 to lower (Final_Sigma depends on its neighbours)
    or with code points past U+FFFF is left to the Python path (Decline).
    """
    global _CASES_SET
    if _CASES_SET:
        return
    lower, upper = [], []
    for code in range(0x80, 0x10000):
        char = chr(code)
        if (low := char.lower()) != char:
            lower.append((code, low))
        if (up := char.upper()) != char:
            upper.append((code, up))
    _native.case_table(lower, upper)
    _CASES_SET = True


@dataclass(slots=True)
class _Compiled:
    """A table definition's plans under its rules, or why the Python path does it."""

    columns: Any
    readers: Any
    table: _native.Table | None
    plans: list[_native.Plan] | None
    rules: Any
    reason: Any
    maker: _native.Maker | None = None  # makes the rules' NativeAction objects (native/src/actions.rs)


class PreparedChange(RowChange):
    """A whole rows event the native path did: no values, its `count` rows' actions in `prepared`.

    One item for the event, not one per row: the pipeline counts `count` row
    changes (`row_count`) and asks `RowPath.actions` for its actions, which hands
    back `prepared`. Its `row_index` is 0, the event's first row.
    """

    prepared: list[Action]
    count: int


def report_row_path(logger: logging.Logger, what: str, tables: dict[str, str], name: str, reason: str | None,
                    native: bool) -> None:
    """Log once per table and state which path converts its rows (`reason`: why not the native one).

    A table that falls back while the native path runs is a warning: the rule asks
    for something the native plan does not do exactly, and the user should know.
    """
    state = "native" if reason is None else f"python: {reason}"
    if tables.get(name) == state:
        return
    tables[name] = state
    if reason is not None and native:
        logger.warning("%s for %s: python (%s); the native plan does not do that exactly", what, name, reason,
                       extra={"table": name, "row_path": "python"})
    else:
        logger.info("%s for %s: %s", what, name, state, extra={"table": name, "row_path": state})


def row_count(change: RowChange) -> int:
    """How many row changes `change` stands for: a native rows event's rows, else 1."""
    return change.count if change.__class__ is PreparedChange else 1


class RowPath:
    """Which path turns a `RowsData` into actions, and the native one; a `Converter`
    (cdc/stream/protocols.py) wrapping the Python path's `ActionBuilder`.

    `prepare` runs on the source's reader thread: it gives the event's rows as
    one `PreparedChange` (native) or as the library decodes them (`RowsData.decode`,
    the Python path). `actions` gives a `PreparedChange`'s ready actions and
    hands every other change to the builder. `mode`: `python` never uses the native code; `native` and `auto` use it
    where the plan allows (`native` without the module stops cdc: `check_mode`).
    Every table that falls back is logged once per table definition, with why.
    """

    LIMIT = 1024  # table definitions kept; past it, start over

    def __init__(self, builder: ActionBuilder, mode: RowPathMode = "auto",
                 decoded: frozenset[tuple[str, str]] = frozenset()):
        self.builder = builder  # the Python path: its rules, settings and counters are the native path's too
        self.mode = mode
        # (schema, table)s whose rows the chain needs as values (tables joined into documents built
        # from several tables, issue 15): decoded by the library, whatever their rules allow.
        self.decoded = decoded
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self.tables: dict[str, str] = {}  # "schema.table" -> "native" or "python: reason", as last compiled
        self._version_base: tuple[str, int] = ("", 0)  # (binlog file, its version without the offset)

    @property
    def native(self) -> bool:
        return self.mode != "python" and NATIVE_AVAILABLE

    def actions(self, change: RowChange) -> list[Action]:
        if change.__class__ is PreparedChange:
            return change.prepared
        return self.builder.actions(change)

    def prepare(self, rows: RowsData) -> Sequence[RowChange]:
        """The event's row changes: native ones with their actions, or the library's."""
        if self.decoded and (rows.schema, rows.table) in self.decoded:
            return rows.decode()
        compiled = self._compile(rows)
        plans = compiled.plans
        if plans is not None:
            table, maker = compiled.table, compiled.maker
            assert table is not None and maker is not None  # set with the plans (`_compile`)
            try:
                count, actions, zero_rows = _native.decode(table, plans, _OP_CODES[rows.op], rows.body,
                                                           (maker, rows.schema, rows.table, rows.position,
                                                            self._version(rows.position)))
            except _native.Decline:
                pass  # the Python path gives this event's exact actions, or its exact error
            except _native.DecodeError as exc:
                raise RowError(f"cannot decode the rows event of {rows.schema}.{rows.table} at {rows.position} "
                               f"({len(rows.body)} bytes of rows): {exc}") from None
            else:
                return self._prepared(rows, count, actions, zero_rows)
        return rows.decode()

    def changes_and_actions(self, rows: RowsData) -> tuple[Sequence[RowChange], list[Action]]:
        """`prepare`, then every change's actions: what the pipeline gets for the event (for tests and benches)."""
        changes = self.prepare(rows)
        actions: list[Action] = []
        for change in changes:
            actions.extend(self.actions(change))
        return changes, actions

    def _compile(self, rows: RowsData) -> _Compiled:
        key = (rows.schema, rows.table)
        compiled = self._compiled.get(key)
        # The source hands out one columns tuple per table definition; an ALTER TABLE gives
        # another (new names, types or charsets), and the plan is compiled again.
        if compiled is not None and compiled.columns is rows.columns:
            return compiled
        if compiled is not None and compiled.columns == rows.columns and compiled.readers == rows.readers:
            compiled.columns = rows.columns
            return compiled
        if len(self._compiled) >= self.LIMIT:
            self._compiled.clear()
        rules = self.builder.rules.matches(rows.schema, rows.table)
        name = f"{rows.schema}.{rows.table}"
        table, plans, reason = None, None, None
        if not self.native:
            reason = "row_path: python" if self.mode == "python" else "cdc was installed without its native module"
        elif not rules:
            reason = "no rule"
        else:
            try:
                compiled_rules = [compile_plan(rule, rows.schema, rows.table, rows.columns, rows.readers, self.builder)
                                  for rule in rules]
                table = compiled_rules[0][0]
                plans = [plan for _, plan in compiled_rules]
            except Unsupported as exc:
                reason = str(exc)
        compiled = self._compiled[key] = _Compiled(rows.columns, rows.readers, table, plans, rules, reason,
                                                   action_maker(rules) if plans is not None else None)
        if rules:
            report_row_path(log, "row path", self.tables, name, reason if plans is None else None, self.native)
        return compiled

    def _version(self, position: BinlogPosition) -> int:
        """The event's document version (`document_version`), the file's part parsed once per file."""
        file, pos = position.file, position.pos
        if self._version_base[0] != file:
            self._version_base = (file, document_version(BinlogPosition(file, 0), self.builder.version_epoch))
        if pos >= 1 << 32:
            raise RowError(f"binlog position {position} does not fit in a document version")
        return self._version_base[1] | pos

    def _prepared(self, rows: RowsData, count: int, actions: list[Action],
                  zero_rows: list[int]) -> Sequence[RowChange]:
        if count == 0:
            return ()
        change = _stand_in(rows, count, actions)
        builder = self.builder
        for _row in zero_rows:
            builder.stats.zero_dates += 1
            builder._zero_dates(change)
        return (change,)


def _stand_in(rows: RowsData, count: int, prepared: list[Action]) -> PreparedChange:
    """The event's row changes as one item (the values stay in Rust)."""
    change = PreparedChange.__new__(PreparedChange)
    values = change.__dict__
    values.update(op=rows.op, schema=rows.schema, table=rows.table, columns=rows.columns, before=None,
                  after=None, position=rows.position, timestamp=rows.timestamp, row_index=0,
                  prepared=prepared, count=count)
    # Read ahead and then held with their actions until acknowledged: out of the cyclic
    # collector like the actions themselves (native/src/actions.rs says why that is safe;
    # none of these refers back to anything that refers to it).
    _native.untrack(change, values, prepared, rows.position)
    return change


def action_maker(rules: Sequence[Rule]) -> _native.Maker:
    """What the native code needs to make the rules' actions as `NativeAction` objects (one per plan, in order)."""
    return _native.Maker(NativeAction, _TYPES, [(rule.pipeline if rule.mode == "index" else None, rule.mode == "index")
                                                for rule in rules], UPDATE_RETRY_ON_CONFLICT)


def check_mode(mode: RowPathMode) -> tuple[int, str]:
    """The start-up log line about the row path (level, text); `native` without the module is an error."""
    if mode == "python":
        return logging.INFO, "row path: python (row_path: python)"
    if not NATIVE_AVAILABLE:
        if mode == "native":
            raise ConfigError("row_path: native, but cdc was installed without its native module (cdc._native): "
                              "install it with a Rust toolchain (cargo) on PATH, or set row_path: auto")
        return logging.WARNING, ("row path: python (cdc was installed without its native module; reinstall with "
                                 "cargo on PATH for the native row path)")
    return logging.INFO, f"row path: native where the rules allow (row_path: {mode}); tables that fall back are logged"
