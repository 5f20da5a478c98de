"""`cdc init`: connect to a server and write a commented starter `cdc.yml` and a rules file per schema.

Only what the server says is written: the tables chosen (by `--schema` or `--table`), an index per
table, and a `server_id` no reader of the server is listed with. The password is never written: the
config reads it from the environment variable it came from. A table without a primary key gets its
rule commented out, saying what it needs (`id:` columns that are unique and NOT NULL, docs/rules.md
"Document ids and routing"), since `cdc check` would refuse it as it is.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cdc.config import MysqlConfig
from cdc.errors import ConfigError
from cdc.mysql.server import Database

# Characters Elasticsearch refuses in an index name (its docs: "Index name limitations"), and `:`
# (a cross-cluster search separator); all become "_".
_NOT_IN_INDEX = re.compile(r'[\\/*?"<>|\s,#:]')


def index_name(schema: str, table: str) -> str:
    """`schema-table`, lowercase, with what Elasticsearch refuses in a name replaced (it may not start with -, _, +)."""
    return _NOT_IN_INDEX.sub("_", f"{schema}-{table}".lower()).lstrip("-_+") or "cdc"


@dataclass
class Table:
    schema: str
    table: str
    primary_key: list[str]  # empty: none


@dataclass
class InitPlan:
    config_path: Path
    rules_dir: Path
    server: str  # "MariaDB 10.11.6 at host:port"
    server_id: int
    tables: list[Table] = field(default_factory=list)

    def files(self) -> dict[Path, str]:
        """Each file to write, with its text."""
        out = {}
        for schema in sorted({t.schema for t in self.tables}):
            out[self.rules_dir / f"{_file_safe(schema)}.yml"] = rules_text(
                [t for t in self.tables if t.schema == schema], self.server)
        return out

    def to_json(self) -> dict:
        return {"config": str(self.config_path), "rules": [str(p) for p in self.files()],
                "server": self.server, "server_id": self.server_id,
                "tables": [{"table": f"{t.schema}.{t.table}", "index": index_name(t.schema, t.table),
                            "primary_key": t.primary_key, "rule": "written" if t.primary_key else "commented out"}
                           for t in self.tables]}


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def rules_text(tables: list[Table], server: str) -> str:
    lines = [f"# Rules written by `cdc init` from {server}, {time.strftime('%Y-%m-%d')}.",
             "# One index per table; every column becomes a field (docs/rules.md has the rest:",
             "# columns, renames, conversions, documents from several tables). The repository's rules/",
             "# directory has a commented example of every feature.",
             "rules:"]
    written = 0
    for t in tables:
        rule = [f"  - schema: {_yaml_str(t.schema)}", f"    table: {_yaml_str(t.table)}",
                f"    index: {_yaml_str(index_name(t.schema, t.table))}"]
        if t.primary_key:
            lines.extend(rule[:2] + [rule[2] + f"  # ids from the primary key ({', '.join(t.primary_key)})"])
            written += 1
        else:
            lines.append(f"  # {t.schema}.{t.table} has no primary key: give `id:` columns that are unique and NOT NULL,")
            lines.append("  # then remove the #s (cdc check refuses a rule whose ids could be shared).")
            lines.extend("  #" + line[1:] for line in rule)
            lines.append("  #   id: [COLUMN]")
    if not written:  # every rule is commented out: the list is empty until one is filled in
        lines[lines.index("rules:")] = "rules: []   # no table here has a primary key yet: see the notes below"
    return "\n".join(lines) + "\n"


def _yaml_str(value: str) -> str:
    """A YAML scalar that reads back as this exact string (names like `on`, `123` or `a: b` quoted)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]*", value) and value.lower() not in (
            "y", "n", "yes", "no", "on", "off", "true", "false", "null"):
        return value
    return "'" + value.replace("'", "''") + "'"


