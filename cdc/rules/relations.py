"""Documents built from several tables (issue 15): a root row with its children and lookups.

A rule with `children:` and `lookups:` makes one document per row of its root
table. Children (one-to-many: an order's lines) are embedded as an array of
objects, lookups (many-to-one: the order's customer) as one object or null, to
any depth. Such documents cannot be made from one row change, so the stream and
snapshots rebuild them whole from MySQL reads:

1. `needs_for(rule, change)`: which rows' roots a change affects, as `Need`s
   (the root's own id; a child's old and new parent ids; a lookup's id, whose
   referrers are found in step 2). Pure.
2. `roots_of(query, rule, needs)`: the root ids, walking up the tree with
   indexed reads (`SELECT pk FROM parent WHERE key IN (...)`; never a scan).
3. `read_documents(query, rule, ids)`: the roots and everything below them, one
   read per relation (`WHERE key IN (...)`), to be run inside one consistent
   snapshot; `document_actions` turns that into index actions (and deletes for
   roots that are gone), versioned by the read's binlog position.

`query(sql, args)` is the one effect (rows as dicts); cdc/mysql/server.py runs
it in a consistent snapshot (`Database.consistent_queries`). Everything else
here is data in, data out, unit-tested with literals (tests/unit/test_relations.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from cdc.errors import RowError
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, RowChange
from cdc.mysql.catalog import Catalog, TableInfo
from cdc.mysql.types import column_from_schema
from cdc.rules.actions import _columns_for, _document, _place, _Row
from cdc.rules.model import Relation, Rule
from cdc.rules.values import ConversionStats, ValueOptions

Path = tuple[int, ...]  # a node of a rule's relation tree: indexes into `relations`, () is the root
Query = Callable[[str, Sequence[Any]], list[dict]]

# Rows asked for by one `IN (...)` list; longer lists are split (a statement stays small).
IN_LIST = 1000


# ---------------------------------------------------------------------- the tree
def node(rule: Rule, path: Path) -> Relation:
    relations = rule.relations
    found: Relation | None = None
    for i in path:
        found = relations[i]
        relations = found.relations
    assert found is not None, "the root is not a relation"
    return found


def nodes(rule: Rule) -> list[tuple[Path, Relation]]:
    """Every relation of a rule with its path, parents before children."""
    out: list[tuple[Path, Relation]] = []
    todo: list[tuple[Path, Relation]] = [((i,), r) for i, r in enumerate(rule.relations)]
    while todo:
        path, relation = todo.pop(0)
        out.append((path, relation))
        todo.extend((path + (i,), r) for i, r in enumerate(relation.relations))
    return out


def root_pk(rule: Rule) -> str:
    assert rule.id_columns and len(rule.id_columns) == 1, "resolve the rule first"
    return rule.id_columns[0]


def _pk_of(rule: Rule, path: Path) -> str:
    return root_pk(rule) if not path else node(rule, path).pk


def _table_of(rule: Rule, path: Path) -> tuple[str, str]:
    if not path:
        return rule.schema, rule.table
    values = node(rule, path).values
    return values.schema, values.table


# ---------------------------------------------------------------------- resolving
def resolve_relations(rule: Rule, catalog: Catalog,
                      check: Callable[[Rule, TableInfo], tuple[Rule | None, list[str]]]) -> tuple[Rule, list[str]]:
    """Check a resolved root rule's relations against the tables, and fill them in like rules.

    `check` is cdc/rules/resolve.py's table check (include, exclude, rename,
    convert, column types); here come the join columns and the shape limits.
    """
    problems: list[str] = []
    if not rule.id_columns or len(rule.id_columns) != 1:
        problems.append(f"{rule.source} ({rule.name}): children/lookups need a root with a one-column primary "
                        f"key (it has {', '.join(rule.id_columns or ()) or 'none'})")
        return rule, problems

    def fields_of(values: Rule) -> set[str]:
        renames = dict(values.rename)
        names = [c.name for c in values.table_columns]
        kept = [c for c in names if (values.include is None or c in values.include) and c not in values.exclude]
        return {renames.get(c, c) for c in kept} | {k for k, _ in values.fields}

    def resolve(relation: Relation, parent: Rule) -> Relation | None:
        where = relation.values.source
        info = catalog.tables.get((relation.values.schema, relation.values.table))
        if info is None:
            problems.append(f"{where}: table {relation.values.name} does not exist (or the cdc user cannot see it)")
            return None
        if info.view:
            problems.append(f"{where}: {relation.values.name} is a view; join its tables instead")
            return None
        values, found = check(relation.values, info)
        problems.extend(found)
        # A lookup is found by its primary key, a parent of children by its: one column each.
        # Other children may have any primary key (their order in the array).
        single = relation.kind == "lookup" or bool(relation.children)
        if values is not None and single and (not values.id_columns or len(values.id_columns) != 1):
            problems.append(f"{where}: {values.name} needs a one-column primary key (it has "
                            f"{', '.join(info.primary_key) or 'none'}): "
                            f"{'a lookup is found by it' if relation.kind == 'lookup' else 'its children hold it'}")
            values = None
        keyed = values if relation.kind == "children" else parent
        if keyed is not None and keyed.checked and relation.key not in {c.name for c in keyed.table_columns}:
            problems.append(f"{where}: key column {relation.key} not in {keyed.name} (columns: "
                            f"{', '.join(c.name for c in keyed.table_columns)})")
        if relation.kind == "children" and parent.checked and (not parent.id_columns or len(parent.id_columns) != 1):
            problems.append(f"{where}: children need a parent ({parent.name}) with a one-column primary key")
        if parent.checked and relation.field in fields_of(parent):
            problems.append(f"{where}: the document of {parent.name} already has a field {relation.field!r} "
                            "(rename the column or choose another field name)")
        # Below an unusable table its relations are still checked, so that every problem is told at once.
        children = [resolve(r, values or relation.values) for r in relation.children]
        lookups = [resolve(r, values or relation.values) for r in relation.lookups]
        if values is None or any(r is None for r in (*children, *lookups)):
            return None
        return dataclasses.replace(relation, values=values, children=tuple(c for c in children if c),
                                   lookups=tuple(c for c in lookups if c))

    resolved = [resolve(r, rule) for r in rule.relations]
    if problems:
        return rule, problems
    return dataclasses.replace(rule, relations=tuple(r for r in resolved if r)), []


def join_columns(rule: Rule) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, why) of every column a rebuild looks rows up by: each needs an index.

    Primary keys are indexed by definition; the `key` columns are not: a
    child's key (children WHERE key IN), and a lookup's key in its parent (the
    referrers of a changed lookup row: parent WHERE key IN).
    """
    out = []
    for path, relation in nodes(rule):
        if relation.kind == "children":
            out.append((relation.values.schema, relation.values.table, relation.key,
                        f"children {relation.field} of {'.'.join(_table_of(rule, path[:-1]))}"))
        else:
            schema, table = _table_of(rule, path[:-1])
            out.append((schema, table, relation.key, f"lookup {relation.field} ({relation.values.name})"))
    return out


