"""What the server has, as information_schema describes it: pure data read by `Database.catalog`.

Rules are checked against it (`cdc.rules.resolve`), index mappings are derived
from it (`cdc.es.indices`); it knows nothing of either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol


# The server's own schemas: a schema pattern never picks them (an exact rule may name one).
SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


@dataclass(frozen=True)
class ColumnInfo:
    """One column as information_schema.COLUMNS describes it."""

    name: str
    data_type: str  # DATA_TYPE, lowercase: "int", "varchar", "json", ...
    column_type: str = ""  # COLUMN_TYPE: "int(10) unsigned", "binary(16)", "tinyint(1)", ...
    charset: str | None = None
    nullable: bool = True


@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    json_columns: frozenset[str] = frozenset()  # incl. MariaDB's LONGTEXT CHECK (json_valid(...))
    view: bool = False
    # The unique indexes (the primary key among them) whose columns are all NOT NULL: the column
    # sets no two rows share. A unique index over a nullable column lets rows share NULLs.
    unique_keys: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        # The primary key is one of them, always (its columns are NOT NULL by definition).
        if self.primary_key and self.primary_key not in self.unique_keys:
            object.__setattr__(self, "unique_keys", (self.primary_key, *self.unique_keys))


@dataclass(frozen=True)
class Catalog:
    """What the server has, as far as the rules need to know."""

    schemas: tuple[str, ...]  # every schema the cdc user can see (for schema patterns)
    tables: Mapping[tuple[str, str], TableInfo]


class TableChooser(Protocol):
    """Which schemas and tables to describe (a `RuleSet` is one)."""

    def schemas_among(self, schemas: list[str]) -> set[str]: ...

    def wants(self, schema: str, table: str) -> bool: ...
