"""Debezium change events straight to actions, per table and message schema planned once (issue 32).

`DebeziumInput` (cdc/app/kafka_mode.py) turned every message into a `RowChange`
(cdc/kafka/debezium.py `ChangeDecoder`) and that into actions through
`ActionBuilder` (cdc/rules/actions.py, values.py): layers that cost about 95 µs of
CPU a message, four times the cdc-format writer. `Planner` makes the same actions
without those layers: per (table, envelope schema, column order) it compiles, for
each rule of the table, each column's way from its JSON value to its document
value, and then builds each message's documents, ids, versions, routings and
index names directly.

Exact by construction. A column's value goes through the very functions of the
slow path (its `ChangeDecoder` decoder, then `values.convert_value` with the
rule's column), except where the JSON value is provably already the document
value or has a short way there; that is checked per value by its exact Python
type (an `int` of an integer column, a `str` of a text or ENUM column, a `float`
of a DOUBLE column, JSON text that orjson parses, a plain DECIMAL text, a
DATETIME or DATE number since the epoch: `_fast_code` says why each is the
same), and any other value takes the functions. The per-column code is Python
made per plan (`_compile`). Places come from `actions.place_of`, versions from
`actions.document_version`.

What it leaves to the slow path, which then gives today's actions or error:

* per table and schema (the plan is not made): rules in `mode: update`, rules not
  checked at start-up, an id, index name or routing made of a BINARY column
  (`_Row.key_value`'s padding), field names that collide (rename, fields,
  add_table_name, soft delete field);
* per message: tombstones, truncates, anything `ChangeDecoder.decode` would refuse
  or that is not the plain layout (a second `,"payload":`, an unknown op, no
  position, an incremental snapshot row, before and after with other columns),
  tables no rule maps, a value any function refuses (an exception of any kind,
  wherever it comes from: the slow path raises it again with its message), and a
  row with a zero date (`ActionBuilder` counts and logs those per row).

So a message the plan does not cover costs what it cost before (and the attempt), and
nothing comes out differently (`Planner.declined` counts those messages):
tests/unit/test_kafka_debezium_plan.py runs both paths over generated messages of every
column type and rule option and compares the actions byte for byte.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta
from typing import Any, Callable

import orjson

from cdc.kafka.debezium import _EPOCH, _EPOCH_DAY, _OPS, _PAYLOAD, _SCHEMA, _SNAPSHOT, NO_SHAPE, STREAM_OFFSET, \
    ChangeDecoder, Shape, _decoder, _fields
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, DocFromJson, Op
from cdc.rules.actions import _EPOCH_SHIFT, _FILE_SHIFT, ActionBuilder, _columns_for, _id_part, document_id, \
    place_of
from cdc.rules.model import Rule
from cdc.rules.names import parse_template
from cdc.rules.values import _LONG_DIGITS, convert_value, apply_conversion

log = logging.getLogger("cdc.sink")
_new, _set, _loads, _dumps = object.__new__, object.__setattr__, orjson.loads, orjson.dumps

# How a column's JSON value becomes its document value (see the module docstring).
_GENERIC, _INT, _STR, _FLOAT, _JSON, _DECIMAL, _DATETIME, _DATE = range(8)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # values.py `_int`: what orjson.dumps writes as a number
_INT_TYPES = ("int8", "int16", "int32", "int64")
# BigDecimal.toPlainString() of decimal.handling.mode=string: format(Decimal(text), "f") is the text itself
# (no exponent, no leading zeros, the scale kept); a negative zero is not (values.py writes it unsigned).
_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


class _Fallback(Exception):
    """This message goes the slow way."""


class _RulePlan:
    """One rule's columns and document for one table plan."""

    def __init__(self, rule: Rule, names: tuple[str, ...], convert: dict[str, Callable[[Any], Any]],
                 fast: dict[str, tuple[int, int]], decoders: dict[str, Callable[[Any], Any]], schema: str,
                 table: str):
        self.rule = rule
        # (name, its fast code, its slow conversion): every column, as the images hold them.
        self.columns = [(name, *fast[name], convert[name]) for name in names]
        include = set(rule.include) if rule.include is not None else None
        exclude = set(rule.exclude)
        renames = dict(rule.rename)
        conversions = dict(rule.conversions)
        # (column, field name, its `convert:` conversions) in the document's order, as `_document` puts them.
        self.doc_columns = [(name, renames.get(name, name), tuple(conversions.get(name, ())))
                            for name in names if not (include is not None and name not in include or name in exclude)]
        constants = list(rule.fields)
        if rule.add_table_name:
            constants.append((rule.add_table_name, table))
        if rule.add_schema_name:
            constants.append((rule.add_schema_name, schema))
        self.constants = constants
        out = [f for _, f, _ in self.doc_columns] + [n for n, _ in constants]
        self.soft = rule.on_delete == "soft"
        if self.soft:
            out.append(rule.soft_delete_field)
        if len(set(out)) != len(out):
            raise _Fallback("field names collide")  # `_document` raises ConversionError: the slow path says it
        self.ignore_deletes = rule.on_delete == "ignore"
        # The columns ids, index names and routing are made of (`_Row.key_value` is the converted value but for
        # BINARY, whose bytes it pads: left to the slow path).
        templates = [rule.index, *([rule.id_template] if rule.id_template else []),
                     *([rule.routing] if rule.routing else [])]
        keys = set(rule.id_columns or ()) if not rule.id_template else set()
        for text in templates:
            keys |= {f.name for f in parse_template(text).fields if not f.meta}
        self.keys = [k for k in names if k in keys]
        self.pipeline = rule.pipeline
        self.id_columns = rule.id_columns or ()
        self.id_separator = rule.id_separator
        # The index name when it is made of the rule alone (its text, schema, table, captures) and the id of
        # key columns without routing: place_of's index, rendered and checked once.
        self.simple: str | None = None
        if not rule.id_template and rule.id_columns and not rule.routing \
                and not any(not f.meta for f in parse_template(rule.index).fields):
            try:
                self.simple = place_of({c: 0 for c in rule.id_columns}, rule, names).index
            except ValueError:
                self.simple = None  # an invalid name: place_of says so for each row
        # The document is the converted image itself when the rule keeps every column as it is, in order
        # (`_document` would copy it key by key): `document` is then None.
        self.identity = [(n, f, c) for n, f, c in self.doc_columns] == [(n, n, ()) for n in names] \
            and not constants
        self.convert, self.convert_keys, document, self.place = _compile(self, decoders)
        self.document = None if self.identity else document
        # The action lines of a `simple` place, as encode_bulk makes them (cdc/es/bulk.py), up to the id:
        # made here once per plan instead of per action in every bulk body.
        self.index_head = self.delete_head = self.index_tail = b""
        if self.simple is not None:
            name = orjson.dumps(self.simple)
            self.index_head = b'{"index":{"_index":' + name + b',"_id":'
            self.delete_head = b'{"delete":{"_index":' + name + b',"_id":'
            self.index_tail = b',"pipeline":' + orjson.dumps(self.pipeline) if self.pipeline else b""


