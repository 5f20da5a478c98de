"""`cdc position` and `cdc status`: where a daemon stands, read from outside it; nothing is written."""

from __future__ import annotations

import json
from typing import Any

from cdc.config import Config
from cdc.copy.lifecycle import RebuildFile, progress_path, state_path
from cdc.ops.status import gather
from cdc.stream.checkpoint import FileCheckpointStore


def position(config: Config) -> dict[str, Any]:
    """The saved checkpoint, and whether a daemon holds it (raises CheckpointError if unreadable)."""
    store = FileCheckpointStore(config.resolve(config.checkpoint.path))
    checkpoint = store.load()
    if checkpoint is None:
        return {"checkpoint": None, "locked": store.is_locked_by_other()}
    return {**checkpoint.to_json(), "position": str(checkpoint.position), "locked": store.is_locked_by_other()}


def status(config: Config) -> dict[str, Any]:
    """Position, GTID, checkpoint age, lag, snapshot, rebuilds and dead letters (cdc/ops/status.py)."""
    report = gather(config)
    report["rebuilds"] = rebuilds(config)
    return report


def rebuilds(config: Config) -> list[dict[str, Any]]:
    """Each unfinished rebuild's phase and, while it copies, its tables' progress as a snapshot's."""
    out = []
    for rebuild in RebuildFile(state_path(config)).load().rebuilds:
        entry: dict[str, Any] = {"alias": rebuild.alias, "index": rebuild.index, "phase": rebuild.phase,
                                 "replaces": list(rebuild.replaces), "copy": None}
        try:
            entry["copy"] = json.loads(progress_path(config, rebuild.alias).read_text()).get("tables")
        except (OSError, ValueError):  # not copying (yet, or any more)
            pass
        out.append(entry)
    return out
