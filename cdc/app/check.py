"""`cdc check`: the config, the rules and both servers checked the way `cdc run` would, in one report.

Nothing is written anywhere. Problems are what would stop `cdc run` (exit code
2); warnings are worth reading but do not stop it (exit code 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from cdc.config import Config
from cdc.model import BinlogPosition, Op, RowsData
from cdc.mysql.catalog import Catalog
from cdc.mysql.replication_hooks import schema_readers
from cdc.mysql.types import column_from_schema
from cdc.mysql.server import Database
from cdc.errors import CdcError, PreflightError
from cdc.es.indices import inspect, plan_start, unsigned_template_warnings
from cdc.rules import ActionBuilder, Resolution, RuleSet, resolve_rules
from cdc.rules.rowpath import RowPath, RowPathMode
from cdc.es.destination import Destination
from cdc.rules.relations import missing_indexes
from cdc.rules.values import ValueOptions


@dataclass
class CheckReport:
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = []
        for title, body in self.sections:
            lines.append(title)
            lines.extend(f"  {line}" for line in body)
        for title, items in (("problems", self.problems), ("warnings", self.warnings)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines.extend(f"  - {item}" for item in items)
        lines.append("result: OK" + (f" with {len(self.warnings)} warning(s)" if self.warnings else "")
                     if self.ok else f"result: FAILED, {len(self.problems)} problem(s)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"command": "check", "ok": self.ok, "offline": False,
                "sections": [{"title": title.rstrip(":"), "lines": body} for title, body in self.sections],
                "problems": self.problems, "warnings": self.warnings}


def _problem_list(exc: CdcError) -> list[str]:
    """PreflightError messages hold a headline and "  - item" lines; keep the items."""
    lines = str(exc).splitlines()
    items = [line.strip()[2:] for line in lines if line.strip().startswith("- ")]
    return items or [str(exc)]


def run_check(config: Config, rules: RuleSet, connect_db: Callable[[], Database] | None = None,
              connect_es: Callable[[], Destination] | None = None) -> CheckReport:
    report = CheckReport()
    report.sections.append(("config: ok", [f"{len(rules)} rule(s) from {config.resolve(config.rules)}"]))
    options = ValueOptions.from_config(config.values)
    try:
        db = (connect_db or (lambda: Database(config.mysql)))()
    except CdcError as exc:
        report.problems.append(f"MySQL: {exc}")
        return report
    try:
        server = f"{'MariaDB' if db.info.mariadb else 'MySQL'} {db.info.version} at {config.mysql.host}:{config.mysql.port}"
        try:
            report.warnings.extend(db.preflight(reads_binlog=False))
            report.sections.append((f"server: {server}: ready for cdc", []))
        except PreflightError as exc:
            report.sections.append((f"server: {server}: NOT ready", []))
            report.problems.extend(_problem_list(exc))
        catalog = db.catalog(rules)
        resolution: Resolution = resolve_rules(rules, catalog)
        report.problems.extend(resolution.problems)
        report.warnings.extend(resolution.warnings)
        report.sections.append(("rules:", _describe(rules, resolution)))
        report.sections.append((f"row path (row_path: {config.row_path}):",
                                _row_paths(resolution, catalog, db.info.mariadb, config.row_path, options)))
        for rule in resolution.rules.rules:  # children and lookups: the join columns need indexes (issue 15)
            if rule.relations:
                report.warnings.extend(missing_indexes(rule, db.leading_index_columns))
        mapped = sorted({(r.schema, r.table) for r in resolution.rules.rules})
        report.warnings.extend(db.cascading_foreign_keys(mapped))
    finally:
        db.close()
    _check_indices(report, resolution, options, connect_es or (lambda: Destination(config.elasticsearch)))
    return report


def _describe(rules: RuleSet, resolution: Resolution) -> list[str]:
    lines = []
    for rule in rules.rules:
        tables = resolution.tables.get(rule.source)
        if tables is None:
            lines.append(f"{rule.source}: {rule.name} -> {rule.index}: not checked (see problems)")
            continue
        names = [f"{s}.{t}" for s, t in tables]
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} tables)" if len(names) > 5 else "")
        mode = f", mode {rule.mode}" if rule.mode != "index" else ""
        deletes = f", on_delete {rule.on_delete}" if rule.on_delete != "delete" else ""
        joined = [f"{s}.{t}" for s, t in rule.relation_tables()]  # children and lookups (issue 15)
        joins = f", with {', '.join(joined)}" if joined else ""
        lines.append(f"{rule.source}: {shown or 'no table'}{joins} -> {rule.index}{mode}{deletes}")
    return lines


def _row_paths(resolution: Resolution, catalog: Catalog, mariadb: bool, mode: RowPathMode,
               options: ValueOptions) -> list[str]:
    """Each mapped table's row path for binlog rows, and why it is python (docs/row-path.md), as
    `cdc run` decides it from the table's definition (here information_schema's, not a TABLE_MAP)."""
    path = RowPath(ActionBuilder(resolution.rules, 0, options), mode)
    lines = []
    for schema, table in sorted({(r.schema, r.table) for r in resolution.rules.rules}):
        info = catalog.tables.get((schema, table))
        if info is None:
            continue
        columns = tuple(column_from_schema(c.name, c.data_type, c.column_type, c.charset) for c in info.columns)
        # An event without rows: the plan is compiled (or refused) and recorded, nothing is decoded.
        path.prepare(RowsData(Op.INSERT, schema, table, columns, schema_readers(info, mariadb), b"",
                              BinlogPosition("", 4), 0, decode=list))
        state = path.tables[f"{schema}.{table}"]  # "native" or "python: why"
        lines.append(f"{schema}.{table}: {state}" if state == "native"
                     else f"{schema}.{table}: python ({state.removeprefix('python: ')})")
    return lines


def _check_indices(report: CheckReport, resolution: Resolution, options: ValueOptions,
                   connect_es: Callable[[], Destination]) -> None:
    plans = plan_start(resolution.rules.rules, options)
    report.warnings.extend(unsigned_template_warnings(resolution.rules.rules, options))
    sink = connect_es()
    try:
        try:
            status = sink.check()
        except CdcError as exc:
            report.problems.append(f"{sink.product}: {exc}")
            return
        engine = sink.engine  # what cdc/es/destination.py found
        lines = [f"{engine.name}, cluster health {status}" if engine is not None else f"cluster health {status}"]
        for state in inspect(plans, sink):
            lines.append(f"{state.plan.kind} {state.plan.name}: {state.state}")
            for note in state.plan.notes:
                report.warnings.append(f"{state.plan.kind} {state.plan.name}: {note}")
            if state.state == "differs":
                report.warnings.append(f"{state.plan.kind} {state.plan.name} differs from the rules (cdc leaves it "
                                       f"as it is): {'; '.join(state.differences)}")
        # Named after what answered, "opensearch:" on OpenSearch (the config section stays elasticsearch:).
        report.sections.append((f"{sink.product.lower()}:", lines))
    finally:
        sink.close()


@dataclass
class OfflineReport:
    """`cdc check --offline`: what was checked without connecting anywhere, and what was not."""

    config_path: str
    rules: int
    writes: dict[str, str]  # config key -> the file cdc will write there
    state_dir: str | None
    warnings: list[str] = field(default_factory=list)  # files cdc could not write, as this user
    security: list[str] = field(default_factory=list)  # config.security_warnings; the text form prints them on stderr

    # Offline, the rules' columns and the servers are not checked: the report says so, and which command does.
    NOT_CHECKED = ("tables, columns and types the rules name, the servers' settings and grants "
                   "(no connection); `cdc check` checks them")

    @property
    def ok(self) -> bool:  # a file that failed to load stopped the command before this report (exit 2)
        return True

    def lines(self) -> list[str]:
        """The text `cdc check-config` printed, kept line for line for the scripts that read it."""
        lines = [f"ok: {self.config_path}; {self.rules} rule(s)"]
        lines.append("writes: " + ", ".join(f"{key} {path}" for key, path in self.writes.items())
                     + (f" (state_dir {self.state_dir})" if self.state_dir else " (beside the config: no state_dir "
                        "and no $STATE_DIRECTORY)"))
        for problem in self.warnings:
            lines.append(f"warning: {problem} (here, as this user; `cdc run` refuses to start on it)")
        lines.append(f"not checked: {self.NOT_CHECKED}")
        return lines

    def to_json(self) -> dict:
        return {"command": "check", "ok": self.ok, "offline": True, "config": self.config_path, "rules": self.rules,
                "writes": self.writes, "state_dir": self.state_dir, "problems": [], "warnings": self.security + self.warnings,
                "not_checked": self.NOT_CHECKED}


def check_offline(config: Config, rules: RuleSet, config_path: str) -> OfflineReport:
    """`cdc check --offline` (formerly `cdc check-config`): the files, and where cdc would write, unconnected."""
    from cdc.app.session import writable_problems

    writes = {"checkpoint.path": config.resolve(config.checkpoint.path)}
    if config.dead_letter.on_rejected == "dead_letter":
        writes["dead_letter.path"] = config.resolve(config.dead_letter.path)
    return OfflineReport(str(config_path), len(rules), {key: str(path) for key, path in writes.items()},
                         str(config.state_dir) if config.state_dir else None,
                         writable_problems(writes, create=False))
