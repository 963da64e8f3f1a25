"""No import cycles among the book's modules: every ``import rnnbook...`` anywhere in a module
(at the top, inside a function, or under ``TYPE_CHECKING``) is an edge of the graph."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edges() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (SRC / "rnnbook").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name and t != "rnnbook":
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


#: Cycles known and not yet broken (each to be removed with its fix; a tuple of the sorted module
#: names): none.
KNOWN: set[tuple[str, ...]] = set()


def test_no_import_cycles_but_the_known_ones():
    found = [c for c in cycles(edges()) if tuple(sorted(set(c))) not in KNOWN]
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_known_cycles_are_still_there():
    # a cycle broken must leave KNOWN, so the list never hides a cycle that came back
    present = {tuple(sorted(set(c))) for c in cycles(edges())}
    assert KNOWN <= present, f"no longer cycles, remove from KNOWN: {sorted(KNOWN - present)}"