def missing_indexes(rule: Rule, leading: Callable[[str, str], set[str]]) -> list[str]:
    """A warning, with the CREATE INDEX to run, for each join column no index starts with.

    `leading(schema, table)`: the columns some index of the table starts with.
    Without one, every rebuild that looks rows up by the column scans the table.
    """
    out = []
    for schema, table, column, why in join_columns(rule):
        if column not in leading(schema, table):
            out.append(f"{rule.source}: {schema}.{table}.{column} ({why}) has no index, so every rebuild that "
                       f"looks rows up by it reads the whole table: CREATE INDEX `{_q(table)}_{_q(column)}` ON "
                       f"{_table(schema, table)} (`{_q(column)}`)")
    return out


# ---------------------------------------------------------------------- changes -> roots
@dataclass(frozen=True)
class Need:
    """Rows of one node of a rule's tree, by primary key, whose roots must be rebuilt."""

    path: Path
    pks: frozenset


def needs_for(rule: Rule, change: RowChange) -> list[Need]:
    """Which documents of `rule` a row change may alter, as rows whose roots are found by walking up.

    A document is a function of the rows it is built from. A change alters the
    documents that held the row before (its before image) and those that hold
    it after (its after image); both images count, so a changed foreign key
    moves a child from one root to another. A child's images name its parent
    directly (`key`); a lookup row is found by its primary key, and its
    referrers by an indexed read (`roots_of`). Tables joined at several places
    give a need for each.
    """
    images = [image for image in (change.before, change.after) if image is not None]
    needs: list[Need] = []
    if (change.schema, change.table) == (rule.schema, rule.table):
        pk = root_pk(rule)
        needs.append(Need((), frozenset(image[pk] for image in images if image.get(pk) is not None)))
    for path, relation in nodes(rule):
        if (relation.values.schema, relation.values.table) != (change.schema, change.table):
            continue
        if relation.kind == "children":
            column, up = relation.key, path[:-1]  # the parent's primary key, in the child row
        else:
            column, up = relation.pk, path  # this lookup row: its referrers are read
        values = frozenset(image[column] for image in images if image.get(column) is not None)
        if values:
            needs.append(Need(up, values))
    return [n for n in needs if n.pks]


