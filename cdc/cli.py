"""Command line: parse, set up logging, build, and hand to one function of cdc/app per command.

Exit codes come from the error that stopped a command (`exit_code` in cdc/errors.py):

  0  stopped normally (end of replay, or SIGTERM/SIGINT after saving the position, or while
     waiting at start-up for a server)
  1  fatal runtime error (the message says what and where; the checkpoint is safe);
     for `verify`: differences remain
  2  configuration, rules or server set-up error (fix and start again)
  3  the resume position is gone from the server (binlog purged): re-snapshot needed

docs/cli.md documents every command, option and `--json` shape; tests/unit/test_cli_docs.py holds it to this file.
"""

from __future__ import annotations

import gc

# Importing cdc makes some 100,000 objects that live as long as the process (modules, classes,
# functions, pydantic's validators); the cyclic collector, which their allocation triggers, walked
# them again and again for nothing (about 140 collections, 60-80 ms of every command's start-up,
# issue 28). Off while they are made; at the end of these imports they are frozen out of its way
# (gc.freeze, as `_session` does later with the config and rules) and it is on again.
_COLLECTING = gc.isenabled()
gc.disable()

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, NoReturn  # noqa: E402

import click  # noqa: E402

# Each command imports its own module of cdc/app when it runs (a function-level import): a
# `replay --dry-run` or a `dlq list` does not load the snapshot, verify, metrics and health
# code of the others (issue 28: start-up is counted against every short command).
from cdc import __version__  # noqa: E402
from cdc.app.session import Session  # noqa: E402
from cdc.config import Config, load_config, security_warnings  # noqa: E402
from cdc.errors import CdcError  # noqa: E402
from cdc.log import redact, setup_logging  # noqa: E402
from cdc.model import BinlogPosition, StartPoint  # noqa: E402
from cdc.rules import RuleSet, load_rules  # noqa: E402

if _COLLECTING:
    gc.freeze()
    gc.enable()

EXIT_OK, EXIT_FATAL = 0, 1
EXIT_CHECK_FAILED = 2  # `cdc check`: `cdc run` would not start
log = logging.getLogger("cdc")


# ---------------------------------------------------------------------- options
def config_option(fn):
    """`--config`, the one option every command takes; $CDC_CONFIG when it is not given (a shell or a
    container set up for one deployment need not repeat it on every command)."""
    return click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                        envvar="CDC_CONFIG", show_envvar=True,
                        help="YAML configuration file (see docs/configuration.md).")(fn)


def log_options(fn):
    """`--log-format` and `--log-level`, for the commands that log while they work."""
    fn = click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None,
                      help="Log level (default from config: logging.level; ERROR for commands whose output is "
                           "their report).")(fn)
    return click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default=None,
                        help="Log format (default from config: text on a terminal, else JSON lines).")(fn)


def json_option(always: bool = False, help: str = "Print the report as one JSON object instead of text."):
    """`--json`, on every command that reports something (docs/cli.md has each command's shape).

    `always`: the command printed JSON before `--json` existed, and scripts read it, so JSON stays its
    output either way; the flag is accepted so that every reporting command takes it.
    """
    if always:
        help = "Output is JSON with or without it (accepted so every reporting command takes --json)."
    return click.option("--json", "as_json", is_flag=True, help=help)


def _report(command: str, ok: bool, body: dict[str, Any], indent: int | None = None) -> None:
    """Print one JSON report: the command's own keys first (scripts find them where they always were),
    then `command` and `ok` (true exactly when the exit code is 0; `status`: no problems)."""
    click.echo(json.dumps({**body, "command": command, "ok": ok}, indent=indent, default=str))


def _deprecated(old: str, new: str) -> None:
    """An old command name, kept working for one release: say so on stderr; stdout and exit code are unchanged."""
    click.echo(f"warning: `cdc {old}` is deprecated and will be removed in the next release; use `cdc {new}`",
               err=True)


# ---------------------------------------------------------------------- building
def _exit(exc: CdcError, echo: str | None = None) -> NoReturn:
    """Report a stopping error and exit with its code; `echo`: print it with this prefix instead of logging."""
    if echo is not None:
        click.echo(f"{echo}{exc}", err=True)
    elif exc.exit_code == EXIT_OK:  # a signal during a start-up wait (errors.Stopped): a normal stop
        log.info("%s", exc)
    else:
        log.error("%s%s", "fatal: " if exc.exit_code == EXIT_FATAL else "", exc)
    sys.exit(exc.exit_code)