class _TablePlan:
    def __init__(self, rules: list[_RulePlan]):
        self.rules = rules


class Planner:
    """Messages -> actions for the tables whose rules a plan covers; None: the slow path does the message."""

    PLANS = 1024  # as ChangeDecoder.PLANS: tables x schemas x column orders; past it, start over

    def __init__(self, builder: ActionBuilder, decoder: ChangeDecoder, shape_of: Callable[[str, str], Shape | None]):
        self.builder = builder
        self.rules = builder.rules
        self.decoder = decoder
        self.shape_of = shape_of
        # (db, table, schema JSON or None, column names in order) -> plan, or None when not covered
        self._plans: dict[tuple, _TablePlan | None] = {}
        self._seqs: dict[str, int] = {}  # binlog file name -> its number
        self.declined = 0  # messages left to the slow path (tombstones and truncates among them)
        # The last message's schema JSON (the object the plans are keyed by, hashed once), its value up to
        # and with its `,"payload":`, and where that begins.
        self._last_schema_key: bytes | None = None
        self._prefix = b""
        self._payload_at: int | None = None
        self._epoch = builder.version_epoch << _EPOCH_SHIFT

    def actions(self, value: bytes) -> list[Action] | None:
        stats = self.builder.stats
        zero_dates = stats.zero_dates
        try:
            actions = self._actions(value)
        except Exception as exc:  # any surprise: the slow path gives the result or the error, as before
            if not self.declined:  # the first one, for whoever wonders why messages go the slow way
                log.debug("a Debezium message goes the slow way: %s: %s", type(exc).__name__, exc)
            actions = None
        if stats.zero_dates != zero_dates:
            # ActionBuilder counts and logs rows with zero dates (written as null), and a conversion that
            # failed may have counted some: the slow path does this row, and counts what it counts.
            stats.zero_dates = zero_dates
            actions = None
        if actions is None:
            self.declined += 1
        return actions

    def _actions(self, value: bytes) -> list[Action] | None:
        # ChangeDecoder.decode's test for JsonConverter's layout: `{"schema":` first, `}` last and one
        # `,"payload":`. When the value begins with the last message's `{"schema":...,"payload":` and its last
        # `,"payload":` is that one, the schema is the last message's, which has none, so that one is the only
        # one (it cannot overlap another: no prefix of it is a suffix of it), and neither the whole value need
        # be searched twice nor its schema copied out to be compared.
        at = value.rfind(_PAYLOAD)
        if at == self._payload_at and value.startswith(self._prefix) and value.endswith(b"}"):
            schema_json: bytes | None = self._last_schema_key  # the object the plans' dict hashed already
            data = _loads(value[at + len(_PAYLOAD):-1])
        elif value.startswith(_SCHEMA) and at > 0 and value.endswith(b"}") and value.count(_PAYLOAD) == 1:
            self._last_schema_key = schema_json = value[len(_SCHEMA):at]
            self._prefix, self._payload_at = value[:at + len(_PAYLOAD)], at
            data = _loads(value[at + len(_PAYLOAD):-1])
        else:
            schema_json = None
            data = _loads(value)
            if type(data) is not dict or ("payload" in data and "schema" in data):
                return None
        if type(data) is not dict:
            return None
        source = data.get("source")
        op = data.get("op")
        if type(source) is not dict or "cdc" in source:
            return None
        kind = _OPS.get(op)  # type: ignore[arg-type]
        db, table = source.get("db"), source.get("table")
        file, pos = source.get("file"), source.get("pos")
        if kind is None or type(db) is not str or type(table) is not str or not db or not table \
                or type(file) is not str or not file or type(pos) is not int or pos < 0:
            return None
        snapshot = source.get("snapshot")
        if snapshot == "incremental":
            return None
        before, after = data.get("before"), data.get("after")
        if kind is Op.DELETE:
            if type(before) is not dict or after is not None and type(after) is not dict:
                return None
            image = before
        else:
            if type(after) is not dict or before is not None and type(before) is not dict:
                return None
            if kind is Op.UPDATE and before is None:
                return None
            image = after
        names = tuple(image)
        if after is not None and before is not None and tuple(before) != names:
            return None  # images of other columns: the column map comes from `after` alone
        key = (db, table, schema_json, names)
        plan = self._plans.get(key, self)  # self: not looked at yet
        if plan is self:
            plan = self._plan(db, table, schema_json, names)
        if not isinstance(plan, _TablePlan):
            return None
        seq = self._seqs.get(file)
        snapshotted = op == "r" and str(snapshot or "false").lower() in _SNAPSHOT
        if not snapshotted:
            pos += STREAM_OFFSET
        if seq is None:  # a name without a number: ValueError, the slow path
            seq = self._seqs[file] = BinlogPosition(file, pos).file_seq
        # BinlogPosition(file, pos) with its file_seq, without the frozen dataclass's per-field setattr.
        position = _new(BinlogPosition)
        _set(position, "__dict__", {"file": file, "pos": pos, "file_seq": seq})
        if seq >= 1 << 24 or pos >= 1 << 32:  # document_version's ValueError: the slow path says it
            raise _Fallback("a position past what a document version holds")
        version = self._epoch | (seq << _FILE_SHIFT) | pos  # document_version(position, epoch)
        actions: list[Action] = []
        for rule_plan in plan.rules:
            # Every value of both images is decoded, as ChangeDecoder does (it refuses a message with a value
            # that does not decode); converted are those the actions need, as _Row converts them on demand.
            soft = rule_plan.soft
            if kind is Op.DELETE:
                if after is not None:
                    rule_plan.convert_keys(after)
                old = rule_plan.convert(before) if soft else rule_plan.convert_keys(before)
                actions += _remove(rule_plan, old, rule_plan.place(old, names), version, db, table, position)
                continue
            new = rule_plan.convert(after)
            place = rule_plan.place(new, names)
            if kind is Op.UPDATE:  # as actions_for: only an update moves a document
                old = rule_plan.convert_keys(before)
                was = rule_plan.place(old, names)
                if was != place:
                    if soft:
                        old = rule_plan.convert(before)
                    same_doc = was[0] == place[0] and was[1] == place[1]
                    actions += _remove(rule_plan, old, was, version - 1 if same_doc else version, db, table,
                                       position)
            elif before is not None:
                rule_plan.convert_keys(before)
            actions.append(_write(rule_plan, new, place, False, version, db, table, position))
        return actions

    def _plan(self, db: str, table: str, schema_json: bytes | None, names: tuple[str, ...]) -> _TablePlan | None:
        if len(self._plans) >= self.PLANS:
            self._plans.clear()
        key = (db, table, schema_json, names)
        self._plans[key] = None
        rules = self.rules.matches(db, table)
        if not rules or any(not r.checked or r.mode != "index" for r in rules):
            return None  # nothing to write (the slow path decodes the row, as before), or a RowError to raise
        shape = self.shape_of(db, table) or NO_SHAPE
        decoders = self.decoder._plan(db, table, schema_json, shape)
        fields: dict[str, Any] = {}
        if schema_json is not None:
            schema = orjson.loads(schema_json)
            if type(schema) is not dict:
                return None
            fields = _fields(schema).get("after", {})
        # The RowChange's columns, as ChangeDecoder.decode makes them.
        columns = tuple(shape.columns.get(name) or Column(name, ColumnKind.OTHER) for name in names)
        options = self.builder.value_options
        stats = self.builder.stats
        plans = []
        for rule in rules:
            mapped = _columns_for(columns, rule)
            convert, fast, decoding = {}, {}, {}
            for name in names:
                decode = decoders.get(name) or _decoder(None, shape.columns.get(name), shape.fractions.get(name, 0))
                column = mapped[name]
                decoding[name] = decode
                convert[name] = _slow(decode, column, options, stats)
                fast[name] = _fast_code(fields.get(name), shape.columns.get(name), column,
                                        shape.fractions.get(name, 0), options)
            try:
                rule_plan = _RulePlan(rule, names, convert, fast, decoding, db, table)
            except _Fallback as exc:
                log.info("%s.%s under %s: the slow path makes its actions (%s)", db, table, rule.source, exc)
                return None
            if any(mapped[k].kind is ColumnKind.BINARY for k in rule_plan.keys):
                log.info("%s.%s under %s: the slow path makes its actions (an id, index name or routing of a "
                         "BINARY column)", db, table, rule.source)
                return None
            plans.append(rule_plan)
        plan = self._plans[key] = _TablePlan(plans)
        return plan


