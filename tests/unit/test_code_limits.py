"""The size limits taskchan keeps: no module over 400 lines, no function over 60.

A module past 400 lines holds more than one concept, and a function past 60
does more than one step; either is the moment to split (``docs/architecture.md``
has the map).  Migrations are generated code and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "taskchan"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_400_lines():
    big = [
        f"{path.relative_to(PACKAGE.parent)}: {lines} lines"
        for path in sources()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, big


def test_no_function_is_over_60_lines():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not long, long


def test_the_walk_sees_the_package():
    # An empty walk would pass both tests above: make sure they read taskchan.
    assert len(sources()) > 50
    assert PACKAGE / "worker" / "worker.py" in sources()
