"""taskchan's modules import each other in one direction: no circle, no borrowed private names.

The graph is read from the source (every ``import``, inside functions too;
``if TYPE_CHECKING:`` blocks left out).  Importing ``a.b.c`` from outside
``a.b`` runs ``a/b/__init__.py`` first, so such an import also counts as one
of the package: a package that re-exports a submodule which (through others)
imports back into that package would fail at import time, and fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "taskchan"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_lines(tree) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def imports(path: Path, name: str) -> list[tuple[str, str]]:
    """(imported module or name, line) pairs for every taskchan import in ``path``."""
    tree = ast.parse(path.read_text())
    skip, found = type_checking_lines(tree), []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(target, line) for target, line in found if target.startswith("taskchan")]


def graph() -> tuple[dict[str, set[str]], list[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    edges: dict[str, set[str]] = {name: set() for name in paths}
    private = []
    for name, path in paths.items():
        for target, line in imports(path, name):
            last = target.rpartition(".")[2]
            module = target if target in paths else target.rpartition(".")[0]
            while module and module not in paths:
                module = module.rpartition(".")[0]
            if not module or module == name:
                continue
            if last.startswith("_") and not last.startswith("__") and target not in paths:
                private.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {last} from {module}")
            # The module and every package above it that ``name`` is not inside.
            while module and module != name and not name.startswith(module + "."):
                edges[name].add(module)
                module = module.rpartition(".")[0]
    return edges, private


def cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    path, on_path, done = [], set(), set()

    def visit(node):
        path.append(node)
        on_path.add(node)
        for nxt in sorted(edges[node]):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (found := visit(nxt)):
                return found
        on_path.discard(path.pop())
        done.add(node)
        return None

    return visit(start)


def test_no_module_imports_another_modules_private_name():
    assert graph()[1] == []


def test_no_import_circle_among_taskchan_modules():
    edges, _ = graph()
    for start in sorted(edges):
        assert (cycle := cycle_from(start, edges)) is None, " -> ".join(cycle)
