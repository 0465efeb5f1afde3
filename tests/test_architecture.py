"""The package's layering (docs/architecture.md), checked on its source: no import circle, each
layer imports only the layers below it, and the wire layer runs without PyFlink.

Imports inside functions count too: a lazy import that closes a circle is still a circle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyflink_triton

PACKAGE_DIR = Path(pyflink_triton.__file__).parent
PACKAGE = "pyflink_triton"

# Lowest first. A module may import its own layer and those below it, never one above.
RANK = {"errors": 0, "options": 1, "policies": 2, "wire": 3, "codecs": 4, "sessions": 5,
        "flink": 6, "sql": 7, "jobzip": 8, "server": 8, "__init__": 9, "__main__": 9}
PYFLINK_ROOTS = ("pyflink", "pandas", "pyarrow", "py4j")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    elif parts == ["__init__"]:
        return PACKAGE
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


MODULES = _modules()


def _imported(path: Path) -> Iterator[tuple[str, int]]:
    """The absolute names ``path`` imports (a ``from X import name`` gives X.name when that
    is a module of the package, else X), with their line numbers."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield (candidate if candidate in MODULES else source), node.lineno


def _graph() -> dict[str, set[str]]:
    return {name: {imported for imported, _ in _imported(path) if imported in MODULES}
            for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer():
    assert {_layer(m) for m in MODULES} <= set(RANK), sorted(
        m for m in MODULES if _layer(m) not in RANK)


def test_the_package_has_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_circle_check_finds_a_circle():
    # (a check that cannot fail proves nothing: a made-up graph with one circle)
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"], ["e"]]


def test_no_layer_imports_a_layer_above_it():
    upward = [
        f"{MODULES[module].relative_to(PACKAGE_DIR.parent)}:{line} imports {imported}"
        for module in MODULES
        for imported, line in _imported(MODULES[module])
        if imported in MODULES and RANK[_layer(imported)] > RANK[_layer(module)]]
    assert upward == []


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_the_wire_layer_and_what_it_imports_name_nothing_of_pyflink():
    graph = _graph()
    wire = [m for m in MODULES if _layer(m) == "wire"]
    assert len(wire) >= 4, wire  # (the layer exists: the test would pass on nothing)
    offending = sorted(
        f"{module} (reached from the wire) imports {imported}"
        for start in wire for module in _reachable(start, graph)
        for imported, _ in _imported(MODULES[module])
        if imported.split(".")[0] in PYFLINK_ROOTS)
    assert offending == []


def test_the_transports_import_and_run_without_pyflink():
    """Import every wire module without the package's ``__init__`` (which loads the PyFlink
    adapters), send a request through an HTTP transport to a port nobody listens on, and
    check that it failed as a transport fails and that no PyFlink module was loaded."""
    wire = sorted(m for m in MODULES if _layer(m) == "wire")
    script = f"""
import importlib, json, socket, sys, types
package = types.ModuleType({PACKAGE!r})
package.__path__ = [{str(PACKAGE_DIR)!r}]
sys.modules[{PACKAGE!r}] = package
for name in {wire!r}:
    importlib.import_module(name)
from pyflink_triton.errors import TritonConnectionError
from pyflink_triton.options import TritonOptions
from pyflink_triton.wire.http import HttpTransport
from pyflink_triton.wire.request import ModelRef
with socket.socket() as unused:
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
options = TritonOptions.from_dict({{"endpoint": f"http://127.0.0.1:{{port}}", "model-name": "m"}})
transport = HttpTransport.for_options(options, options.endpoint.servers[0])
model = ModelRef("m")
try:
    transport.server_live(model)
    failure = None
except TritonConnectionError as error:
    failure = type(error).__name__
finally:
    transport.close()
loaded = sorted(n for n in sys.modules if n.split(".")[0] in {PYFLINK_ROOTS!r})
print(json.dumps([failure, loaded]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["TritonConnectionError", []]
