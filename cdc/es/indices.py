"""Optional index creation: plan indices from the rules, compare them with what exists, create what is missing.

Only rules with `create_index` take part. `plan_indices` is pure: resolved rules
in (each knows its table's columns from information_schema), `IndexPlan`s out,
with mappings given in the rule or generated from the column types (README
"Creating indices"; mappings given in a rule are laid over the generated ones).
An index name made from a column (`orders-{at:%Y.%m}`)
cannot be created ahead, so it becomes an index template for `orders-*`.

Rules without `create_index` still get one mapping from cdc: their BIGINT UNSIGNED
and BIT(64) fields (`plan_unsigned_fields`, kind "fields"). With `indices.aliases`
(the default), every other fixed index name gets a plan too (kind "alias"): the
name is an alias onto a versioned index cdc creates (cdc/es/aliases.py), and so
are the indices of the other two kinds when cdc creates them. `cdc run` applies
the plans at start-up, and `cdc indices plan|create` and `cdc check` show them,
from the same planning functions, so what they show is what a start does.

`inspect` and `create_missing` talk to Elasticsearch only through
`ElasticsearchSink.admin`. Nothing here ever changes an existing index or
template: a difference is reported, never fixed, because changing a mapping
in place is impossible for most changes and unsafe for the rest (cdc/es/fields.py
only adds the fields of columns an index lacks).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

from cdc.errors import PreflightError, SinkAccessError, SinkError
from cdc.es import aliases as alias_names
from cdc.es.aliases import Placement
from cdc.es.jsonfields import json_field, same_json_field
from cdc.es import jsonfields
from cdc.mysql.types import BINARY_TYPES, GEOMETRY_TYPES, INTEGER_TYPES, TEXT_TYPES
from cdc.rules import ColumnInfo, Rule, parse_template
from cdc.rules.values import ValueOptions
from cdc.stream.protocols import SearchAdmin

log = logging.getLogger("cdc.indices")

# Above Elasticsearch's built-in templates (logs-*-*, metrics-*-* ... at 100), so
# ours win for the names cdc writes.
TEMPLATE_PRIORITY = 200
KEYWORD = {"type": "keyword"}


@dataclass(frozen=True)
class IndexPlan:
    # index, template: a rule's create_index. fields: the unsigned 64-bit fields of rules
    # without it, mapped in their index (created with only them if missing; see below).
    # alias: any other fixed name, made an alias onto a versioned index (indices.aliases).
    kind: Literal["index", "template", "fields", "alias"]
    name: str  # the index, or the index template (cdc-<pattern>)
    body: Mapping[str, Any]  # PUT /<index> or PUT /_index_template/<name>
    rules: tuple[str, ...]  # the rules that write there
    notes: tuple[str, ...] = ()  # the rules disagree (a field's type, settings, given mappings)
    pattern: str | None = None  # templates: the index names they apply to

    @property
    def mappings(self) -> Mapping[str, Any]:
        inner = self.body.get("template", self.body) if self.kind == "template" else self.body
        return inner.get("mappings") or {}

    @property
    def settings(self) -> Mapping[str, Any]:
        inner = self.body.get("template", self.body) if self.kind == "template" else self.body
        return inner.get("settings") or {}


# ---------------------------------------------------------------------- mappings from column types
def column_field(column: ColumnInfo, options: ValueOptions, json: bool = False,
                 json_mapping: str = "object") -> dict | None:
    """The field a column's converted values fit (docs/values.md "Values"); None: leave it to dynamic mapping."""
    t = column.data_type
    if json or t == "json":
        return json_field(json_mapping)
    if t in INTEGER_TYPES or t == "year":
        if t == "bigint" and "unsigned" in column.column_type:
            return {"type": "unsigned_long"}
        return {"type": "long"}
    if t == "decimal":
        return {"type": "double"} if options.decimal_as == "number" else dict(KEYWORD)
    if t == "float":
        return {"type": "float"}
    if t in ("double", "real"):
        return {"type": "double"}
    if t in ("date", "datetime", "timestamp"):
        return {"type": "date"}
    if t == "time":
        return dict(KEYWORD)
    if t in TEXT_TYPES:
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    if t in ("enum", "set"):
        return dict(KEYWORD)
    if t in BINARY_TYPES:
        return {"type": "binary"}
    if t == "bit":
        match = re.search(r"\((\d+)\)", column.column_type)
        bits = int(match.group(1)) if match else 1
        if bits == 1 and options.bit1_as_bool:
            return {"type": "boolean"}
        return {"type": "unsigned_long"} if bits == 64 else {"type": "long"}
    if t == "point":
        return {"type": "geo_point"} if options.points == "geo_point" else {"type": "geo_shape"}
    if t in GEOMETRY_TYPES:  # POINT is handled above
        return {"type": "geo_shape"}
    return None


