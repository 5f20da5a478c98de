"""`cdc rebuild`: a new index from the current rules, filled beside the running daemon, verified, swapped in.

For each alias chosen (docs/verify-and-rebuild.md "Rebuilding an index"), the phases of
cdc/copy/lifecycle.py, each recorded before it is taken, so a killed rebuild
resumes where it was when run again:

1. create `<alias>_v<n+1>` with the rules' settings and mappings (what `cdc indices
   plan` shows for the name) and bulk-load settings (no refresh, no replicas);
2. copy the tables into it with a consistent snapshot (cdc/copy/snapshot.py, with
   the same progress lines and resume points), while `cdc run` writes every action
   for the alias into it too (cdc/stream/dualwrite.py);
3. put the index's own settings back, refresh it, and compare it with the tables
   (cdc/copy/verify.py, waiting for the daemon's checkpoint as `cdc verify` does);
4. move the alias onto it in one `_aliases` request, and list the index it replaced
   for deletion after `indices.keep_previous` (`cdc rebuild --cleanup`).

The alias is on a complete index the whole time, so searches on it never fail.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from cdc.app.copy import daemon_caught_up
from cdc.app.session import Session, check_writable
from cdc.copy.lifecycle import Rebuild, RebuildFile, RebuildState, body_hash, bulk_body, progress_path, state_path
from cdc.copy.snapshot import OnDemandProgress, Pace, Snapshot, TableReader
from cdc.copy.verify import Verifier, VerifyReport
from cdc.errors import CdcError, CheckpointError, ConfigError, PreflightError, SinkError
from cdc.es import aliases, jsonfields
from cdc.es.destination import Destination
from cdc.es.indices import index_target, inspect, plan_start
from cdc.rules import Rule, RuleSet
from cdc.rules.values import ValueOptions
from cdc.stream.observe import Stats

log = logging.getLogger("cdc.rebuild")


@dataclass(frozen=True)
class Outcome:
    """How the rebuild of one alias ended in this run."""

    alias: str
    index: str
    result: str  # swapped | stopped (resumes when run again) | differs (verify found differences; not swapped)
    replaces: tuple[str, ...] = ()
    rows: int = 0
    report: VerifyReport | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"alias": self.alias, "index": self.index, "result": self.result,
                               "replaces": list(self.replaces), "rows_copied": self.rows}
        if self.report is not None:
            out["verify"] = self.report.summary()
        return out


def chosen_aliases(rules: RuleSet, names: list[str], tables: list[str], everything: bool) -> list[str]:
    """The fixed index names to rebuild: given, those of the `--table` rules, or all; others are refused."""
    fixed = {index_target(r)[1]: r for r in rules.rules if index_target(r)[0] == "index"}
    templated = sorted({index_target(r)[1] for r in rules.rules if index_target(r)[0] == "template"})
    by_table = {r.name: index_target(r) for r in rules.rules}
    problems = []
    wanted: list[str] = []
    for table in tables:
        if table not in by_table:
            problems.append(f"--table {table}: no rule maps this table")
        elif by_table[table][0] != "index":
            problems.append(f"--table {table}: its index name {by_table[table][1]} comes from columns; such indices "
                            "are not rebuilt (docs/verify-and-rebuild.md, \"Rebuilding an index\")")
        else:
            wanted.append(by_table[table][1])
    for name in names:
        if name.lower() not in fixed:
            hint = " (its name comes from columns; such indices are not rebuilt)" if name.lower() in templated else ""
            problems.append(f"--index {name}: no rule writes to this index{hint} (known: {', '.join(sorted(fixed))})")
        wanted.append(name.lower())
    if problems:
        raise ConfigError("\n".join(problems))
    if everything:
        wanted.extend(sorted(fixed))
    if not wanted:
        raise ConfigError("name what to rebuild: --index NAME, --table SCHEMA.TABLE, or --all")
    return list(dict.fromkeys(wanted))


class Rebuilder:
    """Carries rebuilds through their phases; every step is safe to take again after a crash."""

    def __init__(self, session: Session, db, rules: RuleSet, sink: Destination, file: RebuildFile):
        self.session = session
        self.config = session.config
        self.db = db
        self.rules = rules
        self.sink = sink
        self.file = file
        self.options = ValueOptions.from_config(self.config.values)
        self.store = session.checkpoint_store()

    # ------------------------------------------------------------------ one alias
    def run(self, alias: str) -> Outcome:
        members = [r for r in self.rules.rules if index_target(r) == ("index", alias)]
        body = self._body(members)
        names = tuple(r.name for r in members)
        digest = body_hash(body, names)
        state = self.file.load()
        rebuild = state.get(alias)
        if rebuild is not None and rebuild.body_hash != digest and rebuild.phase != "swap":
            log.warning("rebuild of %s into %s: the rules or mappings changed since it began; starting over (the "
                        "unfinished index is left for --cleanup)", alias, rebuild.index)
            self._save(state.abandon(alias, time.time() + ABANDONED_GRACE))
            rebuild = None
        if rebuild is None:
            rebuild = self._begin(alias, body, names, digest)
        else:
            log.info("resuming the rebuild of %s into %s at phase %s", alias, rebuild.index, rebuild.phase,
                     extra={"event": "rebuild_resume", "index": rebuild.index})
        new_rules = [dataclasses.replace(r, index=rebuild.index) for r in members]
        rows = 0
        if rebuild.phase == "create":
            self._create(rebuild, body)
            rebuild = self._advance(alias, "copy")
            crash_point("copy")
        if rebuild.phase == "copy":
            copied = self._copy(rebuild, new_rules)
            if copied is None:
                return Outcome(alias, rebuild.index, "stopped", rebuild.replaces)
            rows = copied
            rebuild = self._advance(alias, "verify")
        if rebuild.phase == "verify":
            self._ready_for_search(rebuild)
            report = self._verify(new_rules)
            if self.session.stop.is_set() or report.interrupted:
                return Outcome(alias, rebuild.index, "stopped", rebuild.replaces, rows, report)
            if not report.ok:
                log.error("rebuild of %s: %s differs from the tables (%d difference(s)); the alias stays on %s. Run "
                          "`cdc rebuild --index %s` again to verify again, or `cdc rebuild --abandon --index %s`. "
                          "Is `cdc run` running with other rules than this rebuild (restart it on the new rules)? Did "
                          "it log rebuild_write_rejected?", alias, rebuild.index, report.differences,
                          ", ".join(rebuild.replaces) or "nothing", alias, alias,
                          extra={"event": "rebuild_differs", "index": rebuild.index})
                return Outcome(alias, rebuild.index, "differs", rebuild.replaces, rows, report)
            rebuild = self._advance(alias, "swap")
            crash_point("swap")
        self._swap(rebuild)
        OnDemandProgress(self._progress_path(alias)).finish()
        return Outcome(alias, rebuild.index, "swapped", rebuild.replaces, rows)

    def _body(self, members: list[Rule]) -> dict:
        """The new index's settings and mappings: what `cdc indices plan` shows for the name."""
        plans = [p for p in plan_start(members, self.options) if p.kind in ("index", "fields")]
        return dict(plans[0].body) if plans else {}

    def _begin(self, alias: str, body: dict, names: tuple[str, ...], digest: str) -> Rebuild:
        placement = aliases.find(self.sink, alias)
        if placement.kind == "missing":
            raise PreflightError(f"{alias}: nothing of that name in {self.session_product()} to rebuild yet "
                                 "(`cdc run` creates it)")
        if placement.write_index is None:
            raise PreflightError(f"{alias}: an alias onto {', '.join(placement.indices)} with no write index; cdc "
                                 "cannot tell which to replace")
        _, answer = self.sink.admin("GET", f"/{placement.write_index}/_settings?flat_settings=true")
        empty: dict[str, Any] = {}
        current = next(iter(answer.values()), empty).get("settings", {}) if isinstance(answer, dict) else {}
        taken = aliases.versions(self.sink, alias) + [p.index for p in self.file.load().previous]
        index = aliases.versioned_name(alias, aliases.next_version(alias, taken))
        _, restore = bulk_body(body, current)
        rebuild = Rebuild(alias, index, "create", placement.indices, placement.kind == "index", names, digest,
                          restore, time.time())
        OnDemandProgress(self._progress_path(alias)).finish()  # a new rebuild copies from the start
        self._save(self.file.load().put(rebuild))
        log.info("rebuild of %s: new index %s (replacing %s)", alias, index, ", ".join(placement.indices),
                 extra={"event": "rebuild_start", "index": index})
        return rebuild

    def _create(self, rebuild: Rebuild, body: dict) -> None:
        create_body, _ = bulk_body(body, {})
        try:
            jsonfields.put(self.sink, f"/{rebuild.index}", create_body)
        except SinkError as exc:
            # Made by this rebuild before a crash: its name was recorded before it was made.
            if exc.error_type != "resource_already_exists_exception":
                raise
        if not self.store.is_locked_by_other():
            log.warning("rebuild of %s: no `cdc run` holds %s, so nothing writes the tables' changes into %s while "
                        "it is copied; they reach it when cdc run next starts (until then verify may find them)",
                        rebuild.alias, self.store.path, rebuild.index)

    def _copy(self, rebuild: Rebuild, new_rules: list[Rule]) -> int | None:
        """Copy the tables into the new index; the rows copied, or None when stopped (it resumes)."""
        config = self.config
        progress = OnDemandProgress(self._progress_path(rebuild.alias))
        state = progress.load([r.name for r in new_rules], None)
        rules = self.rules.replace(new_rules)
        # Rejected documents stop the rebuild (the alias stays put); they never join the daemon's dead letters.
        copy = Snapshot(self.db, self.session.builder(rules, None),
                        self.session.writer(self.sink, Stats(), dead_letters=False), config.snapshot, progress.save,
                        self.session.stop, gc_deletes=self.sink.gc_deletes, online=True, row_path=config.row_path)
        copy.run(new_rules, state)
        if state.pending:
            log.info("rebuild of %s stopped while copying; it resumes when run again", rebuild.alias)
            return None
        log.info("rebuild of %s: %d rows copied into %s", rebuild.alias, copy.rows_written, rebuild.index,
                 extra={"event": "rebuild_copied", "index": rebuild.index, "rows": copy.rows_written})
        return copy.rows_written

    def _ready_for_search(self, rebuild: Rebuild) -> None:
        """The index's own refresh interval and replicas back, everything searchable, replicas as the old had them."""
        self.sink.admin("PUT", f"/{rebuild.index}/_settings", dict(rebuild.restore))
        self.sink.admin("POST", f"/{rebuild.index}/_refresh")
        status = "yellow"
        if rebuild.replaces:
            _, health = self.sink.admin("GET", f"/_cluster/health/{','.join(rebuild.replaces)}")
            status = "green" if isinstance(health, dict) and health.get("status") == "green" else "yellow"
        _, health = self.sink.admin("GET", f"/_cluster/health/{rebuild.index}?wait_for_status={status}&timeout=300s")
        if isinstance(health, dict) and health.get("timed_out"):
            log.warning("rebuild of %s: %s is %s, not %s as %s is, after 5 minutes; going on (searches only need its "
                        "primaries)", rebuild.alias, rebuild.index, health.get("status"), status,
                        ", ".join(rebuild.replaces))

    def _verify(self, new_rules: list[Rule]) -> VerifyReport:
        config = self.config
        verifier = Verifier(TableReader(self.db, config.snapshot.chunk_size), self.sink, self.rules.replace(new_rules),
                            self.session.epoch(None), self.options, daemon_caught_up(self.store), self.session.stop,
                            max_chunk_age=config.snapshot.max_chunk_age, pace=Pace(config.snapshot.max_rows_per_second))
        return verifier.run(new_rules)

    def _swap(self, rebuild: Rebuild) -> None:
        placement = aliases.find(self.sink, rebuild.alias)
        if placement.kind == "alias" and placement.indices == (rebuild.index,):
            log.info("rebuild of %s: the alias is on %s already", rebuild.alias, rebuild.index)
        else:
            self.sink.admin("POST", "/_aliases", {"actions": aliases.swap_actions(rebuild.alias, placement,
                                                                                  rebuild.index)})
            log.info("rebuild of %s: the alias now points at %s (it pointed at %s)", rebuild.alias, rebuild.index,
                     ", ".join(placement.indices), extra={"event": "rebuild_swapped", "index": rebuild.index})
            crash_point("swapped")
        state = self.file.load().finish(rebuild.alias, time.time(), self.config.indices.keep_previous)
        self._save(state)

    # ------------------------------------------------------------------ the state
    def _advance(self, alias: str, phase) -> Rebuild:
        state = self.file.load().advance(alias, phase)
        self._save(state)
        rebuild = state.get(alias)
        assert rebuild is not None
        return rebuild

    def _save(self, state: RebuildState) -> None:
        try:
            self.file.save(state)
        except OSError as exc:
            raise CdcError(f"{self.file.path}: cannot save the rebuild state: {exc.strerror}") from None

    def _progress_path(self, alias: str):
        return progress_path(self.config, alias)

    def session_product(self) -> str:
        return getattr(self.sink, "product", "the search cluster")

    # ------------------------------------------------------------------ old indices
    def cleanup(self, everything: bool) -> list[str]:
        """Delete the indices kept after rebuilds whose time has come (all with `everything`); never one an alias
        points at."""
        state = self.file.load()
        deleted = []
        for previous in (state.previous if everything else state.due(time.time())):
            placement = aliases.find(self.sink, previous.alias)
            if previous.index not in placement.indices:
                self.sink.admin("DELETE", f"/{previous.index}")
                deleted.append(previous.index)
                log.info("deleted %s (%s by a rebuild of %s)", previous.index, previous.why, previous.alias,
                         extra={"event": "rebuild_cleanup", "index": previous.index})
            state = state.forget(previous.index)
            self._save(state)
        return deleted