def _config(path: str) -> Config:
    try:
        return load_config(path)
    except CdcError as exc:
        _exit(exc, "configuration error:\n")


def _config_and_rules(path: str) -> tuple[Config, RuleSet]:
    config = _config(path)
    try:
        return config, load_rules(config.resolve(config.rules))
    except CdcError as exc:
        _exit(exc, "configuration error:\n")


def _logged(path: str, log_format: str | None, log_level: str | None) -> Config:
    config = _config(path)
    setup_logging(log_level or config.logging.level, log_format or config.logging.format)
    for warning in security_warnings(config, path):
        log.warning("%s", warning)
    return config


def _install_signals(session: Session) -> None:
    def handler(signum, frame):
        if session.stop.is_set():
            # Second signal: leave now. The checkpoint only ever holds acknowledged
            # commits, so this loses nothing; it only means more replay next time.
            log.warning("second %s: exiting without finishing the batch", signal.Signals(signum).name)
            os._exit(EXIT_FATAL)
        # True in every phase: during a start-up wait there is no batch yet, and nothing to save.
        log.info("%s received: stopping (a batch being written is finished and its position saved first)",
                 signal.Signals(signum).name)
        session.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    def hangup(signum, frame):
        # Not a reload (docs/operations.md): new rules can need a snapshot of the
        # tables they add, which only a start does. SIGHUP's default would end the process.
        log.warning("SIGHUP ignored: cdc does not reload its config or rules; restart it to apply changes")

    signal.signal(signal.SIGHUP, hangup)


def _session(config: Config) -> Session:
    session = Session(config)
    _install_signals(session)
    # What start-up made (modules, classes, functions, the config and rules) lives as long
    # as the process: moved out of the cyclic collector's way (gc.freeze, Python docs), so
    # the collections that a stream's allocations trigger do not walk it again each time
    # (issue 19: a twentieth of a native catch-up's CPU, a tenth before native/src/actions.rs
    # untracked its actions; BENCHMARKS "Garbage collection"). Frozen objects are still freed
    # by reference counting; only a cycle among them would stay.
    gc.freeze()
    return session


def _guarded(body: Callable[[], Any], echo: str | None = None) -> Any:
    """Run a command's body and return its result; an error exits with its own code, a bug with 1."""
    try:
        return body()
    except CdcError as exc:
        _exit(exc, echo)
    except Exception as exc:  # a bug: say so plainly, with the traceback, and never exit 0
        log.exception("unexpected error: %s", redact(str(exc)))
        sys.exit(EXIT_FATAL)


# ---------------------------------------------------------------------- commands
@click.group()
@click.version_option(__version__, prog_name="cdc")
def main() -> None:
    """Keep Elasticsearch in sync with MySQL/MariaDB by reading the binlog."""


@main.command()
@config_option
@click.option("--resnapshot", is_flag=True,
              help="Forget the checkpoint: copy every table again, then stream from the current position.")
@log_options
def run(config_path: str, resnapshot: bool, log_format: str | None, log_level: str | None) -> None:
    """Stream changes into Elasticsearch until stopped (SIGTERM/SIGINT save the position).

    On first start (and for tables new to the rules) existing rows are copied
    first, unless snapshot.mode is never.
    """
    from cdc.app import daemon as daemon_app

    session = _session(_logged(config_path, log_format, log_level))
    _guarded(lambda: daemon_app.run(session, resnapshot=resnapshot))
    sys.exit(EXIT_OK)


@main.command()
@config_option
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE",
              help="Copy only this table (repeatable; default: every table in the rules).")
@click.option("--where", help="Copy only rows matching this SQL condition, e.g. \"updated_at > '2024-01-01'\".")
@json_option(always=True)
@log_options
def snapshot(config_path: str, tables: tuple[str, ...], where: str | None, as_json: bool, log_format,
             log_level) -> None:
    """Copy tables into Elasticsearch again, also while the daemon is streaming.

    Chunks are read consistently and written with versions from their binlog
    position, so they never overwrite newer changes the daemon has written.
    A stopped run resumes at its last chunk when started again with the same options.
    """
    from cdc.app import copy as copy_app

    session = _session(_logged(config_path, log_format, log_level))

    def body():
        state = copy_app.snapshot(session, list(tables) or None, where)
        _report("snapshot", True, {"tables": state.to_json(), "finished": not state.pending})

    _guarded(body)
    sys.exit(EXIT_OK)


