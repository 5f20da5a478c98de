"""Bulk-load settings for a first snapshot into an empty index (cdc/copy/bulkload.py), with a fake admin API."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cdc.copy.bulkload import BulkLoad, fixed_names, restore_settings
from cdc.copy.snapshot import SnapshotState, TableProgress
from cdc.errors import SinkAccessError
from cdc.rules import Rule

from .fakes import AdminBase

BULK = {"index.refresh_interval": "-1"}


class FakeAdmin(AdminBase):
    """Indices by concrete name: {"count": n, "settings": {flat}}; aliases name -> index."""

    def __init__(self, indices: dict, aliases: dict | None = None, refuse_settings: bool = False,
                 refuse_reads: bool = False):
        self.indices, self.aliases, self.refuse, self.refuse_reads = indices, aliases or {}, refuse_settings, refuse_reads
        self.calls: list[tuple] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        name, _, rest = path.lstrip("/").partition("/")
        if self.refuse_reads and method == "GET":
            raise SinkAccessError("403 security_exception: no permissions for [indices:admin/aliases/get]")
        if name == "_alias":
            target = self.aliases.get(rest)
            return (200, {target: {"aliases": {rest: {}}}}) if target else (404, {})
        if name not in self.indices:
            return 404, {"error": {"type": "index_not_found_exception"}}
        index = self.indices[name]
        if method == "GET" and rest == "_count":
            return 200, {"count": index["count"]}
        if method == "GET" and rest.startswith("_settings"):
            return 200, {name: {"settings": dict(index["settings"])}}
        if method == "PUT" and rest == "_settings":
            if self.refuse:
                raise SinkAccessError("403 security_exception: action [indices:admin/settings/update] is unauthorized")
            assert body is not None  # a settings PUT has a body
            for key, value in body.items():
                if value is None:
                    index["settings"].pop(key, None)
                else:
                    index["settings"][key] = value
            return 200, {"acknowledged": True}
        raise AssertionError(path)


def rule(table: str, index: str) -> Rule:
    return Rule("shop", table, index, ("id",), f"r[{table}]")


def test_what_is_put_back_is_the_index_s_own_value_or_the_default():
    # Replicas are not touched: acknowledged documents keep their copies (cdc/copy/bulkload.py).
    assert restore_settings({"index.number_of_replicas": "2", "index.uuid": "x"}) == {"index.refresh_interval": None}
    assert restore_settings({"index.refresh_interval": "30s"}) == {"index.refresh_interval": "30s"}


def test_only_fixed_names_each_once():
    assert fixed_names([rule("a", "shop-a"), rule("b", "shop-a"), rule("c", "events-{at:%Y}")]) == ["shop-a"]


def test_an_empty_index_is_loaded_in_bulk_and_the_values_to_put_back_are_saved_first():
    sink = FakeAdmin({"shop-a_v1": {"count": 0, "settings": {"index.number_of_replicas": "1"}}},
                     {"shop-a": "shop-a_v1"})
    saved: list[dict] = []

    def save(loading: dict) -> None:
        saved.append({k: dict(v) for k, v in loading.items()})
        # Saved before the change: the index still has its own settings when the checkpoint records them.
        assert sink.indices["shop-a_v1"]["settings"] == {"index.number_of_replicas": "1"}

    loading = BulkLoad(sink).begin([rule("a", "shop-a")], {}, save)
    assert loading == saved[-1] == {"shop-a_v1": {"index.refresh_interval": None}}
    assert sink.indices["shop-a_v1"]["settings"] == {**BULK, "index.number_of_replicas": "1"}
    BulkLoad(sink).end(loading)
    assert sink.indices["shop-a_v1"]["settings"] == {"index.number_of_replicas": "1"}


def test_an_index_with_documents_or_already_loading_or_missing_is_left_alone():
    sink = FakeAdmin({"shop-a": {"count": 3, "settings": {"index.number_of_replicas": "1"}},
                      "shop-b_v1": {"count": 7, "settings": dict(BULK)}}, {"shop-b": "shop-b_v1"})
    resumed = {"shop-b_v1": {"index.refresh_interval": "5s"}}
    saves: list[dict] = []
    loading = BulkLoad(sink).begin([rule("a", "shop-a"), rule("b", "shop-b"), rule("c", "shop-c")], resumed,
                                   saves.append)
    assert loading == resumed and not saves
    assert not [c for c in sink.calls if c[0] == "PUT"]
    BulkLoad(sink).end(loading)
    assert sink.indices["shop-b_v1"]["settings"] == {"index.refresh_interval": "5s"}


def test_a_role_that_may_not_change_settings_copies_with_the_index_as_it_is(caplog):
    sink = FakeAdmin({"shop-a": {"count": 0, "settings": {}}}, refuse_settings=True)
    saves: list[dict] = []
    with caplog.at_level(logging.WARNING):
        loading = BulkLoad(sink).begin([rule("a", "shop-a")], {}, saves.append)
    assert loading == {} and saves[-1] == {}
    assert "cannot set bulk-load settings" in caplog.text


def test_a_role_that_may_only_write_documents_copies_as_before(caplog):
    """The documented minimal roles write documents but may not read aliases or settings: no stop."""
    sink = FakeAdmin({"shop-a": {"count": 0, "settings": {}}}, refuse_reads=True)
    saves: list[dict] = []
    with caplog.at_level(logging.WARNING):
        assert BulkLoad(sink).begin([rule("a", "shop-a")], {}, saves.append) == {}
    assert not saves and "cannot set bulk-load settings" in caplog.text
    assert not [c for c in sink.calls if c[0] == "PUT"]


def test_an_index_deleted_meanwhile_has_nothing_to_put_back():
    BulkLoad(FakeAdmin({})).end({"gone_v1": {"index.refresh_interval": None, "index.number_of_replicas": "1"}})


@pytest.mark.parametrize("bulk_load", [{}, {"shop-a_v1": {"index.refresh_interval": None,
                                                          "index.number_of_replicas": "1"}}])
def test_the_checkpoint_s_snapshot_state_carries_them_beside_the_tables(bulk_load):
    state = SnapshotState({"shop.a": TableProgress([5], 5, False)}, bulk_load)
    data = state.to_json()
    assert ("_bulk_load" in data) == bool(bulk_load)
    again = SnapshotState.from_json(data)
    assert again.bulk_load == bulk_load and again.pending == ["shop.a"]
