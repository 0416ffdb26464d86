"""The package's import graph has no cycle: dependencies run one way (e.g. the domain modules
import :mod:`attrib.plugins`, never the reverse). Imports are read from the source with ``ast``,
module-level and inside functions alike (a lazy import is still a dependency); only imports under
``if TYPE_CHECKING:`` are left out, since they never run."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "attrib"


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package __init__)}`` for every module under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imported(node, package: str, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {modules of the package it imports}}``."""
    modules = _modules(package)
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        edges = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, here, modules):
                while target and target not in modules:  # attrib.x.func -> attrib.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_in_attrib():
    graph = import_graph()
    assert "attrib.plugins" in graph and "attrib.detectors" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_plugins_knows_no_domain_module():
    """plugins.py handles pluggy only; the domain modules depend on it, not the reverse."""
    graph = import_graph()
    assert graph["attrib.plugins"] <= {"attrib.hookspecs"}, graph["attrib.plugins"]
    assert "attrib.plugins" in graph["attrib.detectors"] and "attrib.plugins" in graph["attrib.encoders"]


def test_the_cycle_finder_finds_cycles(tmp_path):
    """The checks above can fail: a lazy (function-level) import closing a loop is a cycle, one
    under TYPE_CHECKING is not."""
    pkg = tmp_path / "attrib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    graph = import_graph(pkg)
    assert graph["attrib.b"] == {"attrib.sub.c"}
    assert find_cycle(graph) is None
    (pkg / "sub" / "c.py").write_text("def g():\n    from ..a import x\n")
    assert find_cycle(import_graph(pkg)) == ["attrib.a", "attrib.b", "attrib.sub.c", "attrib.a"]