def _slow(decode: Callable[[Any], Any], column: Column, options, stats) -> Callable[[Any], Any]:
    """The slow path's functions for one (non-null) value: ChangeDecoder's decoder, then values.py."""
    def convert(value: Any) -> Any:
        return convert_value(decode(value), column, options, stats)
    return convert


def _fast_code(field: dict | None, shape_column: Column | None, column: Column, fraction: int,
               options) -> tuple[int, int]:
    """Which JSON values of this column are their own document value, or have a short way to it
    (checked per value by type), and the unit of a DATETIME's number in microseconds (0: nanoseconds)."""
    shape_kind = shape_column.kind if shape_column is not None else ColumnKind.OTHER
    kind = column.kind
    ftype = field.get("type") if field is not None else None
    fname = field.get("name") if field is not None else None
    # An `int` of an integer column: ChangeDecoder's `_integer`/`_by_kind` and `_integral` keep it,
    # values.py `_by_type` -> `_int` keeps it in orjson's range.
    if shape_kind in (ColumnKind.INTEGER, ColumnKind.OTHER) and kind in (ColumnKind.INTEGER, ColumnKind.OTHER) \
            and (field is None or ftype in _INT_TYPES and fname is None):
        return _INT, 0
    # A `str` of a text or ENUM column: `_same`/`_text`/`_by_kind` keep it, values.py keeps a str.
    if shape_kind in (ColumnKind.STRING, ColumnKind.ENUM, ColumnKind.OTHER) \
            and kind in (ColumnKind.STRING, ColumnKind.ENUM, ColumnKind.OTHER) \
            and (field is None or ftype == "string" and fname in (None, "io.debezium.data.Enum")):
        return _STR, 0
    # A `float` of a DOUBLE column: `_float` keeps it; values.py keeps a finite one.
    if shape_kind in (ColumnKind.DOUBLE, ColumnKind.OTHER) and kind in (ColumnKind.DOUBLE, ColumnKind.OTHER) \
            and (field is None or ftype in ("double", "float64") and fname is None):
        return _FLOAT, 0
    # JSON text of a JSON column: values.py `_parse_json_text` gives orjson.loads(text) when the text has no
    # run of 20 digits and orjson takes it, and `_json` of that is itself (str keys, ints in orjson's range,
    # finite floats, strings).
    if kind is ColumnKind.JSON and options.parse_json \
            and shape_kind in (ColumnKind.STRING, ColumnKind.JSON, ColumnKind.OTHER) \
            and (field is None or ftype == "string" and fname in (None, "io.debezium.data.Json")):
        return _JSON, 0
    # DECIMAL as text (decimal.handling.mode=string): `_decimal_text` then format(..., "f") is the plain text.
    if shape_kind is ColumnKind.DECIMAL and kind is ColumnKind.DECIMAL and options.decimal_as == "string" \
            and (field is None or ftype == "string" and fname is None):
        return _DECIMAL, 0
    # DATETIME as a number since the epoch: debezium.py `_scaled` makes the naive datetime, values.py
    # `_iso` its isoformat() (no offset).
    if shape_kind is ColumnKind.DATETIME and kind is ColumnKind.DATETIME:
        if field is None:
            return _DATETIME, 1000 if fraction <= 3 else 1  # debezium.py `_by_kind`
        unit = _DATETIME_UNITS.get(fname) if ftype == "int64" and isinstance(fname, str) else None
        if unit is not None:
            return _DATETIME, unit
    # DATE as days since the epoch: `_date`, then values.py's date.isoformat().
    if shape_kind is ColumnKind.DATE and kind is ColumnKind.DATE \
            and (field is None or ftype == "int32" and fname in ("io.debezium.time.Date",
                                                                 "org.apache.kafka.connect.data.Date")):
        return _DATE, 0
    return _GENERIC, 0