def config_text(plan: InitPlan, host: str, port: int, user: str, password_env: str | None, es_url: str) -> str:
    rules = plan.rules_dir
    try:
        rules_ref = str(rules.relative_to(plan.config_path.parent))
    except ValueError:
        rules_ref = str(rules)
    password = ([f"  password: ${{{password_env}}}   # read from the environment when cdc starts; never written here",
                 "  # password_file: /etc/cdc/mysql-password   # or its first line, instead of the variable"]
                if password_env else ["  # password: ${CDC_MYSQL_PASSWORD}   # the user had no password at `cdc init`"])
    return "\n".join([
        f"# Written by `cdc init` from {plan.server}, {time.strftime('%Y-%m-%d')}.",
        "# Every key: docs/configuration.md, \"Reference\". Check it, and every rule against the server, with",
        "#   cdc check --config THIS_FILE",
        "# then start with `cdc run --config THIS_FILE`: it copies the tables, then streams their changes.",
        "mysql:",
        f"  host: {_yaml_str(host) if not re.fullmatch(r'[0-9.]+', host) else host}",
        f"  port: {port}",
        f"  user: {_yaml_str(user)}",
        *password,
        "  # cdc reads the binlog as a replica: this id must differ from the server's own and every other",
        "  # replica's (no reader was listed with it at `cdc init`).",
        f"  server_id: {plan.server_id}",
        "elasticsearch:",
        f"  hosts: [{_yaml_str(es_url)}]",
        "# How far cdc got, saved after each acknowledged batch (relative to state_dir: $STATE_DIRECTORY,",
        "# else beside this file).",
        "checkpoint:",
        "  path: state/checkpoint.json",
        "# The rule files: every *.yml in this directory.",
        f"rules: {_yaml_str(rules_ref) if rules_ref != '.' else '.'}",
        "",
    ])


def plan_init(mysql: MysqlConfig, config_path: Path, rules_dir: Path, schemas: list[str],
              tables: list[str]) -> InitPlan:
    """Ask the server for the tables chosen and their primary keys, and an unused server_id."""
    if not schemas and not tables:
        raise ConfigError("choose what to map: --schema SCHEMA (every table of it) or --table SCHEMA.TABLE "
                          "(repeatable)")
    wanted = []
    for name in tables:
        schema, dot, table = name.partition(".")
        if not dot or not schema or not table:
            raise ConfigError(f"--table {name}: give SCHEMA.TABLE")
        wanted.append((schema, table))
    db = Database(mysql)
    try:
        found = db.rows(
            "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES "
            "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN "
            "('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY TABLE_SCHEMA, TABLE_NAME")
        on_server = [(r["s"], r["t"]) for r in found]
        missing = [f"{s}.{t}" for s, t in wanted if (s, t) not in on_server]
        empty = [s for s in schemas if not any(ss == s for ss, _ in on_server)]
        if missing or empty:
            known = sorted({s for s, _ in on_server})
            raise ConfigError("not on the server: " + ", ".join(
                [f"table {m}" for m in missing] + [f"schema {s} (or it has no tables)" for s in empty])
                + f". Schemas with tables: {', '.join(known) or 'none'}")
        chosen = sorted((s, t) for s, t in on_server if s in schemas or (s, t) in wanted)  # not by collation
        keys: dict[tuple[str, str], list[str]] = {}
        for r in db.rows("SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, COLUMN_NAME AS c FROM "
                         "information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_NAME = 'PRIMARY' "
                         "ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"):
            keys.setdefault((r["s"], r["t"]), []).append(r["c"])
        listed = db.replica_ids() or set()
        taken = listed | {db.info.server_id}
        server_id = next(i for i in range(1001, 1001 + 100000) if i not in taken)
        server = (f"{'MariaDB' if db.info.mariadb else 'MySQL'} {db.info.version} at {mysql.host}:{mysql.port}")
    finally:
        db.close()
    return InitPlan(config_path, rules_dir, server, server_id,
                    [Table(s, t, keys.get((s, t), [])) for s, t in chosen])


def existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