def _after_conversion(current: dict | None, name: str, json_mapping: str = "object") -> dict | None:
    if name in ("split", "datetime"):
        return dict(KEYWORD)
    if name == "json":
        return json_field(json_mapping)
    if name == "bool":
        return {"type": "boolean"}
    return current  # lower, upper: still text


def value_field(value: Any) -> dict | None:
    """The field for a constant value (`fields:` of a rule)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "double"}
    if isinstance(value, str):
        return dict(KEYWORD)
    if isinstance(value, dict):
        return {"type": "object"}
    if isinstance(value, list):
        return next((f for f in map(value_field, value) if f), None)
    return None


def generated_mappings(rule: Rule, options: ValueOptions, columns: Iterable[ColumnInfo] | None = None) -> dict:
    """Mappings for the documents of one resolved rule; `columns`: the table's definition, if not the one it was
    resolved with (a table map after ALTER TABLE, cdc/es/fields.py)."""
    properties: dict[str, Any] = {}
    conversions = dict(rule.conversions)
    renames = dict(rule.rename)
    for column in rule.table_columns if columns is None else columns:
        if rule.include is not None and column.name not in rule.include or column.name in rule.exclude:
            continue
        spec = column_field(column, options, column.name in rule.json_columns, rule.json_mapping)
        for conversion in conversions.get(column.name, ()):
            spec = _after_conversion(spec, conversion.name, rule.json_mapping)
        if spec is not None:
            properties[renames.get(column.name, column.name)] = spec
    for name, value in rule.fields:
        spec = value_field(value)
        if spec is not None:
            properties[name] = spec
    for extra in (rule.add_table_name, rule.add_schema_name):
        if extra:
            properties[extra] = dict(KEYWORD)
    if rule.on_delete == "soft":
        properties[rule.soft_delete_field] = {"type": "boolean"}
    return {"properties": properties}


# ---------------------------------------------------------------------- the plan
def index_target(rule: Rule) -> tuple[Literal["index", "template"], str]:
    """(index, its name) for a name without columns; (template, the pattern of names) otherwise."""
    template = parse_template(rule.index)
    captures = {"schema": rule.schema, "table": rule.table, **dict(rule.captures)}
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.meta:
            out.append(captures.get(part.name, ""))
        else:
            out.append("*")
    name = re.sub(r"\*+", "*", "".join(out)).lower()
    return ("template" if template.columns else "index"), name


def template_name(pattern: str) -> str:
    return "cdc-" + (re.sub(r"[^a-z0-9._-]+", "-", pattern).strip("-.") or "index")


def plan_indices(rules: Iterable[Rule], options: ValueOptions) -> list[IndexPlan]:
    """One plan per index (or template) that rules with `create_index` write to; pure."""
    groups: dict[tuple[str, str], list[Rule]] = {}
    for rule in rules:
        if rule.create_index is not None:
            groups.setdefault(index_target(rule), []).append(rule)
    plans = []
    for (kind, name), members in groups.items():
        notes: list[str] = []
        sources = tuple(dict.fromkeys(r.source for r in members))
        settings = _merge_settings(members, notes)
        mappings = _merge_mappings(members, options, notes)
        inner = {"settings": settings, "mappings": mappings}
        if kind == "index":
            plans.append(IndexPlan("index", name, inner, sources, tuple(notes)))
        else:
            body = {"index_patterns": [name], "priority": TEMPLATE_PRIORITY, "template": inner,
                    "_meta": {"created_by": "cdc", "rules": list(sources)}}
            plans.append(IndexPlan("template", template_name(name), body, sources, tuple(notes), name))
    return sorted(plans, key=lambda p: (p.kind, p.name))


def plan_start(rules: Iterable[Rule], options: ValueOptions, aliases: bool = False) -> list[IndexPlan]:
    """Everything a start does to indices before writing: the create_index plans, then the unsigned
    64-bit fields of the other rules, then (`aliases`) the other fixed names (what `cdc indices
    plan|create` and `cdc check` show)."""
    rules = list(rules)
    plans = plan_indices(rules, options) + plan_unsigned_fields(rules, options)
    return plans + plan_aliases(rules, plans) if aliases else plans


def plan_aliases(rules: Iterable[Rule], planned: Iterable[IndexPlan]) -> list[IndexPlan]:
    """One "alias" plan per fixed index name that no other plan creates; pure."""
    taken = {p.name for p in planned if p.kind != "template"}
    wanted: dict[str, list[str]] = {}
    for rule in rules:
        kind, name = index_target(rule)
        if kind == "index" and name not in taken:
            sources = wanted.setdefault(name, [])
            if rule.source not in sources:
                sources.append(rule.source)
    return [IndexPlan("alias", name, {}, tuple(sources)) for name, sources in sorted(wanted.items())]


def _merge_settings(rules: list[Rule], notes: list[str]) -> dict:
    given = [(r.source, dict(r.create_index.settings)) for r in rules if r.create_index and r.create_index.settings]
    distinct = {repr(sorted(_flat(s).items())) for _, s in given}
    if len(distinct) > 1:
        notes.append("rules give different settings; using those of " + given[0][0])
    return given[0][1] if given else {}


def _merge_mappings(rules: list[Rule], options: ValueOptions, notes: list[str]) -> dict:
    """Generated properties of every rule, with the rules' given mappings laid over them (given wins)."""
    given = [(r.source, dict(r.create_index.mappings)) for r in rules
             if r.create_index and r.create_index.mappings is not None]
    if len({repr(m) for _, m in given}) > 1:
        notes.append("rules give different mappings; using those of " + given[0][0])
    properties: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for rule in rules:
        for name, spec in generated_mappings(rule, options)["properties"].items():
            if name not in properties:
                properties[name], origin[name] = spec, rule.source
            elif spec.get("type") != properties[name].get("type"):
                note = (f"field {name}: {properties[name].get('type')} from {origin[name]}, "
                        f"{spec.get('type')} from {rule.source}; using {properties[name].get('type')}")
                if note not in notes:
                    notes.append(note)
    if given:
        mappings = dict(given[0][1])
        properties.update(mappings.get("properties") or {})
        mappings["properties"] = properties
        return mappings
    return {"properties": properties}


