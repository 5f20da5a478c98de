"""The state of `cdc rebuild`: which index is being rebuilt into which, how far, and what it replaced.

One JSON file beside the checkpoint (`<checkpoint>.rebuild.json`), replaced
atomically, written only by `cdc rebuild` (one at a time: a lock file beside it)
and read by `cdc run`, which writes every action for an alias being rebuilt into
the new index too (cdc/stream/dualwrite.py). docs/verify-and-rebuild.md "Rebuilding an index".

A rebuild of one alias goes through these phases; each is recorded before the
step it names is taken, so a process killed anywhere resumes at the step it was
in (each step is safe to take again):

  create  the new index's name is chosen; it is created (again: an index of that
          name made by this rebuild is taken as it is, its body checked)
  copy    the daemon writes the alias's actions into the new index too, from the
          first bulk request it sends after reading this phase; the tables are
          copied into it in consistent chunks, resumable (the snapshot's progress
          file), with external versions, so the copy and the dual writes converge
  verify  the copy is complete: the settings for searching are put back, the index
          refreshed and compared with the tables (cdc/copy/verify.py); a difference
          stops the rebuild here, with the alias untouched
  swap    verified: one `_aliases` request moves the alias (done again only if the
          alias is not already there), then the entry goes and the index it replaced
          is listed in `previous` until `indices.keep_previous` has passed

The alias points at a complete index the whole time: the old one until the swap,
the new one after it. Everything here is pure except `RebuildFile`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from cdc.config import Config
from cdc.durable import atomic_write
from cdc.errors import CheckpointError
from cdc.es.indices import flat_index_settings

Phase = Literal["create", "copy", "verify", "swap"]
PHASES: tuple[Phase, ...] = ("create", "copy", "verify", "swap")
# From "copy" on, the daemon writes the alias's actions into the new index too.
DUAL_WRITE_PHASES = frozenset({"copy", "verify", "swap"})

# A new index is filled with these (Elasticsearch's advice for bulk loads: no refreshes,
# no replicas to copy each write to), and gets its own back before it is verified.
BULK_SETTINGS = {"index.refresh_interval": "-1", "index.number_of_replicas": "0"}


@dataclass(frozen=True)
class Rebuild:
    """One alias being rebuilt into `index`."""

    alias: str
    index: str  # the new concrete index
    phase: Phase
    replaces: tuple[str, ...]  # the indices the alias pointed at when it began (a concrete index: the name itself)
    concrete: bool  # the alias's name was a concrete index (from before aliases): the swap deletes it
    rules: tuple[str, ...]  # schema.table of the rules that write to the alias
    body_hash: str  # of the new index's settings and mappings: a resume with other rules starts over
    restore: Mapping[str, Any]  # the settings BULK_SETTINGS stand in for, put back before verifying
    started: float

    def to_json(self) -> dict:
        return {"alias": self.alias, "index": self.index, "phase": self.phase, "replaces": list(self.replaces),
                "concrete": self.concrete, "rules": list(self.rules), "body_hash": self.body_hash,
                "restore": dict(self.restore), "started": self.started}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Rebuild":
        phase = data["phase"]
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        return cls(str(data["alias"]), str(data["index"]), phase, tuple(data.get("replaces") or ()),
                   bool(data.get("concrete")), tuple(data.get("rules") or ()), str(data.get("body_hash", "")),
                   dict(data.get("restore") or {}), float(data.get("started", 0)))


@dataclass(frozen=True)
class Previous:
    """An index the alias no longer points at, kept until `delete_after` (`cdc rebuild --cleanup`)."""

    index: str
    alias: str
    why: Literal["replaced", "abandoned"]
    delete_after: float

    def to_json(self) -> dict:
        return {"index": self.index, "alias": self.alias, "why": self.why, "delete_after": self.delete_after}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Previous":
        why: Literal["replaced", "abandoned"] = "abandoned" if data.get("why") == "abandoned" else "replaced"
        return cls(str(data["index"]), str(data["alias"]), why, float(data.get("delete_after", 0)))


@dataclass(frozen=True)
class RebuildState:
    rebuilds: tuple[Rebuild, ...] = ()
    previous: tuple[Previous, ...] = ()

    def get(self, alias: str) -> Rebuild | None:
        return next((r for r in self.rebuilds if r.alias == alias), None)

    def dual_writes(self) -> dict[str, str]:
        """alias -> new index, for every rebuild whose new index must get the alias's writes too."""
        return {r.alias: r.index for r in self.rebuilds if r.phase in DUAL_WRITE_PHASES}

    def put(self, rebuild: Rebuild) -> "RebuildState":
        others = tuple(r for r in self.rebuilds if r.alias != rebuild.alias)
        return replace(self, rebuilds=tuple(sorted((*others, rebuild), key=lambda r: r.alias)))

    def advance(self, alias: str, phase: Phase) -> "RebuildState":
        rebuild = self.get(alias)
        assert rebuild is not None and PHASES.index(phase) >= PHASES.index(rebuild.phase), (rebuild, phase)
        return self.put(replace(rebuild, phase=phase))

    def finish(self, alias: str, now: float, keep: float) -> "RebuildState":
        """The alias is on the new index: the entry goes, and what it replaced is kept for `keep` seconds
        (a concrete index was deleted by the swap itself)."""
        rebuild = self.get(alias)
        assert rebuild is not None
        kept = () if rebuild.concrete else tuple(Previous(i, alias, "replaced", now + keep)
                                                 for i in rebuild.replaces if i != rebuild.index)
        return RebuildState(tuple(r for r in self.rebuilds if r.alias != alias), self.previous + kept)

    def abandon(self, alias: str, now: float) -> "RebuildState":
        """Give the rebuild up: the alias stays where it is; the new index is left for `--cleanup` to delete."""
        rebuild = self.get(alias)
        assert rebuild is not None
        return RebuildState(tuple(r for r in self.rebuilds if r.alias != alias),
                            self.previous + (Previous(rebuild.index, alias, "abandoned", now),))

    def due(self, now: float) -> tuple[Previous, ...]:
        return tuple(p for p in self.previous if p.delete_after <= now)

    def forget(self, index: str) -> "RebuildState":
        return replace(self, previous=tuple(p for p in self.previous if p.index != index))

    def to_json(self) -> dict:
        return {"format": 1, "rebuilds": [r.to_json() for r in self.rebuilds],
                "previous": [p.to_json() for p in self.previous]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RebuildState":
        return cls(tuple(Rebuild.from_json(r) for r in data.get("rebuilds") or ()),
                   tuple(Previous.from_json(p) for p in data.get("previous") or ()))


def state_path(config: Config) -> Path:
    """`<checkpoint>.rebuild.json`, where `cdc rebuild` keeps its state and `cdc run` looks for it."""
    return config.resolve(config.checkpoint.path + ".rebuild.json")


def progress_path(config: Config, alias: str) -> Path:
    """Where the copy of a rebuild of `alias` keeps its progress (cdc/copy/snapshot.py OnDemandProgress)."""
    return config.resolve(f"{config.checkpoint.path}.rebuild-{alias}.snapshot.json")


def dual_writes(path: Path) -> dict[str, str]:
    """What `cdc run` writes twice (cdc/stream/dualwrite.py), from the state file."""
    return RebuildFile(path).load().dual_writes()


def body_hash(body: Mapping[str, Any], rules: tuple[str, ...]) -> str:
    """What the new index is made from: its create body and the rules that fill it."""
    text = json.dumps({"body": body, "rules": sorted(rules)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def bulk_body(body: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[dict, dict]:
    """(the new index's create body with BULK_SETTINGS, the settings to put back once it is full).

    What is put back: the rules' own value of each setting, else the value the index
    being replaced has (`current`, flat settings: someone tuned it), else None, which
    resets it to the server's default.
    """
    given = flat_index_settings(body.get("settings") or {})
    restore = {key: given.get(key, current.get(key)) for key in BULK_SETTINGS}
    settings = {**given, **BULK_SETTINGS}
    return {**body, "settings": settings}, restore


@dataclass
class RebuildFile:
    """`<checkpoint>.rebuild.json`: written by `cdc rebuild` only, under the lock beside it; read by `cdc run`."""

    path: Path
    _lock_fd: int | None = field(default=None, repr=False)

    def load(self) -> RebuildState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return RebuildState()
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return RebuildState.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            # Never guessed at: a rebuild the daemon did not know of could swap in an index that
            # missed writes. Written atomically, so only a hand edit gets here.
            raise CheckpointError(f"{self.path}: not a rebuild state cdc wrote ({exc}); restore it, or remove it "
                                  "and abandon the rebuilds it held (their new indices are not behind any alias)")

    def save(self, state: RebuildState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not state.rebuilds and not state.previous:
            self.path.unlink(missing_ok=True)
            return
        atomic_write(self.path, json.dumps(state.to_json(), indent=1))

    def lock(self) -> None:
        """One `cdc rebuild` at a time (released by the kernel when the process ends)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(f"{self.path} is in use by another `cdc rebuild`; one runs at a time") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
