"""While `cdc rebuild` fills a new index, `cdc run` writes each action for its alias into it too.

`DualWriteSink` stands between the pipeline's writers and the destination. Before
every bulk request it asks `FileTargets` which aliases are being rebuilt (a stat of
`<checkpoint>.rebuild.json`, parsed again only when the file was replaced), and adds
a copy of each action for such an alias, aimed at the new index, to the same request.

Why this is enough for nothing to be lost or stale in the new index (README
"Rebuilding an index"): `cdc rebuild` records the phase `copy` before it reads its
first chunk. Every bulk request the daemon starts after that holds the copies;
every request it started before holds only changes it had read from the binlog
before, so committed before the copy's reads, which therefore see them. Copies
carry the same external versions as the stream's writes, and chunks the version of
their read, so whichever arrives second loses if it is older.

An action counts as acknowledged only when its copy is too: a copy that must be sent
again (429, 5xx) sends the action again with it (its second write is "already newer"),
so the checkpoint never passes a change the new index lacks. A copy the new index
rejects does not stop the daemon, whose documents go on reaching the alias; it is
logged (event `rebuild_write_rejected`), and `cdc rebuild`'s verify finds the document
missing and does not swap.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from cdc.model import Action, BulkResult, ItemResult, Outcome
from cdc.stream.protocols import Sink

log = logging.getLogger("cdc.rebuild")


class FileTargets:
    """alias -> new index, read from the rebuild state file (`read`: cdc/copy/lifecycle.py's) again only
    when the file was replaced."""

    def __init__(self, path: Path, read: Callable[[Path], Mapping[str, str]]):
        self.path = path
        self.read = read
        self._seen: tuple[int, int, int] | None = None
        self._targets: Mapping[str, str] = {}

    def __call__(self) -> Mapping[str, str]:
        try:
            st = os.stat(self.path)
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            # atomic_write renames a new file in: a new inode at every save.
            targets = self.read(self.path) if seen is not None else {}
            if targets != self._targets:
                log.info("rebuild: writing %s", "; ".join(f"{alias} also into {index}" for alias, index in
                                                          sorted(targets.items())) or "only to the aliases again",
                         extra={"event": "rebuild_dual_write", "targets": targets})
            self._seen, self._targets = seen, targets
        return self._targets


class DualWriteSink:
    """A sink that writes the actions of aliases being rebuilt into their new index too (module docstring)."""

    def __init__(self, sink: Sink, targets: Callable[[], Mapping[str, str]]):
        self.sink = sink
        self.targets = targets

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        targets = self.targets()
        copies = [(n, dataclasses.replace(a, index=targets[a.index])) for n, a in enumerate(actions)
                  if a.index in targets] if targets else []
        if not copies:
            return self.sink.write(actions, refresh)
        own = list(actions)
        result = self.sink.write(own + [copy for _, copy in copies], refresh)
        items = list(result.items[:len(own)])
        for (n, copy), item in zip(copies, result.items[len(own):]):
            if item.outcome is Outcome.RETRY and items[n].outcome in (Outcome.OK, Outcome.STALE):
                items[n] = ItemResult(own[n], Outcome.RETRY, item.status, item.error_type,
                                      f"in {copy.index} (rebuild): {item.reason}")
            elif item.outcome is Outcome.REJECTED:
                log.error("rebuild: %s rejected %s %s from %s.%s at %s: %s %s: %s; `cdc rebuild` will find it "
                          "missing and not swap", copy.index, copy.type.value, copy.doc_id, copy.schema, copy.table,
                          copy.position, item.status, item.error_type, item.reason,
                          extra={"event": "rebuild_write_rejected", "index": copy.index, "doc_id": copy.doc_id,
                                 "table": f"{copy.schema}.{copy.table}", "position": str(copy.position),
                                 "error": item.reason})
        return BulkResult(tuple(items))

    def __getattr__(self, name: str):
        # Everything else (gc_deletes, admin, close, ...) is the destination's.
        return getattr(self.sink, name)