# ---------------------------------------------------------------------- compare with what is there
def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def flat_index_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Nested or dotted settings as `index.`-prefixed dotted keys with text values (as flat_settings answers)."""
    return {(k if k.startswith("index.") else f"index.{k}"): v for k, v in _flat(settings).items()}


_ANALYSIS_KEYS = ("analyzer", "search_analyzer", "normalizer")


def compare_mappings(want: Mapping[str, Any], have: Mapping[str, Any], path: str = "") -> list[str]:
    """How `have` (Elasticsearch's) falls short of `want` (the plan's); [] if it has every field as planned."""
    out = []
    have_props = have.get("properties") or {}
    for name, spec in (want.get("properties") or {}).items():
        where = f"{path}{name}"
        found = have_props.get(name)
        if found is None:
            out.append(f"{where}: not mapped (Elasticsearch would map it dynamically)")
            continue
        want_type, have_type = spec.get("type", "object"), found.get("type", "object")
        if same_json_field(spec, found):
            continue  # what this server has for `flattened` (cdc/es/jsonfields.py)
        if want_type != have_type:
            out.append(f"{where}: {have_type} in Elasticsearch, {want_type} planned")
        else:
            # How a field is analyzed is as much a reason for a new index as its type (an analyzer cannot change
            # in place), so one a rule gives is compared too; the index's own (the rule gives none) is not.
            out.extend(f"{where}: {key} {found.get(key, 'default')} in Elasticsearch, {spec[key]} planned"
                       for key in _ANALYSIS_KEYS if key in spec and found.get(key) != spec[key])
        if want_type == have_type and want_type in ("object", "nested"):
            out.extend(compare_mappings(spec, found, f"{where}."))
        for sub, sub_spec in (spec.get("fields") or {}).items():
            have_sub = (found.get("fields") or {}).get(sub)
            if have_sub is None or have_sub.get("type") != sub_spec.get("type"):
                out.append(f"{where}.{sub}: {have_sub.get('type') if have_sub else 'missing'} in Elasticsearch, "
                           f"{sub_spec.get('type')} planned")
    return out


def compare_settings(want: Mapping[str, Any], have_flat: Mapping[str, Any]) -> list[str]:
    out = []
    for key, value in flat_index_settings(want).items():
        have = have_flat.get(key)
        if have is None or str(have).lower() != value.lower():
            out.append(f"setting {key}: {have if have is not None else 'unset'} in Elasticsearch, {value} planned")
    return out


@dataclass
class PlanState:
    plan: IndexPlan
    # update: an index without some of a "fields" plan's fields, which cdc adds (and then: updated).
    state: Literal["create", "exists", "differs", "update", "created", "updated", "failed"]
    differences: list[str] = field(default_factory=list)
    missing: tuple[str, ...] = ()  # "fields" plans: the fields the index lacks
    added: dict[str, str] = field(default_factory=dict)  # "fields" plans: field -> the type it was mapped as
    # With indices.aliases, for fixed names: what the name is on the server, and the index cdc created.
    placement: Placement | None = None
    created: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"kind": self.plan.kind, "name": self.plan.name, "state": self.state,
                               "rules": list(self.plan.rules)}
        if self.plan.pattern:
            out["index_patterns"] = [self.plan.pattern]
        if self.placement is not None:
            out["placement"] = self.placement.to_json()
            if self.placement.kind == "index":
                out["move_behind_alias"] = (f"{self.plan.name} is a concrete index, not an alias: cdc goes on writing "
                                            f"to it as it is. `cdc rebuild --index {self.plan.name}` moves it behind an "
                                            f"alias without downtime ({self.plan.name} -> {self.plan.name}_v1; the "
                                            "concrete index is deleted in the same step that adds the alias, "
                                            "docs/verify-and-rebuild.md, \"Rebuilding an index\")")
        if self.created:
            out["created_index"] = self.created
        if self.state == "differs" and self.plan.kind in ("index", "fields"):
            # cdc never changes a mapping in place; a new index from the rules is the way.
            out["rebuild"] = (f"`cdc rebuild --index {self.plan.name}` makes a new index from the rules and swaps it in "
                              "without downtime (docs/verify-and-rebuild.md, \"Rebuilding an index\")")
        if self.differences:
            out["differences"] = self.differences
        if self.added:
            out["added"] = self.added
        if self.plan.notes:
            out["notes"] = list(self.plan.notes)
        out["body"] = self.plan.body
        return out


def inspect(plans: Iterable[IndexPlan], sink: SearchAdmin, aliases: bool = False) -> list[PlanState]:
    """What Elasticsearch has for each plan: missing (create), the same (exists), or not (differs).

    With `aliases`, each fixed name's placement too (an alias, or a concrete index from before)."""
    out = []
    for plan in plans:
        state = _inspect(plan, sink)
        if aliases and plan.kind != "template":
            state.placement = alias_names.find(sink, plan.name)
        out.append(state)
    return out


