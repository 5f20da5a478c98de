"""Bulk-load settings for a first snapshot into a new, empty index (issue 31 item 5).

Elasticsearch's advice for filling an index is to turn refreshes off and replicas to
zero while it fills, and to put them back afterwards (the reference's "Tune for indexing
speed"); `cdc rebuild` does both for the index it fills (cdc/copy/lifecycle.py
BULK_SETTINGS). `cdc run`'s initial snapshot turns refreshes off only, and only for an
index that holds no document when the copy begins: nobody searches an empty index for
what is in it, while a populated one (a table added to a shared index, a `--resnapshot`)
is serving searches that a turned-off refresh would freeze.

Replicas stay, because the snapshot's checkpoint counts a chunk as done once
Elasticsearch has acknowledged it: with no replica, a node lost for good during the
copy would take acknowledged documents along, and nothing would copy them again.
`cdc rebuild` can drop them because it verifies the new index against the tables
before the alias moves (found by the three-node cluster test,
tests/integration/test_es_cluster.py, killing the primary's node mid-copy).

The order, and why it is crash-safe: the settings to put back are saved in the
checkpoint's snapshot state *before* the bulk settings are applied, and they are put
back *before* the checkpoint says the snapshot is done. A process killed anywhere in
between finds them in the checkpoint on its next start: the snapshot resumes with the
index still in bulk mode, and its end puts them back (a PUT of settings is idempotent).

Pure except `BulkLoad`, which talks to the destination's admin API.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping

from cdc.errors import SinkAccessError
from cdc.es import aliases as alias_names
from cdc.es.indices import index_target
from cdc.rules.model import Rule
from cdc.stream.protocols import SearchAdmin

log = logging.getLogger("cdc.snapshot")

# Refreshes off while the index fills; its replicas are left as they are (module docstring).
SNAPSHOT_SETTINGS = {"index.refresh_interval": "-1"}


def restore_settings(current_flat: Mapping[str, Any]) -> dict[str, Any]:
    """What to put back after the load: the index's own value of each bulk setting, or None (which resets the
    setting to the server's default: an index created without a refresh_interval gets its default back)."""
    return {key: current_flat.get(key) for key in SNAPSHOT_SETTINGS}


def fixed_names(rules: Iterable[Rule]) -> list[str]:
    """The fixed index names (aliases or plain indices) the rules write to; names built from column values
    are left out: their indices are made by the first row that needs one, during the copy."""
    names = []
    for rule in rules:
        kind, name = index_target(rule)
        if kind == "index" and name not in names:
            names.append(name)
    return names


class BulkLoad:
    """Applies and puts back the bulk-load settings of the indices a snapshot fills."""

    def __init__(self, sink: SearchAdmin) -> None:
        self.sink = sink

    def begin(self, rules: Iterable[Rule], saved: Mapping[str, Mapping[str, Any]],
              save: Callable[[dict[str, dict[str, Any]]], None]) -> dict[str, dict[str, Any]]:
        """Turn bulk-load settings on for each empty index of `rules` not already in `saved` (index -> settings
        to put back, from the checkpoint); returns the new map, saved through `save` before any change."""
        loading = {index: dict(values) for index, values in saved.items()}
        for name in fixed_names(rules):
            index = None
            try:
                index = alias_names.find(self.sink, name).write_index
                if index is None or index in loading:
                    continue  # missing (the first write creates it) or already loading (a resumed snapshot)
                status, answer = self.sink.admin("GET", f"/{index}/_count")
                if status != 200 or not isinstance(answer, dict) or answer.get("count") != 0:
                    continue  # in use: its searches must keep seeing new documents
                _, settings = self.sink.admin("GET", f"/{index}/_settings?flat_settings=true")
                answer_for = next(iter(settings.values())) if isinstance(settings, dict) and settings else {}
                current: Mapping[str, Any] = answer_for.get("settings", {}) if isinstance(answer_for, dict) else {}
                loading[index] = restore_settings(current)
                save(loading)  # first: a crash after the change below still knows what to put back
                self.sink.admin("PUT", f"/{index}/_settings", dict(SNAPSHOT_SETTINGS))
            except SinkAccessError as exc:
                # A role that may write documents but not read or change index settings (the documented
                # minimal roles): the copy goes on with the index as it is, as before bulk-load settings.
                log.warning("index %s: cannot set bulk-load settings for the snapshot (%s); copying with the "
                            "index's own settings", index or name, exc)
                if index is not None and index in loading and index not in saved:
                    del loading[index]
                    save(loading)
                continue
            log.info("index %s: bulk-load settings for the snapshot (%s); put back when it is done", index,
                     ", ".join(f"{k} {v}" for k, v in SNAPSHOT_SETTINGS.items()),
                     extra={"event": "bulk_load_settings", "index": index})
        return loading

    def end(self, loading: Mapping[str, Mapping[str, Any]]) -> None:
        """Put back what `begin` changed (before the checkpoint says the snapshot is done)."""
        for index, values in loading.items():
            status, _ = self.sink.admin("PUT", f"/{index}/_settings", dict(values))
            if status == 404:
                continue  # deleted meanwhile (by hand, or a rebuild's cleanup): nothing to put back
            log.info("index %s: settings put back after the snapshot (%s)", index,
                     ", ".join(f"{k} {'default' if v is None else v}" for k, v in values.items()),
                     extra={"event": "bulk_load_restored", "index": index})

