"""Command line: parse, set up logging, build, run. Exit codes:

  0  stopped normally (end of replay, or SIGTERM/SIGINT after saving the position)
  1  fatal runtime error (the message says what and where; the checkpoint is safe);
     for `verify`: differences remain
  2  configuration, rules or server set-up error (fix and start again)
  3  the resume position is gone from the server (binlog purged): re-snapshot needed
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

import click

from cdc import __version__
from cdc.app.daemon import Daemon, ReplayRange
from cdc.stream.checkpoint import FileCheckpointStore
from cdc.config import Config, load_config, security_warnings
from cdc.stream.deadletter import DeadLetterStore
from cdc.stream.deadletter import retry as retry_dead_letters
from cdc.errors import (CdcError, CheckpointError, ConfigError, PreflightError, PurgedPositionError, SinkAccessError,
                     SinkCertificateError)
from cdc.log import redact, setup_logging
from cdc.model import BinlogPosition
from cdc.rules import load_rules, resolved_or_stop
from cdc.es.sink import ElasticsearchSink
from cdc.mysql.source import StartPoint

EXIT_OK, EXIT_FATAL, EXIT_CONFIG, EXIT_PURGED = 0, 1, 2, 3
log = logging.getLogger("cdc")

CONFIG_HELP = "YAML configuration file (see README: Configuration)."


def _config_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _load(path: str, log_format: str | None, log_level: str | None) -> Config:
    config = _config_or_exit(path)
    setup_logging(log_level or config.logging.level, log_format or config.logging.format)
    for warning in security_warnings(config, path):
        log.warning("%s", warning)
    return config


def _install_signals(daemon: Daemon) -> None:
    def handler(signum, frame):
        if daemon.stop.is_set():
            # Second signal: leave now. The checkpoint only ever holds acknowledged
            # commits, so this loses nothing; it only means more replay next time.
            log.warning("second %s: exiting without finishing the batch", signal.Signals(signum).name)
            os._exit(EXIT_FATAL)
        log.info("%s received: finishing the batch and saving the position", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    def hangup(signum, frame):
        # Not a reload (README: Operations): new rules can need a snapshot of the
        # tables they add, which only a start does. SIGHUP's default would end the process.
        log.warning("SIGHUP ignored: cdc does not reload its config or rules; restart it to apply changes")

    signal.signal(signal.SIGHUP, hangup)


def _run_guarded(body) -> None:
    try:
        body()
    except (ConfigError, PreflightError, SinkAccessError, SinkCertificateError) as exc:
        # Restarting cannot fix these (systemd: RestartPreventExitStatus=2).
        log.error("%s", exc)
        sys.exit(EXIT_CONFIG)
    except CheckpointError as exc:
        log.error("%s", exc)
        sys.exit(EXIT_CONFIG)
    except PurgedPositionError as exc:
        log.error("%s", exc)
        sys.exit(EXIT_PURGED)
    except CdcError as exc:
        log.error("fatal: %s", exc)
        sys.exit(EXIT_FATAL)
    except Exception as exc:  # a bug: say so plainly, with the traceback, and never exit 0
        log.exception("unexpected error: %s", redact(str(exc)))
        sys.exit(EXIT_FATAL)
    sys.exit(EXIT_OK)


_log_opts = [
    click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default=None,
                 help="Log format (default from config: text on a terminal, else JSON lines)."),
    click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None),
]


def log_options(fn):
    for opt in reversed(_log_opts):
        fn = opt(fn)
    return fn


@click.group()
@click.version_option(__version__, prog_name="cdc")
def main() -> None:
    """Keep Elasticsearch in sync with MySQL/MariaDB by reading the binlog."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--resnapshot", is_flag=True,
              help="Forget the checkpoint: copy every table again, then stream from the current position.")
@log_options
def run(config_path: str, resnapshot: bool, log_format: str | None, log_level: str | None) -> None:
    """Stream changes into Elasticsearch until stopped (SIGTERM/SIGINT save the position).

    On first start (and for tables new to the rules) existing rows are copied
    first, unless snapshot.mode is never.
    """
    config = _load(config_path, log_format, log_level)
    daemon = Daemon(config)
    _install_signals(daemon)
    _run_guarded(lambda: daemon.run(resnapshot=resnapshot))


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE",
              help="Copy only this table (repeatable; default: every table in the rules).")
@click.option("--where", help="Copy only rows matching this SQL condition, e.g. \"updated_at > '2024-01-01'\".")
@log_options
def snapshot(config_path: str, tables: tuple[str, ...], where: str | None, log_format, log_level) -> None:
    """Copy tables into Elasticsearch again, also while the daemon is streaming.

    Chunks are read consistently and written with versions from their binlog
    position, so they never overwrite newer changes the daemon has written.
    A stopped run resumes at its last chunk when started again with the same options.
    """
    config = _load(config_path, log_format, log_level)
    daemon = Daemon(config)
    _install_signals(daemon)

    def body():
        state = daemon.snapshot(list(tables) or None, where)
        click.echo(json.dumps({"tables": state.to_json(), "finished": not state.pending}))

    _run_guarded(body)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE",
              help="Verify only this table (repeatable; default: every table in the rules).")
