"""cdc/copy/verify.py: the pure comparison, and the Verifier's confirm-then-report logic over fakes."""

from __future__ import annotations

import threading
from typing import Callable, Iterator, Sequence

import pytest

from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, StoredDoc
from cdc.rules import Rule, RuleSet, document_id, document_version
from cdc.copy.snapshot import TablePlan, TableReader
from cdc.copy.verify import (
    Difference,
    FieldDiff,
    Policy,
    TableResult,
    Verifier,
    VerifyReport,
    compare_doc,
    key_from_id,
    orphan_verdict,
    policy_for,
    row_verdict,
    same,
    split_document_id,
)

from .fakes import AdminBase

P = BinlogPosition("binlog.000002", 1000)
V = document_version(P)
INDEX = Policy("all", True, None, None)


def _rule(**kw) -> Rule:
    return Rule("shop", kw.pop("table", "t"), kw.pop("index", "shop-t"), kw.pop("id_columns", ("id",)), **kw)


def _action(doc, doc_id="1", index="shop-t") -> Action:
    return Action(ActionType.INDEX, index, doc_id, V, doc=doc)


# ---------------------------------------------------------------------- comparing
def test_same_is_json_equality():
    assert same(1, 1.0) and same({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert not same(True, 1) and not same(0, False) and not same("1", 1) and not same([1], [1, 2])
    assert not same({"a": 1}, {"a": 1, "b": 2}) and not same(None, "")


def test_compare_doc_field_by_field():
    diffs = compare_doc({"id": 1, "v": 2, "tags": ("a", "b"), "gone": 0}, {"id": 1, "v": 3, "tags": ["a", "b"],
                                                                           "extra": "x"})
    assert diffs == (FieldDiff("extra", None, "x", in_row=False), FieldDiff("gone", 0, None, in_doc=False),
                     FieldDiff("v", 2, 3))
    assert diffs[0].to_json() == {"field": "extra", "expected": "<absent>", "actual": "x"}
    assert diffs[2].text() == "v: row 2, document 3"
    assert compare_doc({"id": 1}, {"id": 1}) == ()


def test_null_and_absent_fields_are_the_same_to_elasticsearch_and_to_verify():
    """Issue 27: after ALTER TABLE ... ADD COLUMN, documents written before it lack the field and
    their rows read NULL; a dropped column's field may be stored as null."""
    assert compare_doc({"id": 1, "nickname": None}, {"id": 1}) == ()
    assert compare_doc({"id": 1}, {"id": 1, "dropped": None}) == ()
    assert compare_doc({"id": 1, "nickname": None}, {"id": 1, "nickname": "x"}) == (
        FieldDiff("nickname", None, "x"),)
    assert compare_doc({"id": 1, "nickname": "x"}, {"id": 1}) == (FieldDiff("nickname", "x", None, in_doc=False),)
    # nested values are compared as stored: cdc writes a JSON column's nulls as they are
    assert compare_doc({"j": {"a": None}}, {"j": {}}) == (FieldDiff("j", {"a": None}, {}),)


def test_compare_doc_only_expected_fields_for_partial_documents():
    assert compare_doc({"v": 1}, {"v": 1, "other_rule": 5}, only_expected=True) == ()
    assert compare_doc({"v": 1}, {"other_rule": 5}, only_expected=True) == (FieldDiff("v", 1, None, in_doc=False),)


def test_row_verdict():
    doc = StoredDoc("shop-t", "1", V - 5, {"id": 1, "v": 2})
    assert row_verdict(_action({"id": 1, "v": 2}), doc, V, INDEX) == ("ok", ())
    assert row_verdict(_action({"id": 1, "v": 2}), None, V, INDEX) == ("missing", ())
    assert row_verdict(_action({"id": 1, "v": 9}), doc, V, INDEX) == ("differ", (FieldDiff("v", 9, 2),))
    newer = StoredDoc("shop-t", "1", V + 1, {"id": 1, "v": 2})
    assert row_verdict(_action({"id": 1, "v": 9}), newer, V, INDEX) == ("newer", ())
    # mode: update versions are Elasticsearch's own counters: no "newer", only the fields written
    update = Policy("written", False, "x", None)
    assert row_verdict(_action({"v": 9}), newer, V, update)[0] == "differ"
    assert row_verdict(_action({"v": 2}), newer, V, update) == ("ok", ())
    # an ingest pipeline rewrites documents: presence only
    assert row_verdict(_action({"id": 1, "v": 9}), doc, V, Policy("none", True, None, None)) == ("ok", ())


def test_orphan_verdict():
    doc = StoredDoc("shop-t", "7", V - 1, {})
    assert orphan_verdict(doc, {("shop-t", "7")}, V, INDEX) == "ok"
    assert orphan_verdict(doc, {("shop-t-2024", "7")}, V, INDEX) == "orphan"  # its row lives elsewhere now
    assert orphan_verdict(StoredDoc("shop-t", "7", V + 1, {}), set(), V, INDEX) == "newer"
    soft = Policy("all", True, None, "deleted")
    assert orphan_verdict(StoredDoc("shop-t", "7", 1, {"deleted": True}), set(), V, soft) == "soft_deleted"
    assert orphan_verdict(StoredDoc("shop-t", "7", 1, {"deleted": False}), set(), V, soft) == "orphan"


@pytest.mark.parametrize("parts", [("a", "b"), ("a:b", "c"), ("a", "b:c"), ("a\\", ":"), ("", ""), ("x\\:y", "z")])
def test_split_document_id_inverts_document_id(parts):
    row = {"k1": parts[0], "k2": parts[1]}
    assert split_document_id(document_id(row, ["k1", "k2"]), 2) == parts
    assert split_document_id(document_id(row, ["k1", "k2"], "|"), 2, "|") == parts


def test_split_document_id_refuses_ids_no_row_can_make():
    assert split_document_id("a:b:c", 2) is None and split_document_id("abc", 2) is None
    assert split_document_id("a:b\\", 2) is None
    assert split_document_id("a:b:c", 1) == ("a:b:c",)


def _plan(rule: Rule, *columns: Column) -> TablePlan:
    assert rule.id_columns is not None  # the tests' rules name their id columns
    return TablePlan(rule, columns, tuple(c.name for c in columns), tuple(rule.id_columns), True, 0)


def test_key_from_id_reads_binary_parts_as_hex():
    plan = _plan(_rule(id_columns=("a", "b")), Column("a", ColumnKind.BINARY), Column("b", ColumnKind.INTEGER))
    assert key_from_id("00ff:7", plan) == (b"\x00\xff", "7")
    assert key_from_id("zz:7", plan) is None and key_from_id("00ff", plan) is None


def _orphans(policy: Policy) -> str:
    """Why orphans are not looked for: the tests that call this expect a reason."""
    assert policy.orphans is not None
    return policy.orphans


def test_policy_says_what_is_not_verified():
    plain = _rule()
    assert policy_for(plain, [plain], key_kinds=[ColumnKind.INTEGER]) == Policy("all", True, None, None)
    ignore = _rule(on_delete="ignore")
    assert "on_delete: ignore" in _orphans(policy_for(ignore, [ignore]))
    soft = _rule(on_delete="soft", soft_delete_field="gone")
    assert policy_for(soft, [soft]) == Policy("all", True, None, "gone")
    update = _rule(mode="update")
    p = policy_for(update, [update])
    assert p.fields == "written" and not p.versioned and "mode: update" in _orphans(p) and len(p.notes) == 2
    piped = _rule(pipeline="enrich")
    assert policy_for(piped, [piped]).fields == "none" and "pipeline" in policy_for(piped, [piped]).notes[0]
    templated = _rule(id_columns=None, id_template="{table}-{id}")
    assert "template" in _orphans(policy_for(templated, [templated]))
    assert "cannot be mapped back" in _orphans(policy_for(plain, [plain], key_kinds=[ColumnKind.DATETIME]))
    assert "--sample" in _orphans(policy_for(plain, [plain], sample=True))
    # another table into the same index (or a pattern covering it): its documents are not our orphans
    other = _rule(table="u")
    assert "shared with shop.u" in _orphans(policy_for(plain, [plain, other]))
    monthly = _rule(table="u", index="shop-{created:%Y}")
    assert "shared" in _orphans(policy_for(_rule(index="shop-2024"), [monthly]))
    assert policy_for(_rule(index="orders"), [monthly]).orphans is None


def test_report_counts_examples_and_exit():
    t = TableResult("shop.t", "shop-t", rows=20)
    for i in range(12):
        t.add(Difference("missing" if i < 5 else "orphan", "shop-t", str(i), (i,)))
    t.add(Difference("differ", "shop-t", "x", ("x",), (FieldDiff("v", 1, 2),)))
    assert (t.missing, t.differing, t.orphans, len(t.examples)) == (5, 1, 7, 10)
    report = VerifyReport([t])
    assert not report.ok and report.summary()["missing"] == 5
    assert "... and 3 more" in report.text() and "summary: 1 table(s), 20 rows: 13 difference(s)" in report.text()
    assert t.to_json()["examples"][0] == {"kind": "missing", "index": "shop-t", "id": "0", "key": [0]}
    assert VerifyReport([TableResult("shop.t", "shop-t", rows=3)]).ok
    clean = TableResult("shop.t", "shop-t", not_verified=["orphans NOT VERIFIED"])
    assert VerifyReport([clean]).ok and "not verified: orphans NOT VERIFIED" in VerifyReport([clean]).text()
    repaired = TableResult("shop.t", "shop-t", missing=2, repaired=2)
    assert VerifyReport([repaired], repair=True).ok
    assert not VerifyReport([TableResult("shop.t", "shop-t", missing=2, repaired=1, unrepaired=1)], repair=True).ok
    assert not VerifyReport([TableResult("shop.t", "shop-t")], interrupted=True).ok


def test_a_table_that_could_not_be_verified_is_never_identical_nor_ok():
    """Issue 27: a table without a unique NOT NULL key to look rows up by printed
    "0 rows: identical" and exit 0."""
    skipped = TableResult("s.nopk", "nopk", verified=False,
                          not_verified=["the id (a, b) is not a unique NOT NULL key: table NOT VERIFIED"])
    report = VerifyReport([TableResult("s.t", "t", rows=3), skipped])
    assert not report.ok and report.summary()["tables_not_verified"] == 1
    text = report.text()
    assert "s.nopk -> nopk: 0 rows: NOT VERIFIED\n" in text and "identical" not in text.splitlines()[-1]
    assert "summary: 2 table(s), 3 rows: no differences found; 1 table(s) NOT VERIFIED at all" in text
    assert not VerifyReport([skipped], repair=True).ok
    assert report.to_json()["tables"][1]["verified"] is False


# ---------------------------------------------------------------------- the Verifier over fakes
class FakeWorld(AdminBase, TableReader):
    """A table and an index; every read moves the binlog on, and `on_read` can change either in between.

    The TableReader (plan, read_chunk, read_keys) without its __init__, and a SearchAdmin."""

    def __init__(self, rows: dict[int, int], docs: dict[str, tuple[dict, int]]):
        self.rows = rows
        self.docs = docs  # id -> (source, version)
        self.offset = 1000
        self.on_read: Callable[[FakeWorld], None] | None = None
        self.chunk_size = 2
        self.written: list[Action] = []
        self.key_reads = 0

    # TableReader
    def plan(self, rule):
        return _plan(rule, Column("id", ColumnKind.INTEGER), Column("v", ColumnKind.INTEGER))

    def _read(self, keys):
        self.offset += 100
        if self.on_read:
            self.on_read(self)
        return BinlogPosition("binlog.000002", self.offset), [(k, self.rows[k]) for k in sorted(keys) if k in self.rows]

    def read_chunk(self, plan, last_key):
        after = last_key[0] if last_key else 0
        return self._read([k for k in sorted(self.rows) if k > after][:self.chunk_size])

    def read_keys(self, plan, keys):
        self.key_reads += 1
        return self._read([int(k[0]) for k in keys])

    # SearchAdmin
    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        return [StoredDoc(index, doc_id, self.docs[doc_id][1], dict(self.docs[doc_id][0]))
                if doc_id in self.docs else None for index, doc_id, _ in refs]

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        return iter([StoredDoc(index, doc_id, version, {f: source[f] for f in fields if f in source})
                     for doc_id, (source, version) in sorted(self.docs.items())])

    def gc_deletes(self, index: str) -> float | None:
        return 60.0

    # writer
    def write(self, actions):
        for a in actions:
            self.written.append(a)
            if a.type is ActionType.DELETE:
                self.docs.pop(a.doc_id, None)
            else:
                self.docs[a.doc_id] = (dict(a.doc), a.version)


def _verify(world: FakeWorld, repair: bool = False, rule: Rule | None = None) -> VerifyReport:
    rule = rule or _rule()
    verifier = Verifier(world, world, RuleSet([rule]), 0, None, lambda position: True,
                        threading.Event(), writer=world if repair else None, interactive=False)
    return verifier.run([rule])


def _doc(i, v):
    return {"id": i, "v": v}


def test_verifier_reports_what_persists_and_repairs_it():
    old = document_version(BinlogPosition("binlog.000001", 5))
    world = FakeWorld({1: 10, 2: 20, 3: 30, 4: 40}, {"1": (_doc(1, 10), old), "2": (_doc(2, 99), old),
                                                       "4": (_doc(4, 40), old), "9": (_doc(9, 0), old)})
    report = _verify(world)
    [t] = report.tables
    assert (t.rows, t.missing, t.differing, t.orphans, t.docs_scanned) == (4, 1, 1, 1, 4)
    assert {(d.kind, d.doc_id) for d in t.examples} == {("missing", "3"), ("differ", "2"), ("orphan", "9")}
    assert not report.ok and world.written == []

    report = _verify(world, repair=True)
    assert report.ok and report.tables[0].repaired == 3
    assert world.docs["2"][0] == _doc(2, 20) and world.docs["3"][0] == _doc(3, 30) and "9" not in world.docs
    # every repair is versioned with the position of the read that decided it
    assert all(a.versioned and a.version > old for a in world.written)
    assert _verify(world).ok


def test_verifier_does_not_report_changes_that_settle_on_reread():
    old = document_version(BinlogPosition("binlog.000001", 5))
    # Row 2 was just updated and document 5's row just inserted: the daemon has not indexed
    # the one nor have we read the other yet. Both settle before the re-reads.
    world = FakeWorld({1: 10, 2: 21}, {"1": (_doc(1, 10), old), "2": (_doc(2, 20), old), "5": (_doc(5, 5), old)})

    def meanwhile(w):
        if w.key_reads == 1:  # the re-read of row 2: the daemon has indexed its change
            w.docs["2"] = (_doc(2, 21), old + 1)
        if w.key_reads == 3:  # the re-read for document 5 (after the lookup that found no row)
            w.rows[5] = 5
    world.on_read = meanwhile
    report = _verify(world)
    assert report.ok, report.text()
    assert world.key_reads == 3


def test_repair_reads_again_so_a_row_deleted_since_the_rechecks_stays_deleted():
    old = document_version(BinlogPosition("binlog.000001", 5))
    world = FakeWorld({1: 10, 3: 30}, {"1": (_doc(1, 10), old)})

    def meanwhile(w):
        if w.key_reads == 3:  # after both re-checks found row 3 missing, before the repair writes it
            del w.rows[3]
    world.on_read = meanwhile
    report = _verify(world, repair=True)
    # Writing the re-check's document would bring back a row deleted since; with an
    # expired tombstone Elasticsearch could not refuse it.
    assert "3" not in world.docs and [a.doc_id for a in world.written] == []
    assert report.ok, report.text()


def test_verifier_skips_documents_newer_than_the_read():
    world = FakeWorld({1: 10}, {})
    # written by the daemon from a change after any of our reads: not a difference
    world.docs["1"] = (_doc(1, 11), document_version(BinlogPosition("binlog.000003", 4)))
    world.docs["8"] = (_doc(8, 8), document_version(BinlogPosition("binlog.000003", 4)))
    assert _verify(world).ok


def test_cli_verify_options_and_config_errors(tmp_path):
    from click.testing import CliRunner

    from cdc.cli import main

    result = CliRunner().invoke(main, ["verify", "--help"])
    assert result.exit_code == 0
    for option in ("--table", "--sample", "--repair", "--json"):
        assert option in result.output
    bad = tmp_path / "cdc.yml"
    bad.write_text("mysql: {nope: 1}\n")
    assert CliRunner().invoke(main, ["verify", "--config", str(bad)]).exit_code == 2
    assert CliRunner().invoke(main, ["verify", "--config", str(bad), "--sample", "0"]).exit_code == 2  # usage


def test_verifier_soft_delete_orphans_are_marked_deleted_not_removed():
    old = document_version(BinlogPosition("binlog.000001", 5))
    world = FakeWorld({1: 10}, {"1": ({**_doc(1, 10), "gone": False}, old),
                                "2": ({**_doc(2, 20), "gone": True}, old),  # a deleted row, kept on purpose
                                "3": ({**_doc(3, 30), "gone": False}, old)})  # its row is gone: an orphan
    [t] = _verify(world, repair=True, rule=_rule(on_delete="soft", soft_delete_field="gone")).tables
    assert (t.orphans, t.soft_deleted, t.repaired, t.unrepaired) == (1, 1, 1, 0)
    assert world.docs["3"][0] == {**_doc(3, 30), "gone": True} and world.docs["3"][1] > old


def test_verify_keeps_to_the_copy_rate_ceiling_for_rows_read_and_documents_scanned():
    """snapshot.max_rows_per_second paces a verify as it paces a copy (a rebuild's verify runs beside
    the live stream): each chunk of rows read and each chunk of documents scanned is counted."""
    from cdc.copy.snapshot import Pace

    class Recorded(Pace):
        def __init__(self):
            super().__init__(1000.0)
            self.taken: list[int] = []

        def take(self, rows, stop):
            self.taken.append(rows)
            return 0.0

    world = FakeWorld({i: i for i in range(1, 6)}, {str(i): (_doc(i, i), 1) for i in range(1, 6)})
    rule = _rule()
    pace = Recorded()
    verifier = Verifier(world, world, RuleSet([rule]), 0, None, lambda position: True,
                        threading.Event(), interactive=False, pace=pace)
    verifier.run([rule])
    assert pace.taken == [2, 2, 1, 2, 2]  # rows in chunks of 2 (5 rows), then full chunks of scanned documents
