"""`cdc rebuild`'s pure parts: the state machine and its file (cdc/copy/lifecycle.py), the daemon's dual writes
(cdc/stream/dualwrite.py) and what a command line chooses (cdc/app/rebuild.py)."""

from __future__ import annotations

import os

import pytest

from cdc.app.rebuild import chosen_aliases
from cdc.copy.lifecycle import (BULK_SETTINGS, Previous, Rebuild, RebuildFile, RebuildState, body_hash, bulk_body,
                                dual_writes)
from cdc.errors import CheckpointError, ConfigError
from cdc.model import Action, ActionType, BinlogPosition, BulkResult, ItemResult, Outcome
from cdc.rules import Rule, RuleSet
from cdc.stream.dualwrite import DualWriteSink, FileTargets

NOW = 1_000.0


def entry(phase="create", alias="o", index="o_v2", concrete=False):
    return Rebuild(alias, index, phase, ("o",) if concrete else ("o_v1",), concrete, ("shop.orders",), "h",
                   {"index.refresh_interval": None, "index.number_of_replicas": "1"}, NOW)


def test_phases_in_order_and_dual_writes_from_copy_on():
    state = RebuildState().put(entry())
    assert state.dual_writes() == {}  # the index may not exist yet: a write would create it with dynamic mappings
    for phase in ("copy", "verify", "swap"):
        state = state.advance("o", phase)
        rebuild = state.get("o")
        assert rebuild is not None and rebuild.phase == phase and state.dual_writes() == {"o": "o_v2"}
    with pytest.raises(AssertionError):
        state.advance("o", "copy")  # never backwards


def test_finish_keeps_what_was_replaced_and_abandon_leaves_the_alias():
    state = RebuildState().put(entry("swap")).put(entry("copy", alias="p", index="p_v4"))
    done = state.finish("o", NOW, keep=60)
    assert [r.alias for r in done.rebuilds] == ["p"]
    assert done.previous == (Previous("o_v1", "o", "replaced", NOW + 60),)
    # A concrete index of the name was deleted by the swap itself: nothing to keep.
    assert RebuildState().put(entry("swap", concrete=True)).finish("o", NOW, 60).previous == ()
    given_up = done.abandon("p", NOW + 5)
    assert given_up.rebuilds == () and given_up.dual_writes() == {}
    assert given_up.previous[-1] == Previous("p_v4", "p", "abandoned", NOW + 5)
    assert [p.index for p in given_up.due(NOW + 5)] == ["p_v4"]
    assert given_up.forget("p_v4").previous == (Previous("o_v1", "o", "replaced", NOW + 60),)


def test_state_round_trips_through_its_file(tmp_path):
    file = RebuildFile(tmp_path / "cp.json.rebuild.json")
    assert file.load() == RebuildState()
    state = RebuildState().put(entry("verify")).finish("o", NOW, 10).put(entry("copy", alias="q", index="q_v1"))
    file.save(state)
    assert file.load() == state
    file.save(RebuildState())
    assert not file.path.exists()  # nothing under way: no file for the daemon to look at
    file.path.write_text('{"rebuilds": [{"alias": "o", "phase": "sideways"}]}')
    with pytest.raises(CheckpointError, match="not a rebuild state cdc wrote"):
        file.load()


