"""Every fixed index name behind an alias (cdc/es/aliases.py): names, placements, alias actions, creation."""

from typing import Any

from cdc.errors import SinkAccessError, SinkError
from cdc.es.aliases import (Placement, create, find, next_version, placement_from, swap_actions, version_of,
                            versioned_name, with_alias)
from cdc.es.statuses import http_error
from cdc.es.indices import IndexPlan, create_missing, plan_aliases, plan_start
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules, resolve_rules
from cdc.rules.values import ValueOptions

from .fakes import AdminBase


def test_names_and_versions():
    assert versioned_name("shop-orders", 1) == "shop-orders_v1"
    assert version_of("shop-orders", "shop-orders_v12") == 12
    for other in ("shop-orders", "shop-orders_v", "shop-orders_v0", "shop-orders_v1x", "shop-orders-v1",
                  "shop_v1", "xshop-orders_v1"):
        assert version_of("shop-orders", other) is None, other
    assert version_of("a.b", "axb_v1") is None  # the alias is text, not a pattern
    assert next_version("o", []) == 1
    assert next_version("o", ["o_v1", "o_v3", "o", "o_v2x", "other_v9"]) == 4


def test_placement_from_answers():
    assert placement_from("o", None, False) == Placement("o", "missing")
    assert placement_from("o", None, True) == Placement("o", "index", ("o",), "o")
    one: dict[str, dict] = {"o_v1": {"aliases": {"o": {}}}}
    assert placement_from("o", one, True) == Placement("o", "alias", ("o_v1",), "o_v1")
    two = {"o_v2": {"aliases": {"o": {"is_write_index": True}}}, "o_v1": {"aliases": {"o": {}}}}
    assert placement_from("o", two, True) == Placement("o", "alias", ("o_v1", "o_v2"), "o_v2")
    # Two indices and no write index: writes through it would be refused, so none is named.
    assert placement_from("o", {"a": {"aliases": {"o": {}}}, "b": {"aliases": {"o": {}}}}, True).write_index is None


def test_swap_actions_move_the_alias_in_one_request():
    alias = Placement("o", "alias", ("o_v1",), "o_v1")
    assert swap_actions("o", alias, "o_v2") == [
        {"remove": {"index": "o_v1", "alias": "o"}},
        {"add": {"index": "o_v2", "alias": "o", "is_write_index": True}}]
    # Done again after a crash that came right after the swap: the alias is on the new index already.
    assert swap_actions("o", Placement("o", "alias", ("o_v2",), "o_v2"), "o_v2") == [
        {"add": {"index": "o_v2", "alias": "o", "is_write_index": True}}]
    # A concrete index of the name (from before aliases): deleted in the same request.
    assert swap_actions("o", Placement("o", "index", ("o",), "o"), "o_v1") == [
        {"remove_index": {"index": "o"}},
        {"add": {"index": "o_v1", "alias": "o", "is_write_index": True}}]


def test_with_alias():
    body = {"settings": {"number_of_shards": 1}, "mappings": {}}
    assert with_alias(body, "o") == {**body, "aliases": {"o": {"is_write_index": True}}}
    assert "aliases" not in body


def answered(status: int, error_type: str, reason: str = "") -> SinkError:
    """An error answer, as cdc/es/transport.py translates the client libraries' errors."""
    return http_error("Elasticsearch", status, error_type, {"error": {"type": error_type, "reason": reason}})


class Server(AdminBase):
    """Answers the admin requests of cdc/es/aliases.py and indices.py like Elasticsearch, from a dict of indices."""

    def __init__(self, indices: dict | None = None, fail: dict[str, Exception | str] | None = None):
        self.indices = dict(indices or {})  # name -> {"aliases": {...}, "mappings": {...}}
        self.fail = fail or {}
        self.calls: list[tuple[str, str]] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.calls.append((method, path))
        if path in self.fail:
            failure = self.fail[path]
            raise failure if isinstance(failure, Exception) else SinkError(failure)
        if method == "GET" and path.startswith("/_alias/"):
            name = path.split("/")[2]
            found = {i: {"aliases": {name: a["aliases"][name]}} for i, a in self.indices.items()
                     if name in a["aliases"]}
            return (200, found) if found else (404, {"error": f"alias [{name}] missing"})
        name = path.split("/")[1].split("?")[0]
        if method == "GET" and name.endswith("_v*"):
            prefix = name[:-1]
            return 200, {i: {"aliases": a["aliases"]} for i, a in self.indices.items() if i.startswith(prefix)}
        if method == "GET":
            for index, info in self.indices.items():
                if name == index or name in info["aliases"]:
                    if "_mapping" in path:
                        return 200, {index: {"mappings": info["mappings"]}}
                    return 200, {index: {"settings": {}}}
            return 404, {}
        if method == "PUT" and "/" not in path[1:]:
            if name in self.indices:
                raise answered(400, "resource_already_exists_exception", f"index [{name}] already exists")
            self.indices[name] = {"aliases": dict((body or {}).get("aliases", {})),
                                  "mappings": (body or {}).get("mappings", {})}
        return 200, {"acknowledged": True}


