"""The rule itself: one table (or pattern) to one index, as loaded and as resolved."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence


from cdc.mysql.catalog import SYSTEM_SCHEMAS, ColumnInfo
from cdc.rules.names import NamePattern, parse_template


WriteMode = Literal["index", "update"]
DeleteMode = Literal["delete", "ignore", "soft"]


@dataclass(frozen=True)
class Conversion:
    name: str  # one of values.CONVERSIONS
    arg: str | None = None


@dataclass(frozen=True)
class IndexSetup:
    """`create_index:` of a rule: settings, and mappings (None = generated from the column types)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Relation:
    """A table joined into the documents of a rule (issue 15; cdc/rules/relations.py builds them).

    `children`: rows of `values.table` whose column `key` holds the parent row's
    primary key, embedded as an array of objects under `field`. `lookup`: the row
    of `values.table` whose primary key the parent's column `key` holds, embedded
    as one object (or null). `values` carries the column options (include,
    exclude, rename, convert) as a Rule for that table, so the same conversion
    code applies; resolved, its `id_columns` is the table's one-column primary key.
    """

    field: str
    kind: Literal["children", "lookup"]
    key: str
    values: "Rule"
    children: tuple["Relation", ...] = ()
    lookups: tuple["Relation", ...] = ()
    max_children: int = 10_000  # children only: a parent with more is refused (docs/rules.md "Documents from several tables")

    @property
    def relations(self) -> tuple["Relation", ...]:
        return self.children + self.lookups

    @property
    def pk(self) -> str:
        """The one-column primary key (lookups, and tables with children, have one: checked when resolved)."""
        assert self.values.id_columns and len(self.values.id_columns) == 1, "resolve the relation first"
        return self.values.id_columns[0]

    @property
    def pk_columns(self) -> tuple[str, ...]:
        assert self.values.id_columns, "resolve the relation first"
        return self.values.id_columns


@dataclass(frozen=True)
class Rule:
    """One rule. As loaded it may name its schema/table by pattern; resolved, it is one table.

    The first six fields keep the original positional form
    `Rule(schema, table, index, id_columns, source, json_columns)`.
    """

    schema: str  # the exact name, or the pattern's text until resolved
    table: str
    index: str  # a template (fixed text is a template without fields)
    id_columns: tuple[str, ...] | None  # None until resolved (then the primary key), or with id_template
    source: str = ""  # "file.yml:3: rules[0]" for messages
    # Columns that hold JSON although the binlog calls them text (MariaDB's JSON is LONGTEXT).
    json_columns: frozenset[str] = field(default_factory=frozenset)
    schema_pattern: NamePattern | None = None  # None: `schema` is exact
    table_pattern: NamePattern | None = None
    captures: tuple[tuple[str, str], ...] = ()  # ("table", "order_7"), ("table.1", "7"), ...
    id_template: str | None = None
    id_separator: str = ":"
    routing: str | None = None  # a template; a bare column name is stored as "{name}"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()  # constant fields added to every document
    add_table_name: str | None = None
    add_schema_name: str | None = None
    conversions: tuple[tuple[str, tuple[Conversion, ...]], ...] = ()
    mode: WriteMode = "index"
    on_delete: DeleteMode = "delete"
    soft_delete_field: str = "deleted"
    pipeline: str | None = None
    # refresh: wait_for: a bulk request holding this rule's writes is answered only
    # once a refresh made them searchable (docs/rules.md "Read your writes").
    refresh_wait_for: bool = False
    also: bool = False  # may share tables with other `also` rules
    # The rule accepts an `id:` that no unique NOT NULL key backs: rows with the same id share
    # one document (docs/rules.md "Document ids and routing"); without it such a rule is refused.
    allow_duplicate_ids: bool = False
    create_index: IndexSetup | None = None
    json_mapping: str = "object"  # object | flattened | disabled: the field of JSON values (cdc/es/jsonfields.py)
    # Filled in by resolve_rules from the catalog:
    checked: bool = True  # False as loaded: not yet checked against the server
    pad_binary: tuple[tuple[str, int], ...] = ()  # BINARY(n) columns and their n
    point_columns: frozenset[str] = frozenset()  # POINT columns (the binlog calls them GEOMETRY)
    table_columns: tuple[ColumnInfo, ...] = ()
    # Tables joined into the documents (children, lookups): issue 15, cdc/rules/relations.py.
    relations: tuple[Relation, ...] = ()

    def relation_tables(self) -> tuple[tuple[str, str], ...]:
        """Every (schema, table) a relation of this rule reads, at any depth."""
        out: list[tuple[str, str]] = []
        todo = list(self.relations)
        while todo:
            relation = todo.pop()
            out.append((relation.values.schema, relation.values.table))
            todo.extend(relation.relations)
        return tuple(dict.fromkeys(out))

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def is_pattern(self) -> bool:
        return self.schema_pattern is not None or self.table_pattern is not None

    def bind(self, schema: str, table: str) -> "Rule | None":
        """This rule for one concrete table, with its captures; None if it does not match."""
        if not self.is_pattern:
            if (schema, table) != (self.schema, self.table):
                return None
            return self if self.captures else dataclasses.replace(self, captures=(("schema", schema), ("table", table)))
        s = (self.schema_pattern or NamePattern("exact", self.schema)).match(schema)
        t = (self.table_pattern or NamePattern("exact", self.table)).match(table) if s is not None else None
        if s is None or t is None:
            return None
        captures = [("schema", schema), ("table", table)]
        captures += [(f"schema.{k}", v) for k, v in s.items()] + [(f"table.{k}", v) for k, v in t.items()]
        return dataclasses.replace(self, schema=schema, table=table, schema_pattern=None, table_pattern=None,
                                   captures=tuple(captures))

    @property
    def template_columns(self) -> tuple[str, ...]:
        """Columns the index name, id and routing are made of (they must be in every row)."""
        names = list(parse_template(self.index).columns)
        names += self.id_columns or ()
        if self.id_template:
            names += parse_template(self.id_template).columns
        if self.routing:
            names += parse_template(self.routing).columns
        return tuple(dict.fromkeys(names))


