"""`cdc verify`: prove that each index holds exactly its table's rows, and repair what differs.

Per rule (one table):

1. **Rows.** The table is read in key chunks by the snapshot's `TableReader`
   (one short consistent read per chunk, with its binlog position P). Every
   row goes through the same `ActionBuilder` as the stream, which gives the
   document it should have (index, id, routing, fields); one `mget` per chunk
   fetches the stored ones.
2. **Orphans.** Elasticsearch 8 cannot sort by `_id`, so there is no merge of
   two sorted lists: a scroll lists the index's ids, each id is mapped back to
   key values, and the keys are looked up in the table in batches. A document
   that no row produces (same index, same id) is an orphan. Memory is bounded
   by the batch size, never by the table.
3. **A suspect is not yet a difference.** While the daemon streams, a row
   read at P may have changed again, or its change may not be indexed yet.
   Each suspect is read again in a fresh consistent read at P2; cdc waits
   until the daemon's checkpoint has passed P2 (everything up to P2 is then
   acknowledged by Elasticsearch) and fetches the document again. A document
   whose `_version` is above P2's version was written after the read and is
   never a difference. Only what still differs after `rounds` such re-reads
   is reported.
4. **Repair** reads the differing rows once more and writes their documents
   at once, versioned with that read's position: a newer daemon write wins
   (409, counted as done by BulkWriter), and the write follows the read within
   the snapshot's window (`max_chunk_age`, at most half of gc_deletes), so a
   row deleted meanwhile cannot come back.
   Orphans are deleted with the version of the read that found no row, so a
   re-insert that the daemon indexes after it wins too. Each repair is read
   back; what still differs is reported as not repaired.

What cannot be checked is said in the report (`not_verified`), never passed
over: `on_delete: ignore` keeps documents of deleted rows on purpose (no
orphan check), `mode: update` documents may be built by several rules (only
the fields this rule writes are compared, no orphan check), an ingest
`pipeline` rewrites documents (presence only), an id template cannot be
mapped back to keys (no orphan check), and a table without a unique key to
page by cannot be checked at all.

The comparison (`compare_doc`, `row_verdict`, `orphan_verdict`), id parsing,
policies and the report are pure and come first; `Verifier` does the I/O.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, TypeVar

import orjson

from cdc.errors import CdcError
from cdc.es.indices import index_target
from cdc.model import Action, ActionType, BinlogPosition, ColumnKind, StoredDoc
from cdc.rules import ActionBuilder, Rule, RuleSet, document_version
from cdc.copy.snapshot import (Pace, Progress, TablePlan, TableReader, fresh_window, last_key, row_change,
                               write_while_fresh)
from cdc.rules.relations import Assembler, document_actions, read_documents, root_pk
from cdc.stream.protocols import SearchAdmin

log = logging.getLogger("cdc.verify")

MAX_EXAMPLES = 10  # differences shown per table (all are counted)
MAX_FIELDS = 5  # field differences shown per document

# Key column kinds whose id part maps back to a value the table can be searched by.
# Others (dates with zones, floats, bits, JSON) are rendered in ways SQL would not
# match exactly; guessing there could call a live document an orphan and delete it.
_INVERTIBLE = frozenset({ColumnKind.INTEGER, ColumnKind.STRING, ColumnKind.BINARY, ColumnKind.ENUM,
                         ColumnKind.DECIMAL, ColumnKind.DATE, ColumnKind.YEAR})

T = TypeVar("T")


# ====================================================================== comparing
@dataclass(frozen=True)
class FieldDiff:
    field: str
    expected: Any  # as the row converts (None with in_row False: the row gives no such field)
    actual: Any  # as stored (None with in_doc False: the document has no such field)
    in_row: bool = True
    in_doc: bool = True

    def to_json(self) -> dict:
        out: dict = {"field": self.field}
        out["expected"] = self.expected if self.in_row else "<absent>"
        out["actual"] = self.actual if self.in_doc else "<absent>"
        return out

    def text(self) -> str:
        def show(value: Any, present: bool) -> str:
            return orjson.dumps(value).decode()[:80] if present else "(absent)"

        return f"{self.field}: row {show(self.expected, self.in_row)}, document {show(self.actual, self.in_doc)}"


def same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python says it is), 1 is 1.0 (JSON numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def compare_doc(expected: Mapping[str, Any], actual: Mapping[str, Any],
                only_expected: bool = False) -> tuple[FieldDiff, ...]:
    """Field-by-field differences, sorted by field. `only_expected`: fields the document has
    beyond the expected ones are not differences (mode: update, where other rules add fields).

    A top-level field that is null on one side and absent on the other is no difference:
    Elasticsearch indexes neither (an `exists` query and every search treat them alike), and
    a column added by ALTER TABLE leaves every document written before it without the field
    while its rows read NULL; reporting those would have `--repair` rewrite the whole index.
    """
    # Through JSON, as the sink sends it: tuples become lists, and so on.
    want = orjson.loads(orjson.dumps(expected))
    names = set(want) if only_expected else set(want) | set(actual)
    diffs = []
    for name in sorted(names):
        if name not in want:
            if actual[name] is not None:
                diffs.append(FieldDiff(name, None, actual[name], in_row=False))
        elif name not in actual:
            if want[name] is not None:
                diffs.append(FieldDiff(name, want[name], None, in_doc=False))
        elif not same(want[name], actual[name]):
            diffs.append(FieldDiff(name, want[name], actual[name]))
    return tuple(diffs)


@dataclass(frozen=True)
class Policy:
    """What can be checked for one rule, and why not the rest."""

    fields: Literal["all", "written", "none"]  # compare every field, only those the rule writes, or none
    versioned: bool  # _version is a binlog-position version (mode: index)
    orphans: str | None  # None: orphans are checked; else why not
    soft_field: str | None  # on_delete: soft: documents with this field true are deleted rows, kept on purpose
    notes: tuple[str, ...] = ()


def policy_for(rule: Rule, rules: Sequence[Rule], sample: bool = False, key_kinds: Sequence[ColumnKind] = ()) -> Policy:
    notes: list[str] = []
    orphans: str | None = None
    fields: Literal["all", "written", "none"] = "all"
    if rule.mode == "update":
        fields = "written"
        notes.append("mode: update: only the fields this rule writes are compared (other rules may add fields)")
    if rule.pipeline:
        fields = "none"
        notes.append(f"ingest pipeline {rule.pipeline!r} rewrites documents: fields NOT VERIFIED, only that "
                     "each row has a document")
    pattern = index_target(rule)[1]
    sharing = [r.name for r in rules if r is not rule and _overlap(pattern, index_target(r)[1])]
    if sample:
        orphans = "--sample checks rows only: documents without rows (orphans) NOT VERIFIED"
    elif rule.on_delete == "ignore":
        orphans = "on_delete: ignore keeps the documents of deleted rows on purpose: orphans NOT VERIFIED"
    elif rule.mode == "update":
        orphans = "mode: update: documents may be built by several rules: orphans NOT VERIFIED"
    elif rule.id_template:
        orphans = "the id is a template, which cannot be mapped back to a row: orphans NOT VERIFIED"
    elif any(kind not in _INVERTIBLE for kind in key_kinds):
        orphans = "an id column's type cannot be mapped back from the id exactly: orphans NOT VERIFIED"
    elif sharing:
        orphans = f"index {pattern} is shared with {', '.join(sorted(sharing))}: orphans NOT VERIFIED"
    if orphans:
        notes.append(orphans)
    return Policy(fields, rule.mode == "index", orphans, rule.soft_delete_field if rule.on_delete == "soft" else None,
                  tuple(notes))


def _overlap(a: str, b: str) -> bool:
    """Could two index names or patterns ("orders-*") name the same index?"""
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


Verdict = Literal["ok", "missing", "differ", "newer"]


def row_verdict(expected: Action, stored: StoredDoc | None, read_version: int,
                policy: Policy) -> tuple[Verdict, tuple[FieldDiff, ...]]:
    """One row's expected document against the stored one. `read_version`: the version of the read."""
    if stored is None:
        return "missing", ()
    if policy.versioned and stored.version > read_version:
        return "newer", ()  # the daemon wrote a change made after the read
    if policy.fields == "none":
        return "ok", ()
    diffs = compare_doc(expected.doc or {}, stored.source or {}, only_expected=policy.fields == "written")
    return ("differ", diffs) if diffs else ("ok", ())


