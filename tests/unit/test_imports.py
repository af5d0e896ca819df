"""No two modules of the package import each other, directly or around a loop.

import-linter (``make test``'s ``lint-imports``) keeps the layers; this keeps the modules
inside a layer from leaning on each other both ways. Imports made only for type checking
count too: a loop there is a loop in the design.
"""

from __future__ import annotations

import grimp


def import_loops(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    modules = sorted(graph.modules)
    edges = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return loops


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = grimp.build_graph("channelserver", exclude_type_checking_imports=False)
    assert import_loops(graph) == []


def test_the_check_finds_a_loop() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert import_loops(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
