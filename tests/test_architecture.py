"""The house plan of docs/architecture.md, enforced by reading every import of the package.

Imports inside functions count (a circle held apart by a function-level import is still a
circle); imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "atrous"

# part → the parts it must never import (the arrows that must not exist).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "utils": ("layers", "backbones", "models", "data", "losses", "metrics", "inference", "engine", "cli", "analysis"),
    "layers": ("backbones", "models", "data", "inference", "engine", "cli", "analysis"),
    "backbones": ("models", "data", "inference", "engine", "cli", "analysis"),
    "models": ("engine", "data", "inference", "cli", "analysis"),
    "data": ("layers", "backbones", "models", "losses", "metrics", "inference", "engine", "cli", "analysis"),
    "losses": ("models", "backbones", "inference", "engine", "cli", "analysis"),
    "metrics": ("models", "backbones", "inference", "engine", "cli", "analysis"),
    "inference": ("engine", "cli", "analysis"),
    "engine": ("cli", "analysis"),
    "benchmark": ("cli", "analysis"),
    "serve": ("cli", "engine", "analysis"),
    "analysis": ("engine", "cli", "serve", "data", "losses", "metrics"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """``atrous.models.deeplab`` → ``models``; a top-level module is its own part."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(source: str, name: str, modules: set[str], *, is_package: bool = False) -> set[str]:
    """The package modules that module ``name`` (its ``source``) imports, resolved to modules."""
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source, name)
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "atrous")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "atrous":
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {
        module_name(p): imports_of(p.read_text(), module_name(p), modules, is_package=p.name == "__init__.py")
        for p in paths
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_forbidden_arrow():
    graph = import_graph()
    wrong = [
        f"{src} imports {dst} ({part_of(src)} → {part_of(dst)} must not exist)"
        for src, targets in sorted(graph.items())
        for dst in sorted(targets)
        if part_of(dst) in FORBIDDEN.get(part_of(src), ())
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" ⇄ ".join(c) for c in found)


def test_the_checker_sees_a_circle_and_a_forbidden_arrow():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    modules = {"atrous.inference.x", "atrous.engine", "atrous.engine.y", "atrous.engine.z"}
    lazy = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..engine import z\n"  # never runs: not an arrow
        "def f():\n    from ..engine.y import g\n"  # runs when called: an arrow
    )
    assert imports_of(lazy, "atrous.inference.x", modules) == {"atrous.engine.y"}
    assert imports_of("from ..engine import z, w\n", "atrous.inference.x", modules) == {
        "atrous.engine.z",
        "atrous.engine",
    }


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("atrous.engine.trainer", ("pycocotools", "atrous.inference.portrait", "atrous.metrics.instance")),
        ("atrous", ("pycocotools", "atrous.engine", "atrous.inference", "matplotlib", "fastapi", "uvicorn")),
        ("atrous.cli", ("fastapi", "uvicorn", "starlette", "atrous.serve.app")),
    ],
)
def test_importing_loads_only_what_it_needs(module, absent):
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not [m for m in absent if m in loaded]
