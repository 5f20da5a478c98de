"""The import graph keeps the shape the Code map in README.md describes.

Folders follow the pipeline and depend only downwards; each outside library is
seen by one module, which translates its errors into cdc's (cdc/errors.py).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cdc"
BASE = {"model", "errors", "config", "retry", "durable", "log", "native"}

# What each folder may import besides the base modules above (and itself).
ALLOWED = {
    "mysql": set(),
    "rules": {"mysql"},
    "es": {"mysql", "rules"},
    "stream": {"rules"},
    "ops": {"mysql", "stream"},
    "copy": {"mysql", "rules", "es", "stream"},
    "kafka": {"stream", "es"},  # the cdc format's value is the action's _bulk lines (cdc/kafka/messages.py)
    "app": {"mysql", "rules", "es", "stream", "ops", "copy", "kafka"},
}
# Single modules a folder may import besides its ALLOWED folders: cdc/es/ takes the Protocols
# the rest of cdc hands it (SearchAdmin), and nothing else of cdc/stream/.
ALLOWED_MODULES = {"es": {"cdc.stream.protocols"}}
# Outside libraries and the only modules that may import them.
LIBRARIES = {
    "pymysqlreplication": {"cdc.mysql.source", "cdc.mysql.replication_hooks"},
    "pymysql": {"cdc.mysql.source", "cdc.mysql.server", "cdc.mysql.error_codes", "cdc.mysql.pymysql_hooks"},
    # one transport for every engine (cdc/es/transport.py): above it nothing knows the client library
    "elasticsearch": {"cdc.es.transport"},
    "elastic_transport": {"cdc.es.transport"},
    "opensearchpy": {"cdc.es.transport"},
    "confluent_kafka": {"cdc.kafka.client"},
    # the compiled row path, optional: one loader, which says whether it loaded
    "cdc._native": {"cdc.native"},
}

# cdc modules only some others may import: the rest of cdc reaches the cluster through
# cdc/es/destination.py and the Protocols of cdc/stream/protocols.py, never a client library's request.
INTERNAL = {"cdc.es.transport": {"cdc.es.sink", "cdc.es.admin"}}


def modules() -> dict[str, set[str]]:
    """module name -> every module it imports (at any depth in the file: function-level imports count)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        graph[".".join(parts)] = imported
    return graph


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and (PACKAGE / parts[1]).is_dir() else None


GRAPH = modules()


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if folder(m)))
def test_folders_import_only_downwards(module):
    own = folder(module)
    assert own is not None  # the parameters are the modules in a folder
    allowed = ALLOWED[own] | {own}
    wrong = sorted(i for i in GRAPH[module]
                   if i.startswith("cdc.") and folder(i) is not None and folder(i) not in allowed
                   and not any(i == m or i.startswith(m + ".") for m in ALLOWED_MODULES.get(own, ())))
    assert wrong == [], f"{module} imports {wrong}; cdc/{own}/ may import only {sorted(allowed)} and the base modules"


def test_base_modules_import_no_folder():
    for name in BASE:
        module = f"cdc.{name}"
        assert not [i for i in GRAPH[module] if i.startswith("cdc.") and folder(i)], module


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_each_library_is_seen_by_its_own_module_only(library):
    users = {m for m, imported in GRAPH.items() if any(i == library or i.startswith(library + ".") for i in imported)}
    assert users <= LIBRARIES[library], f"{sorted(users - LIBRARIES[library])} import {library}"


@pytest.mark.parametrize("internal", sorted(INTERNAL))
def test_internal_modules_are_imported_only_where_allowed(internal):
    users = {m for m, imported in GRAPH.items()
             if m != internal and any(i == internal or i.startswith(internal + ".") for i in imported)}
    assert users <= INTERNAL[internal], f"{sorted(users - INTERNAL[internal])} import {internal}"


def test_no_import_cycles():
    known = set(GRAPH)
    edges = {m: {i for i in imported if i in known and i != m} for m, imported in GRAPH.items()}
    # A package's __init__ re-exporting its modules is not a cycle of dependence.
    edges = {m: {i for i in targets if not m.startswith(i + ".")} for m, targets in edges.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in edges[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_the_native_stub_lists_what_the_native_module_exports():
    """cdc/_native.pyi gives mypy the module's types: a name the Rust code adds or drops must show there."""
    from cdc import native

    if not native.AVAILABLE:
        pytest.skip("cdc._native is not built")
    stub = ast.parse((PACKAGE / "_native.pyi").read_text())
    declared = {node.name for node in stub.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    exported = {name for name in dir(native.native) if not name.startswith("_")}
    assert declared == exported