# The logical types of DATETIME as numbers (debezium.py `_LOGICAL`): their unit in microseconds, 0 for nanoseconds.
_DATETIME_UNITS = {"io.debezium.time.MicroTimestamp": 1, "io.debezium.time.Timestamp": 1000,
                   "org.apache.kafka.connect.data.Timestamp": 1000, "io.debezium.time.NanoTimestamp": 0}


# DATETIME values' whole seconds since the epoch -> their isoformat() text; rows written close together share
# it. Started over past SECONDS_KEPT.
_SECONDS: dict[int, str] = {}
SECONDS_KEPT = 10_000


def _second(seconds: int) -> str:
    """The naive datetime `seconds` after the epoch, as isoformat() writes it (out of range: OverflowError,
    as the microseconds' own datetime would be: the second is the floor of it, in range when that is)."""
    text = (_EPOCH + timedelta(seconds=seconds)).isoformat()
    if len(_SECONDS) >= SECONDS_KEPT:
        _SECONDS.clear()
    _SECONDS[seconds] = text
    return text


def _compile(plan: _RulePlan, decoders: dict[str, Callable[[Any], Any]]):
    """The plan's three functions, as Python code made for its columns (a loop over them, with its tuple
    unpacking and branches per value, cost twice as much):

    * convert(image): every column as the document holds it before any `convert:` (a dict in column order);
    * convert_keys(image): the key columns so, the other values only decoded (to refuse what
      ChangeDecoder refuses): a `before` image whose document is not written;
    * document(values): the document, as actions.py `_document` puts it together.

    Each column's value: None stays None; a value of the type its short way takes (see `_fast_code`) goes
    that way; any other goes through the slow path's functions (`_slow`)."""
    space: dict[str, Any] = {"_type": type, "_isfinite": math.isfinite, "_plain": _PLAIN_DECIMAL.fullmatch,
                             "_long": _LONG_DIGITS.search, "_loads": orjson.loads, "_JSONError": orjson.JSONDecodeError,
                             "_td": timedelta, "_EPOCH": _EPOCH, "_divmod": divmod, "_seconds": _SECONDS, "_second": _second, "_EPOCH_DAY": _EPOCH_DAY, "_apply": apply_conversion,
                             "_INT_MIN": _INT_MIN, "_INT_MAX": _INT_MAX}
    keys = set(plan.keys)
    convert, check = ["def convert(image):"], ["def convert_keys(image):"]
    for n, (name, code, unit, slow) in enumerate(plan.columns):
        space[f"slow{n}"], space[f"decode{n}"] = slow, decoders[name]
        take = f"v{n} = image[{name!r}]"
        if code == _INT:
            short = f"_type(v{n}) is int and _INT_MIN <= v{n} <= _INT_MAX"
        elif code == _STR:
            short = f"_type(v{n}) is str"
        elif code == _FLOAT:
            short = f"_type(v{n}) is float and _isfinite(v{n})"
        elif code == _DECIMAL:
            short = f"_type(v{n}) is str and _plain(v{n}) and not (v{n}[0] == '-' and not v{n}.strip('-0.'))"
        else:
            short = ""
        if code == _JSON:
            # values.py `_parse_json_text` is orjson.loads when the text has no run of 20 digits and orjson
            # takes it, and `_json` of what orjson gives is that itself; any other text, or JSON orjson
            # refuses, the slow conversion decides.
            way = [f"    if v{n} is not None:",
                   f"        if _type(v{n}) is str and not _long(v{n}):",
                   "            try:",
                   f"                v{n} = _loads(v{n})",
                   "            except _JSONError:",
                   f"                v{n} = slow{n}(v{n})",
                   "        else:",
                   f"            v{n} = slow{n}(v{n})"]
        elif code == _DATETIME:
            # (_EPOCH + timedelta(microseconds=m)).isoformat(), from its whole second's text (`_second`) and
            # the microseconds after it, which isoformat() writes only when not 0.
            micros = f"v{n} // 1000" if unit == 0 else f"v{n} * {unit}" if unit != 1 else f"v{n}"
            way = [f"    if v{n} is not None:",
                   f"        if _type(v{n}) is int:",
                   f"            s, us = _divmod({micros}, 1000000)",
                   "            t = _seconds.get(s)",
                   "            if t is None:",
                   "                t = _second(s)",
                   f"            v{n} = t + '.%06d' % us if us else t",
                   "        else:",
                   f"            v{n} = slow{n}(v{n})"]
        elif code == _DATE:
            way = [f"    if v{n} is not None:",
                   f"        v{n} = (_EPOCH_DAY + _td(days=v{n})).isoformat() if _type(v{n}) is int else slow{n}(v{n})"]
        elif short:
            way = [f"    if v{n} is not None and not ({short}): v{n} = slow{n}(v{n})"]
        else:
            way = [f"    if v{n} is not None: v{n} = slow{n}(v{n})"]
        convert += [f"    {take}", *way]
        if name in keys:
            check += [f"    {take}", *way]
        elif short or code == _JSON:  # a value of the short way's type decodes (see _fast_code); another is decoded
            short = short or f"_type(v{n}) is str"  # JSON text: `_same`/`_text` take any str
            check += [f"    {take}", f"    if v{n} is not None and not ({short}): decode{n}(v{n})"]
        else:
            check += [f"    {take}", f"    if v{n} is not None: decode{n}(v{n})"]
    index = {name: n for n, (name, *_) in enumerate(plan.columns)}
    convert.append("    return {" + ", ".join(f"{name!r}: v{n}" for name, n in index.items()) + "}")
    check.append("    return {" + ", ".join(f"{name!r}: v{index[name]}" for name in plan.keys) + "}")
    fields = []
    for name, out, conversions in plan.doc_columns:
        value = f"c[{name!r}]"
        for k, conversion in enumerate(conversions):
            space[f"conv{index[name]}_{k}"] = conversion
            value = (f"_apply({value}, conv{index[name]}_{k}.name, conv{index[name]}_{k}.arg, {name!r})")
        fields.append(f"{out!r}: {value}")
    for k, (name, value) in enumerate(plan.constants):
        space[f"const{k}"] = value  # the rule's own object, as `_document` puts it in every document
        fields.append(f"{name!r}: const{k}")
    document = ["def document(c):", "    return {" + ", ".join(fields) + "}"]
    # place(c, names): (index, id, routing) of the converted key columns, as `actions.place_of` (the
    # action's key); made of the rule alone but for the id when the plan is `simple` (no routing).
    space.update(_place_of=place_of, _rule=plan.rule, _idpart=_id_part, _docid=document_id, _Fallback=_Fallback,
                 _id_columns=tuple(plan.id_columns), _separator=plan.id_separator)
    if plan.simple is None:
        place = ["def place(c, names):", "    p = _place_of(c, _rule, names)",
                 "    return (p.index, p.doc_id, p.routing)"]
    else:
        if len(plan.id_columns) == 1:  # document_id of one column: its `_id_part`
            place = ["def place(c, names):",
                     f"    v = c[{plan.id_columns[0]!r}]",  # a missing column: KeyError, the slow path
                     "    if v is None:",
                     "        raise _Fallback('a NULL key')",  # document_id's ValueError: the slow path says it
                     "    t = _type(v)",
                     "    d = v if t is str else str(v) if t is int else _idpart(v)"]
        else:
            place = ["def place(c, names):", "    d = _docid(c, _id_columns, _separator)"]
        place += ["    if not d or len(d) > 128 and len(d.encode()) > 512:",
                  "        raise _Fallback('an empty or long id')",  # place_of's RowError
                  f"    return ({plan.simple!r}, d, None)"]
    exec("\n".join(convert + check + document + place), space)  # noqa: S102 - code made above from repr()s only
    return space["convert"], space["convert_keys"], space["document"], space["place"]