def _inspect(plan: IndexPlan, sink: SearchAdmin) -> PlanState:
    if plan.kind == "fields":
        return _inspect_fields(plan, sink)
    if plan.kind == "alias":
        status, _ = sink.admin("GET", f"/{plan.name}/_settings?filter_path=*.settings.index.uuid")
        return PlanState(plan, "create" if status == 404 else "exists")
    if plan.kind == "index":
        status, body = sink.admin("GET", f"/{plan.name}/_mapping")
        if status == 404:
            return PlanState(plan, "create")
        empty: dict[str, Any] = {}
        have = next(iter(body.values()), empty).get("mappings", {}) if isinstance(body, dict) else {}
        _, settings = sink.admin("GET", f"/{plan.name}/_settings?flat_settings=true")
        have_settings = (next(iter(settings.values()), empty).get("settings", {}) if isinstance(settings, dict)
                         else {})
        diffs = compare_mappings(plan.mappings, have) + compare_settings(plan.settings, have_settings)
    else:
        status, body = sink.admin("GET", f"/_index_template/{plan.name}")
        if status == 404:
            return PlanState(plan, "create")
        templates = body.get("index_templates") or [{}]
        have = templates[0].get("index_template", {})
        diffs = compare_mappings(plan.mappings, (have.get("template") or {}).get("mappings") or {})
        diffs += compare_settings(plan.settings,
                                  flat_index_settings((have.get("template") or {}).get("settings") or {}))
        if have.get("index_patterns") != [plan.pattern]:
            diffs.append(f"index_patterns: {have.get('index_patterns')} in Elasticsearch, {[plan.pattern]} planned")
    return PlanState(plan, "differs" if diffs else "exists", diffs)


