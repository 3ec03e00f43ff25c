"""The house: no import circles, none of the arrows that must never exist, one module per family.

The import graph is read from the source (every ``import``, at module level or inside a function:
a lazy import is still a dependency), so these tests need no JAX and run in a second.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "gatelab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The gatelab modules ``name`` imports (``from gatelab import x`` is ``gatelab.x`` when x
    is a module), and the third-party top-level packages it imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m if m in MODULES else m.split(".")[0] for m in found} - {name}


GRAPH = {name: {m for m in _imports(name) if m in MODULES} for name in MODULES}
EXTERNAL = {name: {m for m in _imports(name) if m not in MODULES} for name in MODULES}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in GRAPH[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_the_graph_is_read_from_every_module():
    assert {"gatelab.train", "gatelab.families.lstm", "gatelab.report.load"} <= set(MODULES)
    assert "gatelab.families.lstm" in GRAPH["gatelab.families"]
    assert "gatelab.records" in GRAPH["gatelab.train"]


def test_no_import_circles():
    """Every strongly connected set of modules is one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in GRAPH[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


# The arrows that must never exist (docs/design.md, "The arrows"): (modules, what they must not
# reach, directly or through others).
NEVER = [
    (
        ["gatelab.families", "gatelab.cells", "gatelab.rnn"],
        ["gatelab.train", "gatelab.records", "gatelab.tasks", "gatelab.config", "wandb", "orbax"],
    ),
    (["gatelab.tasks"], ["gatelab.models", "gatelab.rnn", "gatelab.cells", "gatelab.train"]),
    (["gatelab.report"], ["gatelab.train", "gatelab.models", "gatelab.rnn", "jax", "flax"]),
    (["gatelab.train"], ["gatelab.sweep", "gatelab.workers", "gatelab.study", "gatelab.report"]),
    (["gatelab.records", "gatelab.study"], ["jax", "flax", "gatelab.train"]),
    (["gatelab.runtime"], [m for m in MODULES if m not in ("gatelab", "gatelab.runtime")]),
]


@pytest.mark.parametrize("sources, forbidden", NEVER, ids=lambda v: ",".join(v))
def test_forbidden_arrows(sources, forbidden):
    for source in sources:
        for name in [m for m in MODULES if m == source or m.startswith(source + ".")]:
            reach = _reachable(name) | {name}
            modules = reach | {e for m in reach for e in EXTERNAL[m]}
            hits = sorted(
                f for f in forbidden if any(m == f or m.startswith(f + ".") for m in modules)
            )
            assert not hits, f"{name} reaches {hits}"


def test_nothing_imports_the_cli():
    importers = sorted(name for name, children in GRAPH.items() if "gatelab.cli" in children)
    assert not importers, importers


def test_every_family_module_is_registered_once():
    """A family is one module of gatelab/families exporting FAMILY, plus its registry entry."""
    families = importlib.import_module("gatelab.families")
    shared = ("__init__", "base", "regularise")  # what every family uses, not a family
    modules = sorted(p.stem for p in (PACKAGE / "families").glob("*.py") if p.stem not in shared)
    registered = {family.spec: family for family in families.FAMILIES.values()}
    for stem in modules:
        family = importlib.import_module(f"gatelab.families.{stem}").FAMILY
        assert registered.get(family.spec) is family, stem
    assert len(registered) == len(modules)