@click.option("--sample", type=click.IntRange(1), default=None, metavar="N",
              help="Check N random rows per table instead of all (no orphan check; ORDER BY RAND() reads every key).")
@click.option("--repair", is_flag=True,
              help="Re-index missing and differing rows and delete orphans, with versions that never beat the daemon.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@log_options
def verify(config_path: str, tables: tuple[str, ...], sample: int | None, repair: bool, as_json: bool,
           log_format: str | None, log_level: str | None) -> None:
    """Compare Elasticsearch with the tables, also while the daemon streams; optionally repair.

    Reports rows missing in Elasticsearch, documents that differ (field by field)
    and documents without a row. A difference is reported only if it is still
    there after the row is read again and the daemon has caught up with that read.
    Exit code 0: identical (or, with --repair, every difference repaired); 1: differences remain.
    """
    config = _load(config_path, log_format, log_level)
    daemon = Daemon(config)
    _install_signals(daemon)

    def body():
        report = daemon.verify(list(tables) or None, sample=sample, repair=repair)
        click.echo(json.dumps(report.to_json(), default=str) if as_json else report.text())
        if not report.ok:
            sys.exit(EXIT_FATAL)

    _run_guarded(body)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--from-position", help="Start at FILE:POS (a transaction boundary).")
@click.option("--from-gtid", help="Start after this GTID set (MariaDB 0-1-100 or MySQL uuid:1-100).")
@click.option("--to-position", help="Stop at the first commit at or after FILE:POS (default: the end of the binlog now).")
@click.option("--dry-run", is_flag=True, help="Read and convert, but write nothing; print what would be written.")
@click.option("--move-checkpoint", is_flag=True, help="Also save the daemon's checkpoint as the replay advances.")
@click.option("--server-id", type=click.IntRange(1, 2**32 - 1), default=None,
              help="server_id to read the binlog with (default: mysql.server_id + 1, so it can run beside the daemon).")
@log_options
def replay(config_path, from_position, from_gtid, to_position, dry_run, move_checkpoint, server_id, log_format,
           log_level):
    """Re-apply a range of the binlog to Elasticsearch, then exit.

    Writes carry versions from the binlog position, so replaying over an
    up-to-date index changes nothing, and replaying into an empty one rebuilds it.
    """
    config = _load(config_path, log_format, log_level)
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
    daemon = Daemon(config)
    _install_signals(daemon)
    counts: dict[str, int] = {}

    def on_batch(actions):
        if dry_run:
            for a in actions:
                key = f"{a.type.value} {a.index}"
                counts[key] = counts.get(key, 0) + 1

    def body():
        stats = daemon.replay(ReplayRange(start, end), dry_run=dry_run, move_checkpoint=move_checkpoint,
                              on_batch=on_batch, server_id=server_id)
        summary = {"rows": stats.rows, "transactions": stats.transactions, "actions": stats.actions_sent,
                   "already_newer": stats.actions_stale,
                   "last_commit": str(stats.last_commit.position) if stats.last_commit else None}
        if dry_run:
            summary["would_write"] = counts
        click.echo(json.dumps(summary))

    _run_guarded(body)


@main.group()
def dlq() -> None:
    """Inspect and re-send documents Elasticsearch rejected (dead_letter.on_rejected: dead_letter)."""


def _dead_letters(config_path: str):
    config = _config_or_exit(config_path)
    return config, DeadLetterStore(config.resolve(config.dead_letter.path))


@dlq.command("list")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(config_path: str, as_json: bool) -> None:
    """List dead letters: id, time, table, document, position and error."""
    _, store = _dead_letters(config_path)
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
        click.echo(f"{len(letters)} dead letter(s) in {store.path}", err=True)


@dlq.command("show")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("letter_id")
def dlq_show(config_path: str, letter_id: str) -> None:
    """Print one dead letter in full, with its document."""
    _, store = _dead_letters(config_path)
    for letter in store.list():
        if letter.id == letter_id:
            click.echo(json.dumps(letter.to_json(), indent=2, default=str))
            return
    click.echo(f"no dead letter {letter_id!r} in {store.path}", err=True)
    sys.exit(EXIT_FATAL)


@dlq.command("retry")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("letter_ids", nargs=-1)
def dlq_retry(config_path: str, letter_ids: tuple[str, ...]) -> None:
    """Send dead letters again (all, or the ids given); those that now succeed are removed."""
    config, store = _dead_letters(config_path)
    setup_logging(config.logging.level, config.logging.format)
    sink = ElasticsearchSink(config.elasticsearch)
    try:
        done, failing = retry_dead_letters(store, sink, set(letter_ids) if letter_ids else None)
    except CdcError as exc:
        click.echo(f"retry failed: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    finally:
        sink.close()
    click.echo(json.dumps({"done": done, "still_failing": [
        {"id": f.id, "status": f.status, "error_type": f.error_type, "reason": f.reason} for f in failing]}))
    sys.exit(EXIT_OK if not failing else EXIT_FATAL)


@dlq.command("purge")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--all", "purge_all", is_flag=True, help="Remove every dead letter.")
@click.argument("letter_ids", nargs=-1)
def dlq_purge(config_path: str, purge_all: bool, letter_ids: tuple[str, ...]) -> None:
    """Remove dead letters for good (the ids given, or --all)."""
    if not purge_all and not letter_ids:
        raise click.UsageError("give dead letter ids, or --all")
    _, store = _dead_letters(config_path)
    ids = {letter.id for letter in store.list()} if purge_all else set(letter_ids)
    click.echo(json.dumps({"removed": store.remove(ids)}))


@main.command("check-config")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
def check_config(config_path: str) -> None:
    """Validate the config and rule files without connecting anywhere."""
    config, rules = _config_and_rules(config_path)
    for warning in security_warnings(config, config_path):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"ok: {config_path}; {len(rules)} rule(s)")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
def position(config_path: str) -> None:
    """Print the saved checkpoint as JSON."""
    try:
        config = load_config(config_path)
        store = FileCheckpointStore(config.resolve(config.checkpoint.path))
        checkpoint = store.load()
    except (ConfigError, CheckpointError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    if checkpoint is None:
        click.echo(json.dumps({"checkpoint": None, "locked": store.is_locked_by_other()}))
        return
    click.echo(json.dumps({**checkpoint.to_json(), "position": str(checkpoint.position),
                           "locked": store.is_locked_by_other()}))


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def status(config_path: str, as_json: bool) -> None:
    """Show position, GTID, checkpoint age, lag and whether a daemon is running (README: Operations)."""
    from cdc.ops.status import format_text, gather

    try:
        report = gather(load_config(config_path))
    except (ConfigError, CheckpointError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(json.dumps(report) if as_json else format_text(report))


def _config_and_rules(config_path: str):
    try:
        config = load_config(config_path)
        return config, load_rules(config.resolve(config.rules))
    except ConfigError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@log_options
def check(config_path: str, log_format: str | None, log_level: str | None) -> None:
    """Check the config and every rule against the live schema and both servers; print a report.

    Exit code 0 if `cdc run` would start (warnings are printed too), 2 if not.
    """
    from cdc.app.check import run_check

    config, rules = _config_and_rules(config_path)
    setup_logging(log_level or "ERROR", log_format or "text")  # the report is the output
    try:
        report = run_check(config, rules)
    except CdcError as exc:
        click.echo(f"check failed: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(report.text())
    sys.exit(EXIT_OK if report.ok else EXIT_CONFIG)


@main.group()
def indices() -> None:
    """Indices and index templates the rules' `create_index` asks for (README: Creating indices)."""


def _index_states(config_path: str, create: bool, log_format: str | None, log_level: str | None) -> None:
    from cdc.mysql.server import Database
    from cdc.es.indices import create_missing, inspect, plan_indices
    from cdc.rules.values import ValueOptions

    config, rules = _config_and_rules(config_path)
    setup_logging(log_level or "ERROR", log_format or "text")  # the JSON is the output
    sink = None
    try:
        db = Database(config.mysql)
        try:
            rules = resolved_or_stop(rules, db.catalog(rules))
        finally:
            db.close()
        plans = plan_indices(rules.rules, ValueOptions.from_config(config.values))
        sink = ElasticsearchSink(config.elasticsearch)
        states = create_missing(plans, sink) if create else inspect(plans, sink)
    except CdcError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    finally:
        if sink is not None:
            sink.close()
    click.echo(json.dumps({"indices": [s.to_json() for s in states]}, indent=2))
    if any(s.state == "failed" for s in states):
        sys.exit(EXIT_FATAL)


@indices.command("plan")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@log_options
def indices_plan(config_path: str, log_format: str | None, log_level: str | None) -> None:
    """Print (JSON) what would be created, what exists, and what differs from the rules; change nothing."""
    _index_states(config_path, False, log_format, log_level)


@indices.command("create")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@log_options
def indices_create(config_path: str, log_format: str | None, log_level: str | None) -> None:
    """Create the missing indices and templates; never change existing ones (differences are printed)."""
    _index_states(config_path, True, log_format, log_level)


if __name__ == "__main__":
    main()