@dataclass(frozen=True)
class RootQuery:
    """The last step up to the roots, read a page at a time (`roots_page`): a lookup row may have a million."""

    table: str
    column: str  # the root id, in `table`
    key: str
    values: tuple

    def page(self, after: Any, limit: int) -> tuple[str, list]:
        sql = f"SELECT DISTINCT `{_q(self.column)}` AS v FROM {self.table} WHERE `{_q(self.key)}` IN " \
              f"({_marks(self.values)})"
        args = list(self.values)
        if after is not None:
            sql += f" AND `{_q(self.column)}` > %s"
            args.append(after)
        return sql + f" ORDER BY `{_q(self.column)}` LIMIT {int(limit)}", args


def roots_of(query: Query, rule: Rule, needs: Iterable[Need]) -> tuple[set, list[RootQuery]]:
    """The root ids of these rows: those known at once, and the queries that page through the others.

    A child's change names its parent directly (`needs_for`); when that parent
    is itself a child, its rows name theirs in `key`. From lookup rows: their
    parents are the rows of the parent table whose `key` holds their primary
    key; of those we want what leads further up: the root's id, a child
    parent's `key` (its own parent's id), or a lookup parent's primary key.
    Each step is one indexed read per IN_LIST values; the last one, to the
    roots, is left to `roots_page`, so that memory holds a page of ids at a time.
    """
    by_path: dict[Path, set] = {}
    for need in needs:
        by_path.setdefault(need.path, set()).update(need.pks)
    roots = by_path.pop((), set())
    last: list[RootQuery] = []
    while by_path:
        path = max(by_path, key=len)  # deepest first: each step moves at least one level up
        pks = by_path.pop(path)
        relation = node(rule, path)
        up = path[:-1]
        if relation.kind == "children":
            # Rows of a child table that has children of its own (one of those changed):
            # each names its parent in `key`.
            table, column, by, target = _table(relation.values), relation.key, relation.pk, up
        else:
            parent = node(rule, up) if up else None
            table, by = _table(*_table_of(rule, up)), relation.key
            if parent is None:
                column, target = root_pk(rule), up
            elif parent.kind == "children":
                column, target = parent.key, up[:-1]
            else:
                column, target = parent.pk, up
        chunks = _chunks(sorted(pks, key=_order), IN_LIST)
        if not target:
            last.extend(RootQuery(table, column, by, tuple(chunk)) for chunk in chunks)
            continue
        found = {row["v"] for chunk in chunks
                 for row in query(f"SELECT DISTINCT `{_q(column)}` AS v FROM {table} "
                                  f"WHERE `{_q(by)}` IN ({_marks(chunk)})", chunk)}
        found.discard(None)
        by_path.setdefault(target, set()).update(found)
    return roots, last


def roots_page(query: Query, root_query: RootQuery, after: Any, limit: int) -> list:
    """Up to `limit` root ids of `root_query` greater than `after` (None: from the first), in order."""
    sql, args = root_query.page(after, limit)
    return [row["v"] for row in query(sql, args) if row["v"] is not None]


