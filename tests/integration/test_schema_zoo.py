"""The schema zoo on the native row path, on MariaDB 10.11 and MySQL 9.7 (issue 28).

Sakila's 16 tables and the tables that used to fall to the Python path (latin1, gbk,
JSON, GEOMETRY/POINT, `convert:`), tests/integration/zoo.py. `cdc check` must report
the native path for every one; a seeded random load over all of them must give the
same actions, byte for byte, through the native path and through the Python path (the
reference); and `cdc run` must end with an index that `cdc verify` finds equal.
"""

from __future__ import annotations

import pytest
import yaml
import zoo
from harness import CdcSetup, binlog_position, both_sources, wait_for

from cdc.model import BinlogPosition
from cdc.rules import rowpath

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")]

from test_native_rowpath import _fields, _read, resolved  # noqa: E402


def _resolved(servers, path, rules):
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return resolved(servers, path)


@both_sources
def test_the_zoo_runs_native_and_both_paths_agree(source_servers, db, database, es, index_prefix, tmp_path):
    servers = source_servers
    db.execute(*zoo.ddl())
    rules = zoo.rules(database, index_prefix)
    setup = CdcSetup(tmp_path, servers, rules)
    code, report = setup.command("check")
    assert code == 0, report
    paths = {line.strip() for line in report.splitlines() if line.strip().startswith(f"{database}.")}
    assert sorted(paths) == sorted(f"{database}.{table}: native" for table in zoo.TABLES), report

    start = BinlogPosition(*binlog_position(db))
    db.execute(*zoo.statements(seed=28, changes=1200))
    end = BinlogPosition(*binlog_position(db))
    resolved = _resolved(servers, tmp_path / "zoo-rules.yml", rules)
    py_rows, python, _ = _read(servers, database, resolved, start, end, native=False, tables=zoo.TABLES)
    nat_rows, native, path = _read(servers, database, resolved, start, end, native=True, tables=zoo.TABLES)
    assert py_rows == nat_rows >= 1000  # an UPDATE that changes nothing logs no row
    assert len(python) == len(native) == nat_rows
    for i, (a, b) in enumerate(zip(python, native)):
        assert _fields(a) == _fields(b), f"action {i} ({a.table})"
        assert a.doc == b.doc
    assert {f"{database}.{t}": "native" for t in zoo.TABLES} == {k: v for k, v in path.tables.items()
                                                                  if k.startswith(f"{database}.")}
    # Every table's rows came through the native code. Only values it leaves to Python by design
    # (per event, e.g. non-ASCII text under upper/lower) may take the fallback; they are few.
    by_path = {table: {type(a).__name__ for a in native if a.table == table} for table in zoo.TABLES}
    assert all("NativeAction" in kinds for kinds in by_path.values()), by_path
    declined = sum(1 for a in native if type(a) is not rowpath.NativeAction)
    assert declined < len(native) * 0.05, (declined, by_path)

    # End to end: `cdc run` from the start of the load, then verify against the tables.
    (tmp_path / "run").mkdir()
    setup = CdcSetup(tmp_path / "run", servers, rules, start__position=f"{start.file}:{start.pos}",
                     snapshot__mode="never")
    proc = setup.run()
    try:
        wait_for("cdc to reach the end of the load", lambda: (setup.position() or ("", 0)) >= (end.file, end.pos),
                 timeout=180)
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]
    assert "python" not in " ".join(line for line in proc.text().splitlines() if "row path for" in line)
    verified = setup.output("verify", timeout=300)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    # A restart checks every field the first run mapped against the tables (cdc/es/fields.py) and finds no
    # conflict, GEOMETRY included where the server has no geo_shape (its GeoJSON got a dynamic object
    # mapping, which holds it). It once logged a "rejected, run cdc rebuild" error at every start.
    again = setup.run()
    try:
        again.wait_for_event("start", timeout=120)
    finally:
        assert again.stop() == 0, again.text()[-3000:]
    assert "the table now gives" not in again.text(), again.text()[-3000:]
