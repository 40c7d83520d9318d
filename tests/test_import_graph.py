"""The modules of ganqp_cli.metrics import one another without a cycle: the extractors stand
on extractor_base, the factory (extractors.py) on the extractors, and nothing imports
upwards. Imports inside functions count too: they hide a cycle from Python, not from a
reader."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "ganqp_cli.metrics"


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imported(node: ast.AST, here: str, modules: set[str]) -> set[str]:
    """The modules of the package that one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolved against this module's package
            parent = PACKAGE.split(".")[: len(PACKAGE.split(".")) - node.level + 1]
            base = ".".join(parent + ([base] if base else []))
        # `from P import m` uses module P.m when there is one, else P itself
        names = [f"{base}.{a.name}" for a in node.names]
    else:
        return set()
    found = set()
    for name in names:
        # `import ganqp_cli.metrics.x.y` and `from ganqp_cli.metrics.x import y` both use x
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != here:
            found.add(name)
    return found


def import_graph(folder: Path) -> dict[str, set[str]]:
    files = sorted(folder.glob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {}
    for f in files:
        here = _module_name(f)
        tree = ast.parse(f.read_text(), filename=str(f))
        graph[here] = set().union(*(_imported(n, here, modules) for n in ast.walk(tree)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_the_old_extractor_circle() -> None:
    m = PACKAGE
    old = {f"{m}.extractors": {f"{m}.digits", f"{m}.inception"},
           f"{m}.digits": {f"{m}.extractors", f"{m}.resize"},
           f"{m}.inception": {f"{m}.extractors"}, f"{m}.resize": set()}
    assert find_cycle(old) == [f"{m}.digits", f"{m}.extractors", f"{m}.digits"]
    old[f"{m}.digits"] = {f"{m}.resize"}
    old[f"{m}.inception"] = set()
    assert find_cycle(old) is None


def test_function_level_and_relative_imports_are_edges(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("def f():\n    from ganqp_cli.metrics.b import g\n")
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text("import ganqp_cli.metrics.a\nfrom ganqp_cli.metrics import X\n")
    graph = import_graph(tmp_path)
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.b"}
    assert graph[f"{PACKAGE}.b"] == {f"{PACKAGE}.c"}
    assert graph[f"{PACKAGE}.c"] == {f"{PACKAGE}.a", PACKAGE}
    assert find_cycle(graph) is not None


def test_metrics_import_graph_has_no_cycle() -> None:
    graph = import_graph(ROOT / "ganqp_cli" / "metrics")
    assert f"{PACKAGE}.extractor_base" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_extractors_stand_on_the_base_not_on_the_factory() -> None:
    graph = import_graph(ROOT / "ganqp_cli" / "metrics")
    base, factory = f"{PACKAGE}.extractor_base", f"{PACKAGE}.extractors"
    assert not {d for d in graph[base] if d.startswith(PACKAGE)}
    for ext in ("digits", "inception"):
        assert base in graph[f"{PACKAGE}.{ext}"]
        assert factory not in graph[f"{PACKAGE}.{ext}"]
        assert f"{PACKAGE}.{ext}" in graph[factory]
