"""The import graph of ``src/inferd``: no cycle, and the core never reaches an adapter.

The graph is read statically (``ast`` over every source file, nothing imported): an edge
is an import at module level, or inside an ``if TYPE_CHECKING:`` block at module level
(a type-only import still ties two modules together for a reader and for mypy). Imports
inside a function or method body are left out: they are the lazy imports the style
guide asks for (heavy frameworks, optional dependencies), run only when called.

The layering rule (the core and the runtimes import no web or RPC framework and no
adapter) is stricter: it reads every import of those modules, lazy ones included.

``from package import name`` is an edge to ``package.name`` when that is a module,
else to ``package``. Importing ``a.b.c`` also runs ``a/__init__.py`` and
``a/b/__init__.py``; those package edges are not counted, as long as the ``__init__``
files stay free of imports that would close a loop (they are checked like any module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "inferd"

#: Packages under which nothing may import the frameworks or adapters below.
FRAMEWORK_FREE = ("inferd.core", "inferd.runtimes")
#: What those packages never import (a module, or anything under it).
FORBIDDEN = ("fastapi", "starlette", "grpc", "inferd.http", "inferd.grpc", "inferd.gateway")


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (generated protobuf code included)."""
    return {module_name(p): p for p in sorted((SOURCE / PACKAGE).rglob("*.py"))}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Module-level imports, those under ``if TYPE_CHECKING:`` and in try/except too."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from _top_level(node.body)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for handler in node.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(node.orelse)


def _everywhere(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import of a module, inside functions too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def imported(name: str, path: Path, known: dict[str, Path], lazy: bool = False) -> set[str]:
    """The names ``name`` imports at module level (``lazy``: anywhere), absolute: resolved
    against ``known`` for its own package, other packages by their dotted name."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in _everywhere(tree) if lazy else _top_level(tree.body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.add(full if full in known else base)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imported(name, path, known) if m in known and m != name}
        for name, path in known.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), each
    written as a path that returns to its start; :func:`components` has their members."""
    return [_loop(edges, set(c), c[0]) for c in components(edges)]


def components(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _loop(edges: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """The shortest path from ``start`` back to itself inside one component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no loop")  # a component always has one


def test_no_module_of_inferd_is_in_an_import_cycle() -> None:
    edges = graph()
    found = [
        f"{' -> '.join(_loop(edges, set(c), c[0]))}  (modules in the tangle: {', '.join(c)})"
        for c in components(edges)
    ]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_core_and_the_runtimes_never_import_a_framework_or_an_adapter() -> None:
    known = modules()
    broken = [
        f"{name} imports {target}"
        for name, path in known.items()
        if name.startswith(FRAMEWORK_FREE)
        for target in sorted(imported(name, path, known, lazy=True))
        if any(target == f or target.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert not broken, "\n".join(broken)


def test_the_walk_sees_every_kind_of_edge(tmp_path: Path) -> None:
    """The reader finds module-level, TYPE_CHECKING and relative imports, skips
    function-local ones, and the cycle finder names a loop."""
    source = tmp_path / "pkg"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (source / "b.py").write_text("from . import c\ndef f():\n    import pkg.a\n")
    (source / "c.py").write_text("import pkg.a\n")
    known = {
        "pkg": source / "__init__.py",
        **{f"pkg.{m}": source / f"{m}.py" for m in "abc"},
    }
    assert imported("pkg.a", known["pkg.a"], known) >= {"pkg.b"}
    assert imported("pkg.b", known["pkg.b"], known) == {"pkg.c"}
    assert imported("pkg.b", known["pkg.b"], known, lazy=True) == {"pkg.c", "pkg.a"}
    edges = {
        name: {m for m in imported(name, path, known) if m in known and m != name}
        for name, path in known.items()
    }
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert components(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    edges["pkg.c"] = set()
    assert cycles(edges) == []