def _create_index(state: PlanState, sink: SearchAdmin, body: Mapping[str, Any], aliases: bool) -> bool:
    """Create the plan's index: with `aliases`, a versioned one the name is an alias onto; False when it was
    made meanwhile (by a write, or another cdc process)."""
    name = state.plan.name
    if not aliases:
        try:
            jsonfields.put(sink, f"/{name}", body)
        except SinkError as exc:
            if exc.error_type == "resource_already_exists_exception":
                return False
            raise
        return True
    try:
        state.created = alias_names.create(sink, name, body)
    except SinkAccessError as exc:
        if state.plan.kind == "alias":
            raise  # nothing to create but the alias: the first write makes a plain index (ensure_aliases)
        # A role from before aliases (create_index without manage): the index as before, said once.
        log.warning("index %s: cannot create %s behind the alias %s (%s); creating a plain index of that name, as "
                    "without indices.aliases (docs/verify-and-rebuild.md, \"Rebuilding an index\": privileges)", name,
                    alias_names.versioned_name(name, 1), name, exc)
        return _create_index(state, sink, body, False)
    return state.created is not None


def create_missing(plans: Iterable[IndexPlan], sink: SearchAdmin, aliases: bool = False) -> list[PlanState]:
    """Create what is missing; never touch what exists (differences are only reported).

    With `aliases`, a fixed name is created as an alias onto a versioned index (cdc/es/aliases.py)."""
    states = inspect(plans, sink, aliases)
    for n, state in enumerate(states):
        if state.plan.kind == "fields":
            try:
                states[n] = add_fields(state, sink, aliases)
            except SinkError as exc:
                state.state = "failed"
                state.differences.append(str(exc))
            continue
        if state.state != "create":
            continue
        plan = state.plan
        try:
            if plan.kind == "template":
                jsonfields.put(sink, f"/_index_template/{plan.name}", plan.body)
                state.state = "created"
            else:
                state.state = "created" if _create_index(state, sink, plan.body, aliases) else "exists"
        except SinkError as exc:
            if exc.error_type == "resource_already_exists_exception":  # created meanwhile (a race with a writer)
                state.state = "exists"
                continue
            state.state = "failed"
            state.differences.append(str(exc))
        if aliases and state.state != "failed":
            state.placement = alias_names.find(sink, plan.name) if plan.kind != "template" else None
    return states


def ensure(rules: Iterable[Rule], sink: SearchAdmin, options: ValueOptions, aliases: bool = False) -> list[PlanState]:
    """At start-up: create the missing indices and templates; warn about differences; stop if creation fails."""
    plans = plan_indices(rules, options)
    if not plans:
        return []
    states = create_missing(plans, sink, aliases)
    for state in states:
        plan = state.plan
        for note in plan.notes:
            log.warning("%s %s: %s", plan.kind, plan.name, note)
        if state.state == "created":
            log.info("created %s %s%s", plan.kind, plan.name, f" for {plan.pattern}" if plan.pattern else
                     f" (the alias of {state.created})" if state.created else "")
        elif state.state == "differs":
            # The command that puts the rules' mapping in place, as `cdc indices plan` names it.
            rebuild = state.to_json().get("rebuild")
            log.warning("%s %s exists and differs from the rules (cdc leaves it as it is): %s%s", plan.kind,
                        plan.name, "; ".join(state.differences), f". {rebuild}" if rebuild else "",
                        extra={"event": "index_differs", "index": plan.name})
    failed = [s for s in states if s.state == "failed"]
    if failed:
        raise PreflightError("cannot create indices the rules ask for:\n  - " + "\n  - ".join(
            f"{s.plan.kind} {s.plan.name} ({', '.join(s.plan.rules)}): {'; '.join(s.differences)}" for s in failed))
    return states


