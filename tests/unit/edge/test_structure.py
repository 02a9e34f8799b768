"""The edge's shape: I/O-free cores, no import cycles, small modules.

Read from the source with `ast`, so what is checked is every import
statement, including those under `if TYPE_CHECKING:` and inside functions.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EDGE = ROOT / "edge" / "src" / "bellhop_edge"
DEVICES = ROOT / "firmware" / "python" / "src" / "bellhop_devices"
OURS = ("bellhop_edge", "bellhop_devices")
# A core is fed events and returns decisions: no event loop, database, RPC or broker.
FORBIDDEN_IN_CORE = {"asyncio", "sqlite3", "sqlite_utils", "grpc", "aiomqtt", "paho", "socket"}
MAX_LINES = 500


def _module_name(path: Path, package_root: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package_root: Path) -> dict[str, Path]:
    return {_module_name(p, package_root): p for p in sorted(package_root.rglob("*.py"))}


ALL_MODULES = {**_modules(EDGE), **_modules(DEVICES)}


def _is_package(name: str) -> bool:
    return ALL_MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str) -> Iterator[str]:
    """Every module `name` imports: ours resolved to modules, others by their root."""
    tree = ast.parse(ALL_MODULES[name].read_text())
    package = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in ALL_MODULES else base


def _ours(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in OURS


def _reachable(start: str) -> dict[str, str]:
    """Every module imported from `start`, directly or through our own modules (-> by whom)."""
    seen: dict[str, str] = {}
    stack = [start]
    while stack:
        current = stack.pop()
        for imported in _imports(current):
            if imported in seen:
                continue
            seen[imported] = current
            if _ours(imported) and imported in ALL_MODULES:
                stack.append(imported)
    return seen


CORE = sorted(m for m in ALL_MODULES if m.startswith("bellhop_edge.core"))


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_no_io(module: str) -> None:
    reached = _reachable(module)
    bad = {
        imported: via
        for imported, via in reached.items()
        if imported.split(".")[0] in FORBIDDEN_IN_CORE
    }
    assert not bad, f"{module} reaches I/O modules (imported -> by): {bad}"


def test_the_forbidden_list_is_really_checked() -> None:
    # The gateway does I/O: the same walk must find it there.
    reached = _reachable("bellhop_edge.gateway")
    assert {"asyncio", "sqlite3", "grpc", "aiomqtt"} <= {m.split(".")[0] for m in reached}


def test_the_edge_import_graph_has_no_cycles() -> None:
    graph = {
        name: sorted({i for i in _imports(name) if i in ALL_MODULES and i != name})
        for name in ALL_MODULES
        if name.startswith("bellhop_edge")
    }
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# The same limit for every component, not only the edge.
SIZED = {
    **ALL_MODULES,
    **_modules(ROOT / "cloud" / "src" / "bellhop_cloud"),
    **_modules(ROOT / "bridge" / "src" / "bellhop_bridge"),
    **_modules(ROOT / "src" / "bellhop_cli"),
}


@pytest.mark.parametrize("module", sorted(SIZED))
def test_no_module_is_over_500_lines(module: str) -> None:
    lines = len(SIZED[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by what it owns"


def test_every_module_found_is_importable_by_name() -> None:
    # Guards the walk above: a module the test cannot name is a module it never checks.
    for name in ("bellhop_edge.core.ingest", "bellhop_edge.store.writer", "bellhop_devices"):
        assert name in ALL_MODULES
        assert importlib.util.find_spec(name) is not None
