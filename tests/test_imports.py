"""The shape of app/: no import cycles, no private names borrowed across modules, small modules.

Every module is read with ``ast``, not imported, so an import hidden inside a function (the
usual way a cycle is papered over) counts like one at the top of the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"

MAX_LINES = 500
# Modules over MAX_LINES today, each waiting for its split. The list only shrinks: a module
# not on it may not grow past MAX_LINES, and a listed module that fits is taken off it.
OVERSIZED = {
    "app/outbound.py",
    "app/push.py",
    "app/schedule.py",
    "app/sources/bluesky.py",
}


def module_name(path: Path) -> str:
    """The dotted name ``path`` (a file under app/) is imported as."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from … import`` statement in ``module`` reads."""
    if not node.level:
        return node.module or ""
    package = module if is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(module: str) -> Iterator[tuple[str, str, int]]:
    """Every (imported app module, name taken from it or "", line) in ``module``, at any depth:
    module level, inside functions, under ``if TYPE_CHECKING``. ``from pkg import x`` names
    the module ``pkg.x`` when x is one."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, "", node.lineno
                elif source in MODULES:
                    yield source, alias.name, node.lineno


def graph() -> dict[str, set[str]]:
    """Each app module -> the app modules it imports (itself excluded)."""
    return {
        module: {target for target, _, _ in imports(module) if target != module}
        for module in MODULES
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module, each as a path
    that starts and ends at the same module (Tarjan's algorithm, then a walk inside the
    component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)

    found = []
    for component in components:
        start = min(component)
        # Shortest way back to start inside the component (breadth first).
        previous: dict[str, str] = {}
        frontier = [start]
        while start not in previous:
            following = []
            for node in frontier:
                for target in sorted(edges[node] & component):
                    if target not in previous:
                        previous[target] = node
                        following.append(target)
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        found.append(path[::-1])
    return sorted(found)


def test_cycle_finder_reports_a_cycle() -> None:
    """The finder itself sees a cycle through three modules and none in a chain."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_are_resolved() -> None:
    """Relative, absolute and function-level imports all reach the graph (so an empty cycle
    list means something)."""
    edges = graph()
    assert "app.rooms" in edges["app.main"]
    assert "app.errors" in edges["app.rooms"]
    assert "app.config" in edges["app.sources"]


def test_no_import_cycles() -> None:
    """No app module imports, at any depth, a module that imports it back."""
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(path) for path in found)


def test_no_private_names_across_modules() -> None:
    """A name starting with one underscore stays in its module: none is imported elsewhere."""
    borrowed = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {name} from {target}"
        for module in MODULES
        for target, name, line in imports(module)
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not borrowed, "\n".join(borrowed)


def line_counts() -> dict[str, int]:
    return {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in MODULES.values()
    }


def test_modules_stay_small() -> None:
    """No module outside OVERSIZED grows past MAX_LINES lines, and none on it fits (so it
    is taken off the list)."""
    counts = line_counts()
    too_long = sorted(
        f"{path} ({count} lines)"
        for path, count in counts.items()
        if count > MAX_LINES and path not in OVERSIZED
    )
    assert not too_long, f"over {MAX_LINES} lines: {', '.join(too_long)}"
    fits = sorted(path for path in OVERSIZED if counts.get(path, 0) <= MAX_LINES)
    assert not fits, f"take off OVERSIZED (gone or {MAX_LINES} lines or fewer): {', '.join(fits)}"
