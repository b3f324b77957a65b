"""The layout's rules that a tool can check: no import cycles between modules."""

from __future__ import annotations

import grimp
import pytest


def _cycles(exclude_type_checking: bool) -> list[list[str]]:
    """Groups of modules that import each other, found with Tarjan's algorithm."""
    graph = grimp.build_graph(
        "flowstage", exclude_type_checking_imports=exclude_type_checking, cache_dir=None
    )
    modules = sorted(graph.modules)
    edges = {
        m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return found


@pytest.mark.parametrize("exclude_type_checking", [True, False], ids=["runtime", "typing"])
def test_no_import_cycles(exclude_type_checking: bool) -> None:
    assert _cycles(exclude_type_checking) == []
