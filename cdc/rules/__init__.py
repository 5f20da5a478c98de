"""Table-to-index rules, and turning row changes into Elasticsearch actions.

Three steps, all pure (data in, data out):

1. `load_rules(path)` reads the YAML rule files and validates them up front:
   unknown keys, bad patterns or templates and overlapping exact rules are
   errors that name the file, the line, the rule (`rules[i]`) and the key.
2. `resolve_rules(rules, catalog)` checks every rule against the server's
   tables (a `Catalog`, read by `database.py` from information_schema), expands
   globs and regexes into one concrete `Rule` per table, and fills in what the
   binlog does not say: primary keys, MariaDB JSON columns, BINARY widths.
3. `actions_for(change, rule, version)` turns one row change into index,
   update and delete actions; `ActionBuilder` does it for a whole `RuleSet`
   (the one conversion the stream and snapshots share).

A rule in YAML (every key but schema, table and index is optional):

    rules:
      - schema: shop                          # exact, {glob: "shop_*"} or {regex: "shop_(\\d+)"}
        table: {regex: "orders_(\\d+)"}
        index: "orders-{created_at:%Y.%m}"    # fixed, {schema}/{table}/{table.1} captures, {column[:format]}
        id: [order_id, line]                  # column, list (joined by id_separator) or "{a}-{b}" template
        routing: customer_id                  # column or template
        ...                                   # see README "Rules reference"
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdc.errors import ConfigError
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules.values import (
    CONVERSIONS,
    ConversionError,
    ConversionStats,
    ValueOptions,
    apply_conversion,
    convert_value,
    parse_date,
)

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


class RowError(ValueError):
    """A row cannot be turned into actions; the message names the table, the row and the column."""


# ====================================================================== names and templates
@dataclass(frozen=True)
class NamePattern:
    """How a rule names its schema or table: exactly, by glob, or by a (fully matching) regex.

    Captures are keyed "1", "2", ... (glob wildcards count as groups) and by group name.
    """

    kind: Literal["exact", "glob", "regex"]
    text: str

    def match(self, name: str) -> dict[str, str] | None:
        if self.kind == "exact":
            return {} if name == self.text else None
        found = _compiled(self.kind, self.text).fullmatch(name)
        if found is None:
            return None
        captures = {str(i): (value or "") for i, value in enumerate(found.groups(), 1)}
        captures.update({k: (v or "") for k, v in found.groupdict().items()})
        return captures

    @property
    def capture_names(self) -> frozenset[str]:
        if self.kind == "exact":
            return frozenset()
        regex = _compiled(self.kind, self.text)
        return frozenset({str(i) for i in range(1, regex.groups + 1)} | set(regex.groupindex))

    def __str__(self) -> str:
        return self.text if self.kind != "regex" else f"/{self.text}/"


@functools.lru_cache(maxsize=None)
def _compiled(kind: str, text: str) -> re.Pattern:
    return re.compile(_glob_regex(text) if kind == "glob" else text)


def _glob_regex(glob: str) -> str:
    """fnmatch-style glob -> regex whose groups are the wildcards (so `{table.1}` works)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("(.*)")
        elif c == "?":
            out.append("(.)")
        elif c == "[":
            j = i + 1
            j += glob[j:j + 1] == "!"
            j += glob[j:j + 1] == "]"  # a "]" first in the set is a member, as in fnmatch
            end = glob.find("]", j)
            if end < 0:  # no closing bracket: a literal "["
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("([" + body.replace("\\", "\\\\") + "])")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


_META = re.compile(r"(schema|table)(?:\.(\w+))?")


@dataclass(frozen=True)
class TemplateField:
    name: str  # "schema", "table", "table.1", "schema.tenant", or a column name
    spec: str  # format: strftime if it has a '%', else Python's format mini-language
    meta: bool  # the schema/table name or a capture, not a column