def test_one_rebuild_at_a_time(tmp_path):
    first, second = RebuildFile(tmp_path / "r.json"), RebuildFile(tmp_path / "r.json")
    first.lock()
    with pytest.raises(CheckpointError, match="another `cdc rebuild`"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_bulk_body_and_what_is_put_back():
    body = {"settings": {"number_of_shards": 2, "index": {"number_of_replicas": 2}}, "mappings": {"a": 1}}
    create, restore = bulk_body(body, {"index.refresh_interval": "5s", "index.number_of_replicas": "1"})
    assert create["settings"] == {"index.number_of_shards": "2", **BULK_SETTINGS}
    assert create["mappings"] == {"a": 1}
    # The rules' replicas win over the old index's; its tuned refresh interval is kept.
    assert restore == {"index.refresh_interval": "5s", "index.number_of_replicas": "2"}
    assert bulk_body({}, {})[1] == {"index.refresh_interval": None, "index.number_of_replicas": None}
    assert body_hash(body, ("b", "a")) == body_hash(body, ("a", "b")) != body_hash({}, ("a", "b"))


# ------------------------------------------------------------------ the daemon's side
def action(doc_id: str, index: str = "o") -> Action:
    return Action(ActionType.INDEX, index, doc_id, 7, {"id": doc_id}, schema="shop", table="orders",
                  position=BinlogPosition("b.000001", 4))


class Sink:
    """Answers each item by (index, id) from `outcomes` (default OK), and records the requests."""

    def __init__(self, outcomes=None):
        self.outcomes = outcomes or {}
        self.requests: list[list[tuple[str, str]]] = []

    def write(self, actions, refresh=False):
        self.requests.append([(a.index, a.doc_id) for a in actions])
        return BulkResult(tuple(ItemResult(a, self.outcomes.get((a.index, a.doc_id), Outcome.OK), 200)
                                for a in actions))

    def gc_deletes(self, index):
        return 60.0


def test_dual_writes_go_in_the_same_request_and_answer_for_the_action():
    sink = Sink({("o_v2", "2"): Outcome.RETRY, ("o_v2", "3"): Outcome.REJECTED, ("o", "4"): Outcome.STALE})
    targets = {"o": "o_v2"}
    dual = DualWriteSink(sink, lambda: targets)
    result = dual.write([action("1"), action("2"), action("x", "other"), action("3"), action("4")])
    assert sink.requests == [[("o", "1"), ("o", "2"), ("other", "x"), ("o", "3"), ("o", "4"),
                              ("o_v2", "1"), ("o_v2", "2"), ("o_v2", "3"), ("o_v2", "4")]]
    assert [(i.action.doc_id, i.outcome) for i in result.items] == [
        ("1", Outcome.OK),
        ("2", Outcome.RETRY),  # sent again with its copy: the checkpoint never passes a change the new index lacks
        ("x", Outcome.OK), ("3", Outcome.OK),  # a rejected copy is the rebuild's failure (verify), not the daemon's
        ("4", Outcome.STALE)]
    reason = result.items[1].reason
    assert reason is not None and reason.startswith("in o_v2 (rebuild)")
    targets.clear()
    dual.write([action("5")])
    assert sink.requests[-1] == [("o", "5")]
    assert dual.gc_deletes("o") == 60.0  # the rest is the destination's


def test_file_targets_follow_the_state_file(tmp_path):
    file = RebuildFile(tmp_path / "cp.json.rebuild.json")
    targets = FileTargets(file.path, dual_writes)
    assert targets() == {}
    file.save(RebuildState().put(entry("create")))
    assert targets() == {}
    file.save(RebuildState().put(entry("copy")))
    assert targets() == {"o": "o_v2"}
    file.save(RebuildState().put(entry("copy")).finish("o", NOW, 10))
    assert targets() == {}
    file.save(RebuildState().put(entry("verify")))
    os.utime(file.path, ns=(0, 0))  # same size, any time: a new inode is what a save makes
    assert targets() == {"o": "o_v2"}
    file.path.unlink()
    assert targets() == {}


def test_what_the_command_line_chooses():
    rules = RuleSet([Rule("shop", "orders", "shop-orders", ("id",), "r[0]"),
                     Rule("shop", "lines", "Shop-Lines", ("id",), "r[1]"),
                     Rule("shop", "events", "events-{at:%Y}", ("id",), "r[2]")])
    assert chosen_aliases(rules, ["shop-orders"], [], False) == ["shop-orders"]
    assert chosen_aliases(rules, [], ["shop.lines"], False) == ["shop-lines"]
    assert chosen_aliases(rules, ["shop-lines"], [], True) == ["shop-lines", "shop-orders"]
    with pytest.raises(ConfigError, match="--index events-: no rule writes to this index"):
        chosen_aliases(rules, ["events-"], [], False)
    with pytest.raises(ConfigError, match="comes from columns"):
        chosen_aliases(rules, [], ["shop.events"], False)
    with pytest.raises(ConfigError, match="name what to rebuild"):
        chosen_aliases(rules, [], [], False)
