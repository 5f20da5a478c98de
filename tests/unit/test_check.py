"""`cdc check` with fake servers: what goes into the report, and when it fails."""

from typing import Any, Sequence

from cdc.app.check import run_check
from cdc.config import parse_config
from cdc.errors import PreflightError, SinkUnavailableError
from cdc.es.destination import Destination
from cdc.mysql.catalog import TableChooser
from cdc.mysql.server import Database, ServerInfo
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules


# The fakes subclass what run_check takes, without their __init__ (which connects), and
# override what it calls: mypy checks the overrides' signatures against the real ones.
class FakeDb(Database):
    def __init__(self, tables: list[TableInfo], problems: Sequence[str] = (), warnings: Sequence[str] = (),
                 cascades: Sequence[str] = ()):
        self.info = ServerInfo("10.11.19-MariaDB", True, 1)
        self.tables = tables
        self.problems, self.warnings, self.cascades = problems, warnings, cascades
        self.closed = False

    def preflight(self, reads_binlog: bool = True) -> list[str]:
        assert reads_binlog is False  # a check may run beside the daemon and its server_id
        if self.problems:
            raise PreflightError("the MySQL server is not ready for cdc:\n  - " + "\n  - ".join(self.problems))
        return list(self.warnings)

    def catalog(self, chooser: TableChooser) -> Catalog:
        return Catalog(("shop",), {(t.schema, t.table): t for t in self.tables})

    def cascading_foreign_keys(self, tables: list[tuple[str, str]]) -> list[str]:
        return [c for c in self.cascades if tuple(c.split(":")[0].split(".")) in tables]

    def close(self) -> None:
        self.closed = True


class FakeEs(Destination):
    def __init__(self, down: bool = False):
        self.down = down
        self.engine = None

    @property
    def product(self) -> str:
        return "Elasticsearch"  # what Destination names before and after it found the engine

    def check(self) -> str:
        if self.down:
            raise SinkUnavailableError("Elasticsearch unreachable: refused")
        return "green"

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        return 404, {}

    def close(self) -> None:
        pass


def setup(tmp_path, rules):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(rules)
    config = parse_config({"mysql": {"user": "cdc", "server_id": 9}, "rules": "rules"}, base_dir=str(tmp_path))
    return config, load_rules(tmp_path / "rules")


TABLE = TableInfo("shop", "t", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("name", "varchar", "varchar(9)")),
                  ("id",))


def test_a_good_setup_passes_with_warnings(tmp_path):
    config, rules = setup(tmp_path, "rules:\n  - {schema: shop, table: t, index: t, create_index: true}\n"
                                    "  - {schema: shop, table: {glob: 'z*'}, index: z}\n")
    db = FakeDb([TABLE], warnings=["gtid_mode is OFF"], cascades=["shop.t: foreign key fk has ON DELETE CASCADE"])
    report = run_check(config, rules, lambda: db, FakeEs)
    text = report.text()
    assert report.ok and db.closed
    assert "server: MariaDB 10.11.19-MariaDB at 127.0.0.1:3306: ready for cdc" in text
    assert "r.yml:2: rules[0]: shop.t -> t" in text
    assert "r.yml:3: rules[1]: no table -> z" in text
    assert "index t: create" in text
    assert "gtid_mode is OFF" in text and "ON DELETE CASCADE" in text and "matches no table now" in text
    assert text.endswith("result: OK with 3 warning(s)")


def test_problems_of_the_server_the_rules_and_elasticsearch_all_fail_it(tmp_path):
    config, rules = setup(tmp_path, "rules:\n  - {schema: shop, table: t, index: t, id: [zz]}\n")
    report = run_check(config, rules, lambda: FakeDb([TABLE], problems=["binlog_format=MIXED: set ROW"]),
                       lambda: FakeEs(down=True))
    assert not report.ok
    assert report.problems == [
        "binlog_format=MIXED: set ROW",
        f"{tmp_path / 'rules' / 'r.yml'}:2: rules[0] (shop.t): id column(s) zz not in shop.t (columns: id, name)",
        "Elasticsearch: Elasticsearch unreachable: refused",
    ]
    assert "server: MariaDB 10.11.19-MariaDB at 127.0.0.1:3306: NOT ready" in report.text()
    assert report.text().endswith("result: FAILED, 3 problem(s)")


