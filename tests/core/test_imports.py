"""The layers point one way: no import cycle among qla_sdk's modules (imports inside functions count too), the
library never imports the benchmark harness, and only the CLI imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "qla_sdk"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, at module level or inside a function. ``from a import b`` is ``a.b`` when that
    is a module, else ``a``. Parent packages imported implicitly (``qla_sdk`` for ``qla_sdk.errors``) do not count:
    Python runs them first, outside any cycle of explicit imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


GRAPH = {name: {m for m in imports_of(name) if m in MODULES and m != name} for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_library():
    assert {"qla_sdk.modeling.encoder", "qla_sdk.runtime.eager", "qla_sdk.recipe.stages"} <= set(MODULES)
    assert "qla_sdk.modeling.encoder" in GRAPH["qla_sdk.runtime.eager"]
    assert "qla_sdk.deploy.evaluation" in GRAPH["qla_sdk.recipe.stages"]  # imports inside functions count


def test_cycles_are_found_when_there_are_some():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_qla_sdk():
    assert cycles(GRAPH) == [], "import cycles (each list is one strongly connected set of modules)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_library_never_imports_the_harness_or_the_cli(name):
    outside = {m for m in imports_of(name) if m.split(".")[0] in ("qla_bench", "benchmarks")}
    assert not outside, f"{name} imports the benchmark harness: {sorted(outside)}"
    if name == "qla_sdk.cli" or name.startswith("qla_sdk.commands"):
        return
    cli = {m for m in imports_of(name) if m == "qla_sdk.cli" or m.startswith("qla_sdk.commands")}
    assert not cli, f"{name} is library code but imports the CLI: {sorted(cli)}"