OrphanVerdict = Literal["ok", "orphan", "newer", "soft_deleted"]


def orphan_verdict(doc: StoredDoc, produced: set[tuple[str, str]], read_version: int,
                   policy: Policy) -> OrphanVerdict:
    """A stored document against the places that the rows read at `read_version` produce."""
    if (doc.index, doc.doc_id) in produced:
        return "ok"
    if policy.versioned and doc.version > read_version:
        return "newer"  # indexed from a row inserted after the read
    if policy.soft_field and (doc.source or {}).get(policy.soft_field) is True:
        return "soft_deleted"
    return "orphan"


def split_document_id(doc_id: str, parts: int, separator: str = ":") -> tuple[str, ...] | None:
    """The inverse of rules.document_id: the id's parts, or None if it cannot be one of `parts` parts."""
    if parts == 1:
        return (doc_id,)
    out, current, escaped = [], [], False
    for char in doc_id:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        return None
    out.append("".join(current))
    return tuple(out) if len(out) == parts else None


def key_from_id(doc_id: str, plan: TablePlan) -> tuple | None:
    """Key values to look a document's row up by (binary columns are hex in ids), or None if no row can make it."""
    parts = split_document_id(doc_id, len(plan.key), plan.rule.id_separator)
    if parts is None:
        return None
    kinds = {c.name: c.kind for c in plan.columns}
    out: list[Any] = []
    for name, part in zip(plan.key, parts):
        if kinds.get(name) is ColumnKind.BINARY:
            try:
                out.append(bytes.fromhex(part))
            except ValueError:
                return None
        else:
            out.append(part)
    return tuple(out)