@main.command()
@config_option
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE",
              help="Verify only this table (repeatable; default: every table in the rules).")
@click.option("--sample", type=click.IntRange(1), default=None, metavar="N",
              help="Check N random rows per table instead of all (no orphan check; ORDER BY RAND() reads every key).")
@click.option("--repair", is_flag=True,
              help="Re-index missing and differing rows and delete orphans, with versions that never beat the daemon.")
@json_option()
@log_options
def verify(config_path: str, tables: tuple[str, ...], sample: int | None, repair: bool, as_json: bool,
           log_format: str | None, log_level: str | None) -> None:
    """Compare Elasticsearch with the tables, also while the daemon streams; optionally repair.

    Reports rows missing in Elasticsearch, documents that differ (field by field)
    and documents without a row. A difference is reported only if it is still
    there after the row is read again and the daemon has caught up with that read.
    Exit code 0: identical (or, with --repair, every difference repaired); 1: differences remain, or a
    table could not be verified at all.
    """
    from cdc.app import copy as copy_app

    session = _session(_logged(config_path, log_format, log_level))

    def body():
        report = copy_app.verify(session, list(tables) or None, sample=sample, repair=repair)
        if as_json:
            _report("verify", report.ok, report.to_json())
        else:
            click.echo(report.text())
        if not report.ok:
            sys.exit(EXIT_FATAL)

    _guarded(body)
    sys.exit(EXIT_OK)


@main.command()
@config_option
@click.option("--index", "names", multiple=True, metavar="NAME",
              help="Rebuild the index (alias) of this name (repeatable).")
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE",
              help="Rebuild the index this table's rule writes to (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Rebuild every index with a fixed name.")
@click.option("--abandon", is_flag=True,
              help="Give up the rebuilds of the --index names: the alias stays; the new index goes at --cleanup.")
@click.option("--cleanup", is_flag=True,
              help="Delete the indices rebuilds replaced once indices.keep_previous has passed (with --now: all).")
@click.option("--now", is_flag=True, help="With --cleanup: delete them whatever their age.")
@json_option(always=True)
@log_options
def rebuild(config_path: str, names: tuple[str, ...], tables: tuple[str, ...], everything: bool, abandon: bool,
            cleanup: bool, now: bool, as_json: bool, log_format: str | None, log_level: str | None) -> None:
    """Build an index again from the current rules and mappings, beside `cdc run`, and swap it in.

    A new versioned index is filled from a consistent snapshot while the daemon
    writes its changes into it too, verified against the tables, and put behind
    the alias in one atomic step; searches on the alias never see it half full.
    A stopped or killed rebuild resumes when run again (docs/verify-and-rebuild.md).
    """
    from cdc.app import rebuild as rebuild_app

    if now and not cleanup:
        raise click.UsageError("--now goes with --cleanup")
    if abandon and not names:
        raise click.UsageError("--abandon needs the --index names of the rebuilds to give up")
    session = _session(_logged(config_path, log_format, log_level))

    def body():
        if cleanup:
            _report("rebuild", True, {"deleted": rebuild_app.cleanup(session, now)})
        elif abandon:
            _report("rebuild", True, {"abandoned": rebuild_app.abandon(session, list(names))})
        else:
            outcomes = rebuild_app.rebuild(session, list(names), list(tables), everything)
            differs = any(o.result == "differs" for o in outcomes)
            _report("rebuild", not differs, {"rebuilds": [o.to_json() for o in outcomes]})
            if differs:
                sys.exit(EXIT_FATAL)

    _guarded(body)
    sys.exit(EXIT_OK)


@main.command()
@config_option
@click.option("--from-position", help="Start at FILE:POS, the start of a transaction (a commit's end position).")
@click.option("--from-gtid", help="Start after this GTID set (MariaDB 0-1-100 or MySQL uuid:1-100).")
@click.option("--to-position", help="Stop at the first commit at or after FILE:POS (default: the end of the binlog now).")
@click.option("--dry-run", is_flag=True,
              help="Read and convert, but write nothing: print each action that would be written as a JSON "
                   "line (at most --limit), then the summary with counts per action and index.")
@click.option("--limit", type=click.IntRange(0), default=100, show_default=True,
              help="With --dry-run: print at most this many actions (0: counts only).")
