"""Checking rules against the server's tables and filling in what the binlog does not say."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

from cdc.errors import PreflightError
from cdc.mysql.catalog import Catalog, TableInfo
from cdc.mysql.types import DATE_TYPES, INTEGER_TYPES, KNOWN_TYPES, TEXT_TYPES
from cdc.rules.model import Rule, RuleSet
from cdc.rules.names import parse_template
from cdc.rules.relations import resolve_relations

log = logging.getLogger("cdc.rules")


@dataclass(frozen=True)
class Resolution:
    rules: RuleSet
    problems: tuple[str, ...]  # each stops cdc
    warnings: tuple[str, ...]
    tables: Mapping[str, tuple[tuple[str, str], ...]]  # rule source -> the tables it maps


# What each conversion accepts (by DATA_TYPE), for checks at start-up.
_CONVERSION_INPUTS = {
    "split": TEXT_TYPES | {"enum"},
    "json": TEXT_TYPES | {"json"},
    "lower": TEXT_TYPES | {"enum", "set"},
    "upper": TEXT_TYPES | {"enum", "set"},
    "bool": INTEGER_TYPES | {"bit"},
    "datetime": DATE_TYPES,
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
            concrete, table_problems = _check_table(bound, catalog.tables[(schema, table)])
            problems.extend(table_problems)
            if concrete is not None and concrete.relations:  # children and lookups (issue 15)
                concrete, relation_problems = resolve_relations(concrete, catalog, _check_table)
                problems.extend(relation_problems)
                if relation_problems:
                    continue
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


def resolved_or_stop(rules: RuleSet, catalog: Catalog) -> RuleSet:
    """`resolve_rules` for the daemon: any problem stops it (PreflightError), warnings are logged."""
    resolution = resolve_rules(rules, catalog)
    if resolution.problems:
        raise PreflightError("rules do not match the database:\n  - " + "\n  - ".join(resolution.problems))
    for warning in resolution.warnings:
        log.warning("%s", warning)
    return resolution.rules


def _unique_id(rule: Rule, info: TableInfo, columns: Iterable[str], where: str) -> list[str]:
    """An `id:` must tell rows apart, or rows silently share a document (issue 27).

    Two rows with the same id are one document: the last write wins, and deleting either row
    deletes the document while the other row still exists. Nothing fails, so it is refused up
    front unless a unique key whose columns are all NOT NULL lies within the id's columns (more
    columns than a unique key are unique too), or the rule accepts it (`allow_duplicate_ids`).
    """
    chosen = set(columns)
    if rule.allow_duplicate_ids or not chosen <= {c.name for c in info.columns}:
        return []  # accepted; or unknown columns, reported by the caller
    if any(key and set(key) <= chosen for key in info.unique_keys):
        return []
    keys = "; ".join(", ".join(k) for k in info.unique_keys) or "none"
    return [f"{where}: id column(s) {', '.join(dict.fromkeys(columns))} are not a unique key of {rule.name} "
            f"(its unique NOT NULL keys: {keys}): rows with equal values would share one document, and "
            "deleting one of them would delete it while the others remain. Use a unique NOT NULL key (or leave "
            "out `id:` for the primary key), or say `allow_duplicate_ids: true` in the rule to accept that "
            "(docs/rules.md, Document ids and routing)"]


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
        problems.extend(_unique_id(rule, info, id_columns, where))
    elif rule.id_template:
        need("id", parse_template(rule.id_template).columns)
        problems.extend(_unique_id(rule, info, parse_template(rule.id_template).columns, where))
    elif info.primary_key:
        id_columns = info.primary_key
    else:
        problems.append(f"{where}: table {rule.name} has no primary key; name the column(s) that identify "
                        "a row with `id:`")
    index = parse_template(rule.index)
    need("index", index.columns)
    for f in index.fields:
        if not f.meta and "%" in f.spec and f.name in types and types[f.name].data_type not in DATE_TYPES:
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
