"""What import-linter's contracts do not cover, checked by `make lint`:

- no import cycles between Ketch's modules, counting imports inside functions;
- no private name (``_name``) imported from another module.

Exits 1 and lists every problem found.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent / "src"


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan, iteratively)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            for target in targets:
                if target in on_stack:
                    low[node] = min(low[node], low[target])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def private_imports() -> list[str]:
    """``from a import _b`` where ``_b`` belongs to another module."""
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not name.startswith("__"):
                    where = path.relative_to(ROOT.parent)
                    problems.append(f"{where}:{node.lineno}: imports {node.module}.{name}")
    return problems


def main() -> int:
    graph = grimp.build_graph("ketch", include_external_packages=False)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += private_imports()
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} import problem(s)")
        return 1
    print("imports: no cycles, no private names imported across modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