# ====================================================================== the report
@dataclass(frozen=True)
class Difference:
    kind: Literal["missing", "differ", "orphan"]
    index: str
    doc_id: str
    key: tuple | None = None
    fields: tuple[FieldDiff, ...] = ()

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "index": self.index, "id": self.doc_id}
        if self.key is not None:
            out["key"] = [_plain(v) for v in self.key]
        if self.fields:
            out["fields"] = [f.to_json() for f in self.fields[:MAX_FIELDS]]
            if len(self.fields) > MAX_FIELDS:
                out["more_fields"] = len(self.fields) - MAX_FIELDS
        return out

    def text(self) -> str:
        head = f"{self.kind:<8} {self.index}/{self.doc_id}"
        if not self.fields:
            return head
        more = f"; and {len(self.fields) - MAX_FIELDS} more field(s)" if len(self.fields) > MAX_FIELDS else ""
        return f"{head}: " + "; ".join(f.text() for f in self.fields[:MAX_FIELDS]) + more


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (int, str, float)) or value is None:
        return value
    return str(value)


@dataclass
class TableResult:
    """The counts of one table; the first MAX_EXAMPLES differences are kept to show."""

    table: str
    index: str
    sample: int | None = None
    rows: int = 0
    docs_found: int = 0  # documents found for the rows read
    docs_scanned: int | None = None  # documents in the index (None: no orphan scan)
    missing: int = 0
    differing: int = 0
    orphans: int = 0
    soft_deleted: int = 0  # on_delete: soft documents of deleted rows (expected, not differences)
    repaired: int = 0
    unrepaired: int = 0
    examples: list[Difference] = field(default_factory=list)
    not_verified: list[str] = field(default_factory=list)
    # False: nothing of the table could be compared (no unique NOT NULL key to look rows up by).
    # Such a table is never "identical", and the report is not ok (issue 27).
    verified: bool = True

    def add(self, difference: Difference) -> None:
        if difference.kind == "missing":
            self.missing += 1
        elif difference.kind == "differ":
            self.differing += 1
        else:
            self.orphans += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(difference)

    @property
    def differences(self) -> int:
        return self.missing + self.differing + self.orphans

    def to_json(self) -> dict:
        return {"table": self.table, "index": self.index, "sample": self.sample, "rows": self.rows,
                "docs_found": self.docs_found, "docs_scanned": self.docs_scanned, "missing": self.missing,
                "differing": self.differing, "orphans": self.orphans, "soft_deleted": self.soft_deleted,
                "repaired": self.repaired, "unrepaired": self.unrepaired,
                "examples": [d.to_json() for d in self.examples], "not_verified": list(self.not_verified),
                "verified": self.verified}

    def text(self) -> str:
        what = f"{self.rows} sampled rows" if self.sample is not None else f"{self.rows} rows"
        docs = f", {self.docs_scanned} documents" if self.docs_scanned is not None else ""
        line = f"{self.table} -> {self.index}: {what}{docs}: "
        if not self.verified:
            line += "NOT VERIFIED"
        elif self.differences:
            line += f"{self.missing} missing, {self.differing} differing, {self.orphans} orphans"
        else:
            line += "identical"
        if self.repaired or self.unrepaired:
            line += f" ({self.repaired} repaired, {self.unrepaired} NOT repaired)"
        lines = [line] + [f"  {d.text()}" for d in self.examples]
        if self.differences > len(self.examples):
            lines.append(f"  ... and {self.differences - len(self.examples)} more")
        if self.soft_deleted:
            lines.append(f"  {self.soft_deleted} soft-deleted documents of deleted rows (expected)")
        lines += [f"  not verified: {note}" for note in self.not_verified]
        return "\n".join(lines)


