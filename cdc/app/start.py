"""Where `cdc run` starts: the start, failover and epoch policy, as one pure function.

`decide_start` sees the saved checkpoint, what the server says about itself (its
identity and the binlog files it still has) and the config, and returns a
`StartPlan`; `cdc/app/daemon.py` carries it out (asks the server for the
current position when the plan says so, saves, logs). Nothing here touches a
server or a file, so every branch has a unit test (tests/unit/test_start.py);
the integration test of the whole path is tests/integration/test_failover.py.

The policy (docs/running.md, RELIABILITY.md "Failover"):

* **Resume.** A checkpoint of this server: stream from its position. Tables
  new to the rules (or an unfinished snapshot) are copied first.
* **Purged.** The checkpoint's binlog file is gone: stop with exit 3 and name
  `cdc run --resnapshot`, unless `snapshot.mode: when_needed`, which starts
  afresh by itself. A file newer than the server's newest was never purged
  (`never_on_server`): another server, or a reset binlog; exit 2.
* **Failover.** A checkpoint of another server: continue by GTID on this one.
  File numbers and offsets of two servers are unrelated, so this server's
  positions may be lower than those that versioned the existing documents, and
  its writes would be refused as stale; raising the epoch (the high bits of
  every version) keeps versions growing across the switch. The switch is saved
  at once (`by_gtid`), so a restart before the first commit here also resumes
  by GTID and does not raise the epoch twice.
* **Fresh.** No checkpoint (or `--resnapshot`): start at the end of the binlog
  and copy every table, or at `start.position` and replay instead of copying.
  The epoch of an earlier checkpoint is kept: documents written with it must
  keep losing to newer writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

from cdc.config import Config
from cdc.errors import PreflightError, PurgedPositionError, StartPositionError
from cdc.model import BinlogPosition, StartPoint
from cdc.stream.checkpoint import Checkpoint

# Versions carry the epoch in 7 bits (cdc/rules/actions.py document_version).
MAX_EPOCH = 127


@dataclass(frozen=True)
class ServerFacts:
    """What the server the config points at says about itself."""

    identity: str  # "mariadb:<server_id>" / "mysql:<server_uuid>" (Database.identity)
    binlog_files: tuple[str, ...]  # SHOW BINARY LOGS, oldest first


@dataclass(frozen=True)
class StartPlan:
    """What `cdc run` does before streaming; the checkpoint fields are those to save from now on."""

    how: Literal["resume", "failover", "fresh"]
    # resume/failover: where to stream from. fresh: None; the daemon reads the
    # position from the server (`fresh_at` None: the end of the binlog now).
    start: StartPoint | None
    fresh_at: BinlogPosition | None
    copy: tuple[str, ...]  # tables ("schema.table") to snapshot first, in rule order
    # The checkpoint record from now on.
    server: str | None
    epoch: int
    snapshotted: tuple[str, ...] | None
    snapshot: dict | None
    # Save before anything else: a fresh start (so a restart before the first
    # commit loses nothing), or the failover switch (by GTID, the raised epoch).
    save_now: bool
    notes: tuple[tuple[int, str], ...] = ()  # (logging level, message) to log
    # Refuse to go on, after the save: an unfinished snapshot at a failover
    # (its raised epoch must be kept for the --resnapshot that follows).
    refusal: str | None = None
    resnapshot: bool = False  # a fresh start that copies everything again (--resnapshot, or a purged binlog)


def never_on_server(position: BinlogPosition, files: Sequence[str], what: str, remedy: str) -> StartPositionError | None:
    """Why `position`'s file, which the server does not have, cannot have been purged; None when it can.

    PURGE BINARY LOGS removes the oldest files, so only a file numbered below the
    server's oldest (with the same base name) is a purged one, whose changes a
    re-snapshot recovers (exit 3). A file numbered above the newest, or named unlike
    the server's files, was never on this server: a mistyped position, one of another
    server, or one from before the binlog was reset (RESET MASTER). That is bad input
    (exit 2), and a re-snapshot is no answer to it.
    """
    if not files:
        return None
    oldest, newest = BinlogPosition(files[0], 4), BinlogPosition(files[-1], 4)
    base = position.file.rpartition(".")[0]
    try:
        numbered = position.file_seq
    except ValueError:
        numbered = None
    if base != newest.file.rpartition(".")[0] or numbered is None:
        why = "is named unlike the server's binlog files"
    elif numbered > newest.file_seq:
        why = "is newer than the newest binlog file on the server"
    else:
        return None
    return StartPositionError(
        f"{what} {position}: binlog file {position.file} {why} (it has {oldest.file} to {newest.file}), so it was "
        "not purged: the position is mistyped, or is another server's, or is from before the binlog was reset "
        f"(RESET MASTER). {remedy}")


def purged_message(position: BinlogPosition, files: Sequence[str]) -> str:
    return (f"binlog file {position.file} (position {position}) is no longer on the server "
            f"(oldest is {files[0] if files else 'none'}): the changes after it are lost to cdc. "
            "Rebuild the index with `cdc run --resnapshot --config <this config>` (copies every table "
            "again, then streams from the current position), or set snapshot.mode: when_needed to do "
            "that by itself")


def decide_start(checkpoint: Checkpoint | None, server: ServerFacts, config: Config,
                 tables: Sequence[str], resnapshot: bool = False) -> StartPlan:
    """The start plan for `cdc run` (see the module docstring). `tables`: the rules' tables, in order.

    Raises PurgedPositionError (exit 3), PreflightError and StartPositionError (exit 2) for starts that
    cannot be made.
    """
    mode = config.snapshot.mode
    notes: list[tuple[int, str]] = []
    if checkpoint is not None and not resnapshot:
        if checkpoint.by_gtid or (checkpoint.server is not None and checkpoint.server != server.identity):
            return _failover(checkpoint, server, config, tables)
        if checkpoint.position.file in server.binlog_files:
            snapshotted = checkpoint.snapshotted if checkpoint.snapshotted is not None else tuple(tables)
            from cdc.copy.snapshot import SnapshotState  # here: `cdc replay` imports this module, not the snapshot

            state = SnapshotState.from_json(checkpoint.snapshot)
            copy = tuple(t for t in tables if t in state.pending
                         or (mode != "never" and t not in snapshotted and t not in state.tables))
            notes.append((logging.INFO, f"resuming from checkpoint {checkpoint.position} "
                                        f"(gtid {checkpoint.gtid or '-'})"))
            return StartPlan("resume", StartPoint(checkpoint.position, checkpoint.gtid), None, copy,
                             checkpoint.server, checkpoint.epoch, snapshotted, checkpoint.snapshot,
                             save_now=False, notes=tuple(notes))
        foreign = never_on_server(checkpoint.position, server.binlog_files, "the checkpoint's position",
                                  "Check mysql.host and mysql.port; after a RESET MASTER, raise "
                                  "elasticsearch.version_epoch and rebuild the index with `cdc run --resnapshot`")
        # Also with when_needed: copying another server's tables is no repair, and after a reset the
        # copy's versions (lower file numbers) would lose to the documents there without a new epoch.
        if foreign is not None:
            raise foreign
        if mode != "when_needed":
            raise PurgedPositionError(purged_message(checkpoint.position, server.binlog_files))
        notes.append((logging.WARNING, f"the checkpoint's binlog {checkpoint.position} is gone; "
                                       "snapshot.mode=when_needed: copying every table again"))
        resnapshot = True
    epoch = checkpoint.epoch if checkpoint is not None else 0
    if config.start.position == "end" or resnapshot:
        copy = tuple(tables) if (mode != "never" or resnapshot) else ()
        return StartPlan("fresh", None, None, copy, server.identity, epoch, (), None, save_now=True,
                         notes=tuple(notes), resnapshot=resnapshot)
    position = BinlogPosition.parse(config.start.position)
    if position.file not in server.binlog_files:
        remedy = "Choose a position SHOW BINARY LOGS lists, or start.position: end"
        raise never_on_server(position, server.binlog_files, "start.position", remedy) or PurgedPositionError(
            f"start.position {position}: binlog file {position.file} is not on the server (oldest is "
            f"{server.binlog_files[0] if server.binlog_files else 'none'}): purged. {remedy}")
    # The rules' tables count as copied: the binlog from start.position is replayed instead of a copy.
    # Recorded as none copied (()), the first resume took every table for new to the rules and copied
    # them all (seen with docker-compose.yml, whose cdc.yml starts at binlog.000001:4); a table added
    # to the rules later is still copied.
    return StartPlan("fresh", None, position, (), server.identity, epoch, tuple(tables), None, save_now=True,
                     notes=tuple(notes))


def _failover(checkpoint: Checkpoint, server: ServerFacts, config: Config, tables: Sequence[str]) -> StartPlan:
    if not checkpoint.gtid:
        raise PreflightError(
            f"cdc was following {checkpoint.server} and is now connected to {server.identity}, but its "
            "checkpoint has no GTID state to find its place on the new server: rebuild the index with "
            "`cdc run --resnapshot`")
    notes: list[tuple[int, str]] = []
    epoch, owner, save = checkpoint.epoch, checkpoint.server, False
    if not checkpoint.by_gtid:
        if checkpoint.epoch + config.elasticsearch.version_epoch >= MAX_EPOCH:
            raise PreflightError("the version epoch is exhausted (127 failovers); rebuild the indices "
                                 "and reset it")
        epoch, owner, save = checkpoint.epoch + 1, server.identity, True
        notes.append((logging.WARNING, f"failover: checkpoint is from {checkpoint.server}, this server is "
                                       f"{server.identity}; resuming from GTID {checkpoint.gtid} with version "
                                       f"epoch {epoch}"))
    else:
        notes.append((logging.INFO, f"resuming from GTID {checkpoint.gtid} after a failover "
                                    f"(version epoch {epoch})"))
    from cdc.copy.snapshot import SnapshotState  # as in the start plan above

    refusal = None
    if SnapshotState.from_json(checkpoint.snapshot).pending:
        refusal = "a snapshot was unfinished at the failover; finish it with `cdc run --resnapshot`"
    # A snapshotted record of () or None (format 1) counts as "every table copied".
    done = checkpoint.snapshotted or tuple(tables)
    copy = tuple(t for t in tables if config.snapshot.mode != "never" and t not in done)
    return StartPlan("failover", StartPoint(checkpoint.position, checkpoint.gtid, by_gtid=True), None, copy,
                     owner, epoch, checkpoint.snapshotted, checkpoint.snapshot, save_now=save,
                     notes=tuple(notes), refusal=refusal)
