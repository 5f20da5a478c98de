"""Mappings that follow the table: fields for columns the index has not mapped yet, put in before their first document.

Without this, a column added by ALTER TABLE while cdc streams got whatever
Elasticsearch's dynamic mapping guessed from its first value (a DECIMAL string
became `text`, a DATETIME(6) a date or text depending on the value), not what
`cdc indices plan` gives for its type. So whenever cdc sees a table definition
(at start-up from information_schema, in the stream from each new table map),
it works out the fields of the rule's documents with the same function the plan
uses (`generated_mappings`), and puts those the index lacks into it before the
main loop builds a document from that definition: everything written after is
in a later bulk request.

Pure: `column_info`, `wanted_fields`, `holds`, `field_changes` (literal-data unit
tests). `FieldMapper` talks to the destination through `sink.admin` only.

Existing fields are never changed (Elasticsearch cannot change a field's type in
place). A field whose mapped type cannot hold what the column now gives (an INT
column changed to VARCHAR, mapped `long`) is logged as an error naming the
`cdc rebuild` to run, once per index, field and type; the stream goes on, because
`cdc rebuild` needs the daemon running beside it, and rows whose values the field
can still hold ("42" in a `long`) are indexed as before. A document Elasticsearch
then rejects goes the way every rejected document goes (`dead_letter.on_rejected`).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

from cdc.errors import SinkAccessError, SinkError
from cdc.es import jsonfields
from cdc.es.indices import UNSIGNED_64, generated_mappings, index_target
from cdc.model import Column, ColumnKind, RowChange
from cdc.mysql.catalog import ColumnInfo
from cdc.rules import Rule
from cdc.rules.values import ValueOptions
from cdc.stream.protocols import SearchAdmin

log = logging.getLogger("cdc.indices")

# A binlog column's kind -> the information_schema DATA_TYPE `column_field` maps the same way.
_KIND_TYPES = {
    ColumnKind.DECIMAL: "decimal", ColumnKind.FLOAT: "float", ColumnKind.DOUBLE: "double",
    ColumnKind.DATE: "date", ColumnKind.DATETIME: "datetime", ColumnKind.TIMESTAMP: "timestamp",
    ColumnKind.TIME: "time", ColumnKind.YEAR: "year", ColumnKind.STRING: "varchar", ColumnKind.BINARY: "varbinary",
    ColumnKind.ENUM: "enum", ColumnKind.SET: "set", ColumnKind.JSON: "json", ColumnKind.GEOMETRY: "geometry",
    ColumnKind.POINT: "point",
}


def column_info(column: Column) -> ColumnInfo | None:
    """A table-map column as the information_schema column `column_field` maps alike; None: cdc writes it as it
    comes (ColumnKind.OTHER), so the field stays dynamic, as in the plan."""
    if column.kind is ColumnKind.INTEGER:
        return ColumnInfo(column.name, "bigint", "bigint unsigned" if column.unsigned_64 else "bigint")
    if column.kind is ColumnKind.BIT:
        return ColumnInfo(column.name, "bit", f"bit({column.bits or 1})")
    data_type = _KIND_TYPES.get(column.kind)
    return ColumnInfo(column.name, data_type, data_type) if data_type else None


def wanted_fields(rule: Rule, options: ValueOptions, columns: Sequence[Column] | None = None) -> dict[str, dict]:
    """The fields the plan gives the rule's documents, for the table definition `columns` (None: the one the rule
    was resolved with); the rule's `create_index.mappings` laid over them, as in the plan."""
    infos: list[ColumnInfo] | None = None
    if columns is not None:
        # The table map says GEOMETRY for a POINT column; the rule knows it from information_schema, as the values do.
        found = (ColumnInfo(c.name, "point", "point") if c.kind is ColumnKind.GEOMETRY and c.name in rule.point_columns
                 else column_info(c) for c in columns)
        infos = [i for i in found if i is not None]
    properties: dict[str, dict] = generated_mappings(rule, options, infos)["properties"]
    if rule.create_index is not None and rule.create_index.mappings:
        properties.update(rule.create_index.mappings.get("properties") or {})
    return properties


# Which mapped types take the values cdc writes for a planned type (docs/values.md "Values"). Text and keyword take
# every scalar; numbers take numbers (a DECIMAL as text holds, "01:30:00" does not); the rest only their own.
_NUMBERS = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                      "unsigned_long"})
_STRINGS = frozenset({"keyword", "text", "wildcard", "match_only_text"})
_OBJECTS = frozenset({"object", "nested", "flattened", "flat_object"})
_KNOWN = _NUMBERS | _STRINGS | _OBJECTS | {"date", "date_nanos", "boolean", "binary", "geo_point", "geo_shape"}