# ---------------------------------------------------------------------- unsigned 64-bit fields, without create_index
# Without a mapping, Elasticsearch maps the first number it sees as `long` (dynamic
# mapping), and then rejects every BIGINT UNSIGNED or BIT(64) value above 2^63-1:
# cdc would stop on the first such row. So for rules without create_index, cdc adds
# these fields' mappings itself before writing (docs/rules.md "Creating indices"):
# `unsigned_long` (Elasticsearch's default distribution), or `keyword` where the
# server has no unsigned_long (the integ-test-zip, OpenSearch < 2.8). Every other
# field stays dynamic. Documents are unchanged: the values stay exact JSON numbers.
UNSIGNED_64 = ("unsigned_long", "keyword")


def unsigned_fields(rule: Rule, options: ValueOptions) -> list[str]:
    """The document fields of `rule` that hold unsigned 64-bit integers (BIGINT UNSIGNED, BIT(64))."""
    properties = generated_mappings(rule, options)["properties"]
    return sorted(name for name, spec in properties.items() if spec.get("type") == "unsigned_long")


def plan_unsigned_fields(rules: Iterable[Rule], options: ValueOptions) -> list[IndexPlan]:
    """One "fields" plan per index that rules without create_index write unsigned 64-bit integers to; pure.

    The body is what a missing index is created with; an existing one gets the fields it lacks.
    An index name made from columns has no plan (`unsigned_template_warnings`).
    """
    wanted: dict[str, tuple[set[str], list[str]]] = {}
    for rule in rules:
        fields = unsigned_fields(rule, options) if rule.create_index is None else []
        kind, name = index_target(rule)
        if fields and kind == "index":
            names, sources = wanted.setdefault(name, (set(), []))
            names.update(fields)
            if rule.source not in sources:
                sources.append(rule.source)
    return [IndexPlan("fields", index, {"mappings": {"properties": {name: {"type": UNSIGNED_64[0]}
                                                                    for name in sorted(names)}}}, tuple(sources))
            for index, (names, sources) in sorted(wanted.items())]


def unsigned_template_warnings(rules: Iterable[Rule], options: ValueOptions) -> list[str]:
    """Rules without create_index whose unsigned 64-bit fields cdc cannot map: their index names come from columns."""
    out = []
    for rule in rules:
        fields = unsigned_fields(rule, options) if rule.create_index is None else []
        if fields and index_target(rule)[0] != "index":
            out.append(f"{rule.name}: {'fields' if len(fields) > 1 else 'field'} {', '.join(fields)} hold unsigned "
                       "64-bit integers and the index name comes from columns: give the rule create_index "
                       "(unsigned_long in an index template) so that values above 2^63-1 are not rejected by a "
                       "dynamic `long` mapping")
    return out


def _inspect_fields(plan: IndexPlan, sink: SearchAdmin) -> PlanState:
    """A "fields" plan against the index: missing (create), lacking fields (update), all there (exists),
    or some mapped as a type that cannot hold them (differs: cdc never changes a mapping)."""
    status, body = sink.admin("GET", f"/{plan.name}/_mapping")
    if status == 404:
        return PlanState(plan, "create", missing=tuple(plan.mappings["properties"]))
    have: dict[str, Any] = {}
    if isinstance(body, dict):
        have = (next(iter(body.values()), None) or {}).get("mappings", {}).get("properties", {})
    missing, differences = [], []
    for name in plan.mappings["properties"]:
        mapped = (have.get(name) or {}).get("type")
        if mapped is None:
            missing.append(name)
        elif mapped not in UNSIGNED_64:
            differences.append(f"field {name} is mapped as {mapped}, which cannot hold values above 2^63-1 "
                               "(BIGINT UNSIGNED): such rows will be rejected; rebuild the index with unsigned_long "
                               "to fix it")
    if missing:
        return PlanState(plan, "update", differences, tuple(missing))
    return PlanState(plan, "differs" if differences else "exists", differences)