class PlannedAction(Action):
    """An index action of the planned path: its document kept as the JSON it was encoded to once (`doc_json`),
    decoded again only if asked for (dead letters, dry runs), as the native row path's `NativeAction`. The
    document's dicts and lists then die at once instead of living, and being walked by the cyclic collector,
    for as long as the batch."""

    doc = DocFromJson()


# An action's fields but for those of each action (`_action`), copied: faster than a dict made key by key.
# An index action's have no `doc` (PlannedAction's comes from doc_json).
_INDEX_FIELDS: dict[str, Any] = {"type": ActionType.INDEX, "index": None, "doc_id": None, "version": None,
                                 "routing": None, "schema": None, "table": None, "position": None,
                                 "pipeline": None, "versioned": True, "key": None, "doc_json": None}
_DELETE_FIELDS: dict[str, Any] = {"type": ActionType.DELETE, "index": None, "doc_id": None, "version": None,
                                  "doc": None, "routing": None, "schema": None, "table": None, "position": None,
                                  "pipeline": None, "versioned": True, "key": None}


def _action(cls: type[Action], template: dict[str, Any], place: tuple[str, str, str | None], version: int,
            doc_json: bytes | None, meta: bytes | None, pipeline: str | None, schema: str, table: str,
            position: BinlogPosition) -> Action:
    action = _new(cls)
    # The fields Action(...) would set (a frozen dataclass: no __post_init__), without its per-field setattr;
    # `key` as its _computed_once would make it for an index or delete (batches and writers ask for it), and
    # `doc_json` as it would encode it (the batch's sizing asks for it next). `bulk_meta`, when the plan has
    # made it, is the action line encode_bulk would make of these fields.
    fields = template.copy()
    fields["index"], fields["doc_id"], fields["routing"] = place
    fields["version"] = version
    fields["schema"] = schema
    fields["table"] = table
    fields["position"] = position
    fields["pipeline"] = pipeline
    fields["key"] = place
    if doc_json is not None:
        fields["doc_json"] = doc_json
    if meta is not None:
        fields["bulk_meta"] = meta
    _set(action, "__dict__", fields)
    return action