def test_each_tables_row_path_and_why(tmp_path):
    """docs/row-path.md "Row path": which path reads each table's binlog rows, decided from information_schema."""
    from cdc.rules import rowpath

    tables = [
        TableInfo("shop", "latin", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("sku", "varchar", "varchar(9)",
                                                                                   "latin1")), ("id",)),
        TableInfo("shop", "chinese", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("n", "text", "text", "gbk"),
                                      ColumnInfo("d", "decimal", "decimal(10,2) unsigned"),
                                      ColumnInfo("t", "datetime", "datetime(6)"), ColumnInfo("b", "bit", "bit(5)"),
                                      ColumnInfo("e", "enum", "enum('a','b')", "utf8mb4"),
                                      ColumnInfo("s", "set", "set('x','y')", "utf8mb4")), ("id",)),
        TableInfo("shop", "shapes", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("g", "geometry", "geometry"),
                                     ColumnInfo("p", "point", "point"), ColumnInfo("c", "geomcollection",
                                                                                   "geomcollection")), ("id",)),
        TableInfo("shop", "floats", (ColumnInfo("f", "float", "float"), ColumnInfo("d", "double", "double")),
                  ("f", "d")),
        TableInfo("shop", "converted", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("a", "int", "int(11)")),
                  ("id",)),
        TableInfo("shop", "dated", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("d", "date", "date")), ("id",)),
    ]
    config, rules = setup(tmp_path, "rules:\n" + "".join(f"  - {{schema: shop, table: {t}, index: {t}}}\n"
                                                         for t in ("latin", "chinese", "shapes", "floats"))
                          + "  - {schema: shop, table: converted, index: c, convert: {a: bool}}\n"
                          + "  - {schema: shop, table: dated, index: d, convert: {d: {datetime: '%A %Y'}}}\n")
    text = run_check(config, rules, lambda: FakeDb(tables), FakeEs).text()
    section = text[text.index("row path (row_path: auto):"):].splitlines()[1:7]
    if not rowpath.NATIVE_AVAILABLE:
        assert all(line.endswith("python (cdc was installed without its native module)") for line in section)
        return
    # GEOMETRY/POINT columns and FLOAT/DOUBLE ids are native too.
    assert section == ["  shop.chinese: native",
                       "  shop.converted: native",
                       "  shop.dated: python (column 'd': convert: datetime format '%A %Y')",
                       "  shop.floats: native",
                       "  shop.latin: native",
                       "  shop.shapes: native"]


def test_decimals_as_numbers_and_timestamps_in_a_zone_are_on_the_native_row_path(tmp_path):
    """values.decimal_as: number and a timestamp_timezone other than UTC no longer send a table to Python."""
    from cdc.config import parse_config
    from cdc.rules import rowpath

    table = TableInfo("shop", "t", (ColumnInfo("id", "int", "int(11)"), ColumnInfo("d", "decimal", "decimal(65,30)"),
                                    ColumnInfo("ts", "timestamp", "timestamp(6)")), ("id",))
    _, rules = setup(tmp_path, "rules:\n"
                               "  - {schema: shop, table: t, index: 't-{ts:%Y.%m}', id: '{id}-{d}', routing: '{ts}'}\n")
    config = parse_config({"mysql": {"user": "cdc", "server_id": 9}, "rules": "rules",
                           "values": {"decimal_as": "number", "timestamp_timezone": "Australia/Lord_Howe"}},
                          base_dir=str(tmp_path))
    text = run_check(config, rules, lambda: FakeDb([table]), FakeEs).text()
    section = text[text.index("row path (row_path: auto):"):].splitlines()[1:2]
    expected = "native" if rowpath.NATIVE_AVAILABLE else "python (cdc was installed without its native module)"
    assert section == [f"  shop.t: {expected}"]