@click.option("--move-checkpoint", is_flag=True, help="Also save the daemon's checkpoint as the replay advances.")
@click.option("--server-id", type=click.IntRange(1, 2**32 - 1), default=None,
              help="server_id to read the binlog with (default: mysql.server_id + 1, so it can run beside the daemon).")
@json_option(always=True)
@log_options
def replay(config_path, from_position, from_gtid, to_position, dry_run, limit, move_checkpoint, server_id, as_json,
           log_format, log_level):
    """Re-apply a range of the binlog to Elasticsearch, then exit.

    Writes carry versions from the binlog position, so replaying over an
    up-to-date index changes nothing, and replaying into an empty one rebuilds it.
    """
    from cdc.app.replay import ReplayRange, replay as replay_app

    config = _logged(config_path, log_format, log_level)
    if bool(from_position) == bool(from_gtid):
        raise click.UsageError("give exactly one of --from-position or --from-gtid")
    try:
        start = (StartPoint(BinlogPosition.parse(from_position)) if from_position
                 else StartPoint(None, from_gtid.strip(), by_gtid=True))
        end = BinlogPosition.parse(to_position) if to_position else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if dry_run and move_checkpoint:
        raise click.UsageError("--dry-run and --move-checkpoint cannot be combined")
    session = _session(config)

    def show(action: dict) -> None:
        click.echo(json.dumps(action, default=str))

    def body():
        summary = replay_app(session, ReplayRange(start, end), dry_run=dry_run, move_checkpoint=move_checkpoint,
                             server_id=server_id, show=show, limit=limit)
        _report("replay", True, summary)

    _guarded(body)
    sys.exit(EXIT_OK)


@main.group()
def dlq() -> None:
    """Inspect and re-send documents Elasticsearch rejected (dead_letter.on_rejected: dead_letter)."""


@dlq.command("list")
@config_option
@json_option(help="One JSON object per dead letter, one per line.")
def dlq_list(config_path: str, as_json: bool) -> None:
    """List dead letters: id, time, table, document, position and error."""
    from cdc.app import deadletters

    config = _config(config_path)
    store = deadletters.store(config)
    letters = store.list()
    for letter in letters:
        if as_json:
            entry = letter.to_json()
            entry.pop("action")
            click.echo(json.dumps(entry, default=str))
        else:
            a = letter.action
            click.echo(f"{letter.id}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(letter.time))}  "
                       f"{a.schema}.{a.table} -> {a.index}/{a.doc_id}  at {a.position}  "
                       f"{letter.status} {letter.error_type}: {(letter.reason or '')[:120]}")
    if not as_json:
        click.echo(f"{len(letters)} dead letter(s) in {store.path}" if store.path.exists() else
                   f"no dead letters ({store.path} does not exist; dead_letter.on_rejected is "
                   f"{config.dead_letter.on_rejected})", err=True)


@dlq.command("show")
@config_option
@click.argument("letter_id")
@json_option(always=True)
def dlq_show(config_path: str, letter_id: str, as_json: bool) -> None:
    """Print one dead letter in full, with its document."""
    from cdc.app import deadletters

    config = _config(config_path)
    letter = deadletters.find(config, letter_id)
    if letter is None:
        click.echo(f"no dead letter {letter_id!r} in {deadletters.store(config).path}", err=True)
        sys.exit(EXIT_FATAL)
    click.echo(json.dumps(letter.to_json(), indent=2, default=str))


@dlq.command("retry")
@config_option
@click.argument("letter_ids", nargs=-1)
@json_option(always=True)
def dlq_retry(config_path: str, letter_ids: tuple[str, ...], as_json: bool) -> None:
    """Send dead letters again (all, or the ids given); those that now succeed are removed."""
    from cdc.app import deadletters

    config = _config(config_path)
    setup_logging(config.logging.level, config.logging.format)
    done, failing = _guarded(lambda: deadletters.retry(config, set(letter_ids) if letter_ids else None),
                             echo="retry failed: ")
    _report("dlq retry", not failing, {"done": done, "still_failing": [
        {"id": f.id, "status": f.status, "error_type": f.error_type, "reason": f.reason} for f in failing]})
    sys.exit(EXIT_OK if not failing else EXIT_FATAL)