def _write(plan: _RulePlan, values: dict[str, Any], place: tuple[str, str, str | None], deleted: bool,
           version: int, schema: str, table: str, position: BinlogPosition) -> Action:
    document = plan.document
    doc = values if document is None else document(values)  # None: the converted image is the document
    if plan.soft:
        doc[plan.rule.soft_delete_field] = deleted
    # Action.doc_json's bytes (orjson's own result keeps its whole output buffer: copied, as there).
    doc_json = bytes(memoryview(_dumps(doc)))
    meta = None
    if plan.index_head:
        meta = b"%s%s,\"version\":%d,\"version_type\":\"external\"%s}}" % (
            plan.index_head, _dumps(place[1]), version, plan.index_tail)
    return _action(PlannedAction, _INDEX_FIELDS, place, version, doc_json, meta, plan.pipeline, schema, table,
                   position)


def _remove(plan: _RulePlan, values: dict[str, Any], place: tuple[str, str, str | None], version: int,
            schema: str, table: str, position: BinlogPosition) -> list[Action]:
    if plan.ignore_deletes:
        return []
    if plan.soft:
        return [_write(plan, values, place, True, version, schema, table, position)]
    meta = None
    if plan.delete_head:
        meta = b"%s%s,\"version\":%d,\"version_type\":\"external\"}}" % (plan.delete_head, _dumps(place[1]), version)
    return [_action(Action, _DELETE_FIELDS, place, version, None, meta, None, schema, table, position)]
