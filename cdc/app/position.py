"""`cdc position` and `cdc status`: where a daemon stands, read from outside it; nothing is written."""

from __future__ import annotations

from typing import Any

from cdc.config import Config
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
    """Position, GTID, checkpoint age, lag, snapshot and dead letters (cdc/ops/status.py)."""
    return gather(config)
