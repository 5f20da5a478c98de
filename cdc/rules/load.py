"""Loading rule files: YAML validated up front; errors name the file, line, rule and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdc.errors import ConfigError
from cdc.rules.values import (
    CONVERSIONS,
)
from cdc.rules.model import Conversion, DeleteMode, IndexSetup, Relation, Rule, RuleSet, WriteMode
from cdc.rules.names import NamePattern, check_index_name, parse_template


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


def _convert_map(cls, value: Any) -> Any:
    """The `convert:` mapping of a rule or of a joined table (children, lookups), checked."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of column name to conversion")
    return {str(k): _conversions(str(k), v) for k, v in value.items()}


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


class RelationSpec(BaseModel):
    """One entry of a rule's `children:` or `lookups:` (issue 15, docs/rules.md "Documents from several tables")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: str | None = Field(None, alias="schema", min_length=1)  # default: the parent's schema
    table: str = Field(min_length=1)
    # children: the column of this table that holds the parent's primary key;
    # lookups: the column of the parent that holds this table's primary key.
    key: str = Field(min_length=1)
    include: list[str] | None = None
    exclude: list[str] = []
    rename: dict[str, str] = {}
    convert: dict[str, Any] = {}
    children: dict[str, "RelationSpec"] = {}
    lookups: dict[str, "RelationSpec"] = {}
    max_children: int | None = Field(None, ge=1)

    _convert = field_validator("convert", mode="before")(_convert_map)

    @model_validator(mode="after")
    def _together(self) -> "RelationSpec":
        problems = []
        if self.include is not None and self.exclude:
            problems.append("include and exclude: give one of them, not both")
        for name, lookup in self.lookups.items():
            if lookup.max_children is not None:
                problems.append(f"lookups.{name}.max_children: only children have a count to bound")
        problems.extend(_field_clashes(self.children, self.lookups))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_relation(self, field: str, kind: str, parent_schema: str, source: str) -> Relation:
        schema = self.schema_ or parent_schema
        where = f"{source}: {kind if kind == 'children' else 'lookups'}.{field}"
        values = Rule(schema=schema, table=self.table, index="-", id_columns=None, source=where,
                      include=tuple(self.include) if self.include is not None else None,
                      exclude=tuple(self.exclude), rename=tuple(self.rename.items()),
                      conversions=tuple(self.convert.items()), checked=False)
        return Relation(
            field=field, kind="children" if kind == "children" else "lookup", key=self.key, values=values,
            children=tuple(spec.to_relation(name, "children", schema, where) for name, spec in self.children.items()),
            lookups=tuple(spec.to_relation(name, "lookup", schema, where) for name, spec in self.lookups.items()),
            max_children=self.max_children or 10_000)


def _field_clashes(children: dict, lookups: dict) -> list[str]:
    both = sorted(set(children) & set(lookups))
    return [f"field {name!r} is both a child and a lookup" for name in both]


class RuleSpec(BaseModel):
    """One entry of a rule file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    schema_: Any = Field(alias="schema")
    table: Any
    index: str = Field(min_length=1)
    also: bool = False
    id: Any = None
    allow_duplicate_ids: bool = False
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
    # wait_for: acknowledged only once searchable (each request then waits up to the
    # index's refresh_interval). A forced refresh per request (true) is not offered.
    refresh: Literal[False, "false", "wait_for"] = False
    create_index: Any = None
    # The field of JSON values (cdc/es/jsonfields.py): object (mapped key by key, as before), flattened, disabled.
    json_mapping: Literal["object", "flattened", "disabled"] = "object"
    children: dict[str, RelationSpec] = {}
    lookups: dict[str, RelationSpec] = {}

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
        check_index_name(value)
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

    _convert = field_validator("convert", mode="before")(_convert_map)

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
        if self.children or self.lookups:
            problems.extend(_relational_limits(self))
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
            soft_delete_field=self.soft_delete_field or "deleted", pipeline=self.pipeline,
            refresh_wait_for=self.refresh == "wait_for", also=self.also, create_index=setup, checked=False,
            json_mapping=self.json_mapping,
            allow_duplicate_ids=self.allow_duplicate_ids,
            relations=tuple([*(spec.to_relation(name, "children", schema.text, source)
                               for name, spec in self.children.items()),
                             *(spec.to_relation(name, "lookup", schema.text, source)
                               for name, spec in self.lookups.items())]),
        )


def _relational_limits(spec: RuleSpec) -> list[str]:
    """What a rule with children or lookups may not do (first version, docs/rules.md "Documents from several tables").

    Its documents are rebuilt whole from MySQL reads and versioned by the read's
    binlog position, so they must be whole documents (mode: index) of one fixed
    index, identified by the root's primary key alone.
    """
    problems = _field_clashes(spec.children, spec.lookups)
    if spec.schema_.kind != "exact" or spec.table.kind != "exact":
        problems.append("children/lookups: the root must be one table, not a pattern")
    if spec.mode != "index":
        problems.append("children/lookups: need mode: index (documents are rebuilt whole)")
    if spec.on_delete != "delete":
        problems.append("children/lookups: need on_delete: delete")
    if spec.id is not None or spec.routing is not None:
        problems.append("children/lookups: the document id is the root's primary key; id and routing are not "
                        "supported here")
    if parse_template(spec.index).columns:
        problems.append("children/lookups: the index name must not be made from columns")
    if spec.also:
        problems.append("children/lookups: also: true is not supported")
    return problems


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