def holds(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether a field mapped `have` takes every value of a field the plan maps `want`."""
    have_type, want_type = have.get("type", "object"), want.get("type", "object")
    if have_type == want_type or have_type not in _KNOWN or want_type not in _KNOWN:
        return True  # a type cdc does not know (a user's mapping): not second-guessed
    if have_type == "object" and have.get("enabled") is False:
        return True  # kept in _source only: takes anything
    if have_type in _STRINGS:
        return want_type not in _OBJECTS and want_type not in ("geo_point", "geo_shape")
    if have_type in _NUMBERS:
        if want_type == "unsigned_long":
            return have_type in ("unsigned_long", "double", "float", "half_float", "scaled_float")
        return want_type in _NUMBERS
    if have_type == "date_nanos":
        return want_type == "date"
    if have_type in ("object", "nested") and want_type == "geo_shape":
        # GeoJSON is an object: a server without geo_shape (the integ-test-zips) mapped the first value
        # dynamically, and that mapping takes the next ones. Saying otherwise logged a false "rejected,
        # rebuild" error at every start (seen in bench/soak.py's restarts).
        return True
    return have_type in _OBJECTS and want_type in _OBJECTS


def field_changes(wanted: Mapping[str, dict], have: Mapping[str, Any]) -> tuple[dict[str, dict], list[str]]:
    """(the fields to add, how mapped fields cannot hold what the table now gives) for an index whose mapping has
    the properties `have`."""
    missing: dict[str, dict] = {}
    conflicts: list[str] = []
    for name, spec in wanted.items():
        found = have.get(name)
        if found is None:
            if "." not in name:  # a dotted name is mapped as objects: Elasticsearch merges it (no conflict)
                missing[name] = spec
            continue
        if not holds(found, spec):
            conflicts.append(f"field {name} is mapped as {found.get('type', 'object')}, and the table now gives "
                             f"{spec.get('type', 'object')} values")
    return missing, conflicts


def rebuild_hint(rule: Rule) -> str:
    kind, name = index_target(rule)
    if kind == "template":
        return (f"index names made from columns ({name}) are not rebuilt by `cdc rebuild`: change the rule's "
                "create_index mappings, which a new index gets from the template, or reindex by hand")
    return (f"put the new mapping in place with `cdc rebuild --index {name}` beside the running "
            "daemon (docs/verify-and-rebuild.md, \"Rebuilding an index\")")


class FieldMapper:
    """Puts the fields of new columns into the rules' indices before their first document (module docstring)."""

    def __init__(self, rules, sink: SearchAdmin, options: ValueOptions):
        self.rules = rules  # a RuleSet: matches(schema, table)
        self.sink = sink
        self.options = options
        # (schema, table) -> (the columns tuple last seen, what of it the mapping depends on)
        self._seen: dict[tuple[str, str], tuple[tuple[Column, ...], tuple]] = {}
        self._said: set[tuple[str, str]] = set()  # errors already logged: (index, the error)
        self.added: list[str] = []  # "index.field: type", for tests and the log

    def start(self, rules: Iterable[Rule]) -> None:
        """At start-up: the definitions the rules were resolved with (information_schema)."""
        for rule in rules:
            self._map(rule, None)

    def check(self, change: RowChange) -> None:
        """Before the actions of `change` are built: map what its table definition adds (the hot path: one lookup)."""
        key = (change.schema, change.table)
        known = self._seen.get(key)
        if known is not None and known[0] is change.columns:
            return
        signature = tuple((c.name, c.kind, c.bits, c.unsigned_64) for c in change.columns)
        if known is None or known[1] != signature:
            for rule in self.rules.matches(change.schema, change.table):
                self._map(rule, change.columns)
        self._seen[key] = (change.columns, signature)

    def _map(self, rule: Rule, columns: Sequence[Column] | None) -> None:
        name = index_target(rule)[1]  # the alias (or index), or for names made from columns the pattern
        wanted = wanted_fields(rule, self.options, columns)
        if not wanted:
            return
        try:
            status, body = self.sink.admin("GET", f"/{name}/_mapping")
        except SinkAccessError as exc:
            self._error(name, f"cannot read the mapping ({exc}); new columns are mapped dynamically by Elasticsearch "
                        "(the role needs view_index_metadata and manage on the index)", warn=True)
            return
        if status == 404 or not isinstance(body, dict):
            return  # nothing there yet: the first write creates it (from create_index's template, or dynamically)
        for index, entry in sorted(body.items()):
            have = ((entry or {}).get("mappings") or {}).get("properties") or {}
            missing, conflicts = field_changes(wanted, have)
            for conflict in conflicts:
                self._error(index, f"{conflict} ({rule.name}): documents with values it cannot hold are rejected; "
                            + rebuild_hint(rule))
            if missing:
                self._put(index, missing, rule)

    def _put(self, index: str, fields: dict[str, dict], rule: Rule) -> None:
        try:
            # What the server took: `flattened` becomes flat_object or a disabled object where it lacks the type.
            fields = dict(jsonfields.put(self.sink, f"/{index}/_mapping", {"properties": fields})["properties"])
        except SinkAccessError as exc:
            self._error(index, f"cannot add fields {', '.join(fields)} ({exc}); Elasticsearch maps them dynamically "
                        "from their first values (the role needs manage on the index)", warn=True)
            return
        except SinkError as exc:
            if len(fields) > 1:  # one field the server refuses (a type it lacks) must not keep the others out
                for name, spec in fields.items():
                    self._put(index, {name: spec}, rule)
                return
            (name, spec), = fields.items()
            if spec.get("type") == UNSIGNED_64[0] and "unsigned_long" in str(exc):
                # A server without unsigned_long (the integ-test-zip): keyword holds every value, as at start-up.
                self._put(index, {name: {"type": UNSIGNED_64[1]}}, rule)
                return
            self._error(index, f"cannot map field {name} as {spec} ({exc}); Elasticsearch maps it dynamically from "
                        "its first value", warn=True)
            return
        done = [f"{index}.{name}: {spec.get('type', 'object')}" for name, spec in fields.items()]
        self.added.extend(done)
        log.info("index %s: mapped %s from the table's definition (%s), before the first document with %s",
                 index, ", ".join(f"{n} as {s.get('type', 'object')}" for n, s in fields.items()), rule.name,
                 "them" if len(fields) > 1 else "it")

    def _error(self, index: str, text: str, warn: bool = False) -> None:
        if (index, text) in self._said:
            return
        self._said.add((index, text))
        (log.warning if warn else log.error)("index %s: %s", index, text, extra={"index": index})
