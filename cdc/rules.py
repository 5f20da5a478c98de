"""Table-to-index rules, and turning row changes into Elasticsearch actions.

Rule files are YAML under the rules directory (`rules: [{schema, table, index, id}]`),
validated up front like the config. `actions_for()` is pure: a row change and a
rule in, actions out; the caller supplies the version (see `document_version`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import format_validation_error
from .errors import ConfigError
from .model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from .values import ValueOptions, convert_row

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


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: str = Field(alias="schema", min_length=1)
    table: str = Field(min_length=1)
    index: str = Field(min_length=1)
    # One column or a list (composite key); default: the table's primary key.
    id: str | list[str] | None = None

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        # Elasticsearch's own rules for index names (lowercase, no leading -_+, no \/*?"<>| ,#:).
        if value != value.lower():
            raise ValueError(f"index name {value!r} must be lowercase")
        if value[0] in "-_+" or any(c in value for c in '\\/*?"<>| ,#:'):
            raise ValueError(f"{value!r} is not a valid index name")
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("id list must not be empty")
        return value


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[RuleSpec]


@dataclass(frozen=True)
class Rule:
    schema: str
    table: str
    index: str
    id_columns: tuple[str, ...] | None  # None until resolved against the server
    source: str = ""  # "file.yml: rules[0]" for messages
    # Columns that hold JSON although the binlog calls them text (MariaDB's JSON is LONGTEXT).
    json_columns: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


class RuleSet:
    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self._by_table = {(r.schema, r.table): r for r in rules}

    def match(self, schema: str, table: str) -> Rule | None:
        return self._by_table.get((schema, table))

    @property
    def schemas(self) -> frozenset[str]:
        return frozenset(r.schema for r in self.rules)

    def replace(self, rules: Sequence[Rule]) -> "RuleSet":
        return RuleSet(rules)

    def __len__(self) -> int:
        return len(self.rules)


def load_rules(path: str | Path) -> RuleSet:
    """Read every *.yml / *.yaml under `path` (a directory or one file)."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"{path}: rules path does not exist")
    if not files:
        raise ConfigError(f"{path}: no rule files (*.yml) found")
    rules: list[Rule] = []
    seen: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    for file in files:
        try:
            data = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            errors.append(f"{file}: invalid YAML: {exc}")
            continue
        try:
            parsed = RuleFile.model_validate(data)
        except ValidationError as exc:
            errors.append(format_validation_error(str(file), exc))
            continue
        for i, spec in enumerate(parsed.rules):
            where = f"{file}: rules[{i}]"
            key = (spec.schema_, spec.table)
            if key in seen:
                errors.append(f"{where}: table {spec.schema_}.{spec.table} is already mapped by {seen[key]}")
                continue
            seen[key] = where
            id_columns = (spec.id,) if isinstance(spec.id, str) else (tuple(spec.id) if spec.id else None)
            rules.append(Rule(spec.schema_, spec.table, spec.index, id_columns, where))
    if errors:
        raise ConfigError("\n".join(errors))
    return RuleSet(rules)


def _id_part(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def document_id(row: Mapping[str, Any], id_columns: Sequence[str]) -> str:
    """The document id for a row: its key columns joined with ':'.

    Parts are escaped (':' -> '\\:', '\\' -> '\\\\') so that two different keys can
    never produce the same id, e.g. ('a:b', 'c') and ('a', 'b:c').
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
    return ":".join(p.replace("\\", "\\\\").replace(":", "\\:") for p in parts)


class RowError(ValueError):
    """A row cannot be turned into an action (missing or NULL key column)."""


def actions_for(
    change: RowChange, rule: Rule, version: int, options: ValueOptions | None = None
) -> list[Action]:
    """Insert -> index; update -> index (plus delete of the old id if the key changed); delete -> delete."""
    assert rule.id_columns, f"rule {rule.name} has no id columns (resolve it first)"
    columns = _columns_for(change.columns, rule)
    common = dict(index=rule.index, version=version, schema=change.schema, table=change.table,
                  position=change.position)

    def doc_id(row: Mapping[str, Any]) -> str:
        try:
            return document_id(row, rule.id_columns)  # type: ignore[arg-type]
        except KeyError as exc:
            raise RowError(f"{rule.name} at {change.position}: row has no key column {exc.args[0]!r} "
                           f"(columns: {', '.join(row)})") from None
        except ValueError as exc:
            raise RowError(f"{rule.name} at {change.position}: {exc}") from None

    actions: list[Action] = []
    if change.op is Op.DELETE:
        assert change.before is not None
        actions.append(Action(ActionType.DELETE, doc_id=doc_id(change.before), **common))
        return actions
    assert change.after is not None
    new_id = doc_id(change.after)
    if change.op is Op.UPDATE and change.before is not None:
        old_id = doc_id(change.before)
        if old_id != new_id:
            actions.append(Action(ActionType.DELETE, doc_id=old_id, **common))
    doc = convert_row(change.after, columns, options) if options else convert_row(change.after, columns)
    actions.append(Action(ActionType.INDEX, doc_id=new_id, doc=doc, **common))
    return actions


def _columns_for(columns: Sequence[Column], rule: Rule) -> dict[str, Column]:
    out = {}
    for column in columns:
        if column.name in rule.json_columns and column.kind in (ColumnKind.STRING, ColumnKind.BINARY, ColumnKind.OTHER):
            column = Column(column.name, ColumnKind.JSON, column.bits)
        out[column.name] = column
    return out


class ActionBuilder:
    """Row change -> actions under the rule set: the one conversion the stream and snapshots share."""

    def __init__(self, rules: RuleSet, version_epoch: int = 0, value_options: ValueOptions | None = None):
        self.rules = rules
        self.version_epoch = version_epoch
        self.value_options = value_options

    def actions(self, change: RowChange) -> list[Action]:
        rule = self.rules.match(change.schema, change.table)
        if rule is None:
            return []
        version = document_version(change.position, self.version_epoch)
        try:
            return actions_for(change, rule, version, self.value_options)
        except ValueError as exc:  # RowError and ConversionError are ValueErrors
            raise RowError(f"cannot convert row of {change.schema}.{change.table} at {change.position} "
                           f"(row {change.row_index} of the event): {exc}") from None
