# Types of cdc._native, the compiled row path (native/src, pyo3): what native/src/lib.rs `_native`
# adds to the module. Keep in step with the #[pyfunction] and #[pyclass] signatures there; load the
# module through cdc/native.py only (tests/unit/test_structure.py).

from typing import Any, Sequence

class DecodeError(Exception):
    """The rows event's bytes do not decode with its table definition."""

class Decline(Exception):
    """Only the Python path gives this event's exact actions (or error)."""

# Readers as rowpath.py `_reader` writes them: (reader, a, b, c, labels).
_Column = tuple[str, int, int, int, list[str] | None]
# A non-UTC timestamp_timezone (rowpath.py `zone_offsets`): ([(from UTC second, offset)], end).
_Zone = tuple[Sequence[tuple[int, int]], int]
# A template (index, id, routing) as parts: (0 literal | 1 column | 2 date of a column, text, column).
_Parts = Sequence[tuple[int, str, int]]
# decode/snapshot_rows `into`: the maker, the schema, the table, the position, the document version.
_Into = tuple[Maker, object, object, object, int]

class Table:
    """A binlog table definition: how each column is read, in column order."""
    def __init__(self, columns: Sequence[_Column], zone: _Zone | None = None) -> None: ...
    def __len__(self) -> int: ...

class TextTable:
    """A snapshot table definition: how each text-protocol column is read, (reader, argument) per column."""
    def __init__(self, columns: Sequence[tuple[str, int]], zone: _Zone | None = None) -> None: ...
    def __len__(self) -> int: ...

class Plan:
    """One rule applied to one table definition (rowpath.py `compile_plan`)."""
    def __init__(self, doc: Sequence[tuple[int, str]], consts: str, soft: str | None, id_cols: Sequence[int],
                 id_sep: str, id_tpl: _Parts | None, index: _Parts, routing: _Parts | None, versioned: bool,
                 on_delete: int, forbidden: str,
                 convs: Sequence[Sequence[tuple[str, str | None]]] | None = None, pad_year: bool = False) -> None: ...

class Maker:
    """Makes `NativeAction` objects: the class, the three ActionTypes (index, delete, update), one
    (pipeline or None, versioned) per plan, and the update's retry_on_conflict."""
    def __init__(self, cls: type, types: tuple[object, object, object],
                 plans: Sequence[tuple[str | None, bool]], retry_on_conflict: int) -> None: ...

def decode(table: Table, plans: Sequence[Plan], op: int, body: bytes,
           into: _Into | None = None) -> tuple[int, list[Any], list[int]]:
    """(rows, actions, rows with zero dates); an action is a tuple, or a NativeAction with `into`."""

def snapshot_rows(table: TextTable, plans: Sequence[Plan], rows: list[bytes],
                  into: _Into | None = None) -> list[Any]: ...
def snapshot_body(table: TextTable, plans: Sequence[Plan], rows: list[bytes], maker: Maker, version: int,
                  max_actions: int = ..., max_bytes: int = ...) -> list[tuple[bytes, int, int]]:
    """One (bulk body, actions, weight) per bulk request."""

def frame_rows(buf: bytes | bytearray | memoryview, seq: int, rows: list[bytes]) -> tuple[int, int]:
    """Appends the whole row packets at the start of `buf` to `rows`: (bytes taken, next sequence number)."""

def untrack(*objects: object) -> None: ...
def case_table(lower: Sequence[tuple[int, str]], upper: Sequence[tuple[int, str]]) -> None: ...

# For tests: the native writers of single values.
def format_float(f: float) -> str: ...
def float32(f: float) -> float: ...
def float_repr(f: float) -> str: ...
def geometry(data: bytes, geo_point: bool = False) -> str: ...
def json_text(text: str) -> str: ...
def json_binary(data: bytes) -> str: ...