@dlq.command("purge")
@config_option
@click.option("--all", "purge_all", is_flag=True, help="Remove every dead letter.")
@click.argument("letter_ids", nargs=-1)
@json_option(always=True)
def dlq_purge(config_path: str, purge_all: bool, letter_ids: tuple[str, ...], as_json: bool) -> None:
    """Remove dead letters for good (the ids given, or --all)."""
    from cdc.app import deadletters

    if not purge_all and not letter_ids:
        raise click.UsageError("give dead letter ids, or --all")
    config = _config(config_path)
    _report("dlq purge", True, {"removed": deadletters.purge(config, None if purge_all else set(letter_ids))})


@main.command()
@config_option
@click.option("--position", "position_only", is_flag=True,
              help="Print only the saved checkpoint and whether a daemon holds it, as JSON (what `cdc position` "
                   "printed); reads the checkpoint file alone.")
@json_option()
def status(config_path: str, position_only: bool, as_json: bool) -> None:
    """Show position, GTID, checkpoint age, lag and whether a daemon is running (docs/operations.md)."""
    from cdc.app import position as position_app
    from cdc.ops.status import format_text

    config = _config(config_path)
    if position_only:
        # The shape `cdc position` printed, key for key: scripts parse it (docs/cli.md).
        click.echo(json.dumps(_guarded(lambda: position_app.position(config), echo="")))
        return
    report = _guarded(lambda: position_app.status(config), echo="")
    if as_json:
        _report("status", not report["problems"], report)
    else:
        click.echo(format_text(report))


@main.command(hidden=True)
@config_option
@click.pass_context
def position(ctx: click.Context, config_path: str) -> None:
    """Deprecated: `cdc status --position` (same output)."""
    _deprecated("position", "status --position")
    ctx.invoke(status, config_path=config_path, position_only=True)


@main.command()
@config_option
@click.option("--offline", is_flag=True,
              help="Check only the config and rule files and where cdc would write; connect to nothing.")
@json_option()
@log_options
def check(config_path: str, offline: bool, as_json: bool, log_format: str | None, log_level: str | None) -> None:
    """Check the config and every rule against the live schema and both servers; print a report.

    With --offline, only the files are checked (and where cdc will write), without
    connecting anywhere; the tables, columns and servers are then not checked.
    Exit code 0 if `cdc run` would start (warnings are printed too), 2 if not.
    """
    from cdc.app.check import check_offline, run_check

    config, rules = _config_and_rules(config_path)
    if offline:
        offline_report = check_offline(config, rules, config_path)
        offline_report.security = security_warnings(config, config_path)
        for warning in offline_report.security:
            click.echo(f"warning: {warning}", err=True)
        if as_json:
            click.echo(json.dumps(offline_report.to_json()))
        else:
            for line in offline_report.lines():
                click.echo(line)
        sys.exit(EXIT_OK)
    setup_logging(log_level or "ERROR", log_format or "text")  # the report is the output
    try:
        report = run_check(config, rules)
    except CdcError as exc:  # documented: 0 if `cdc run` would start, 2 if not, whatever stopped the check
        click.echo(f"check failed: {exc}", err=True)
        if as_json:
            click.echo(json.dumps({"command": "check", "ok": False, "offline": False, "sections": [],
                                   "problems": [f"check failed: {exc}"], "warnings": []}))
        sys.exit(EXIT_CHECK_FAILED)
    click.echo(json.dumps(report.to_json()) if as_json else report.text())
    sys.exit(EXIT_OK if report.ok else EXIT_CHECK_FAILED)


@main.command("check-config", hidden=True)
@config_option
@click.pass_context
def check_config(ctx: click.Context, config_path: str) -> None:
    """Deprecated: `cdc check --offline` (same output)."""
    _deprecated("check-config", "check --offline")
    ctx.invoke(check, config_path=config_path, offline=True)


@main.group()
def indices() -> None:
    """Indices and index templates the rules' `create_index` asks for, and the unsigned 64-bit fields cdc maps
    for the other rules: what `cdc run` does at start-up (docs/rules.md, Creating indices)."""


def _index_states(config_path: str, create: bool, log_format: str | None, log_level: str | None) -> None:
    from cdc.app.indices import index_states

    config, rules = _config_and_rules(config_path)
    setup_logging(log_level or "ERROR", log_format or "text")  # the JSON is the output
    states = _guarded(lambda: index_states(config, rules, create), echo="error: ")
    failed = any(s.state == "failed" for s in states)
    _report(f"indices {'create' if create else 'plan'}", not failed, {"indices": [s.to_json() for s in states]},
            indent=2)
    if failed:
        sys.exit(EXIT_FATAL)