@dataclass(frozen=True)
class Template:
    """`orders-{table.1}-{created_at:%Y.%m}`: text with {fields}; `{{` and `}}` are literal braces."""

    text: str
    parts: tuple[str | TemplateField, ...]

    @property
    def fields(self) -> tuple[TemplateField, ...]:
        return tuple(p for p in self.parts if isinstance(p, TemplateField))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if not f.meta)

    @property
    def literal(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@functools.lru_cache(maxsize=None)
def parse_template(text: str) -> Template:
    parts: list[str | TemplateField] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if not name:
            raise ValueError(f"bad template {text!r}: empty {{}}; name a column, schema, table or a capture")
        if conversion:
            raise ValueError(f"bad template {text!r}: '!{conversion}' is not supported")
        if spec and "{" in spec:
            raise ValueError(f"bad template {text!r}: nested fields are not supported")
        parts.append(TemplateField(name, spec or "", bool(_META.fullmatch(name))))
    return Template(text, tuple(parts))


# ====================================================================== the rule
WriteMode = Literal["index", "update"]
DeleteMode = Literal["delete", "ignore", "soft"]


@dataclass(frozen=True)
class Conversion:
    name: str  # one of values.CONVERSIONS
    arg: str | None = None


@dataclass(frozen=True)
class ColumnInfo:
    """One column as information_schema.COLUMNS describes it."""

    name: str
    data_type: str  # DATA_TYPE, lowercase: "int", "varchar", "json", ...
    column_type: str = ""  # COLUMN_TYPE: "int(10) unsigned", "binary(16)", "tinyint(1)", ...
    charset: str | None = None
    nullable: bool = True


@dataclass(frozen=True)
class IndexSetup:
    """`create_index:` of a rule: settings, and mappings (None = generated from the column types)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] | None = None


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
    also: bool = False  # may share tables with other `also` rules
    create_index: IndexSetup | None = None
    # Filled in by resolve_rules from the catalog:
    checked: bool = True  # False as loaded: not yet checked against the server
    pad_binary: tuple[tuple[str, int], ...] = ()  # BINARY(n) columns and their n
    point_columns: frozenset[str] = frozenset()  # POINT columns (the binlog calls them GEOMETRY)
    table_columns: tuple[ColumnInfo, ...] = ()

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

    def match(self, schema: str, table: str) -> Rule | None:
        """The first rule for this table; use `matches` where `also` rules matter."""
        found = self.matches(schema, table)
        return found[0] if found else None

    def table_filter(self) -> "TableFilter":
        """The tables to read rows of: the resolved ones, plus any later table a pattern matches."""
        return TableFilter({(r.schema, r.table) for r in self.rules if not r.is_pattern}, self)

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

    def __new__(cls, tables: Iterable[tuple[str, str]], rules: RuleSet):
        self = super().__new__(cls, tables)
        self._rules = rules
        return self

    def __contains__(self, key: object) -> bool:
        if frozenset.__contains__(self, key):
            return True
        return isinstance(key, tuple) and len(key) == 2 and bool(self._rules.patterns) \
            and bool(self._rules.matches(*key))


# ====================================================================== loading
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def _check_index_name(text: str) -> None:
    literal = parse_template(text).literal
    if literal != literal.lower():
        raise ValueError(f"index name {text!r} must be lowercase")
    if not parse_template(text).parts or isinstance(parse_template(text).parts[0], str) and text[0] in "-_+":
        raise ValueError(f"{text!r} is not a valid index name (it may not start with -, _ or +)")
    if any(c in _INDEX_FORBIDDEN for c in literal) or text in (".", ".."):
        raise ValueError(f"{text!r} is not a valid index name (no \\ / * ? \" < > | space , # :)")


def _pattern(value: Any) -> NamePattern:
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        return NamePattern("exact", value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, text), = value.items()
        if kind in ("glob", "regex") and isinstance(text, str) and text:
            if kind == "regex":
                try:
                    re.compile(text)
                except re.error as exc:
                    raise ValueError(f"invalid regex {text!r}: {exc}") from None
            return NamePattern(kind, text)
    raise ValueError("expected a name, {glob: PATTERN} or {regex: PATTERN}")


def _conversions(column: str, value: Any) -> tuple[Conversion, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            name, arg = item, None
        elif isinstance(item, dict) and len(item) == 1:
            (name, arg), = item.items()
            if not isinstance(arg, str):
                raise ValueError(f"column {column!r}: the argument of {name!r} must be a string")
        else:
            raise ValueError(f"column {column!r}: expected a conversion name, {{name: argument}} or a list of them")
        if name not in CONVERSIONS:
            raise ValueError(f"column {column!r}: unknown conversion {name!r} (known: {', '.join(CONVERSIONS)})")
        needs = CONVERSIONS[name]
        if needs == "required" and not arg:
            raise ValueError(f"column {column!r}: {name!r} needs an argument, e.g. {{{name}: ...}}")
        if needs == "none" and arg is not None:
            raise ValueError(f"column {column!r}: {name!r} takes no argument")
        if name == "split" and arg is None:
            arg = ","
        out.append(Conversion(name, arg))
    return tuple(out)


class _CreateIndexSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    settings: dict[str, Any] = {}
    mappings: dict[str, Any] | None = None  # None: generated from the column types


class RuleSpec(BaseModel):
    """One entry of a rule file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    schema_: Any = Field(alias="schema")
    table: Any
    index: str = Field(min_length=1)
    also: bool = False
    id: Any = None
    id_separator: str = ":"
    routing: str | None = None
    include: list[str] | None = None
    exclude: list[str] = []
    rename: dict[str, str] = {}
    fields: dict[str, Any] = {}
    add_table_name: str | None = None
    add_schema_name: str | None = None
    convert: dict[str, Any] = {}
    mode: WriteMode = "index"
    on_delete: DeleteMode = "delete"
    soft_delete_field: str | None = None
    pipeline: str | None = None
    create_index: Any = None

    @field_validator("create_index", mode="before")
    @classmethod
    def _create_index(cls, value: Any) -> "_CreateIndexSpec | None":
        if value is None or value is False:
            return None
        if value is True:
            return _CreateIndexSpec()
        if not isinstance(value, dict):
            raise ValueError("expected true or {settings: {...}, mappings: {...}}")
        try:
            return _CreateIndexSpec.model_validate(value)
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in exc.errors())) from None

    @field_validator("schema_", "table", mode="before")
    @classmethod
    def _name_pattern(cls, value: Any) -> NamePattern:
        return _pattern(value)

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        parse_template(value)
        _check_index_name(value)
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value:
            if "{" in value or "}" in value:
                if not parse_template(value).columns:
                    raise ValueError(f"id template {value!r} uses no column, so every row would get one id")
            return value
        if isinstance(value, list):
            if not value:
                raise ValueError("id list must not be empty")
            if not all(isinstance(v, str) and v for v in value):
                raise ValueError("id list must hold column names")
            if len(set(value)) != len(value):
                raise ValueError("id list names a column twice")
            return value
        raise ValueError("expected a column name, a list of column names or a template like '{a}-{b}'")

    @field_validator("id_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        # One character, so escaping it (and '\\') keeps ids of different keys
        # apart; with "::" the keys ("a:", "b") and ("a", ":b") would both be "a:::b".
        if len(value) != 1 or value == "\\":
            raise ValueError("must be exactly one character, not a backslash")
        return value

    @field_validator("routing")
    @classmethod
    def _routing(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("must not be empty")
            if "{" in value and not parse_template(value).columns:
                raise ValueError(f"routing template {value!r} uses no column")
        return value

    @field_validator("convert", mode="before")
    @classmethod
    def _convert(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of column name to conversion")
        return {str(k): _conversions(str(k), v) for k, v in value.items()}

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, v in value.items():
            if not _is_json(v):
                raise ValueError(f"field {name!r}: value must be plain JSON (string, number, bool, null, list, map)")
        return value

    @model_validator(mode="after")
    def _together(self) -> "RuleSpec":
        problems = []
        if self.include is not None and self.exclude:
            problems.append("include and exclude: give one of them, not both")
        if self.mode == "update" and self.pipeline:
            problems.append("pipeline: Elasticsearch runs no named ingest pipeline on updates; make it the "
                            "index's default_pipeline instead (it then runs when an update creates the document)")
        if self.on_delete != "soft" and self.soft_delete_field is not None:
            problems.append("soft_delete_field: only for on_delete: soft")
        schema, table = self.schema_, self.table
        available = {"schema", "table"} | {f"schema.{c}" for c in schema.capture_names} \
            | {f"table.{c}" for c in table.capture_names}
        templates = [("index", self.index), ("routing", self.routing)]
        if isinstance(self.id, str) and ("{" in self.id or "}" in self.id):
            templates.append(("id", self.id))
        for key, text in templates:
            if not text:
                continue
            for f in parse_template(text).fields:
                if f.meta and f.name not in available:
                    pattern = schema if f.name.startswith("schema") else table
                    problems.append(f"{key}: {{{f.name}}} is not a capture of {pattern} "
                                    f"(captures: {', '.join(sorted(available - {'schema', 'table'})) or 'none'})")
                if f.meta and f.spec and "%" in f.spec:
                    problems.append(f"{key}: {{{f.name}:{f.spec}}}: a date format needs a date column")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_rule(self, source: str) -> Rule:
        schema, table = self.schema_, self.table
        id_columns = id_template = None
        if isinstance(self.id, list):
            id_columns = tuple(self.id)
        elif isinstance(self.id, str):
            if "{" in self.id or "}" in self.id:
                id_template = self.id
            else:
                id_columns = (self.id,)
        routing = self.routing
        if routing is not None and "{" not in routing:
            routing = "{" + routing + "}"
        setup = None
        if isinstance(self.create_index, _CreateIndexSpec):
            setup = IndexSetup(self.create_index.settings, self.create_index.mappings)
        return Rule(
            schema=schema.text if schema.kind == "exact" else str(schema),
            table=table.text if table.kind == "exact" else str(table),
            index=self.index, id_columns=id_columns, source=source,
            schema_pattern=schema if schema.kind != "exact" else None,
            table_pattern=table if table.kind != "exact" else None,
            id_template=id_template, id_separator=self.id_separator, routing=routing,
            include=tuple(self.include) if self.include is not None else None, exclude=tuple(self.exclude),
            rename=tuple(self.rename.items()), fields=tuple(self.fields.items()),
            add_table_name=self.add_table_name, add_schema_name=self.add_schema_name,
            conversions=tuple(self.convert.items()), mode=self.mode, on_delete=self.on_delete,
            soft_delete_field=self.soft_delete_field or "deleted", pipeline=self.pipeline, also=self.also, create_index=setup, checked=False,
        )


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _yaml_lines(text: str) -> list[tuple[int, dict[str, int]]]:
    """For each entry of the `rules:` list: its line and the line of each of its keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "rules" and isinstance(value, yaml.SequenceNode):
            out = []
            for item in value.value:
                keys = {}
                if isinstance(item, yaml.MappingNode):
                    keys = {k.value: k.start_mark.line + 1 for k, _ in item.value if isinstance(k, yaml.ScalarNode)}
                out.append((item.start_mark.line + 1, keys))
            return out
    return []


def _format_errors(file: Path, exc: "ValidationError | _LocErrors", lines: list[tuple[int, dict[str, int]]]) -> list[str]:
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            i = loc[1]
            rest = [str(p) for p in loc[2:]]
            line, keys = lines[i] if i < len(lines) else (None, {})
            if rest and rest[0] in keys:
                line = keys[rest[0]]
            where = f"{file}:{line}" if line else str(file)
            key = ".".join(rest)
            out.append(f"{where}: rules[{i}]: {key}: {msg}" if key else f"{where}: rules[{i}]: {msg}")
        else:
            out.append(f"{file}: {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}")
    return out


def _rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"{path}: rules path does not exist")
    if not files:
        raise ConfigError(f"{path}: no rule files (*.yml) found")
    return files


def load_rules(path: str | Path) -> RuleSet:
    """Read every *.yml / *.yaml under `path` (a directory or one file); report every error at once."""
    rules: list[Rule] = []
    errors: list[str] = []
    for file in _rule_files(Path(path)):
        try:
            text = file.read_text()
            data = yaml.safe_load(text)
        except OSError as exc:
            errors.append(f"{file}: cannot read: {exc.strerror}")
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
            problem = getattr(exc, "problem", None) or str(exc)
            context = getattr(exc, "context", None)
            errors.append(f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else ""))
            continue
        if not isinstance(data, dict):
            errors.append(f"{file}: expected a mapping with a 'rules:' list, got {type(data).__name__}")
            continue
        unknown = sorted(set(data) - {"rules"})
        errors.extend(f"{file}: {key}: unknown key" for key in unknown)
        entries = data.get("rules")
        if not isinstance(entries, list):
            errors.append(f"{file}: rules: expected a list of rules")
            continue
        lines = _yaml_lines(text)
        for i, entry in enumerate(entries):
            try:
                spec = RuleSpec.model_validate(entry)
            except ValidationError as exc:
                # Re-rooted so that locations read rules[i].key.
                errors.extend(_format_errors(file, _reroot(exc, i), lines))
                continue
            line = lines[i][0] if i < len(lines) else None
            rules.append(spec.to_rule(f"{file}:{line}: rules[{i}]" if line else f"{file}: rules[{i}]"))
    errors.extend(_exact_overlaps(rules))
    if errors:
        raise ConfigError("\n".join(errors))
    if not rules:
        raise ConfigError(f"{path}: the rule files hold no rules")
    return RuleSet(rules)


def _reroot(exc: ValidationError, i: int) -> "_LocErrors":
    """The same errors with locations under rules[i] (RuleSpec is validated one entry at a time)."""
    return _LocErrors([{**e, "loc": ("rules", i, *e["loc"])} for e in exc.errors()])


class _LocErrors:
    """Just enough of ValidationError for _format_errors."""

    def __init__(self, errors: list[dict]):
        self._errors = errors

    def errors(self) -> list[dict]:
        return self._errors


def _exact_overlaps(rules: Sequence[Rule]) -> list[str]:
    """Overlaps that the rule files alone show: the same exact table twice, or an exact table a pattern matches."""
    problems = []
    for i, rule in enumerate(rules):
        if rule.is_pattern:
            continue
        for earlier in rules[:i]:
            if earlier.bind(rule.schema, rule.table) is not None and not (rule.also and earlier.also):
                problems.append(f"{rule.source}: table {rule.name} is already mapped by {earlier.source} "
                                "(say `also: true` in both rules if both should apply)")
        for later in rules[i + 1:]:
            if later.is_pattern and later.bind(rule.schema, rule.table) is not None \
                    and not (rule.also and later.also):
                problems.append(f"{later.source}: pattern {later.name} also matches {rule.name} of {rule.source} "
                                "(say `also: true` in both rules if both should apply)")
    return problems


# ====================================================================== resolving against the server
@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    json_columns: frozenset[str] = frozenset()  # incl. MariaDB's LONGTEXT CHECK (json_valid(...))
    view: bool = False


@dataclass(frozen=True)
class Catalog:
    """What the server has, as far as the rules need to know (read by database.py)."""

    schemas: tuple[str, ...]  # every schema the cdc user can see (for schema patterns)
    tables: Mapping[tuple[str, str], TableInfo]


@dataclass(frozen=True)
class Resolution:
    rules: RuleSet
    problems: tuple[str, ...]  # each stops cdc
    warnings: tuple[str, ...]
    tables: Mapping[str, tuple[tuple[str, str], ...]]  # rule source -> the tables it maps


# MySQL/MariaDB DATA_TYPEs and how cdc converts them (README "Values").
_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}
_TEXT_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_DATE_TYPES = {"date", "datetime", "timestamp"}
_GEOMETRY_TYPES = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                   "geometrycollection", "geomcollection"}
KNOWN_TYPES = (_INTEGER_TYPES | _TEXT_TYPES | _BINARY_TYPES | _DATE_TYPES | _GEOMETRY_TYPES
               | {"decimal", "float", "double", "time", "year", "enum", "set", "bit", "json"})
# What each conversion accepts (by DATA_TYPE), for checks at start-up.
_CONVERSION_INPUTS = {
    "split": _TEXT_TYPES | {"enum"},
    "json": _TEXT_TYPES | {"json"},
    "lower": _TEXT_TYPES | {"enum", "set"},
    "upper": _TEXT_TYPES | {"enum", "set"},
    "bool": _INTEGER_TYPES | {"bit"},
    "datetime": _DATE_TYPES,
}


def resolve_rules(rules: RuleSet, catalog: Catalog) -> Resolution:
    """Expand patterns and check every rule against the tables; pure, so `cdc check` can report it all."""
    problems: list[str] = []
    warnings: list[str] = []
    resolved: list[Rule] = []
    tables_of: dict[str, tuple[tuple[str, str], ...]] = {}
    per_table: dict[tuple[str, str], list[Rule]] = {}
    for rule in rules.rules:
        if rule.is_pattern:
            names = sorted(k for k, info in catalog.tables.items() if not info.view and rule.bind(*k) is not None)
            if not names:
                warnings.append(f"{rule.source}: {rule.name} matches no table now; a matching table created "
                                "later stops cdc with a request to restart it")
        else:
            info = catalog.tables.get((rule.schema, rule.table))
            if info is None:
                problems.append(f"{rule.source}: table {rule.name} does not exist (or the cdc user cannot see it)")
                continue
            if info.view:
                problems.append(f"{rule.source}: {rule.name} is a view; views have no rows in the binlog, "
                                "map the tables behind it")
                continue
            names = [(rule.schema, rule.table)]
        tables_of[rule.source] = tuple(names)
        for schema, table in names:
            bound = rule.bind(schema, table)
            assert bound is not None
            concrete, found = _check_table(bound, catalog.tables[(schema, table)])
            problems.extend(found)
            if concrete is not None:
                resolved.append(concrete)
                per_table.setdefault((schema, table), []).append(concrete)
    for (schema, table), found in per_table.items():
        if len(found) > 1 and not all(r.also for r in found):
            problems.append(f"table {schema}.{table} is matched by {len(found)} rules: "
                            f"{'; '.join(r.source for r in found)}. A table may have one rule, unless every rule "
                            "for it says `also: true`")
    # Only add the patterns as written, for tables created later.
    return Resolution(RuleSet(resolved, tuple(r for r in rules.rules if r.is_pattern)), tuple(problems),
                      tuple(warnings), tables_of)


def _check_table(rule: Rule, info: TableInfo) -> tuple[Rule | None, list[str]]:
    where = f"{rule.source} ({rule.name})"
    problems: list[str] = []
    types = {c.name: c for c in info.columns}
    names = list(types)

    def need(key: str, columns: Iterable[str]) -> None:
        unknown = [c for c in columns if c not in types]
        if unknown:
            problems.append(f"{where}: {key} column(s) {', '.join(unknown)} not in {rule.name} "
                            f"(columns: {', '.join(names)})")

    id_columns = rule.id_columns
    if id_columns:
        need("id", id_columns)
    elif rule.id_template:
        need("id", parse_template(rule.id_template).columns)
    elif info.primary_key:
        id_columns = info.primary_key
    else:
        problems.append(f"{where}: table {rule.name} has no primary key; name the column(s) that identify "
                        "a row with `id:`")
    index = parse_template(rule.index)
    need("index", index.columns)
    for f in index.fields:
        if not f.meta and "%" in f.spec and f.name in types and types[f.name].data_type not in _DATE_TYPES:
            problems.append(f"{where}: index: {{{f.name}:{f.spec}}} formats a date, but {f.name} is "
                            f"{types[f.name].column_type or types[f.name].data_type}")
    if rule.routing:
        need("routing", parse_template(rule.routing).columns)
    if rule.include is not None:
        need("include", rule.include)
    need("exclude", rule.exclude)
    need("rename", [old for old, _ in rule.rename])
    need("convert", [c for c, _ in rule.conversions])
    json_columns = info.json_columns
    for column, conversions in rule.conversions:
        if column not in types:
            continue
        data_type = types[column].data_type
        first = conversions[0].name
        if column in json_columns:
            data_type = "json"
        if data_type not in _CONVERSION_INPUTS[first]:
            problems.append(f"{where}: convert: {first} cannot take column {column} of type "
                            f"{types[column].column_type or data_type}")
    kept = [c for c in names if (rule.include is None or c in rule.include) and c not in rule.exclude]
    renames = dict(rule.rename)
    out_names = Counter(renames.get(c, c) for c in kept)
    extra = [k for k, _ in rule.fields] + [n for n in (rule.add_table_name, rule.add_schema_name) if n]
    if rule.on_delete == "soft":
        extra.append(rule.soft_delete_field)
    out_names.update(extra)
    clash = sorted(n for n, count in out_names.items() if count > 1)
    if clash:
        problems.append(f"{where}: the document would have field(s) {', '.join(clash)} twice "
                        "(check rename, fields, add_table_name, add_schema_name, soft_delete_field)")
    keys = dataclasses.replace(rule, id_columns=id_columns).template_columns
    for c in dict.fromkeys([*kept, *keys]):
        if c in types and types[c].data_type not in KNOWN_TYPES and c not in json_columns:
            fix = "it makes the id, index name or routing" if c in keys else "add it to `exclude`"
            problems.append(f"{where}: column {c} has type {types[c].column_type or types[c].data_type}, which "
                            f"cdc cannot convert the same way from the binlog and from a SELECT ({fix})")
    if problems:
        return None, problems
    pad = tuple((c.name, int(m.group(1))) for c in info.columns
                if c.data_type == "binary" and (m := re.search(r"\((\d+)\)", c.column_type)))
    points = frozenset(c.name for c in info.columns if c.data_type == "point")
    return dataclasses.replace(rule, id_columns=id_columns, json_columns=json_columns, pad_binary=pad,
                               point_columns=points, table_columns=info.columns, checked=True), []


# ====================================================================== row change -> actions
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
    keys = _KeyView(row)
    if rule.id_template:
        doc_id = _render(parse_template(rule.id_template), rule, keys, "document id")
    else:
        assert rule.id_columns, f"rule {rule.name} has no id columns (resolve it first)"
        try:
            doc_id = document_id(keys, rule.id_columns, rule.id_separator)
        except KeyError as exc:
            raise RowError(f"row has no key column {exc.args[0]!r} (columns: {', '.join(row.raw)})") from None
    if not doc_id:
        raise RowError("the document id is empty")
    if len(doc_id.encode()) > 512:
        raise RowError(f"the document id {doc_id[:60]!r}... is longer than Elasticsearch's 512 bytes")
    index = _render(parse_template(rule.index), rule, keys, "index name")
    index = index.lower()  # Elasticsearch index names are lowercase; captures and values may not be
    if not index or index[0] in "-_+" or any(c in _INDEX_FORBIDDEN for c in index) or index in (".", ".."):
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
    common = dict(version=version, schema=change.schema, table=change.table, position=change.position,
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
