"""The layers point one way (CLI -> recipe -> library verbs -> model/data): no import cycle among qla_sdk's modules
(imports inside functions count too), the library never imports the benchmark harness (qla_bench, benchmarks/), and
only the CLI (qla_sdk/cli.py, qla_sdk/commands/) imports the CLI. The harness, qla_bench, has no cycle either and
reaches the library through its verbs, never through the CLI. Modules are found on disk and read with ``ast``;
nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qla_sdk", "qla_bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
LIBRARY = sorted(name for name in MODULES if name.split(".")[0] == "qla_sdk")
HARNESS = sorted(name for name in MODULES if name.split(".")[0] == "qla_bench")


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, at module level or inside a function. ``from a import b`` is ``a.b`` when that
    is a module, else ``a``; relative imports are resolved. The packages above an imported module come in
    ``depends_on``."""
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


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def depends_on(name: str) -> set[str]:
    """The modules of the packages that importing ``name`` runs: what it imports, plus the packages above an imported
    module (``import qla_sdk.data.squad`` runs qla_sdk/data/__init__.py first) unless they hold ``name`` itself (those
    started before it)."""
    found = set()
    for module in imports_of(name):
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            target = ".".join(parts[:depth])
            if target in MODULES and target != name and (depth == len(parts) or not within(name, target)):
                found.add(target)
    return found


GRAPH = {name: depends_on(name) for name in MODULES}


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


def test_the_walk_sees_the_library_and_the_harness():
    assert {"qla_sdk.modeling.encoder", "qla_sdk.runtime.eager", "qla_sdk.recipe.stages"} <= set(LIBRARY)
    assert {"qla_bench.suite", "qla_bench.builders", "qla_bench.ours", "qla_bench.peers"} <= set(HARNESS)
    assert "qla_sdk.modeling.encoder" in GRAPH["qla_sdk.runtime.eager"]
    assert "qla_sdk.deploy.evaluation" in GRAPH["qla_sdk.recipe.stages"]  # imports inside functions count
    assert "qla_sdk.deploy" in GRAPH["qla_sdk.recipe.stages"]  # `from qla_sdk.deploy import load`: a name
    assert "qla_sdk.deploy" in GRAPH["qla_sdk.recipe.measure"]
    # a parent package of an imported module counts (qla_sdk.quantize.config runs qla_sdk/quantize/__init__.py)
    # unless it holds the importer (qla_sdk/__init__.py is running already when any qla_sdk module is imported)
    assert {"qla_sdk.quantize.config", "qla_sdk.quantize"} <= GRAPH["qla_sdk.backends.base"]
    assert "qla_sdk" not in GRAPH["qla_sdk.backends.base"]


def test_cycles_are_found_when_there_are_some():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = {name: {m for m in GRAPH[name] if within(m, package)} for name in MODULES if within(name, package)}
    found = cycles(graph)
    assert not found, f"import cycles in {package} (each line is one strongly connected set of modules):\n" + "\n".join(
        "{" + ", ".join(component) + "}" for component in found
    )


@pytest.mark.parametrize("name", HARNESS)
def test_the_harness_uses_the_library_not_its_cli(name):
    cli = {m for m in imports_of(name) if m == "qla_sdk.cli" or m.startswith("qla_sdk.commands")}
    assert not cli, f"{name} imports the CLI: {sorted(cli)}; call the library verb the command calls"


@pytest.mark.parametrize("name", LIBRARY)
def test_the_library_never_imports_the_harness_or_the_cli(name):
    outside = {m for m in imports_of(name) if m.split(".")[0] in ("qla_bench", "benchmarks")}
    assert not outside, f"{name} imports the benchmark harness: {sorted(outside)}"
    if name == "qla_sdk.cli" or name.startswith("qla_sdk.commands"):
        return
    cli = {m for m in imports_of(name) if m == "qla_sdk.cli" or m.startswith("qla_sdk.commands")}
    assert not cli, f"{name} is library code but imports the CLI: {sorted(cli)}"
