"""The package layout: no import cycle among the project's modules, counting imports inside
functions, under TYPE_CHECKING and the packages' lazy export tables; a short top level in flowkit.

An edge runs from a module to each project module it names in an import (``from X import Y`` names
X.Y when that is a module, else X). Importing X.Y also runs X's ``__init__``; those implicit edges
to parent packages are not counted, since every lazily exporting package would otherwise form one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"flowkit": ROOT / "flowkit", "spotnet": ROOT / "spotnet", "cli": ROOT / "cli"}
#: Cycles that exist and are to be removed, not added to (none now: the run settings live in
#: flowkit/pipeline/settings.py, which the driver, the engines and the units import).
KNOWN_CYCLES: list[list[str]] = []
#: Library modules over the line limit, to be split by concern and not to grow (none now).
LONG_MODULES: set[str] = set()
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
            names.update(v.value for v in node.value.values if isinstance(v, ast.Constant))  # lazy exports
    edges = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            edges.add(name)
    return edges


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(m, p, known) for m, p in modules.items()}
    for m in graph:  # implicit parent-package edges are not counted (module docstring)
        graph[m] -= _parents(m)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_beyond_the_known_one():
    cycles = _cycles(_graph())
    assert [c for c in cycles if c not in KNOWN_CYCLES] == []


def test_library_modules_stay_short():
    long = {str(p.relative_to(ROOT)) for p in _modules().values() if len(p.read_text().splitlines()) > MAX_LINES}
    assert long <= LONG_MODULES, sorted(long - LONG_MODULES)


def test_flowkit_top_level_is_short():
    top = [p.name for p in (ROOT / "flowkit").glob("*.py")]
    assert len(top) <= 8, sorted(top)
