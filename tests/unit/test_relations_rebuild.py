"""The stream's rebuild stage (issue 15): requests in, documents read and written, versions from the reads."""

from __future__ import annotations

import pytest
from .test_relations import make_db, make_rule, query_of

from cdc.config import RetryConfig
from cdc.errors import CdcError, SchemaChanged, SourceError
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules import ActionBuilder, RuleSet, document_version
from cdc.stream.rebuild import Rebuild, RebuildRequest


@pytest.fixture
def rule(tmp_path):
    return make_rule(tmp_path)


@pytest.fixture
def db():
    return make_db()


class Reads:
    """Consistent reads over SQLite, at the positions given (one per read)."""

    def __init__(self, conn, positions):
        self.conn, self.positions, self.calls = conn, list(positions), 0

    def consistent_queries(self, work):
        self.calls += 1
        position = self.positions.pop(0) if len(self.positions) > 1 else self.positions[0]
        if position is None:
            raise SourceError("connection lost")
        if position == "altered":
            raise SchemaChanged("Unknown column 'qty' in 'field list'")
        return position, work(query_of(self.conn))

    def close(self):
        pass


def at(pos):
    return BinlogPosition("binlog.000002", pos)


def change(table, before, after, pos=500):
    columns = tuple(Column(c, ColumnKind.INTEGER) for c in (after or before))
    op = Op.UPDATE if before and after else Op.INSERT if after else Op.DELETE
    return RowChange(op, "shop", table, columns, before, after, at(pos), 0)


def stage(rule, reads, **kw):
    return Rebuild([rule], lambda: reads, RetryConfig(initial_backoff=0.01, max_backoff=0.01), **kw)


def requests(rebuild, *changes):
    builder = rebuild.builder(ActionBuilder(RuleSet([])))
    return [a for c in changes for a in builder.actions(c)]


def test_requests_share_one_document_per_rule_and_are_kept_per_need(rule, db):
    rebuild = stage(rule, Reads(db, [at(900)]))
    found = requests(rebuild, change("order_lines", {"id": 1, "order_id": 100}, {"id": 1, "order_id": 101}),
                     change("customers", {"id": 1, "name": "A"}, {"id": 1, "name": "B"}))
    assert all(isinstance(a, RebuildRequest) for a in found) and len({a.key for a in found}) == 2
    assert {(a.index, a.doc_id) for a in found} == {("\x00rebuild", "orders")}  # InFlight orders them


def test_documents_carry_the_version_of_a_read_past_the_change(rule, db):
    reads = Reads(db, [at(400), at(450), at(650)])  # the first two reads do not see the change at 500 yet
    rebuild = stage(rule, reads)
    written: list[Action] = []
    plain = Action(ActionType.INDEX, "other", "1", 5, doc={"a": 1})
    rest = rebuild.deliver([plain, *requests(rebuild, change("order_lines", {"id": 1000, "order_id": 100},
                                                             {"id": 1000, "order_id": 101}))],
                           written.extend, lambda refused: pytest.fail(str(refused)))
    assert rest == [plain]
    assert sorted(a.doc_id for a in written) == ["100", "101"]
    assert {a.version for a in written} == {document_version(at(650))}
    assert rebuild.reads == {"resolve": 0, "documents": 3, "retried": 2}  # every read counts


def test_an_older_read_is_never_used_and_a_stuck_server_stops(rule, db):
    rebuild = stage(rule, Reads(db, [at(100)]), visible_within=0.2)
    with pytest.raises(CdcError, match="before the change at binlog.000002:500"):
        rebuild.deliver(requests(rebuild, change("orders", None, {"id": 100})), lambda a: None, lambda r: None)


def test_lookup_change_reaches_its_roots_in_chunks(rule, db, caplog):
    db.executemany("INSERT INTO shop.orders VALUES (?, 1, NULL, '1.00')", [(200 + i,) for i in range(5)])
    reads = Reads(db, [None, at(900)])  # a lost connection is retried
    rebuild = stage(rule, reads, chunk=2)
    written: list[Action] = []
    caplog.set_level("INFO", "cdc.rebuild")
    rebuild.deliver(requests(rebuild, change("customers", {"id": 1, "name": "A"}, {"id": 1, "name": "B"})),
                    written.extend, lambda r: None)
    assert sorted(a.doc_id for a in written) == ["100", "200", "201", "202", "203", "204"]
    # resolve: 4 pages of at most 2 ids (the last empty; the first after the lost connection);
    # one build per page
    assert rebuild.reads == {"resolve": 4, "documents": 3, "retried": 0}
    assert "rebuilt orders documents: 6 roots so far" in caplog.text


def test_refused_roots_go_to_the_refusal_decision(rule, db):
    db.executemany("INSERT INTO shop.order_lines VALUES (?, 101, 10, 1)", [(3000 + i,) for i in range(4)])
    rebuild = stage(rule, Reads(db, [at(900)]))
    refused: list = []
    written: list[Action] = []
    rebuild.deliver(requests(rebuild, change("orders", None, {"id": 101}), change("orders", None, {"id": 100})),
                    written.extend, refused.extend)
    assert [a.doc_id for a in written] == ["100"]
    assert [(r.action.doc_id, r.error_type) for r in refused] == [("101", "cdc_refused")]
    assert "max_children: 3" in refused[0].reason


def test_a_changed_table_stops_with_a_restart_hint(rule, db):
    rebuild = stage(rule, Reads(db, ["altered"]))
    with pytest.raises(CdcError, match="columns changed since start-up .*Unknown column 'qty'.*restart cdc"):
        rebuild.deliver(requests(rebuild, change("orders", None, {"id": 100})), lambda a: None, lambda r: None)