def rebuild(session: Session, names: list[str], tables: list[str], everything: bool,
            prepared: bool = False) -> list[Outcome]:
    rebuilder = _open(session, prepared)
    try:
        chosen = chosen_aliases(rebuilder.rules, names, tables, everything)
        rebuilder.cleanup(False)
        outcomes = []
        for alias in chosen:
            if session.stop.is_set():
                break
            outcomes.append(rebuilder.run(alias))
        return outcomes
    finally:
        _close(rebuilder)


def abandon(session: Session, names: list[str]) -> list[str]:
    """Give up rebuilds: the aliases stay where they are; the new indices go at the next --cleanup."""
    rebuilder = _open(session)
    try:
        state = rebuilder.file.load()
        unknown = [n for n in names if state.get(n.lower()) is None]
        if unknown:
            raise ConfigError(f"no rebuild of {', '.join(unknown)} is under way "
                              f"(under way: {', '.join(r.alias for r in state.rebuilds) or 'none'})")
        for name in names:
            state = state.abandon(name.lower(), time.time() + ABANDONED_GRACE)
        rebuilder._save(state)
        return [name.lower() for name in names]
    finally:
        _close(rebuilder)


def cleanup(session: Session, everything: bool) -> list[str]:
    rebuilder = _open(session)
    try:
        return rebuilder.cleanup(everything)
    finally:
        _close(rebuilder)