@indices.command("plan")
@config_option
@json_option(always=True)
@log_options
def indices_plan(config_path: str, as_json: bool, log_format: str | None, log_level: str | None) -> None:
    """Print (JSON) what would be created, what exists, and what differs from the rules; change nothing."""
    _index_states(config_path, False, log_format, log_level)


@indices.command("create")
@config_option
@json_option(always=True)
@log_options
def indices_create(config_path: str, as_json: bool, log_format: str | None, log_level: str | None) -> None:
    """Create the missing indices and templates, and map missing unsigned 64-bit fields; never change an existing
    mapping or setting (differences are printed)."""
    _index_states(config_path, True, log_format, log_level)


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="MySQL/MariaDB server to read the tables from.")
@click.option("--port", type=click.IntRange(1, 65535), default=3306, show_default=True)
@click.option("--user", required=True, help="The user cdc will connect as (docs/server-setup.md).")
@click.option("--password-env", default="CDC_MYSQL_PASSWORD", show_default=True, metavar="VAR",
              help="Environment variable with the password: read now to connect, and written into the config as "
                   "${VAR} (the password itself is never written). Unset: asked for on a terminal, else none.")
@click.option("--schema", "schemas", multiple=True, metavar="SCHEMA", help="Map every table of this schema (repeatable).")
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE", help="Map this table (repeatable).")
@click.option("--es", "es_url", default="http://127.0.0.1:9200", show_default=True, metavar="URL",
              help="Elasticsearch (or OpenSearch) URL for the config.")
@click.option("--rules-dir", default="rules", show_default=True, metavar="DIR",
              help="Where the rules files go (one per schema), relative to the config file.")
@click.option("--force", is_flag=True, help="Overwrite the config and rules files if they exist.")
@json_option(help="Print what was written as one JSON object instead of text.")
def init(config_path: str, host: str, port: int, user: str, password_env: str, schemas: tuple[str, ...],
         tables: tuple[str, ...], es_url: str, rules_dir: str, force: bool, as_json: bool) -> None:
    """Connect to a server and write a commented starter config (--config) and rules for the tables chosen.

    The password stays in the environment (the config says ${VAR}); the
    server_id is one no reader of the server is listed with; a table without a
    primary key gets its rule commented out with what it needs. Check the result
    with `cdc check`.
    """
    from pathlib import Path

    from cdc.app import init as init_app
    from cdc.config import MysqlConfig

    target = Path(config_path)
    if not force and target.exists():
        raise click.UsageError(f"{target} exists; --force overwrites it")
    password = os.environ.get(password_env) if password_env else None
    if password is None and sys.stdin.isatty():
        password = click.prompt(f"password for {user}@{host}:{port} (${password_env} is not set)", hide_input=True,
                                default="", show_default=False)
    mysql = MysqlConfig(host=host, port=port, user=user, password=password or "", server_id=1)
    plan = _guarded(lambda: init_app.plan_init(mysql, target, target.parent / rules_dir, list(schemas), list(tables)),
                    echo="init: ")
    files = {target: init_app.config_text(plan, host, port, user, password_env if password else None, es_url),
             **plan.files()}
    present = init_app.existing(list(files))
    if present and not force:
        raise click.UsageError(f"{', '.join(map(str, present))} exist(s); --force overwrites")
    init_app.write(files)
    if as_json:
        _report("init", True, plan.to_json())
        return
    for t in plan.tables:
        click.echo(f"{t.schema}.{t.table} -> {init_app.index_name(t.schema, t.table)}"
                   + ("" if t.primary_key else "  (no primary key: rule commented out, needs id:)"))
    click.echo(f"wrote {', '.join(map(str, files))}")
    if password:
        click.echo(f"next: export {password_env}=...; cdc check --config {target}")
    else:
        click.echo(f"next: cdc check --config {target}")


@main.command("sink")
@config_option
@log_options
def sink_command(config_path: str, log_format: str | None, log_level: str | None) -> None:
    """Write the Kafka topic of `cdc run` (destination: kafka) to Elasticsearch, as one worker of kafka.group_id.

    Offsets are committed only after Elasticsearch acknowledged the messages
    before them; SIGTERM/SIGINT finish the batch, commit and leave the group.
    """
    from cdc.app import kafka_mode  # Kafka mode only: imports confluent-kafka

    session = _session(_logged(config_path, log_format, log_level))
    _guarded(lambda: kafka_mode.sink(session))
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()
