"""Turning one row change into Elasticsearch actions through a resolved rule."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


from cdc.errors import RowError  # importable from here and from cdc.rules too
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules.values import (
    ConversionError,
    ConversionStats,
    ValueOptions,
    apply_conversion,
    convert_value,
    parse_date,
)
from cdc.rules.model import Rule, RuleSet
from cdc.rules.names import INDEX_FORBIDDEN, Template, parse_template

log = logging.getLogger("cdc.rules")


# Layout of a document version (a signed 64-bit long in Elasticsearch):
#   7 bits epoch | 24 bits binlog file number | 32 bits byte offset in the file
# Binlog positions only grow along one server's history, so a replayed or
# retried action always carries a version <= the one already indexed.
_EPOCH_SHIFT = 56
_FILE_SHIFT = 32


def document_version(position: BinlogPosition, epoch: int = 0) -> int:
    seq = position.file_seq
    if seq >= 1 << 24 or position.pos >= 1 << 32:
        raise ValueError(f"binlog position {position} does not fit in a document version")
    return (epoch << _EPOCH_SHIFT) | (seq << _FILE_SHIFT) | position.pos


@dataclass(frozen=True)
class _Place:
    """Where a row's document lives."""

    index: str
    doc_id: str
    routing: str | None


def _id_part(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise ValueError("a list or object cannot be part of a document id, index name or routing")
    return str(value)


def document_id(row: Mapping[str, Any], id_columns: Sequence[str], separator: str = ":") -> str:
    """The document id for a row: its key columns joined with `separator` (default ':').

    Parts are escaped (':' -> '\\:', '\\' -> '\\\\') so that two different keys can
    never produce the same id, e.g. ('a:b', 'c') and ('a', 'b:c'). Binary values
    are written in hex.
    """
    parts = []
    for column in id_columns:
        if column not in row:
            raise KeyError(column)
        value = row[column]
        if value is None:
            raise ValueError(f"key column {column!r} is NULL")
        parts.append(_id_part(value))
    if len(parts) == 1:
        return parts[0]
    return separator.join(p.replace("\\", "\\\\").replace(separator, "\\" + separator) for p in parts)


def _render(template: Template, rule: Rule, values: Mapping[str, Any], what: str) -> str:
    captures = {"schema": rule.schema, "table": rule.table, **dict(rule.captures)}
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part.meta:
            out.append(captures.get(part.name, ""))
            continue
        if part.name not in values:
            raise RowError(f"{what}: the row has no column {part.name!r}")
        value = values[part.name]
        if value is None:
            raise ConversionError(part.name, f"is NULL, but the {what} is made from it")
        if "%" in part.spec:
            out.append(_strftime(value, part.spec, part.name))
        elif part.spec:
            try:
                out.append(format(value, part.spec))
            except (ValueError, TypeError) as exc:
                raise ConversionError(part.name, f"cannot format {value!r} with {part.spec!r}: {exc}") from None
        else:
            try:
                out.append(_id_part(value))
            except ValueError as exc:
                raise ConversionError(part.name, str(exc)) from None
    return "".join(out)


def _strftime(value: Any, spec: str, column: str) -> str:
    # Values arrive converted: DATE as "2024-01-02", DATETIME as "2024-01-02T03:04:05",
    # TIMESTAMP in the configured zone ("...Z", "...+05:30"), so a row gets the same
    # index whether it came from the binlog or a snapshot.
    try:
        return parse_date(value, column).strftime(spec)
    except ConversionError:
        raise ConversionError(column, f"{value!r} is not a date, cannot format it with {spec!r}") from None


def _columns_for(columns: Sequence[Column], rule: Rule) -> dict[str, Column]:
    pad = dict(rule.pad_binary)
    out = {}
    for column in columns:
        if column.name in rule.json_columns and column.kind in (ColumnKind.STRING, ColumnKind.BINARY, ColumnKind.OTHER):
            column = dataclasses.replace(column, kind=ColumnKind.JSON)
        elif column.kind is ColumnKind.BINARY and column.name in pad and column.pad_to is None:
            column = dataclasses.replace(column, pad_to=pad[column.name])
        elif column.kind is ColumnKind.GEOMETRY and column.name in rule.point_columns:
            column = dataclasses.replace(column, kind=ColumnKind.POINT)
        out[column.name] = column
    return out


class ColumnMaps:
    """`_columns_for` results, built once per rule and table definition instead of once per row.

    All rows of a rows event share one columns tuple, and the source hands out
    the same tuple again while a table's definition does not change, so the
    usual check is by identity. A new tuple with equal columns reuses the map;
    different columns (after an ALTER TABLE) build a new one. The key is the
    rule's id() because a Rule holds dicts and cannot be hashed; each entry
    keeps its rule, so that id cannot pass to another rule while the entry
    lives, and the identity check makes sure of it. Maps are shared: read only.
    """

    LIMIT = 4096  # rules (one per table); past it, start over rather than grow

    def __init__(self) -> None:
        # id(rule) -> (rule, columns, map): the latest table definition seen for each rule.
        self._maps: dict[int, tuple[Rule, tuple[Column, ...], dict[str, Column]]] = {}

    def get(self, columns: tuple[Column, ...], rule: Rule) -> dict[str, Column]:
        entry = self._maps.get(id(rule))
        if entry is not None and entry[0] is rule:
            if entry[1] is columns:
                return entry[2]
            if entry[1] == columns:
                self._maps[id(rule)] = (rule, columns, entry[2])
                return entry[2]
        if len(self._maps) >= self.LIMIT:
            self._maps.clear()
        mapped = _columns_for(columns, rule)
        # One tuple per entry: a reader on another thread never sees half an update.
        self._maps[id(rule)] = (rule, columns, mapped)
        return mapped


class _Row:
    """One row image, converted lazily: a column is converted once, when first needed."""

    def __init__(self, raw: Mapping[str, Any], columns: Mapping[str, Column], options: ValueOptions,
                 stats: ConversionStats | None):
        self.raw = raw
        self.columns = columns
        self.options = options
        self.stats = stats
        self._done: dict[str, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.raw

    def __getitem__(self, name: str) -> Any:
        if name not in self._done:
            column = self.columns.get(name) or Column(name, ColumnKind.OTHER)
            self._done[name] = convert_value(self.raw[name], column, self.options, self.stats)
        return self._done[name]

    def key_value(self, name: str) -> Any:
        """A value as part of an id, index name or routing: converted, but binary stays bytes (-> hex)."""
        column = self.columns.get(name)
        raw = self.raw[name]
        if column is not None and column.kind is ColumnKind.BINARY and (isinstance(raw, (bytes, bytearray,
                                                                                         memoryview)) or raw == ""):
            # From the converted value, so BINARY(n) is padded as SELECT gives it.
            return base64.b64decode(self[name])
        return self[name]


class _KeyView(Mapping):
    def __init__(self, row: _Row):
        self.row = row

    def __getitem__(self, name: str) -> Any:
        if name not in self.row.raw:
            raise KeyError(name)
        return self.row.key_value(name)

    def __iter__(self):
        return iter(self.row.raw)

    def __len__(self) -> int:
        return len(self.row.raw)


def _place(row: _Row, rule: Rule) -> _Place:
    return place_of(_KeyView(row), rule, row.raw)


def place_of(keys: Mapping[str, Any], rule: Rule, names: Iterable[str]) -> _Place:
    """Where a row's document lives, from its values as ids, index names and routing take them
    (`_Row.key_value`; cdc/app/debezium_plan.py passes the few it needs in a dict). `names`: the
    row's columns, for the error message."""
    if rule.id_template:
        doc_id = _render(parse_template(rule.id_template), rule, keys, "document id")
    else:
        assert rule.id_columns, f"rule {rule.name} has no id columns (resolve it first)"
        try:
            doc_id = document_id(keys, rule.id_columns, rule.id_separator)
        except KeyError as exc:
            raise RowError(f"row has no key column {exc.args[0]!r} (columns: {', '.join(names)})") from None
    if not doc_id:
        raise RowError("the document id is empty")
    if len(doc_id.encode()) > 512:
        raise RowError(f"the document id {doc_id[:60]!r}... is longer than Elasticsearch's 512 bytes")
    index = _render(parse_template(rule.index), rule, keys, "index name")
    index = index.lower()  # Elasticsearch index names are lowercase; captures and values may not be
    if not index or index[0] in "-_+" or not INDEX_FORBIDDEN.isdisjoint(index) or index in (".", ".."):
        raise RowError(f"index name {index!r} made by {rule.index!r} is not a valid index name")
    routing = _render(parse_template(rule.routing), rule, keys, "routing") if rule.routing else None
    return _Place(index, doc_id, routing)


def _document(row: _Row, rule: Rule, schema: str, table: str) -> dict[str, Any]:
    include = set(rule.include) if rule.include is not None else None
    exclude = set(rule.exclude)
    renames = dict(rule.rename)
    conversions = dict(rule.conversions)
    doc: dict[str, Any] = {}

    def put(name: str, value: Any, column: str) -> None:
        if name in doc:
            raise ConversionError(column, f"the document already has a field {name!r} (check rename and fields)")
        doc[name] = value

    for name in row.raw:
        if include is not None and name not in include or name in exclude:
            continue
        value = row[name]
        for conversion in conversions.get(name, ()):
            value = apply_conversion(value, conversion.name, conversion.arg, name)
        put(renames.get(name, name), value, name)
    for name, value in rule.fields:
        put(name, value, name)
    if rule.add_table_name:
        put(rule.add_table_name, table, rule.add_table_name)
    if rule.add_schema_name:
        put(rule.add_schema_name, schema, rule.add_schema_name)
    return doc



def actions_for(change: RowChange, rule: Rule, version: int, options: ValueOptions | None = None,
                stats: ConversionStats | None = None, column_maps: ColumnMaps | None = None) -> list[Action]:
    """One row change under one rule -> its actions, in the order they must be applied.

    index mode: insert -> index; update -> index, and if the document moved (its
    index, id or routing changed) first a delete at the old place; delete ->
    delete. `on_delete: soft` replaces each delete by an index of the old row with
    `soft_delete_field: true` (live documents carry false); `ignore` drops them.
    update mode: the same with partial updates (doc_as_upsert) and unversioned deletes.
    `column_maps` lets a caller that converts many rows reuse the column map.
    """
    assert rule.id_columns or rule.id_template, f"rule {rule.name} has no id columns (resolve it first)"
    options = options or ValueOptions()
    columns = column_maps.get(change.columns, rule) if column_maps is not None else _columns_for(change.columns, rule)
    versioned = rule.mode == "index"
    common: dict[str, Any] = dict(version=version, schema=change.schema, table=change.table, position=change.position,
                  versioned=versioned)
    soft = rule.on_delete == "soft"
    before = _Row(change.before, columns, options, stats) if change.before is not None else None
    after = _Row(change.after, columns, options, stats) if change.after is not None else None

    def write(row: _Row, place: _Place, deleted: bool, at: int = version) -> Action:
        doc = _document(row, rule, change.schema, change.table)
        if soft:
            if rule.soft_delete_field in doc:
                raise ConversionError(rule.soft_delete_field, "the document already has the soft delete field")
            doc[rule.soft_delete_field] = deleted
        if versioned:
            return Action(ActionType.INDEX, place.index, place.doc_id, doc=doc, routing=place.routing,
                          pipeline=rule.pipeline, **{**common, "version": at})
        return Action(ActionType.UPDATE, place.index, place.doc_id, doc=doc, routing=place.routing, **common)

    def remove(row: _Row, place: _Place, at: int = version) -> list[Action]:
        if rule.on_delete == "ignore":
            return []
        if soft:
            if versioned:
                return [write(row, place, True, at)]
            return [Action(ActionType.UPDATE, place.index, place.doc_id, doc={rule.soft_delete_field: True},
                           routing=place.routing, **common)]
        return [Action(ActionType.DELETE, place.index, place.doc_id, routing=place.routing,
                       **{**common, "version": at})]

    if change.op is Op.DELETE:
        assert before is not None
        return remove(before, _place(before, rule))
    assert after is not None
    new = _place(after, rule)
    actions: list[Action] = []
    if change.op is Op.UPDATE and before is not None:
        old = _place(before, rule)
        if old != new:
            same_doc = (old.index, old.doc_id) == (new.index, new.doc_id)
            if same_doc and not versioned:
                # Unversioned, a retried delete could land after the update on
                # the same shard and remove it; and in update mode the other
                # rules' fields would stay behind. Stop rather than lose either.
                raise RowError(f"routing changed from {old.routing!r} to {new.routing!r}; a rule in "
                               "mode: update cannot move a document between routings")
            # Same index and id, other routing: the delete and the index may hit
            # one shard, where an external version must grow, so the delete goes
            # first with version - 1 (no earlier event can have that version:
            # positions grow by whole events).
            actions.extend(remove(before, old, version - 1 if same_doc else version))
    actions.append(write(after, new, False))
    return actions


class ActionBuilder:
    """Row change -> actions under the rule set: the one conversion the stream and snapshots share."""

    def __init__(self, rules: RuleSet, version_epoch: int = 0, value_options: ValueOptions | None = None):
        self.rules = rules
        self.version_epoch = version_epoch
        self.value_options = value_options or ValueOptions()
        self.stats = ConversionStats()  # zero dates seen (values written as null)
        self.zero_date_rows: Counter[str] = Counter()  # rows with zero dates, by table
        self.column_maps = ColumnMaps()

    def actions(self, change: RowChange) -> list[Action]:
        rules = self.rules.matches(change.schema, change.table)
        if not rules:
            return []
        version = document_version(change.position, self.version_epoch)
        zero_dates = self.stats.zero_dates
        actions: list[Action] = []
        for rule in rules:
            if not rule.checked:
                raise RowError(
                    f"table {change.schema}.{change.table} (at {change.position}) matches {rule.source} but was not "
                    "there when cdc checked its rules at start-up. Restart cdc to pick it up; the checkpoint is "
                    "before this row, so nothing is lost.")
            try:
                actions.extend(actions_for(change, rule, version, self.value_options, self.stats,
                                           self.column_maps))
            except ValueError as exc:  # RowError and ConversionError are ValueErrors
                raise RowError(f"cannot convert row of {change.schema}.{change.table} at {change.position} "
                               f"(row {change.row_index} of the event{_describe_key(change, rule)}) for "
                               f"{rule.source}: {exc}") from None
        if self.stats.zero_dates > zero_dates:
            self._zero_dates(change)
        return actions

    def _zero_dates(self, change: RowChange) -> None:
        name = f"{change.schema}.{change.table}"
        self.zero_date_rows[name] += 1
        count = self.zero_date_rows[name]
        # Every row is counted; the log says so for the first ten, then every power of ten.
        if count <= 10 or str(count).rstrip("0") == "1":
            log.warning("zero date(s) in a row of %s at %s written as null (%d such rows so far)", name,
                        change.position, count, extra={"table": name, "position": str(change.position)})


def _describe_key(change: RowChange, rule: Rule) -> str:
    row = change.after if change.after is not None else change.before
    if not row or not rule.id_columns:
        return ""
    try:
        return ", key " + ", ".join(f"{c}={row[c]!r}" for c in rule.id_columns)
    except KeyError:
        return ""