# ------------------------------------------------------------------ inside `cdc run` (indices.on_change: rebuild)
def needed(session: Session, rules: RuleSet, sink: Destination) -> list[str]:
    """The fixed names to rebuild at start-up: those with a rebuild unfinished (it resumes), then those whose index
    differs from the rules, as `cdc indices plan` reports them (the same plans and comparison)."""
    fixed = {index_target(r)[1] for r in rules.rules if index_target(r)[0] == "index"}
    unfinished = [r.alias for r in RebuildFile(state_path(session.config)).load().rebuilds if r.alias in fixed]
    plans = plan_start(rules.rules, ValueOptions.from_config(session.config.values))
    differs = [s.plan.name for s in inspect(plans, sink)
               if s.state == "differs" and s.plan.kind in ("index", "fields") and s.plan.name in fixed]
    return list(dict.fromkeys(unfinished + differs))


def in_background(session: Session, names: list[str]) -> threading.Thread:
    """Rebuild `names` beside the stream of this same process, as `cdc rebuild` would beside it: the stream reads
    the state file before each bulk request, so it writes into the new index from the copy on. A failure is logged
    and leaves the stream alone (the alias stays on its index); a stop (SIGTERM) or a kill resumes at the next
    start, which finds the rebuild unfinished."""

    def work() -> None:
        log.info("indices.on_change: rebuild: rebuilding %s in the background while streaming", ", ".join(names),
                 extra={"event": "rebuild_background", "index": ", ".join(names)})
        try:
            outcomes = rebuild(session, names, [], False, prepared=True)
        except CheckpointError as exc:  # a `cdc rebuild` holds the lock: it does the work
            log.warning("indices.on_change: rebuild: %s; not rebuilding here", exc)
            return
        except Exception as exc:  # never the stream's end: the alias stays where it is
            log.error("indices.on_change: rebuild of %s failed: %s; the aliases stay where they are. Run `cdc "
                      "rebuild --index NAME` to see it through, or restart cdc run to try again", ", ".join(names),
                      exc, exc_info=not isinstance(exc, CdcError), extra={"event": "rebuild_failed"})
            return
        for outcome in outcomes:
            if outcome.result == "differs":
                continue  # logged by the rebuild, with what to do
            log.info("indices.on_change: rebuild of %s: %s", outcome.alias,
                     "done" if outcome.result == "swapped" else "stopped; it resumes at the next start",
                     extra={"event": f"rebuild_{'done' if outcome.result == 'swapped' else 'stopped'}",
                            "index": outcome.index})

    thread = threading.Thread(target=work, name="cdc-rebuild", daemon=True)
    thread.start()
    return thread


