"""The house rules on the package's modules: no import circle, and every module under 400 lines.

Read statically (``ast``), nothing is imported. The rule for a circle: **every** import statement
of a module counts, wherever it is (module level, inside a function, under ``TYPE_CHECKING``): an
import deferred into a function still makes the two modules depend on each other, and a type-only
import still ties the module to the other's names. ``from a.b import c`` is an edge to ``a.b.c``
when that is a module, else to ``a.b``; a package is its ``__init__.py``, and importing a module
does not count as importing the packages above it.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# state/ and agents/ install as multiworld.state and multiworld.agents (pyproject's package-dir).
SOURCES = {"multiworld": ROOT / "multiworld", "multiworld.state": ROOT / "state", "multiworld.agents": ROOT / "agents"}
MAX_LINES = 400


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for name, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join((name, *parts))] = path
    return mods


def _imported(module: str, path: pathlib.Path, node: ast.Import | ast.ImportFrom, mods) -> list[str]:
    """The names one import statement of ``module`` imports (modules or packages, ours or not)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (every import statement, see the module docstring)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(module, path, node, mods):
                while name and name not in mods:  # `import multiworld.x.y` -> the module, `from x import f` -> x
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_circles_and_only_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_relative_deferred_and_type_only_imports():
    graph = import_graph()
    assert "multiworld.state._layout" in graph["multiworld.state.reader"]  # `from . import _layout as L`
    assert "multiworld.state.writer" in graph["multiworld.state.store"]  # `from .writer import ...`
    assert "multiworld.games.doom_model" in graph["multiworld.games.vizdoom"]  # the backend factory
    assert "multiworld" in graph["multiworld.state._world"]  # `from multiworld import __version__`, in a function


def test_no_import_circle_among_the_package_modules():
    found = cycles(import_graph())
    assert not found, "import circles (each a set of modules that import each other):\n" + "\n".join(map(str, found))


def test_every_module_is_under_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert not long, f"modules of {MAX_LINES} lines or more (split them by concept): {long}"