# ---------------------------------------------------------------------- reading documents
@dataclass
class Fetched:
    """The rows of some roots and everything below them, as read (raw values by column name).

    `children[path][parent pk]` is a list of child rows in primary key order;
    `lookups[path][pk]` one row. `too_many[path]` holds parents refused for
    having more than the relation's `max_children` children (never read).
    """

    roots: list[dict] = field(default_factory=list)
    children: dict[Path, dict[Any, list[dict]]] = field(default_factory=dict)
    lookups: dict[Path, dict[Any, dict]] = field(default_factory=dict)
    too_many: dict[Path, dict[Any, int]] = field(default_factory=dict)


def read_documents(query: Query, rule: Rule, ids: Sequence[Any]) -> Fetched:
    """Read roots by id and, level by level, their children and lookups: run inside one consistent snapshot.

    Reads per call: one for the roots, and per relation one for its rows (`key IN`
    for children, `pk IN` for lookups, IN_LIST values at a time); each children
    relation first counts the children per parent (`GROUP BY key HAVING COUNT(*) >
    max_children`, from the key's index) so that a parent with too many is refused
    before its rows are read: memory stays within ids x max_children rows a level.
    """
    fetched = Fetched()
    pk = root_pk(rule)
    for chunk in _chunks(list(ids), IN_LIST):
        fetched.roots.extend(query(f"SELECT {_select(rule)} FROM {_table(rule)} WHERE `{_q(pk)}` IN "
                                   f"({_marks(chunk)}) ORDER BY `{_q(pk)}`", chunk))
    rows_at: dict[Path, list[dict]] = {(): fetched.roots}
    for path, relation in nodes(rule):
        parents = rows_at.get(path[:-1], [])
        values = relation.values
        rows: list[dict] = []
        if relation.kind == "children":
            parent_pk = _pk_of(rule, path[:-1])
            wanted = sorted({p[parent_pk] for p in parents if p[parent_pk] is not None}, key=_order)
            too_many: dict[Any, int] = {}
            for chunk in _chunks(wanted, IN_LIST):
                for row in query(f"SELECT `{_q(relation.key)}` AS k, COUNT(*) AS n FROM {_table(values)} "
                                 f"WHERE `{_q(relation.key)}` IN ({_marks(chunk)}) GROUP BY `{_q(relation.key)}` "
                                 f"HAVING COUNT(*) > %s", [*chunk, relation.max_children]):
                    too_many[row["k"]] = int(row["n"])
            if too_many:
                fetched.too_many[path] = too_many
            wanted = [w for w in wanted if w not in too_many]
            groups: dict[Any, list[dict]] = {}
            for chunk in _chunks(wanted, IN_LIST):
                order = ", ".join(f"`{_q(c)}`" for c in (relation.key, *relation.pk_columns))
                for row in query(f"SELECT {_select(values)} FROM {_table(values)} WHERE `{_q(relation.key)}` IN "
                                 f"({_marks(chunk)}) ORDER BY {order}", chunk):
                    groups.setdefault(row[relation.key], []).append(row)
                    rows.append(row)
            fetched.children[path] = groups
        else:
            wanted = sorted({p[relation.key] for p in parents if p.get(relation.key) is not None}, key=_order)
            found: dict[Any, dict] = {}
            for chunk in _chunks(wanted, IN_LIST):
                for row in query(f"SELECT {_select(values)} FROM {_table(values)} WHERE `{_q(relation.pk)}` IN "
                                 f"({_marks(chunk)})", chunk):
                    found[row[relation.pk]] = row
                    rows.append(row)
            fetched.lookups[path] = found
        rows_at[path] = rows
    return fetched