def crash_point(step: str) -> None:
    """Fault injection for the crash tests (tests/integration/test_rebuild.py): with CDC_REBUILD_KILL_AT=<step>
    the process SIGKILLs itself right after that step (copy: recorded, before the first chunk; swap: verified
    and recorded, before the `_aliases` request; swapped: right after it, before the state is saved), so
    each point is hit exactly, which a kill from outside could not time. Unset, it does nothing."""
    if os.environ.get("CDC_REBUILD_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


# A daemon may still have a request with copies for an abandoned index in flight; deleting the index
# under it would have the write create it again. Its next request reads the state and sends none.
ABANDONED_GRACE = 60.0


def _open(session: Session, prepared: bool = False) -> Rebuilder:
    config = session.config
    if config.destination == "kafka":
        raise ConfigError("cdc rebuild needs `cdc run` to write to Elasticsearch itself (destination: elasticsearch): "
                          "in Kafka mode the writers are `cdc sink` processes, which do not write into a new index "
                          "while it is filled")
    file = RebuildFile(state_path(config))
    check_writable(session.writable_paths(checkpoint=False, extra={"checkpoint.path (.rebuild.json)": file.path}))
    file.lock()
    try:
        # prepared: inside `cdc run`, which made the indices ready itself (and said how they differ).
        db, rules, sink = session.prepare(reads_binlog=False, writes=not prepared)
    except BaseException:
        file.unlock()
        raise
    return Rebuilder(session, db, rules, sink, file)


def _close(rebuilder: Rebuilder) -> None:
    rebuilder.db.close()
    rebuilder.sink.close()
    rebuilder.file.unlock()