def add_fields(state: PlanState, sink: SearchAdmin, aliases: bool = False) -> PlanState:
    """Carry out an inspected "fields" plan: create the index with the fields, or add those it lacks.

    `unsigned_long`, or `keyword` where the server has none (the integ-test-zip,
    OpenSearch < 2.8): keyword holds every value (as text; _source keeps the number).
    """
    if state.state not in ("create", "update"):
        return state
    index, exists = state.plan.name, state.state == "update"
    for field_type in UNSIGNED_64:
        mappings = {"properties": {name: {"type": field_type} for name in state.missing}}
        try:
            if exists:
                sink.admin("PUT", f"/{index}/_mapping", mappings)
            elif not _create_index(state, sink, {"mappings": mappings}, aliases):
                return add_fields(_inspect_fields(state.plan, sink), sink, aliases)  # created meanwhile by a write
        except SinkError as exc:
            if field_type == "unsigned_long" and "unsigned_long" in str(exc) and "does not exist" in str(exc):
                continue  # a build without it
            raise
        state.state = "updated" if exists else "created"
        state.added = {name: field_type for name in state.missing}
        return state
    return state


def map_unsigned_fields(rules: Iterable[Rule], sink: SearchAdmin, options: ValueOptions, aliases: bool = False) -> list[str]:
    """Map the unsigned 64-bit fields of rules without create_index before the first write; return what was done.

    The plans `cdc indices plan` shows (`plan_unsigned_fields`). Existing mappings
    are never changed: a field Elasticsearch already maps as `long` is a warning
    (values above 2^63-1 will be rejected until the index is rebuilt with
    unsigned_long). Refused access (no create_index/manage privilege) is a warning
    too: the stream then runs as before, with dynamic mappings.
    """
    rules = list(rules)  # read twice: the plans and the warnings
    for warning in unsigned_template_warnings(rules, options):
        log.warning("%s", warning)
    done: list[str] = []
    for plan in plan_unsigned_fields(rules, options):
        try:
            state = add_fields(_inspect_fields(plan, sink), sink, aliases)
        except SinkError as exc:
            log.warning("index %s: could not map %s for unsigned 64-bit integers (%s); values above 2^63-1 will "
                        "be rejected if Elasticsearch maps them as long", plan.name,
                        ", ".join(plan.mappings["properties"]), exc)
            continue
        for difference in state.differences:
            log.warning("index %s: %s", plan.name, difference)
        if state.added:
            types = sorted(set(state.added.values()))
            log.info("index %s: mapped %s as %s%s (unsigned 64-bit integers; a dynamic `long` would reject values "
                     "above 2^63-1)", plan.name, ", ".join(state.added), "/".join(types),
                     "" if state.state != "created" else f", creating the index {state.created} behind the alias {plan.name}"
                     if state.created else ", creating the index")
            done.extend(f"{plan.name}.{name}: {field_type}" for name, field_type in state.added.items())
    return done


def ensure_aliases(rules: Iterable[Rule], sink: SearchAdmin, options: ValueOptions) -> list[str]:
    """At start-up, with indices.aliases: every fixed name no other plan creates, made an alias onto a versioned
    index where nothing has that name yet; return the indices created.

    A refused privilege is a warning, not a stop: the first write then creates a concrete
    index, as before aliases (cdc works on, and `cdc rebuild` can move it behind an alias
    once the role allows; docs/verify-and-rebuild.md "Rebuilding an index").
    """
    rules = list(rules)
    done: list[str] = []
    planned = plan_indices(rules, options) + plan_unsigned_fields(rules, options)
    for plan in plan_aliases(rules, planned):
        try:
            state = create_missing([plan], sink, aliases=True)[0]
        except SinkError as exc:
            state = PlanState(plan, "failed", [str(exc)])
        if state.state == "failed":
            log.warning("index %s: could not create it as an alias onto %s (%s); the first write creates a plain "
                        "index of that name instead (the role needs create_index and manage on %s_v*, and manage on "
                        "the alias: docs/verify-and-rebuild.md, \"Rebuilding an index\")", plan.name, alias_names.versioned_name(plan.name, 1),
                        "; ".join(state.differences), plan.name)
        elif state.created:
            log.info("created index %s with the alias %s", state.created, plan.name)
            done.append(state.created)
    return done