# ---------------------------------------------------------------------- assembling
class Assembler:
    """Fetched rows -> documents, converted exactly as the rule's columns are elsewhere (cdc/rules/actions.py)."""

    def __init__(self, rule: Rule, options: ValueOptions | None = None, stats: ConversionStats | None = None):
        self.rule = rule
        self.options = options or ValueOptions()
        self.stats = stats
        self._columns: dict[Path, dict[str, Column]] = {}
        for path in [(), *(p for p, _ in nodes(rule))]:
            values = rule if not path else node(rule, path).values
            columns = [column_from_schema(c.name, c.data_type, c.column_type, c.charset) for c in values.table_columns]
            self._columns[path] = _columns_for(columns, values)

    def row(self, path: Path, raw: Mapping[str, Any]) -> _Row:
        return _Row(raw, self._columns[path], self.options, self.stats)

    def document(self, raw: Mapping[str, Any], fetched: Fetched) -> dict[str, Any]:
        """The root row's document with its relations; RowError for a parent with too many children."""
        return self._build((), self.rule, raw, fetched)

    def _build(self, path: Path, values: Rule, raw: Mapping[str, Any], fetched: Fetched) -> dict[str, Any]:
        doc = _document(self.row(path, raw), values, values.schema, values.table)
        relations = self.rule.relations if not path else node(self.rule, path).relations
        for i, relation in enumerate(relations):
            here = path + (i,)
            if relation.kind == "children":
                pk = _pk_of(self.rule, path)
                count = fetched.too_many.get(here, {}).get(raw[pk])
                if count is not None:
                    raise RowError(f"{relation.values.source}: {values.name} {pk}={raw[pk]!r} has {count} rows in "
                                   f"{relation.values.name} (more than max_children: {relation.max_children})")
                doc[relation.field] = [self._build(here, relation.values, child, fetched)
                                       for child in fetched.children.get(here, {}).get(raw[pk], ())]
            else:
                target = fetched.lookups.get(here, {}).get(raw[relation.key]) if raw[relation.key] is not None \
                    else None
                doc[relation.field] = None if target is None else self._build(here, relation.values, target, fetched)
        return doc

    def place(self, raw: Mapping[str, Any]) -> tuple[str, str]:
        """(index, document id) of a root row, or of a root id alone ({pk: value})."""
        found = _place(self.row((), raw), self.rule)
        return found.index, found.doc_id


@dataclass(frozen=True)
class Refused:
    """A root whose document cannot be built (too many children): for the dead-letter/stop decision."""

    action: Action
    reason: str


def document_actions(assembler: Assembler, ids: Iterable[Any], fetched: Fetched, version: int,
                     position: BinlogPosition | None) -> tuple[list[Action], list[Refused]]:
    """Index actions for the roots read, deletes for the asked-for ids that are gone, all at `version`.

    `position` names where the rebuild came from (a change that triggered it, or
    the read), for error messages and dead letters.
    """
    rule = assembler.rule
    pk = root_pk(rule)
    common: dict[str, Any] = dict(version=version, schema=rule.schema, table=rule.table, position=position)
    actions: list[Action] = []
    refused: list[Refused] = []
    seen = set()
    for raw in fetched.roots:
        seen.add(raw[pk])
        index, doc_id = assembler.place(raw)
        try:
            doc = assembler.document(raw, fetched)
        except ValueError as exc:  # RowError, ConversionError
            refused.append(Refused(Action(ActionType.INDEX, index, doc_id, doc=None, pipeline=rule.pipeline,
                                          **common), str(exc)))
            continue
        actions.append(Action(ActionType.INDEX, index, doc_id, doc=doc, pipeline=rule.pipeline, **common))
    for gone in ids:
        if gone not in seen:
            index, doc_id = assembler.place({pk: gone})
            actions.append(Action(ActionType.DELETE, index, doc_id, **common))
    return actions, refused


# ---------------------------------------------------------------------- SQL text
def _q(name: str) -> str:
    return name.replace("`", "``")


def _table(rule: Rule | str, table: str | None = None) -> str:
    """`schema`.`table` of a rule, or of (schema, table)."""
    schema, table = (rule.schema, rule.table) if isinstance(rule, Rule) else (rule, table or "")
    return f"`{_q(schema)}`.`{_q(table)}`"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def _select(rule: Rule) -> str:
    """Every column, FLOAT as the stored float32 (as cdc/copy/snapshot.py reads it: MariaDB's text
    protocol prints FLOAT with 6 digits, `col + 0e0` gives the binlog's value)."""
    out = []
    for c in rule.table_columns:
        kind = column_from_schema(c.name, c.data_type, c.column_type, c.charset).kind
        out.append(f"`{_q(c.name)}` + 0e0 AS `{_q(c.name)}`" if kind is ColumnKind.FLOAT else f"`{_q(c.name)}`")
    return ", ".join(out)


def _chunks(values: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield list(values[i:i + size])


def _order(value: Any) -> tuple:
    """A sort key for key values of mixed types (SQL would not mix them; tests and None might)."""
    return (type(value).__name__, value)