def test_find_and_create():
    server = Server({"plain": {"aliases": {}, "mappings": {}}, "o_v1": {"aliases": {}, "mappings": {}}})
    assert find(server, "plain").kind == "index"
    assert find(server, "none").kind == "missing"
    # o_v1 exists without the alias (a rebuild abandoned it): the next version is made.
    assert create(server, "o", {"mappings": {"properties": {"a": {"type": "long"}}}}) == "o_v2"
    assert server.indices["o_v2"] == {"aliases": {"o": {"is_write_index": True}},
                                      "mappings": {"properties": {"a": {"type": "long"}}}}
    assert find(server, "o") == Placement("o", "alias", ("o_v2",), "o_v2")
    raced = Server(fail={"/n_v1": answered(400, "invalid_alias_name_exception", "an index exists")})
    assert create(raced, "n", {}) is None  # a write made a concrete index of the name meanwhile


def rules(tmp_path, text):
    path = tmp_path / "r.yml"
    path.write_text(text)
    table = TableInfo("shop", "t", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("u", "bigint", "bigint unsigned"),
                                    ColumnInfo("at", "date", "date")), ("id",), frozenset())
    other = TableInfo("shop", "v", (ColumnInfo("id", "int", "int(11)"),), ("id",), frozenset())
    result = resolve_rules(load_rules(path), Catalog(("shop",), {("shop", "t"): table, ("shop", "v"): other}))
    assert not result.problems, result.problems
    return result.rules.rules


def test_every_fixed_name_gets_a_plan(tmp_path):
    loaded = rules(tmp_path, "rules:\n"
                   "  - {schema: shop, table: t, index: created, also: true, create_index: true}\n"
                   "  - {schema: shop, table: t, index: fields, also: true}\n"
                   "  - {schema: shop, table: v, index: plain, also: true}\n"
                   "  - {schema: shop, table: v, index: 'monthly-{id}', also: true}\n")
    plans = plan_start(loaded, ValueOptions(), aliases=True)
    assert [(p.kind, p.name) for p in plans] == [("index", "created"), ("fields", "fields"), ("alias", "plain")]
    assert plan_start(loaded, ValueOptions()) == plans[:2]  # without aliases as before
    assert plan_aliases(loaded, plans[:1]) == [IndexPlan("alias", "fields", {}, (loaded[1].source,)),
                                               plans[2]]


def test_create_missing_with_aliases(tmp_path):
    plans = [IndexPlan("index", "made", {"settings": {}, "mappings": {"properties": {"a": {"type": "long"}}}}, ("r",)),
             IndexPlan("alias", "plain", {}, ("r",)),
             IndexPlan("alias", "old", {}, ("r",)),
             IndexPlan("fields", "unsigned", {"mappings": {"properties": {"u": {"type": "unsigned_long"}}}}, ("r",))]
    server = Server({"old": {"aliases": {}, "mappings": {}}})
    states = {s.plan.name: s for s in create_missing(plans, server, aliases=True)}
    assert states["made"].state == "created" and states["made"].created == "made_v1"
    assert server.indices["made_v1"]["mappings"] == {"properties": {"a": {"type": "long"}}}
    assert states["plain"].created == "plain_v1" and find(server, "plain").write_index == "plain_v1"
    assert states["unsigned"].created == "unsigned_v1"
    assert server.indices["unsigned_v1"]["mappings"] == {"properties": {"u": {"type": "unsigned_long"}}}
    # A concrete index from before aliases is left as it is, and the plan says how to move it.
    assert states["old"].state == "exists" and "old_v1" not in server.indices
    shown = states["old"].to_json()
    assert shown["placement"] == {"name": "old", "is": "index"}
    assert "cdc rebuild --index old" in shown["move_behind_alias"]
    assert states["plain"].to_json()["placement"] == {"name": "plain", "is": "alias", "indices": ["plain_v1"],
                                                      "write_index": "plain_v1"}


def test_a_role_without_manage_gets_plain_indices(tmp_path):
    """create_index but no `manage` (a role from before aliases): the index is made as before, not refused."""
    denied = SinkAccessError("Elasticsearch denied access (403): action [indices:admin/aliases] is unauthorized")
    plans = [IndexPlan("index", "made", {"settings": {}, "mappings": {}}, ("r",)),
             IndexPlan("alias", "plain", {}, ("r",))]
    server = Server(fail={"/made_v1": denied, "/plain_v1": denied})
    states = {s.plan.name: s for s in create_missing(plans, server, aliases=True)}
    assert states["made"].state == "created" and states["made"].created is None and "made" in server.indices
    # Nothing to make but the alias: left to the first write (ensure_aliases warns).
    assert states["plain"].state == "failed" and "plain" not in server.indices