@dataclass
class VerifyReport:
    tables: list[TableResult] = field(default_factory=list)
    repair: bool = False
    interrupted: bool = False

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.tables)

    @property
    def ok(self) -> bool:
        """Identical, or every difference repaired (and read back as fixed); never with a table not verified."""
        if self.interrupted or not all(t.verified for t in self.tables):
            return False
        if self.repair:
            return all(t.unrepaired == 0 and t.repaired >= t.differences for t in self.tables)
        return self.differences == 0

    def summary(self) -> dict:
        return {"tables": len(self.tables), "rows": sum(t.rows for t in self.tables),
                "missing": sum(t.missing for t in self.tables), "differing": sum(t.differing for t in self.tables),
                "orphans": sum(t.orphans for t in self.tables), "repaired": sum(t.repaired for t in self.tables),
                "unrepaired": sum(t.unrepaired for t in self.tables),
                "not_verified": sum(len(t.not_verified) for t in self.tables),
                "tables_not_verified": sum(not t.verified for t in self.tables),
                "interrupted": self.interrupted, "ok": self.ok}

    def to_json(self) -> dict:
        return {"tables": [t.to_json() for t in self.tables], "summary": self.summary()}

    def text(self) -> str:
        s = self.summary()
        lines = [t.text() for t in self.tables]
        unverified = s["tables_not_verified"]
        verdict = ("identical" if not unverified else "no differences found") if not self.differences else (
            f"{self.differences} difference(s): {s['missing']} missing, {s['differing']} differing, "
            f"{s['orphans']} orphans")
        if self.repair and self.differences:
            verdict += f"; {s['repaired']} repaired, {s['unrepaired']} NOT repaired"
        if unverified:
            verdict += f"; {unverified} table(s) NOT VERIFIED at all"
        if s["not_verified"]:
            verdict += f"; {s['not_verified']} check(s) NOT VERIFIED (see above)"
        if self.interrupted:
            verdict += "; INTERRUPTED before the end"
        lines.append(f"summary: {s['tables']} table(s), {s['rows']} rows: {verdict}")
        return "\n".join(lines)