class RuleSet:
    """The rules, looked up by table. After `resolve_rules` every rule is one table."""

    def __init__(self, rules: Sequence[Rule], patterns: Sequence[Rule] = ()):
        self.rules = tuple(rules)
        # Pattern rules as written, kept after resolution to recognise tables
        # created after start-up (see ActionBuilder).
        self.patterns = tuple(patterns) or tuple(r for r in self.rules if r.is_pattern)
        self._exact: dict[tuple[str, str], list[Rule]] = {}
        self._wild: list[Rule] = []
        for rule in self.rules:
            if rule.is_pattern:
                self._wild.append(rule)
            else:
                self._exact.setdefault((rule.schema, rule.table), []).append(rule)
        self._cache: dict[tuple[str, str], tuple[Rule, ...]] = {}

    # -- what to read from the server (cdc.mysql.catalog.TableChooser) --
    def schemas_among(self, schemas: list[str]) -> set[str]:
        """The schemas whose tables the rules may name: exact ones, and those a pattern matches."""
        wanted: set[str] = {s for r in self.rules for s, _ in r.relation_tables()}
        for rule in self.rules:
            if rule.schema_pattern is None:
                wanted.add(rule.schema)
            else:
                wanted.update(s for s in schemas if s.lower() not in SYSTEM_SCHEMAS
                              and rule.schema_pattern.match(s) is not None)
        return wanted

    def wants(self, schema: str, table: str) -> bool:
        return any(r.bind(schema, table) is not None or (schema, table) in r.relation_tables() for r in self.rules)

    def matches(self, schema: str, table: str) -> tuple[Rule, ...]:
        """Every rule for this table (more than one only if they all say `also: true`)."""
        key = (schema, table)
        found = self._cache.get(key)
        if found is None:
            found = tuple(self._exact.get(key, ()))
            found += tuple(b for b in (r.bind(schema, table) for r in self._wild) if b is not None)
            if not found and not self._wild:
                # Resolved rules, and a table that a pattern matches but that was not
                # there at start-up: returned unchecked, so ActionBuilder says so.
                found = tuple(dataclasses.replace(b, checked=False)
                              for b in (r.bind(schema, table) for r in self.patterns) if b is not None)
            self._cache[key] = found
        return found

    def waits_for_refresh(self, schema: str, table: str) -> bool:
        """Must a write from this table wait for a refresh (some rule for it says `refresh: wait_for`)?"""
        return any(r.refresh_wait_for for r in self.matches(schema, table))

    def match(self, schema: str, table: str) -> Rule | None:
        """The first rule for this table; use `matches` where `also` rules matter."""
        found = self.matches(schema, table)
        return found[0] if found else None

    def table_filter(self) -> "TableFilter":
        """The tables to read rows of: the resolved ones, plus any later table a pattern matches."""
        tables = {(r.schema, r.table) for r in self.rules if not r.is_pattern}
        tables |= {t for r in self.rules for t in r.relation_tables()}  # their changes rebuild documents
        return TableFilter(tables, self)

    @property
    def schemas(self) -> frozenset[str]:
        return frozenset(r.schema for r in self.rules if r.schema_pattern is None)

    def replace(self, rules: Sequence[Rule]) -> "RuleSet":
        return RuleSet(rules, self.patterns)

    def __len__(self) -> int:
        return len(self.rules)


class TableFilter(frozenset):
    """A set of (schema, table) whose `in` also accepts tables that only a pattern rule matches.

    The binlog source keeps rows of tables `in` it. A table created after
    start-up that a glob or regex matches must not be skipped silently: its rows
    reach ActionBuilder, which stops with "restart cdc to pick it up".
    """

    _rules: RuleSet

    def __new__(cls, tables: Iterable[tuple[str, str]], rules: RuleSet) -> "TableFilter":
        self = super().__new__(cls, tables)
        self._rules = rules
        return self

    def __contains__(self, key: object) -> bool:
        if frozenset.__contains__(self, key):
            return True
        return isinstance(key, tuple) and len(key) == 2 and bool(self._rules.patterns) \
            and bool(self._rules.matches(*key))
