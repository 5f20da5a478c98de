"""Where the daemon resumes from: a small JSON file, written atomically and locked.

A checkpoint is a promise (see pipeline.py): its position is a transaction commit
whose actions Elasticsearch has acknowledged. The file is replaced with
write-temp, fsync, rename, fsync-dir, so a crash leaves the old or the new
checkpoint and never a torn one. An exclusive lock on a side file stops a second
daemon from sharing the checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cdc.durable import atomic_write
from cdc.errors import CheckpointError
from cdc.model import BinlogPosition

# 2 added the snapshot fields; a format-1 file is read as "every table already copied".
FORMAT_VERSION = 2
_READABLE = (1, 2)


@dataclass(frozen=True)
class Checkpoint:
    position: BinlogPosition
    gtid: str | None
    saved_at: float = 0.0
    # Tables ("schema.table") whose rows have been copied; None: not recorded (format 1).
    snapshotted: tuple[str, ...] | None = ()
    # Progress of a snapshot that has not finished (cdc/copy/snapshot.py SnapshotState).
    snapshot: dict | None = None
    # The server the position belongs to ("mariadb:<server_id>" / "mysql:<server_uuid>").
    server: str | None = None
    # Added to every document version; raised at each failover (see cdc/app/start.py).
    epoch: int = 0
    # True right after a failover: file/pos are the old server's; resume by GTID.
    by_gtid: bool = False

    def to_json(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "file": self.position.file,
            "pos": self.position.pos,
            "gtid": self.gtid,
            "saved_at": self.saved_at,
            "snapshotted": sorted(self.snapshotted) if self.snapshotted is not None else None,
            "snapshot": self.snapshot,
            "server": self.server,
            "epoch": self.epoch,
            "by_gtid": self.by_gtid,
        }

    @classmethod
    def from_json(cls, data: dict, source: str) -> "Checkpoint":
        try:
            if data.get("format") not in _READABLE:
                raise CheckpointError(f"{source}: unsupported checkpoint format {data.get('format')!r}")
            file, pos = data["file"], data["pos"]
            if not isinstance(file, str) or not isinstance(pos, int) or pos < 4:
                raise CheckpointError(f"{source}: invalid position {file!r}:{pos!r}")
            gtid = data.get("gtid")
            if gtid is not None and not isinstance(gtid, str):
                raise CheckpointError(f"{source}: gtid must be a string")
            snapshotted = data.get("snapshotted") if data["format"] >= 2 else None
            if snapshotted is not None and not (isinstance(snapshotted, list)
                                                and all(isinstance(t, str) for t in snapshotted)):
                raise CheckpointError(f"{source}: snapshotted must be a list of table names")
            snapshot = data.get("snapshot")
            if snapshot is not None and not isinstance(snapshot, dict):
                raise CheckpointError(f"{source}: snapshot must be an object")
            epoch = data.get("epoch", 0)
            if not isinstance(epoch, int) or not 0 <= epoch <= 127:
                raise CheckpointError(f"{source}: epoch must be an integer 0..127")
            return cls(BinlogPosition(file, pos), gtid, float(data.get("saved_at", 0.0)),
                       tuple(snapshotted) if snapshotted is not None else None, snapshot,
                       data.get("server"), epoch, bool(data.get("by_gtid", False)))
        except KeyError as exc:
            raise CheckpointError(f"{source}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid value: {exc}") from None


class FileCheckpointStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None
        # Carried into every save, so that stream checkpoints keep the snapshot record.
        self.snapshotted: tuple[str, ...] | None = ()
        self.snapshot: dict | None = None
        self.server: str | None = None
        self.epoch = 0

    def lock(self) -> None:
        """Hold an exclusive lock for the life of the process (released by the kernel on exit)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = ""
            try:
                holder = lock_path.read_text().strip()
            except OSError:
                pass
            raise CheckpointError(
                f"{self.path} is in use by another cdc process{f' (pid {holder})' if holder else ''}; "
                "two daemons must not share a checkpoint"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # Temp files of earlier processes killed mid-save; only the lock holder may remove them.
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)

    def is_locked_by_other(self) -> bool:
        lock_path = self.path.with_name(self.path.name + ".lock")
        if not lock_path.exists():
            return False
        fd = os.open(lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> Checkpoint | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise CheckpointError(f"{self.path}: not valid JSON; restore it or remove it to start over") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{self.path}: expected a JSON object")
        checkpoint = Checkpoint.from_json(data, str(self.path))
        self.snapshotted, self.snapshot = checkpoint.snapshotted, checkpoint.snapshot
        self.server, self.epoch = checkpoint.server, checkpoint.epoch
        return checkpoint

    def save(self, position: BinlogPosition, gtid: str | None, by_gtid: bool = False) -> Checkpoint:
        checkpoint = Checkpoint(position, gtid, time.time(), self.snapshotted, self.snapshot, self.server,
                                self.epoch, by_gtid)
        try:
            atomic_write(self.path, json.dumps(checkpoint.to_json()))
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot save checkpoint: {exc.strerror}") from None
        return checkpoint