# ====================================================================== the I/O
@dataclass(frozen=True)
class _Finding:
    """A suspect as last seen: its key, the document it should be (None: no row), what is stored."""

    key: tuple | None
    action: Action | None
    stored: StoredDoc | None
    verdict: str
    diffs: tuple[FieldDiff, ...]
    position: BinlogPosition


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + size]


class Verifier:
    """Runs the checks of the module docstring for each rule; writes only with `repair`."""

    def __init__(self, reader: TableReader, sink: SearchAdmin, rules: RuleSet, epoch: int, value_options,
                 caught_up: Callable[[BinlogPosition], bool], stop: threading.Event, writer=None,
                 sample: int | None = None, rounds: int = 2, settle: float = 10.0, suspect_limit: int | None = None,
                 interactive: bool | None = None, max_chunk_age: float = 25.0, pace: Pace | None = None):
        self.reader = reader
        self.sink = sink
        self.rules = rules
        self.epoch = epoch
        self.value_options = value_options
        self.caught_up = caught_up
        self.stop = stop
        self.writer = writer  # a BulkWriter: repair
        self.sample = sample
        self.rounds = max(1, rounds)
        self.settle = settle
        # Suspects are confirmed in groups this large; bounds memory on a badly broken index.
        self.suspect_limit = suspect_limit or 10 * reader.chunk_size
        self.interactive = interactive
        self.max_chunk_age = max_chunk_age  # snapshot.max_chunk_age: repairs write rows read from the table
        # snapshot.max_rows_per_second: a verify beside the live stream (a rebuild's, or `cdc verify`) reads MySQL
        # and Elasticsearch as hard as a copy writes; it keeps to the same ceiling, rows and scanned documents.
        self.pace = pace or Pace(None)
        self._behind_warned = False

    @property
    def chunk(self) -> int:
        return self.reader.chunk_size

    def run(self, chosen: Iterable[Rule]) -> VerifyReport:
        report = VerifyReport(repair=self.writer is not None)
        for rule in chosen:
            if self.stop.is_set():
                report.interrupted = True
                break
            report.tables.append(self.verify_rule(rule))
        report.interrupted = report.interrupted or self.stop.is_set()
        return report

    def verify_rule(self, rule: Rule) -> TableResult:
        plan = self.reader.plan(rule)
        result = TableResult(rule.name, index_target(rule)[1], sample=self.sample)
        if not plan.paged:
            result.verified = False
            result.not_verified.append(f"the id ({', '.join(plan.key)}) is not a unique NOT NULL key, so rows "
                                       "cannot be looked up by it: table NOT VERIFIED")
            return result
        kinds = {c.name: c.kind for c in plan.columns}
        policy = policy_for(rule, self.rules.rules, self.sample is not None, [kinds[k] for k in plan.key])
        result.not_verified.extend(policy.notes)
        # One rule only: `also` rules of the same table write other indices and are checked on their own.
        builder = ActionBuilder(RuleSet([rule]), self.epoch, self.value_options)
        log.info("verify %s against %s (%s)", rule.name, result.index,
                 f"{self.sample} random rows" if self.sample is not None else f"chunks of {self.chunk}",
                 extra={"table": rule.name})
        self._rows(plan, builder, policy, result)
        if policy.orphans is None and not self.stop.is_set():
            self._orphans(plan, builder, policy, result)
        log.info("verify %s: %d rows, %d missing, %d differing, %d orphans, %d repaired", rule.name, result.rows,
                 result.missing, result.differing, result.orphans, result.repaired, extra={"table": rule.name})
        return result

    # ------------------------------------------------------------------ rows
    def _rows(self, plan: TablePlan, builder: ActionBuilder, policy: Policy, result: TableResult) -> None:
        shown = dataclasses.replace(plan, estimate=self.sample) if self.sample is not None else plan
        bar = Progress(shown, 0, self.interactive, what="verify")
        suspects: list[tuple] = []
        try:
            for position, rows in self._row_reads(plan):
                result.rows += len(rows)
                expected = self._expect(plan, builder, position, rows)
                stored = self.sink.mget([(a.index, a.doc_id, a.routing) for _, a in expected])
                version = document_version(position, self.epoch)
                result.docs_found += sum(doc is not None for doc in stored)
                for (key, action), doc in zip(expected, stored):
                    if row_verdict(action, doc, version, policy)[0] in ("missing", "differ"):
                        suspects.append(key)
                if len(suspects) >= self.suspect_limit:
                    self._confirm_rows(plan, builder, policy, suspects, result)
                    suspects = []
                bar.advance(len(rows))
                self.pace.take(len(rows), self.stop)
            self._confirm_rows(plan, builder, policy, suspects, result)
        finally:
            bar.close()

    def _row_reads(self, plan: TablePlan) -> Iterator[tuple[BinlogPosition, list[tuple]]]:
        if self.sample is not None:
            keys = self.reader.sample_keys(plan, self.sample)
            for batch in batches(keys, self.chunk):
                if self.stop.is_set():
                    return
                yield self.reader.read_keys(plan, batch)
            return
        after = None
        while not self.stop.is_set():
            position, rows = self.reader.read_chunk(plan, after)
            if not rows:
                return
            yield position, rows
            after = last_key(plan, rows)

    def _expect(self, plan: TablePlan, builder: ActionBuilder, position: BinlogPosition,
                rows: Sequence[tuple]) -> list[tuple[tuple, Action]]:
        """(key values, the write the stream would make) for each row read at `position`."""
        if plan.rule.relations:
            return self._expect_documents(plan, rows)
        at = [plan.names.index(k) for k in plan.key]
        now = int(time.time())
        out: list[tuple[tuple, Action]] = []
        for i, row in enumerate(rows):
            try:
                actions = builder.actions(row_change(plan, position, row, now, i))
            except ValueError as exc:  # RowError, ConversionError: the stream would stop on this row too
                raise CdcError(str(exc)) from None
            key = tuple(row[j] for j in at)
            out.extend((key, a) for a in actions if a.type in (ActionType.INDEX, ActionType.UPDATE))
        return out

    def _expect_documents(self, plan: TablePlan, rows: Sequence[tuple]) -> list[tuple[tuple, Action]]:
        """For a rule with children and lookups (issue 15): the roots of `rows` built as the stream rebuilds them.

        They are read again with everything below them in one consistent snapshot
        and carry its (later) version, as stream rebuilds and snapshots do: a
        document newer than that read is no difference, an older one is.
        """
        rule = plan.rule
        pk = plan.names.index(root_pk(rule))
        ids = [row[pk] for row in rows]
        position, fetched = self.reader.db.consistent_queries(lambda query: read_documents(query, rule, ids))
        assembler = Assembler(rule, self.value_options)
        actions, refused = document_actions(assembler, ids, fetched, document_version(position, self.epoch), position)
        for r in refused:
            log.warning("verify %s: document %s NOT VERIFIED: %s", plan.name, r.action.doc_id, r.reason,
                        extra={"table": plan.name})
        by_id = {assembler.place({root_pk(rule): row[root_pk(rule)]})[1]: (row[root_pk(rule)],)
                 for row in fetched.roots}
        return [(by_id[a.doc_id], a) for a in actions if a.type is ActionType.INDEX]

    def _recheck_rows(self, plan: TablePlan, builder: ActionBuilder, policy: Policy,
                      keys: Sequence[tuple]) -> list[_Finding]:
        """Read the rows again, wait for the daemon to pass that read, fetch their documents again."""
        found: list[_Finding] = []
        for batch in batches(keys, self.chunk):
            position, rows = self.reader.read_keys(plan, batch)
            self._wait_for_daemon(position)
            expected = self._expect(plan, builder, position, rows)
            stored = self.sink.mget([(a.index, a.doc_id, a.routing) for _, a in expected])
            version = document_version(position, self.epoch)
            for (key, action), doc in zip(expected, stored):
                verdict, diffs = row_verdict(action, doc, version, policy)
                if verdict in ("missing", "differ"):
                    found.append(_Finding(key, action, doc, verdict, diffs, position))
            # A key without a row now was deleted meanwhile: its document is the orphan check's business.
        return found

    def _confirm_rows(self, plan: TablePlan, builder: ActionBuilder, policy: Policy, keys: Sequence[tuple],
                      result: TableResult) -> None:
        findings: list[_Finding] = []
        suspects = len(keys)
        for _ in range(self.rounds):
            if not keys or self.stop.is_set():
                break
            findings = self._recheck_rows(plan, builder, policy, keys)
            keys = list(dict.fromkeys(f.key for f in findings if f.key is not None))  # rows always have one
        if suspects:
            log.info("verify %s: %d suspect row(s) read again %d time(s): %d still differ", plan.name, suspects,
                     self.rounds, len(keys), extra={"table": plan.name})
        if not keys or self.stop.is_set():
            return
        for f in findings:
            assert f.action is not None
            result.add(Difference("missing" if f.verdict == "missing" else "differ", f.action.index,
                                  f.action.doc_id, f.key, f.diffs))
        if self.writer is None:
            return
        # The rows as they are now, versioned with the position of that read: a newer
        # daemon write wins (409). Read again just before writing, and written within
        # the snapshot's window, because the last re-check may be long past: a row
        # deleted since then must not come back once its tombstone has expired.
        max_age = fresh_window(self.max_chunk_age, self.sink.gc_deletes(index_target(plan.rule)[1]))
        for batch in batches(keys, self.chunk):
            def fresh(batch: Sequence[tuple] = batch) -> list[Action]:
                position, rows = self.reader.read_keys(plan, batch)
                return [action for _, action in self._expect(plan, builder, position, rows)]

            write_while_fresh(self.writer, self.stop, max_age, fresh, f"repair of {plan.name}", plan.name)
        still = self._recheck_rows(plan, builder, policy, keys)
        result.unrepaired += len(still)
        result.repaired += len(findings) - len(still)

    # ------------------------------------------------------------------ orphans
    def _orphans(self, plan: TablePlan, builder: ActionBuilder, policy: Policy, result: TableResult) -> None:
        result.docs_scanned = 0
        suspects: list[StoredDoc] = []
        batch: list[StoredDoc] = []
        fields = [policy.soft_field] if policy.soft_field else []
        log.info("verify %s: looking for documents without rows in %s", plan.name, result.index,
                 extra={"table": plan.name})
        for doc in self.sink.scan_ids(result.index, fields, batch=self.chunk):
            result.docs_scanned += 1
            batch.append(doc)
            if len(batch) >= self.chunk:
                suspects.extend(self._orphan_suspects(plan, builder, policy, batch, result))
                self.pace.take(len(batch), self.stop)
                batch = []
            if len(suspects) >= self.suspect_limit:
                self._confirm_orphans(plan, builder, policy, suspects, result)
                suspects = []
            if self.stop.is_set():
                return
        suspects.extend(self._orphan_suspects(plan, builder, policy, batch, result))
        self._confirm_orphans(plan, builder, policy, suspects, result)

    def _produced(self, plan: TablePlan, builder: ActionBuilder,
                  docs: Sequence[StoredDoc]) -> tuple[BinlogPosition, set[tuple[str, str]]]:
        """Read the rows the documents' ids name; (the read's position, the (index, id) those rows produce)."""
        keys = list(dict.fromkeys(k for k in (key_from_id(d.doc_id, plan) for d in docs) if k is not None))
        position, rows = self.reader.read_keys(plan, keys)
        return position, {(a.index, a.doc_id) for _, a in self._expect(plan, builder, position, rows)}

    def _orphan_suspects(self, plan: TablePlan, builder: ActionBuilder, policy: Policy, docs: Sequence[StoredDoc],
                         result: TableResult) -> list[StoredDoc]:
        if not docs:
            return []
        position, produced = self._produced(plan, builder, docs)
        version = document_version(position, self.epoch)
        out = []
        for doc in docs:
            verdict = orphan_verdict(doc, produced, version, policy)
            if verdict == "orphan":
                out.append(doc)
            elif verdict == "soft_deleted":
                result.soft_deleted += 1
        return out

    def _recheck_orphans(self, plan: TablePlan, builder: ActionBuilder, policy: Policy,
                         docs: Sequence[StoredDoc]) -> list[_Finding]:
        found: list[_Finding] = []
        for batch in batches(docs, self.chunk):
            position, produced = self._produced(plan, builder, batch)
            self._wait_for_daemon(position)
            version = document_version(position, self.epoch)
            fresh = self.sink.mget([(d.index, d.doc_id, d.routing) for d in batch])
            for old, doc in zip(batch, fresh):
                if doc is not None and orphan_verdict(doc, produced, version, policy) == "orphan":
                    found.append(_Finding(key_from_id(doc.doc_id, plan), None,
                                          StoredDoc(doc.index, doc.doc_id, doc.version, doc.source, old.routing),
                                          "orphan", (), position))
        return found

    def _confirm_orphans(self, plan: TablePlan, builder: ActionBuilder, policy: Policy, docs: Sequence[StoredDoc],
                         result: TableResult) -> None:
        findings: list[_Finding] = []
        suspects = len(docs)
        for _ in range(self.rounds):
            if not docs or self.stop.is_set():
                break
            findings = self._recheck_orphans(plan, builder, policy, docs)
            docs = [f.stored for f in findings if f.stored is not None]
        if suspects:
            log.info("verify %s: %d suspect document(s) without a row checked again %d time(s): %d still have none",
                     plan.name, suspects, self.rounds, len(docs), extra={"table": plan.name})
        if not docs or self.stop.is_set():
            return
        for f in findings:
            assert f.stored is not None
            result.add(Difference("orphan", f.stored.index, f.stored.doc_id, f.key))
        if self.writer is None:
            return
        self.writer.write([self._orphan_repair(plan, policy, f) for f in findings])
        still = self._recheck_orphans(plan, builder, policy, docs)
        result.unrepaired += len(still)
        result.repaired += len(findings) - len(still)

    def _orphan_repair(self, plan: TablePlan, policy: Policy, finding: _Finding) -> Action:
        """Delete it, versioned with the read that found no row (a later re-insert wins); with
        on_delete: soft, mark it deleted as the stream would have."""
        doc = finding.stored
        assert doc is not None
        common: dict[str, Any] = dict(version=document_version(finding.position, self.epoch), routing=doc.routing,
                      schema=plan.rule.schema, table=plan.rule.table, position=finding.position)
        if policy.soft_field:
            return Action(ActionType.INDEX, doc.index, doc.doc_id, doc={**(doc.source or {}), policy.soft_field: True},
                          **common)
        return Action(ActionType.DELETE, doc.index, doc.doc_id, **common)

    # ------------------------------------------------------------------ the daemon
    def _wait_for_daemon(self, position: BinlogPosition) -> None:
        """Until the daemon has acknowledged everything up to `position` (at most `settle` s)."""
        deadline = time.monotonic() + (self.settle if not self._behind_warned else min(self.settle, 1.0))
        while not self.caught_up(position):
            if time.monotonic() >= deadline:
                if not self._behind_warned:
                    log.warning("the daemon's checkpoint has not reached %s after %.0fs: differences reported may "
                                "be changes it has not indexed yet", position, self.settle)
                    self._behind_warned = True
                return
            if self.stop.wait(0.05):
                return
